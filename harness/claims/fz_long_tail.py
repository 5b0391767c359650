"""fz-long-tail (FZ20): high-memorization points are atypical: singletons, mislabeled points or
members of rare sub-populations.

A point is *atypical* when its sub-population has at most 10 training members (singletons
included; CLAIMS.md's "small" bin ends at 10) or its label is wrong; it is *high* when its
score is at least 0.25, FZ20's threshold for memorized points. Decisive statistic:

    enrichment = share of atypical points among high points - share of atypical points overall,

with a crossed bootstrap: each replicate resamples the ensemble's models and the training
points by sub-population, recomputes every score and re-selects the high points. The claim
holds when the enrichment is above 0 (the sign of the claim).

The overall share is not a sample: which points are atypical is fixed by the design (the
generator's sub-population sizes and flipped labels; for images, the clustering of the data at
hand), so another draw of the same design has the same share, and only which of them score high
varies. The point resample is therefore stratified by the atypical flag (within any strata the
caller gives): atypical and typical sub-populations are each drawn within themselves, a
sub-population holding both (a mislabeled point in a large one) as one unit per side. Each
replicate then holds the design's atypical share, up to the sizes of the small sub-populations it
draws, and the enrichment's spread is that of the high set alone. The replicate's own overall share
is subtracted (not the original's), so a replicate that drew larger small sub-populations compares
its high set with the points it was selected from. Unstratified, the share moved with how many
atypical sub-populations a replicate drew, noise the design does not have.

With the share fixed, a high set that is wholly atypical in every replicate (or wholly typical)
leaves the bootstrap nothing to resample: its interval would be the overall share's small spread
alone (0.0925 [0.081, 0.106] on digits in smoke, 33 of 33 high points atypical against 90.8 %
overall). There the high set's share is bounded instead by the zero-failure bound
(``harness.stats.zero_failure_bound``, one-sided at 2.5 %, the level of each side of a verdict)
over U = min(models, sub-populations among the high points) independent units, and the overall
share p0 is subtracted as the constant it is:

    all high atypical:  [1 - bound(U) - p0, 1 - p0];     none:  [-p0, bound(U) - p0].

The enrichment selects on noisy scores, so it depends on the number of models: with few, noise
lifts typical points over 0.25 and dilutes the high set. ``harness.calibration`` measures it
(ridge, quick design, 200 replicates): 0.257 on average at 40 models, 0.353 at 320; the
interval covers what the ensemble measures (0.94) but not the larger ensemble's value (0.655).
The dilution pulls toward 0, so a supported verdict is conservative and the estimate
understates the enrichment; ATTENUATION_NOTE puts this in every report.

Negative control: the same enrichment with the atypical flags shuffled among the training
points (as many atypical points, none tied to its score).

The study (:func:`study`): Feldman & Zhang's subsampled scores (r = 0.7) of every training
point. Beside the decision, with Newcombe intervals given the scores (conditional on the
models): the odds ratio of being atypical, high vs not high, with Woolf's interval and
Haldane's +0.5 correction of every cell,

    log OR = log((a + .5)(d + .5) / ((b + .5)(c + .5))),  se = sqrt(sum over cells of 1 / (cell + .5)),

the same enrichment among the top decile of scores, and the enrichment of each kind of
atypical point (singleton, small sub-population, mislabeled) on its own.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from harness import controls, plots, stats
from harness.experiments import load_or_skip, subsampled_scores, training_points
from harness.profiles import FZ20_HIGH_INFLUENCE, FZ20_RATE, SIZE_BINS
from harness.verdict import CaseReport, ClaimResult, Control, Decision, Statistic, Threshold

CLAIM = "fz-long-tail"
THRESHOLD = Threshold(0.0, "above", "FZ20: high-memorization points are atypical, so atypical points make up "
                                    "more of them than of the training set (the sign of the claim)")
HIGH_SCORE = FZ20_HIGH_INFLUENCE
CONTROL = "atypical flags shuffled among the training points"
PAPER = {"figure": "high-memorization examples are atypical, ambiguous or mislabeled (qualitative)",
         "source": "FZ20 (CIFAR-100 and ImageNet, subsampled estimator r = 0.7, threshold 0.25)"}
TOP_SHARE = 0.10    # the top decile of scores, a threshold-free view of "high"
ZERO_FAILURE_ALPHA = 0.025   # one side of the verdict's 95 % interval
NAME = f"atypical share among points with score >= {HIGH_SCORE} minus overall"
ATTENUATION_NOTE = ("the enrichment grows with the number of models (noise dilutes the high set toward the overall "
                    "share): the interval holds what this ensemble measures, and a larger one would measure more "
                    "(README, 'Coverage')")


def stratified_by(points: stats.Points, flags: np.ndarray) -> stats.Points:
    """``points`` resampled within the strata it has and, inside each, within ``flags`` (module
    docstring: the design fixes the flags' share)."""
    given = np.zeros(points.n, dtype=np.int64) if points.strata is None else np.asarray(points.strata)
    return stats.Points(points.clusters, np.char.add(given.astype(str), np.where(flags, "|flagged", "|other")))


def enrichment_intervals(scores, atypical: np.ndarray, points: stats.Points, seed: int = 0) -> dict:
    """Crossed-bootstrap intervals of the enrichment and of the high set's atypical share (module
    docstring); ``points``: the training points as sub-populations to resample (stratified here by
    the atypical flag)."""
    atypical = np.asarray(atypical, dtype=bool)

    def figures(replicate):
        drawn = replicate.points["training"]
        high = scores.rescored(replicate.models["subsampled"])[drawn] >= HIGH_SCORE
        if not high.any():
            return {"enrichment": np.nan, "high share": np.nan}
        high_share = atypical[drawn][high].mean()
        return {"enrichment": high_share - atypical[drawn].mean(), "high share": high_share}

    return stats.crossed_bootstrap(figures, {"subsampled": scores.model_groups},
                                   {"training": stratified_by(points, atypical)}, seed=seed, reselects=True)


def enrichment_interval(scores, atypical: np.ndarray, points: stats.Points, seed: int = 0):
    """The enrichment's crossed-bootstrap interval (:func:`enrichment_intervals`)."""
    return enrichment_intervals(scores, atypical, points, seed)["enrichment"]


def enrichment_statistic(scores, atypical: np.ndarray, points: stats.Points, name: str, seed: int = 0) -> Statistic:
    """The enrichment as a verdict statistic: the crossed bootstrap's interval or, where the high
    set's share is the same in every replicate, the zero-failure bounds (module docstring)."""
    atypical = np.asarray(atypical, dtype=bool)
    high = scores.score >= HIGH_SCORE
    models = len(scores.model_groups)
    note = (f"{int((atypical & high).sum())} of {int(high.sum())} high points vs {int(atypical.sum())} of "
            f"{atypical.size} overall")
    intervals = enrichment_intervals(scores, atypical, points, seed)
    share = intervals["high share"]
    if not (share.degenerate and np.isfinite(share.estimate)):
        return Statistic.from_interval(name, intervals["enrichment"], note=note,
                                       models_per_arm={"subsampled models": models})
    clusters = len(np.unique(stratified_by(points, atypical).unit_of_point[high]))
    units = min(models, clusters)
    bound = stats.zero_failure_bound(units, ZERO_FAILURE_ALPHA)
    overall = float(atypical.mean())
    wholly = share.estimate == 1.0
    lower, upper = (1 - bound, 1.0) if wholly else (0.0, bound)
    # The bound that would decide it: below the distance from the overall share to the wall.
    distance = 1.0 - overall if wholly else overall
    needed = stats.units_for_zero_failure_bound(min(max(distance, 1e-3), 0.999), ZERO_FAILURE_ALPHA)
    return Statistic(name, share.estimate - overall, lower - overall, upper - overall, units,
                     "models and sub-populations",
                     f"{note}; every replicate's high set {'wholly' if wholly else 'without any'} "
                     f"atypical: zero-failure bound {bound:.3g} over {units} units, the fewer of models ({models}) and "
                     f"sub-populations among the high points ({clusters}), minus the overall share {overall:.3g}",
                     {"zero_failure": {"units": units, "needed": needed, "models": models, "clusters": clusters}})


def decide(scores, atypical: np.ndarray, points: stats.Points, seed: int = 0) -> Decision:
    """From every training point's subsampled scores (with their model rows), its atypical flag and
    its sub-population."""
    atypical = np.asarray(atypical, dtype=bool)
    decisive = enrichment_statistic(scores, atypical, points, NAME, seed)
    control = enrichment_statistic(scores, controls.shuffled(atypical, seed), points,
                                   f"{NAME}, atypical flags shuffled", seed)
    return Decision(decisive, THRESHOLD, Control(control, CONTROL))


def study(case, profile, store, device, seed: int = 0) -> CaseReport:
    data = load_or_skip(case.data, profile.name)
    scores, ensemble = subsampled_scores(data, case.spec(profile), FZ20_RATE, profile.subsampled_models, store, device,
                                         seed)
    kinds = kinds_of_point(data)
    atypical = kinds["atypical"]
    high = scores.score >= HIGH_SCORE
    top = np.zeros(data.n_train, dtype=bool)
    top[np.argsort(-scores.score, kind="stable")[:max(1, round(TOP_SHARE * data.n_train))]] = True

    decision = decide(scores, atypical, training_points(data, np.arange(data.n_train)), seed)
    further = [odds_ratio(atypical, high, f"odds ratio of atypical, score >= {HIGH_SCORE} vs below"),
               enrichment(atypical, top, "atypical share among the top decile minus overall"),
               odds_ratio(atypical, top, "odds ratio of atypical, top decile vs the rest")]
    further += [enrichment(mask, high, f"{kind} share among points with score >= {HIGH_SCORE} minus overall")
                for kind, mask in kinds.items() if kind != "atypical"]
    sizes_known = "known" if case.data.startswith("synthetic") else "inferred by clustering within each class"
    result = ClaimResult.from_decision(
        decision, further, claim=CLAIM, case=case.id, dataset=data.name, paper=PAPER,
        models_trained=ensemble.n_models,
        notes=[f"{data.n_train} points scored by the subsampled estimator (r = {FZ20_RATE}, k = {ensemble.n_models}); "
               f"{int(high.sum())} have score >= {HIGH_SCORE}; sub-population sizes {sizes_known}",
               f"atypical = sub-population of size <= {SIZE_BINS['small'][1]} (singletons included) or mislabeled: "
               f"{atypical.mean():.1%} of the training set, so the enrichment can be at most "
               f"{1 - atypical.mean():.1%}", ATTENUATION_NOTE],
    )
    table = pd.DataFrame({kind: [mask.mean(), mask[high].mean() if high.any() else np.nan, mask[top].mean()]
                          for kind, mask in kinds.items()},
                         index=["share overall", f"share with score >= {HIGH_SCORE}", "share in the top decile"])
    shown = [decision.decisive] + [s for s in further if "share" in s.name]
    figure = plots.interval_bars([s.name.replace(" minus overall", "") for s in shown], [s.estimate for s in shown],
                                 [s.lower for s in shown], [s.upper for s in shown],
                                 "share among high minus share overall", f"{case.id}: enrichment of atypical points")
    return CaseReport(result, {"enrichment": figure}, {"share of each kind of point": table.round(3)})


def kinds_of_point(dataset) -> dict[str, np.ndarray]:
    """Boolean masks over the training points: each kind of atypical point, and their union."""
    sizes = dataset.group_size_train
    low, high = SIZE_BINS["small"]
    mislabeled = (np.zeros(dataset.n_train, dtype=bool) if dataset.mislabeled_train is None
                  else np.asarray(dataset.mislabeled_train, dtype=bool))
    kinds = {"singleton": sizes == 1, "small sub-population": (sizes >= low) & (sizes <= high)}
    if mislabeled.any():
        kinds["mislabeled"] = mislabeled
    kinds["atypical"] = kinds["singleton"] | kinds["small sub-population"] | mislabeled
    return kinds


def enrichment(kind: np.ndarray, high: np.ndarray, name: str) -> Statistic:
    estimate, lower, upper = stats.newcombe_difference(int((kind & high).sum()), int(high.sum()),
                                                       int(kind.sum()), kind.size)
    return Statistic(name, estimate, lower, upper, int(high.sum()), unit="high points",
                     note=f"{int((kind & high).sum())} of {int(high.sum())} high points vs "
                          f"{int(kind.sum())} of {kind.size} overall")


def odds_ratio(kind: np.ndarray, high: np.ndarray, name: str) -> Statistic:
    cells = np.array([(kind & high).sum(), (~kind & high).sum(), (kind & ~high).sum(), (~kind & ~high).sum()],
                     dtype=float) + 0.5
    log_ratio = math.log(cells[0] * cells[3] / (cells[1] * cells[2]))
    half = scipy_stats.norm.ppf(0.975) * math.sqrt((1.0 / cells).sum())
    return Statistic(name, math.exp(log_ratio), math.exp(log_ratio - half), math.exp(log_ratio + half),
                     kind.size, unit="points", note="Woolf interval, +0.5 in every cell; 1 = no association")
