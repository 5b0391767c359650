"""leakage (IMN26): near-duplicates shared by the training and test splits inflate the measured
marginal utility of memorized points; on a leakage-free test set it shrinks.

FZ20's procedure: R = {i : mem(i) >= 0.25}, M models on S and on S \\ R (``harness.removal``),
evaluated on a test split with near-duplicates D of training points and on its clean part C
(``harness.leakage``). With s the leak share and drop(R; D) weighted to the clean split's
sub-population mix where the duplicates were planted,

    utility(leaked) = (1 - s) drop(R; C) + s drop(R; D),     utility(clean) = drop(R; C),
    inflation       = utility(leaked) - utility(clean) = s * (drop(R; D) - drop(R; C)),

with a crossed bootstrap over model indices (the same models are scored on both test sets) and
the test points by sub-population, leaked and clean points each within themselves. The claim has
two parts, decided by intersection-union (each at the 95 % level, every part must hold; a refuted
part refutes, otherwise the part nearest to failing decides), both above 0:

- sign: inflation > 0 (IMN26's qualitative sentence: leakage inflates the utility);
- size: inflation - MATERIAL_SHARE * utility(leaked) > 0, i.e. (where the measured utility is
  positive) the leak accounts for more than MATERIAL_SHARE of the utility one measures with it.

IMN26 gives no figure for how much the utility shrinks on its leakage-free test sets (CIFAR
without duplicates, ImageNet-V2; only its abstract and reviews are public), so the margin is a
materiality bound taken from the figure leakage is said to skew: FZ20's 2.54 +- 0.20 % (IMN25
3.3). Reading 0.20 as the standard error (as threshold-dependence does), two such utilities, with
and without leakage, differ at the 5 % level beyond 1.96 * sqrt(2) * 0.20 = 0.55 points, so

    MATERIAL_SHARE = 1.96 * sqrt(2) * 0.20 / 2.54 = 0.218:

a leak that moves the utility by less than 21.8 % of itself is a change FZ20's own experiment
could not have resolved, so it could not have skewed its result (if 0.20 is the spread over trials
instead, the margin is smaller; the reading taken is the one harder on the claim). The share is relative, so it
carries over to a test set whose utility is on another scale than CIFAR-100's. Also reported: the
leak's share of the measured utility, inflation / utility(leaked), with its interval (undefined
in a resample whose utility(leaked) is not positive).

Selection noise: the crossed bootstrap holds R fixed, yet a training point near the score
threshold is in R under some seeds and not others, and when it is the source of a near-duplicate,
its membership moves drop(R; D) by up to its twins' share of D (a removed point takes its twin with
it). Each source i of a near-duplicate adds to both parts' variance (``stats.with_selection``)

    V_sel = sum_i f_i Delta_i^2,      Delta_i = s * sum_{j twin of i} w_j b_j,

with f_i the flip rate, on average a bound on the variance of i's membership across seeds
(``removal.selection_flip_rates``), w_j twin j's weight in drop(R; D), and b_j the most that
toggling i can move j's accuracy on S \\ R: down to 0 if i is kept (b_j = acc(j)), up to 1 if i is
removed (b_j = 1 - acc(j)). Delta_i is a bound, so V_sel is too; the size part moves by
(1 - MATERIAL_SHARE) Delta_i, since the measured utility moves with the inflation. Sources far from
the threshold have f_i = 0; a non-source's membership moves D and C alike and is left out, as are
the interactions among sources. On digits under the default profile one source (score 0.22 on
average, threshold 0.25) is in R under 7 of 24 seeds, and the sign part's seed-to-seed spread was
1.09 times what its interval held without this term, 0.70 with it (README, "Seeds").

Negative control: the same two parts with no leak, the clean test points of a random half of the
sub-populations posing as the leaked ones against the rest (intersection-union as above).

The study (:func:`study`): FZ20's subsampled scores at the case's rate, then ``removal_models``
models on S and on S \\ R, scored on the test split of :func:`leaked_split`:

- synthetic: a near-duplicate of every correctly labelled training point is planted (noise of a
  tenth of the median nearest-neighbour distance). The leaked test split is the clean one with a
  share s of its points replaced by near-duplicates of training points *of their own
  sub-population*: the copies are weighted to the clean split's sub-population mix
  (``copy_weights_matching_clean_mix``), so leaked and clean differ only in being copies, not in
  which sub-populations they come from, and no particular draw of sources decides the case.
  s = 10 %, the share of CIFAR-100 test images with a near-duplicate in the training split
  (Barz & Denzler 2020, "Do we train on test data?").
- digits (no planting): D = the test images closer to a training image than 19 in 20 training
  images are to their nearest neighbour (``detect_near_duplicates``, quantile 0.05), s = |D| / n_test.

Matching the clean mix is the neutral leak model: the claim is about leakage, not about which
sub-populations it falls in (this generator's test split over-represents the tail, so copies of
uniformly drawn training points would lean on large sub-populations and shrink the utility for
that reason alone). Also reported: both utilities, the drops on duplicates of removed and of kept
training points (the mechanism: a removed memorized point takes its duplicate with it), and the
inflation if every duplicate were of a removed point (leakage concentrated on memorized points,
as in FZ20's high-influence pairs; it holds by construction whenever removed points' duplicates
lose more than fresh test points, so it is reported, not decisive).
"""

from __future__ import annotations

import numpy as np

from harness import controls, plots, stats
from harness.experiments import describe_scores, load_or_skip, subsampled_scores
from harness.leakage import copy_weights_matching_clean_mix, detect_near_duplicates, plant_near_duplicates
from harness.profiles import FZ20_HIGH_INFLUENCE, FZ20_RESOLVABLE_CHANGE, FZ20_UTILITY
from harness.removal import marginal_utility, select_above, selection_flip_rates
from harness.verdict import (CaseReport, ClaimResult, Control, Decision, Statistic, Threshold, intersection_union,
                             undecidable)

CLAIM = "leakage"
MEMORIZATION_THRESHOLD = FZ20_HIGH_INFLUENCE
MATERIAL_SHARE = FZ20_RESOLVABLE_CHANGE / FZ20_UTILITY
THRESHOLD = Threshold(0.0, "above",
                      f"IMN26: near-duplicates inflate the marginal utility, two parts that must both hold: the "
                      f"sign (inflation > 0) and the size (inflation > {MATERIAL_SHARE:.3f} x the utility measured "
                      f"with the leak: 1.96 * sqrt(2) * 0.20 of FZ20's 2.54 points (IMN25 3.3), the smallest change "
                      f"FZ20's own experiment could resolve; IMN26 gives no figure of its own)")
CONTROL = "the near-duplicates: the clean test points of a random half of the sub-populations pose as the leaked ones"
NAME = "inflation: utility with leaked test points minus utility on the clean test points"
SIZE_NAME = f"inflation minus {MATERIAL_SHARE:.3f} x utility with leaked test points"
CIFAR100_LEAK_SHARE = 0.10  # Barz & Denzler 2020: about 10 % of CIFAR-100 test images have a training near-duplicate
DETECTION_QUANTILE = 0.05
PAPER = {"figure": "qualitative: leakage-free test sets (CIFAR without duplicates, ImageNet-V2) shrink the marginal "
                   "utility; no figure for by how much", "source": "IMN26 (reviews)"}


def leak_figures(utility, replicate, leaked_weights, clean, share: float, arm: str = "memorized") -> dict:
    """Both parts and the figures behind them in one replicate (module docstring); ``leaked_weights``
    weights (or flags) the test points posing as leaked, ``clean`` flags the clean ones."""
    drop_leaked = utility.resampled_drop(replicate, arm, leaked_weights)
    drop_clean = utility.resampled_drop(replicate, arm, clean)
    inflation = share * (drop_leaked - drop_clean)
    measured = (1 - share) * drop_clean + share * drop_leaked
    return {"inflation": inflation, "size": inflation - MATERIAL_SHARE * measured, "clean": drop_clean,
            "leaked": measured, "duplicates": drop_leaked,
            "leak share of utility": inflation / measured if measured > 0 else np.nan}


def selection_variance(utility, split, duplicate_weights: np.ndarray, share: float,
                       flip_rates: np.ndarray) -> tuple[float, int]:
    """V_sel of the inflation (module docstring) and how many sources add to it, from the removal
    experiment, the leaked split (its ``source`` of each near-duplicate), the weights of drop(R; D)
    and each training point's flip rate."""
    removed = utility.arm("memorized").fixed_set
    weights = utility.test_weights(duplicate_weights)
    weights = weights / weights.sum()
    accuracy = utility.arm("memorized").test_correct.mean(0)
    variance, sources = 0.0, 0
    for source in np.unique(split.source[split.leaked]).tolist():
        if flip_rates[source] == 0:
            continue
        twins = split.leaked & (split.source == source)
        most = 1 - accuracy[twins] if removed[source] else accuracy[twins]
        variance += flip_rates[source] * (share * float(weights[twins] @ most)) ** 2
        sources += 1
    return variance, sources


def decide(utility, leaked: np.ndarray, duplicate_weights: np.ndarray, share: float, seed: int = 0,
           selection: float = 0.0) -> Decision:
    """From a removal experiment whose arm ``"memorized"`` removes R (None when R is empty), which
    test points are near-duplicates, the weights their drop is taken with, the leak share s, and
    the inflation's selection variance V_sel (module docstring)."""
    if utility is None or not leaked.any():
        missing = undecidable(NAME, "no near-duplicate in the test split" if utility is not None else
                                    f"no point has a score >= {MEMORIZATION_THRESHOLD}")
        return Decision(missing, THRESHOLD, Control(missing, CONTROL))
    clean = ~leaked
    intervals = utility.bootstrap(lambda r: leak_figures(utility, r, duplicate_weights, clean, share), strata=leaked)
    size_selection = (1 - MATERIAL_SHARE) ** 2 * selection
    added = lambda variance: f"; R's selection adds variance {variance:.3g}" if variance else ""  # noqa: E731
    sign = utility.statistic(NAME, stats.with_selection(intervals["inflation"], selection),
                             f"s * (drop on near-duplicates - drop on clean), s = {share:.3f}{added(selection)}")
    size = utility.statistic(SIZE_NAME, stats.with_selection(intervals["size"], size_selection),
                             f"above 0 when the leak is more than {MATERIAL_SHARE:.1%} of the measured "
                             f"utility{added(size_selection)}")
    posing = clean & controls.random_half_of_groups(utility.dataset.group_test, clean, seed)
    rest = clean & ~posing
    no_leak = utility.bootstrap(lambda r: leak_figures(utility, r, posing, rest, share), strata=posing)
    control_parts = [utility.statistic(f"{NAME}, half the clean sub-populations posing as leaked",
                                       no_leak["inflation"]),
                     utility.statistic(f"{SIZE_NAME}, half the clean sub-populations posing as leaked",
                                       no_leak["size"])]
    parts = [sign, size,
             Statistic.from_interval("leak share of the measured utility: inflation / utility with leaked test "
                                     "points", intervals["leak share of utility"], unit="test points",
                                     note=f"reported; the size part decides against {MATERIAL_SHARE:.3f}"),
             utility.statistic("marginal utility on the clean test points", intervals["clean"]),
             utility.statistic("marginal utility with leaked test points", intervals["leaked"]),
             utility.statistic("accuracy drop on near-duplicates", intervals["duplicates"],
                               "weighted to the clean sub-population mix" if duplicate_weights.dtype != bool else "")]
    return Decision(intersection_union([sign, size], THRESHOLD), THRESHOLD,
                    Control(intersection_union(control_parts, THRESHOLD), CONTROL), parts)


def leaked_split(data):
    """The split, weights over its near-duplicates, the leak share s, and how the duplicates came about."""
    if data.name.startswith("synthetic"):
        clean_sources = np.flatnonzero(~data.mislabeled_train) if data.mislabeled_train is not None \
            else np.arange(data.n_train)
        split = plant_near_duplicates(data, clean_sources)
        return split, copy_weights_matching_clean_mix(split), CIFAR100_LEAK_SHARE, \
            f"planted: a copy of each of {len(clean_sources)} correctly labelled training points, weighted to " \
            f"the clean sub-population mix and a leak share of {CIFAR100_LEAK_SHARE:.0%} (CIFAR-100's, " \
            f"Barz & Denzler 2020)"
    split = detect_near_duplicates(data, DETECTION_QUANTILE)
    return split, split.leaked, split.leak_share, \
        f"detected: {int(split.leaked.sum())} of {data.n_test} test images ({split.leak_share:.1%}) are closer " \
        f"to a training image than the {DETECTION_QUANTILE} quantile of training nearest-neighbour distances"


def study(case, profile, store, device, seed: int = 0) -> CaseReport:
    data = load_or_skip(case.data, profile.name)
    spec = case.spec(profile)
    # Scores depend on the training split only, which planting leaves unchanged. The flip rates
    # need the scoring models' rows, so the subsampled scores are taken whole.
    scores, score_ensemble = subsampled_scores(data, spec, case.rate, profile.subsampled_models, store, device, seed)
    score_models = score_ensemble.n_models
    removed = select_above(scores.score, MEMORIZATION_THRESHOLD)
    split, duplicate_weights, share, how = leaked_split(data)
    models = profile.removal_models
    notes = [f"{describe_scores(case.rate, score_models)}; "
             f"{int(removed.sum())} points with score >= {MEMORIZATION_THRESHOLD} removed; {models} models per arm; "
             "accuracies as fractions (0.01 = 1 point)", how]
    utility, selection = None, 0.0
    if removed.any() and split.leaked.any():
        utility = marginal_utility(split.dataset, spec, {"memorized": removed}, models, store, device, seed)
        flip_rates = selection_flip_rates(scores, MEMORIZATION_THRESHOLD, seed=seed)
        selection, sources = selection_variance(utility, split, duplicate_weights, share, flip_rates)
        notes.append(f"R's selection: sources of near-duplicates that flip in or out of R between halves of the "
                     f"scoring models: {sources}, adding variance {selection:.3g} to the inflation "
                     f"(sd {selection ** 0.5:.3g})")
    decision = decide(utility, split.leaked, duplicate_weights, share, seed, selection)
    further = []
    if utility is not None:
        leaked = split.leaked
        source_removed = np.zeros(split.dataset.n_test, dtype=bool)
        source_removed[leaked] = removed[split.source[leaked]]
        for label, points in (("removed", leaked & source_removed), ("kept", leaked & ~source_removed)):
            if points.any():
                further.append(utility.statistic(f"accuracy drop on near-duplicates of {label} training points",
                                                 utility.drop("memorized", points), f"{int(points.sum())} test points"))
        if (leaked & source_removed).any():
            concentrated = utility.bootstrap(lambda r: {"c": share * (
                utility.resampled_drop(r, "memorized", leaked & source_removed)
                - utility.resampled_drop(r, "memorized", ~leaked))}, strata=leaked)["c"]
            further.append(utility.statistic(
                "inflation if every near-duplicate were of a removed point", concentrated,
                "s * (drop on duplicates of removed points - drop on clean): leakage concentrated on "
                "memorized points, as in FZ20's high-influence pairs; an upper-end scenario, not the decisive one"))
    result = ClaimResult.from_decision(
        decision, statistics=further, claim=CLAIM, case=case.id, dataset=data.name, paper=PAPER,
        models_trained=score_models + (utility.models if utility is not None else 0), notes=notes)
    if utility is None:
        return CaseReport(result)
    # The share is a ratio, not an accuracy: it stays out of the accuracy-scale figure.
    bars = [s for s in result.statistics if not s.name.startswith("leak share")]
    figure = plots.interval_bars([s.name.split(":")[0].replace("accuracy drop on ", "drop: ") for s in bars],
                                 [s.estimate for s in bars], [s.lower for s in bars], [s.upper for s in bars],
                                 "test accuracy drop", f"{case.id}: leakage")
    return CaseReport(result, {"utilities": figure})
