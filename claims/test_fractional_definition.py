"""fractional-definition (IMN26): the fractional memorization score, thresholded by a null
distribution of randomly relabelled points, has fewer false positives than the original.

On ``synthetic-noisy`` the truth is known: singletons and mislabeled points are memorized
(positives); correctly labelled members of sub-populations of two or more are not
(negatives). Both scores come from one subsampled ensemble (r = 0.7); the decision (the paired
difference of false-positive rates at 95 % true-positive rate) and its negative control are
``harness.claims.fractional_definition``. FZ20's fixed thresholds (0.25, 0.45) are reported
beside it.

The null (:mod:`harness.null`): NULL_SHARE of the training set's size in fresh points (test
inputs of the same sub-populations) with a random wrong label, trained alongside the real
points and left out of the evaluation. Random wrong labels can be fitted only by
memorizing, so their scores show what a memorized point scores; the threshold is their 5 %
quantile, which aims at the same 95 % true-positive rate as the decisive operating point.
The rates of each score at its null threshold are reported beside it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from harness import estimators, plots, stats
from harness.claims.fractional_definition import CLAIM, TARGET_TPR, decide
from harness.experiments import Case, load_dataset, subsampled_scores
from harness.null import with_relabelled_null
from harness.verdict import INCONCLUSIVE, ClaimResult, Statistic
from harness.profiles import FZ20_RATE

NULL_QUANTILE = 1.0 - TARGET_TPR
NULL_SHARE = 0.05   # null points per training point, about the data's own label noise (5 %)
MIN_NULL_POINTS = 30  # so that the 5 % quantile is interpolated, not the minimum
FIXED_THRESHOLDS = (0.25, 0.45)  # FZ20's threshold and IMN25's higher one


def cases(profile):
    return [Case("synthetic-noisy", "ridge"), Case("synthetic-noisy", "mlp")]


def memorized_truth(dataset) -> np.ndarray:
    """Singletons and mislabeled points are memorized; the rest (sub-populations >= 2, clean) are not."""
    return (dataset.group_size_train == 1) | np.asarray(dataset.mislabeled_train, dtype=bool)


def _rate(name: str, interval, note: str = "") -> Statistic:
    return Statistic.from_interval(name, interval, note=note,
                                   unit="non-memorized points" if name.startswith("FPR") else "memorized points")


def false_positives(interval) -> int:
    return int(round(interval.estimate * interval.n))


def ranking_note(scores, points) -> str:
    """Where P_in = 1 the fractional score (1 - P_out)/(1 + P_out) is a decreasing function of P_out, as
    the original 1 - P_out is: the two rank such points alike, and their FPR at any TPR can differ
    only through points with P_in < 1."""
    p_in = scores.p_in[points]
    rank = scipy_stats.spearmanr(scores.score[points], estimators.fractional(scores).score[points]).statistic
    return (f"{np.mean(p_in < 1):.1%} of the real points have P_in < 1, the only ones the two scores can rank "
            f"differently; Spearman correlation of the two scores {rank:.4f}")


@pytest.mark.claim(CLAIM)
def test_fractional_score_with_a_null_threshold_has_fewer_false_positives(case, profile, store, device, seed,
                                                                         conclude):
    base = load_dataset(case.data, profile.name)
    null = with_relabelled_null(base, max(MIN_NULL_POINTS, round(NULL_SHARE * base.n_train)))
    all_scores, ensemble = subsampled_scores(null.dataset, case.spec(profile), FZ20_RATE, profile.subsampled_models,
                                             store, device, seed)
    scores = {"original": all_scores, "fractional": estimators.fractional(all_scores)}
    real = null.original_points
    truth = memorized_truth(base)
    at_tpr = {name: stats.fpr_at_tpr(s.score[real], truth, TARGET_TPR) for name, s in scores.items()}
    negatives = int((~truth).sum())

    clusters = base.group_train if base.group_train is not None else np.full(base.n_train, -1)
    decision = decide(all_scores, real, truth, clusters, seed)

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
        rates = stats.rates_at_threshold(scores[name].score[real], truth, theta)
        label = f"{name} at the {source} threshold" + ("" if source != "fixed" else f" {theta}")
        further += [_rate(f"FPR, {label}", rates["fpr"], note=f"threshold {theta:.3f}"),
                    _rate(f"TPR, {label}", rates["tpr"], note=f"threshold {theta:.3f}")]
        rows.append({"score": name, "threshold from": source, "threshold": theta,
                     "TPR": rates["tpr"].estimate, "FPR": rates["fpr"].estimate})

    # The two pipelines as used: FZ20's score at its fixed threshold vs IMN26's at the null threshold.
    fixed = stats.rates_at_threshold(scores["original"].score[real], truth, FIXED_THRESHOLDS[0])["fpr"]
    nulled = stats.rates_at_threshold(scores["fractional"].score[real], truth, null_thresholds["fractional"])["fpr"]
    pipelines = stats.newcombe_difference(false_positives(fixed), negatives, false_positives(nulled), negatives)
    further.append(Statistic(f"FPR, original at {FIXED_THRESHOLDS[0]} minus fractional at the null threshold",
                             *pipelines, negatives, unit="non-memorized points",
                             note="the two pipelines as published, each at its own threshold"))
    null_scores = all_scores.score[null.is_null]
    result = ClaimResult(
        claim=CLAIM, case=case.id, dataset=null.dataset.name, decisive=decision.decisive,
        threshold=decision.threshold, statistics=further, control=decision.control,
        paper={"figure": "the fractional definition with a null-derived threshold has fewer false positives",
               "source": "IMN26 (abstract; scored there as FPR at 95 % TPR)"},
        models_trained=ensemble.n_models,
        notes=[f"{len(real)} real points: {int(truth.sum())} memorized by construction (singletons or mislabeled), "
               f"{negatives} not; {int(null.is_null.sum())} relabelled null points (test inputs with a random wrong "
               f"label) trained alongside and left out of the rates",
               f"null points' original score: median {np.median(null_scores):.3f}, {NULL_QUANTILE:.0%} quantile "
               f"{np.quantile(null_scores, NULL_QUANTILE):.3f}; their P_in averages "
               f"{all_scores.p_in[null.is_null].mean():.3f}",
               f"subsampled estimator, r = {FZ20_RATE}, k = {ensemble.n_models} models",
               ranking_note(all_scores, real)],
    )
    if result.verdict == INCONCLUSIVE:
        identical = (all_scores.p_in[real] == 1).all()
        result.notes.append("every real point has P_in = 1, so the two scores rank the points identically and no "
                            "number of models or points can separate them at any TPR" if identical else
                            f"the interval rests on the {negatives} non-memorized points, so more models would "
                            "not narrow it much; a larger data set would")
    shown = [s for s in further if s.name.startswith("FPR") and "minus" not in s.name]
    conclude(result,
             figures={"false-positive-rates": plots.interval_bars(
                 [s.name.replace("FPR, ", "").replace("FPR ", "") for s in shown], [s.estimate for s in shown],
                 [s.lower for s in shown], [s.upper for s in shown], "false-positive rate",
                 f"{case.id}: original vs fractional score", reference=None)},
             tables={"operating points": pd.DataFrame(rows).round(3)})
