"""fractional-definition (IMN26): the fractional memorization score, thresholded by a null
distribution of randomly relabelled points, has fewer false positives than the original.

The truth (:func:`memorized_truth`, one rule per data set) says which real points are memorized
(positives), which are not (negatives) and which the rates leave out:

- sub-populations known by construction (the synthetic generator's, ``synthetic-noisy``):
  singletons and mislabeled points are positives, correctly labelled members of
  sub-populations of two or more negatives; none is left out;
- sub-populations inferred (``mnist-noisy``, ``fashion-mnist-noisy``: real images with planted
  label noise, ``harness.experiments``): only the planted mislabeled points are known to be
  memorized (positives); clean points whose inferred sub-population is large (``SIZE_BINS``,
  11 or more) are negatives; clean inferred singletons and members of small sub-populations
  are left out, since a clean atypical image may truly be memorized and no clustering can say
  whether it is. The clustering (Ward within each labelled class) reads the labels, so these
  variants keep the sub-populations inferred on the clean subset before its labels were
  flipped: a flipped image counts in a cluster of the class it shows, and the negatives are
  the same images the clean set calls large-sub-population members.

Both scores come from one subsampled ensemble (r = 0.7, FZ20's estimator):

    original   = P_in - P_out                       (FZ20)
    fractional = (P_in - P_out) / (P_in + P_out)    (IMN26)

Each is scored by its false-positive rate at 95 % true-positive rate (the operating point
IMN26 reports); the claim holds when

    FPR(original) - FPR(fractional) > 0

with a crossed bootstrap that keeps the pairing: each replicate resamples the ensemble's models
and the real points by sub-population (positives and negatives each within themselves),
recomputes both scores, re-chooses each score's 95 % TPR threshold and takes the difference of
the two FPRs on the same resampled negatives.

Negative control: the same difference with the truth shuffled among the real points the
rates count, so neither score can find the memorized ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from harness import controls, estimators, plots, stats
from harness.experiments import load_or_skip, subsampled_scores
from harness.null import RelabelledNull, with_relabelled_null
from harness.profiles import FZ20_RATE, SIZE_BINS
from harness.verdict import (INCONCLUSIVE, CaseReport, ClaimResult, Control, Decision, Statistic, Threshold,
                             undecidable)

CLAIM = "fractional-definition"
THRESHOLD = Threshold(0.0, "above", "IMN26: the fractional definition has fewer false positives, so the "
                                    "original's FPR at 95 % TPR minus the fractional one's is positive (the "
                                    "sign of the claim)")
TARGET_TPR = 0.95
CONTROL = "which points are memorized (the truth) shuffled among the real points the rates count"
NAME = f"FPR at {TARGET_TPR:.0%} TPR, original minus fractional"
PAPER = {"figure": "the fractional definition with a null-derived threshold has fewer false positives",
         "source": "IMN26 (abstract; scored there as FPR at 95 % TPR)"}
NULL_QUANTILE = 1.0 - TARGET_TPR
NULL_SHARE = 0.05   # null points per training point, about the data's own label noise (5 %)
MIN_NULL_POINTS = 30  # so that the 5 % quantile is interpolated, not the minimum
# Below 1 / (1 - TARGET_TPR) positives, 95 % TPR means flagging every positive: the threshold is the
# lowest positive's score, an extreme order statistic, where the bootstrap is inconsistent (Bickel &
# Freedman 1981); the calibration measured 0.870 coverage at 16 positives (README, "Coverage").
MIN_POSITIVES = round(1 / (1 - TARGET_TPR))
FIXED_THRESHOLDS = (0.25, 0.45)  # FZ20's threshold and IMN25's higher one
# Inferred sub-populations: clean members of one at least this large are the negatives.
SMALLEST_NEGATIVE_SUBPOPULATION = SIZE_BINS["large"][0]


def _both(scores) -> dict:
    return {"original": scores, "fractional": estimators.fractional(scores)}


def _difference(both: dict, real: np.ndarray, truth: np.ndarray, weights: np.ndarray, points: np.ndarray) -> float:
    """FPR(original) - FPR(fractional) at ``TARGET_TPR``, both scores recomputed with model ``k``
    weighted by ``weights[k]``, on the real points ``points`` (positions among ``real``), each
    score's threshold chosen on those points."""
    rescored = {name: s.rescored(weights)[real] for name, s in both.items()}
    points = points[np.isfinite(rescored["original"][points])]
    return rate_difference(rescored["original"][points], rescored["fractional"][points], truth[points])


def rate_difference(original: np.ndarray, fractional: np.ndarray, truth: np.ndarray) -> float:
    """FPR(original) - FPR(fractional) at ``TARGET_TPR`` over the points given, each score's
    threshold chosen on them."""
    return (stats.fpr_at_tpr_estimate(original, truth, TARGET_TPR)
            - stats.fpr_at_tpr_estimate(fractional, truth, TARGET_TPR))


def fpr_difference(scores, real: np.ndarray, truth: np.ndarray, clusters: np.ndarray, seed: int = 0,
                   n_boot: int = 1000, components: bool = True):
    """The decisive difference's crossed-bootstrap interval (module docstring). ``n_boot`` and
    ``components`` as in ``stats.crossed_bootstrap``; the one-way runs ``components`` adds feed
    the power statement only (the interval re-selects, so it is not scaled to them)."""
    both = _both(scores)

    def difference(replicate):
        return {"difference": _difference(both, real, truth, replicate.models["subsampled"],
                                          replicate.points["real"])}

    return stats.crossed_bootstrap(difference, {"subsampled": scores.model_groups},
                                   {"real": stats.Points(clusters, truth)}, n_boot=n_boot, seed=seed,
                                   components=components, reselects=True)["difference"]


def decide(scores, real: np.ndarray, truth: np.ndarray, clusters: np.ndarray, seed: int = 0) -> Decision:
    """From one subsampled ensemble's scores (with their model rows; ``real``: the positions of the
    real points among the scored ones, the rest being null points), the truth of every real point
    and its sub-population (``clusters``)."""
    truth = np.asarray(truth, dtype=bool)
    if truth.sum() < MIN_POSITIVES:
        missing = undecidable(NAME, f"only {int(truth.sum())} memorized points: at {TARGET_TPR:.0%} TPR the threshold "
                                    f"is the lowest one's score, an extreme whose bootstrap interval under-covers (needs "
                                    f"{MIN_POSITIVES} or more)")
        return Decision(missing, THRESHOLD, Control(missing, CONTROL))
    decisive = Statistic.from_interval(NAME, fpr_difference(scores, real, truth, clusters, seed),
                                       models_per_arm={"subsampled models": len(scores.model_groups)})
    control = Statistic.from_interval(f"{NAME}, truth shuffled",
                                      fpr_difference(scores, real, controls.shuffled(truth, seed), clusters, seed))
    return Decision(decisive, THRESHOLD, Control(control, CONTROL))


def study(case, profile, store, device, seed: int = 0) -> CaseReport:
    base = load_or_skip(case.data, profile.name)
    counted = counted_points(base, f"{case.data} at the {profile.name} profile")
    truth, null, real, memorized = counted.truth, counted.null, counted.real, counted.memorized
    all_scores, ensemble = subsampled_scores(null.dataset, case.spec(profile), FZ20_RATE, profile.subsampled_models,
                                             store, device, seed)
    scores = {"original": all_scores, "fractional": estimators.fractional(all_scores)}
    at_tpr = {name: stats.fpr_at_tpr(s.score[real], memorized, TARGET_TPR) for name, s in scores.items()}
    negatives = int((~memorized).sum())

    decision = decide(all_scores, real, memorized, counted.clusters, seed)

    further, rows = [], []
    for name, point in at_tpr.items():
        further.append(_rate(f"FPR at {TARGET_TPR:.0%} TPR, {name}", point.fpr,
                             note=f"threshold {point.threshold:.3f}"))
        rows.append({"score": name, "threshold from": f"{TARGET_TPR:.0%} TPR", "threshold": point.threshold,
                     "TPR": point.tpr.estimate, "FPR": point.fpr.estimate})
    null_thresholds = {name: null.threshold(s.score, NULL_QUANTILE) for name, s in scores.items()}
    thresholds = [(name, f"null {NULL_QUANTILE:.0%} quantile", theta) for name, theta in null_thresholds.items()]
    thresholds += [("original", "fixed", theta) for theta in FIXED_THRESHOLDS]
    for name, source, theta in thresholds:
        rates = stats.rates_at_threshold(scores[name].score[real], memorized, theta)
        label = f"{name} at the {source} threshold" + ("" if source != "fixed" else f" {theta}")
        further += [_rate(f"FPR, {label}", rates["fpr"], note=f"threshold {theta:.3f}"),
                    _rate(f"TPR, {label}", rates["tpr"], note=f"threshold {theta:.3f}")]
        rows.append({"score": name, "threshold from": source, "threshold": theta,
                     "TPR": rates["tpr"].estimate, "FPR": rates["fpr"].estimate})

    # The two pipelines as used: FZ20's score at its fixed threshold vs IMN26's at the null threshold,
    # on the same non-memorized points (paired).
    flagged_fixed = scores["original"].score[real][~memorized] >= FIXED_THRESHOLDS[0]
    flagged_null = scores["fractional"].score[real][~memorized] >= null_thresholds["fractional"]
    further.append(Statistic.from_interval(
        f"FPR, original at {FIXED_THRESHOLDS[0]} minus fractional at the null threshold",
        stats.newcombe_paired_difference(flagged_fixed, flagged_null), unit="non-memorized points",
        note="the two pipelines as published, each at its own threshold; paired over the same points, given "
             "the models"))
    null_scores = all_scores.score[null.is_null]
    left_out = base.n_train - len(real)
    result = ClaimResult.from_decision(
        decision, further, claim=CLAIM, case=case.id, dataset=null.dataset.name, paper=PAPER,
        models_trained=ensemble.n_models,
        notes=[f"{base.n_train} real points: {int(memorized.sum())} memorized ({truth.positives}), {negatives} not "
               f"({truth.negatives})" + (f"; {left_out} left out of the rates ({truth.left_out})" if left_out else "")
               + f"; {int(null.is_null.sum())} relabelled null points (test inputs with a random wrong label) "
               f"trained alongside and left out of the rates",
               f"null points' original score: median {np.median(null_scores):.3f}, {NULL_QUANTILE:.0%} quantile "
               f"{np.quantile(null_scores, NULL_QUANTILE):.3f}; their P_in averages "
               f"{all_scores.p_in[null.is_null].mean():.3f}",
               f"subsampled estimator, r = {FZ20_RATE}, k = {ensemble.n_models} models",
               ranking_note(all_scores, real)],
    )
    if result.verdict == INCONCLUSIVE:
        identical = (all_scores.p_in[real] == 1).all()
        result.notes.append("every counted real point has P_in = 1, so the two scores rank the points identically "
                            "and no number of models or points can separate them at any TPR" if identical else
                            f"the interval rests on the {negatives} non-memorized points, so more models would "
                            "not narrow it much; a larger data set would")
    shown = [s for s in further if s.name.startswith("FPR") and "minus" not in s.name]
    figure = plots.interval_bars([s.name.replace("FPR, ", "").replace("FPR ", "") for s in shown],
                                 [s.estimate for s in shown], [s.lower for s in shown], [s.upper for s in shown],
                                 "false-positive rate", f"{case.id}: original vs fractional score", reference=None)
    return CaseReport(result, {"false-positive-rates": figure}, {"operating points": pd.DataFrame(rows).round(3)})


@dataclass(frozen=True, eq=False)
class Truth:
    """Per training point: whether it is memorized, and whether the rates count it at all; the
    rule behind each class of point in words, for the report."""

    memorized: np.ndarray
    counted: np.ndarray
    positives: str
    negatives: str
    left_out: str = "none"


def memorized_truth(dataset) -> Truth:
    """The truth of ``dataset``'s training points (module docstring): singletons and mislabeled points
    where the sub-populations are known; planted mislabeled points against clean members of large
    sub-populations where they were inferred (``harness.data.infer_subpopulations``)."""
    mislabeled = (np.zeros(dataset.n_train, dtype=bool) if dataset.mislabeled_train is None
                  else np.asarray(dataset.mislabeled_train, dtype=bool))
    sizes = dataset.group_size_train
    if "subpopulations" not in dataset.meta:   # the ids came with the data, not from a clustering
        return Truth(memorized=(sizes == 1) | mislabeled, counted=np.ones(dataset.n_train, dtype=bool),
                     positives="singletons or mislabeled, by construction",
                     negatives="correctly labelled members of sub-populations of two or more")
    large = sizes >= SMALLEST_NEGATIVE_SUBPOPULATION
    return Truth(memorized=mislabeled, counted=mislabeled | large,
                 positives="planted label noise",
                 negatives=f"correctly labelled members of inferred sub-populations of "
                           f"{SMALLEST_NEGATIVE_SUBPOPULATION} or more",
                 left_out=f"correctly labelled inferred singletons and members of inferred sub-populations of "
                          f"{SMALLEST_NEGATIVE_SUBPOPULATION - 1} or fewer: an atypical clean image may truly be "
                          f"memorized, and the clustering cannot tell")


@dataclass(frozen=True, eq=False)
class CountedPoints:
    """A data set readied for the claim: its truth, the data set with the relabelled null appended,
    and the real points the rates count (``real``: their positions among the null data set's
    training points; ``memorized``: their truth; ``clusters``: their sub-populations, -1 where
    none is known)."""

    truth: Truth
    null: RelabelledNull
    real: np.ndarray
    memorized: np.ndarray
    clusters: np.ndarray


def counted_points(base, label: str) -> CountedPoints:
    """``base``'s truth and relabelled null (``NULL_SHARE`` of its training points, at least
    ``MIN_NULL_POINTS``), and the points the rates count; ``label`` names the data in the error
    raised when the counted points are all memorized or none is."""
    truth = memorized_truth(base)
    memorized = truth.memorized[truth.counted]
    if memorized.all() or not memorized.any():
        raise ValueError(f"{label}: {int(memorized.sum())} memorized points "
                         f"({truth.positives}) and {int((~memorized).sum())} not ({truth.negatives}); a false-"
                         f"positive rate at a true-positive rate needs both (more training points give both)")
    null = with_relabelled_null(base, max(MIN_NULL_POINTS, round(NULL_SHARE * base.n_train)))
    clusters = base.group_train if base.group_train is not None else np.full(base.n_train, -1)
    return CountedPoints(truth, null, null.original_points[truth.counted], memorized, clusters[truth.counted])


def _rate(name: str, interval, note: str = "") -> Statistic:
    return Statistic.from_interval(name, interval, note=note,
                                   unit="non-memorized points" if name.startswith("FPR") else "memorized points")


def ranking_note(scores, points) -> str:
    """Where P_in = 1 the fractional score (1 - P_out)/(1 + P_out) is a decreasing function of P_out, as
    the original 1 - P_out is: the two rank such points alike, and their FPR at any TPR can differ
    only through points with P_in < 1."""
    p_in = scores.p_in[points]
    rank = scipy_stats.spearmanr(scores.score[points], estimators.fractional(scores).score[points]).statistic
    return (f"{np.mean(p_in < 1):.1%} of the real points have P_in < 1, the only ones the two scores can rank "
            f"differently; Spearman correlation of the two scores {rank:.4f}")
