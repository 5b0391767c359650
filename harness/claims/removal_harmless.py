"""removal-harmless (IMN26): removing the truly memorized points does not lower test accuracy,
and often raises it.

Truth comes from the synthetic generator: a point is *truly memorized* when its exact
leave-one-out score is >= 0.25 (FZ20's high-influence cut) and it is a singleton (its
sub-population has one training point) or mislabeled (``synthetic-noisy``: 5 % label noise).
Exact LOO avoids the subsampled estimator's bias (IMN26's fix): the ridge family scores every
point in closed form; the MLP scores the singletons and mislabeled points with a LOO plan.
M models are trained on S, on S minus the truly memorized points, and on S minus each of its
two parts (``harness.removal``), with a crossed bootstrap over model indices and test points by
sub-population:

    drop(R) = mean_k acc(h_k^S) - mean_k acc(h_k^{S \\ R}).

"Does not lower" is a non-inferiority claim, so it holds only if the drop's upper bound is below a
margin (a one-sided test at 2.5 %): supported if upper < 0.005, refuted if lower > 0.005.
The claim has two parts, the two reasons a point is truly memorized, and must hold for each:
the mislabeled points' negative drop must not hide the singletons' cost. Decisive statistic, an
intersection-union test (each part at the 95 % level, so no correction is needed): the drop
from removing the memorized mislabeled points and the drop from removing the memorized
singletons, the part nearest to failing (or a refuting part) deciding; a data set with only
one kind has one part. The margin, half an accuracy point, is a fifth of FZ20's reported drop
of 2.54 % (so a drop within it could not carry FZ20's conclusion) and 2.5 times FZ20's standard
error of 0.20 % (a change FZ20's own experiment could resolve). Also reported: the drop from
removing both together, and the accuracy change (after minus before: IMN26 says it often rises).
In this generator every singleton's sub-population also has test points (rare sub-populations
in FZ20's long-tail sense, not outliers without test counterparts), which is worth knowing when
reading the singleton part.

Negative control : as many points removed as whole sub-populations with
test points (neither singletons nor mislabeled points), a purge that costs accuracy; a test
that calls that removal harmless could not detect harm.

The study (:func:`study`): exact LOO scores of the singletons and mislabeled points (the ridge
family in closed form, the MLP with a LOO plan over them, or on the real images by grouped
leave-out where the profile says so: ``grouped_loo_on_images``); then the arms of
:func:`removal_arms`, ``removal_models`` models each. Also reported: the drop on the test points
of purged sub-populations.
"""

from __future__ import annotations

import numpy as np

from harness import controls, plots
from harness.experiments import describe_scores, load_or_skip, selection_scores
from harness.profiles import FZ20_HIGH_INFLUENCE
from harness.removal import marginal_utility, select_above
from harness.verdict import CaseReport, ClaimResult, Control, Decision, Threshold, intersection_union, undecidable

CLAIM = "removal-harmless"
MEMORIZATION_THRESHOLD = FZ20_HIGH_INFLUENCE
NON_INFERIORITY_MARGIN = 0.005
THRESHOLD = Threshold(NON_INFERIORITY_MARGIN, "below",
                      "non-inferiority margin of 0.5 accuracy points: a fifth of FZ20's 2.54 % drop and 2.5 "
                      "times its 0.20 % standard error (IMN25 3.3); 'does not lower' holds when the drop's "
                      "upper bound is below it, for each part")
WHOLE, PARTS = "truly memorized", ("memorized mislabeled", "memorized singletons")
CONTROL_ARM = "purge of as many points"
CONTROL = ("the harmlessness of what is removed: as many points taken as whole sub-populations with test points "
           "(neither singletons nor mislabeled), a purge that shifts the test distribution")
PAPER = {"figure": "removing truly memorized points does not cause a drop in accuracy, and in most cases improves "
                   "test performance", "source": "IMN26 abstract"}


def removal_arms(data, memorized: np.ndarray, seed: int = 0) -> dict:
    """The arms to train: the truly memorized points, each of its parts that has points, and the
    control's purge of as many points (none of them singletons or mislabeled)."""
    singleton = data.group_size_train == 1
    mislabeled = (np.zeros(data.n_train, dtype=bool) if data.mislabeled_train is None
                  else np.asarray(data.mislabeled_train, dtype=bool))
    arms = {WHOLE: memorized & (singleton | mislabeled), PARTS[0]: memorized & mislabeled,
            PARTS[1]: memorized & singleton & ~mislabeled}
    arms = {name: chosen for name, chosen in arms.items() if chosen.any()}
    if arms:
        arms[CONTROL_ARM] = controls.purging_selection(data, int(arms[WHOLE].sum()), singleton | mislabeled, seed)
    return arms


def decide(utility) -> Decision:
    """From a removal experiment with the arms of :func:`removal_arms` (None when nothing is truly
    memorized)."""
    if utility is None:
        missing = undecidable("accuracy drop, truly memorized points removed",
                              f"no singleton or mislabeled point has an exact LOO score >= {MEMORIZATION_THRESHOLD}")
        return Decision(missing, THRESHOLD, Control(missing, CONTROL))
    parts = [utility.statistic(f"accuracy drop, {part} removed", utility.drop(part))
             for part in PARTS if part in utility.arms]
    control = utility.statistic("accuracy drop, as many points of whole sub-populations removed",
                                utility.drop(CONTROL_ARM))
    return Decision(intersection_union(parts, THRESHOLD), THRESHOLD, Control(control, CONTROL), parts)


def study(case, profile, store, device, seed: int = 0) -> CaseReport:
    data = load_or_skip(case.data, profile.name)
    spec = case.spec(profile)
    singleton = data.group_size_train == 1
    mislabeled = (data.mislabeled_train if data.mislabeled_train is not None
                  else np.zeros(data.n_train, dtype=bool))
    candidates = np.flatnonzero(singleton | mislabeled)
    grouped = profile.grouped_loo_on_images and case.on_real_images
    scores, score_models = selection_scores(data, spec, profile, store, device, seed, rate=case.rate,
                                            targets=candidates, grouped=grouped)
    memorized = select_above(scores, MEMORIZATION_THRESHOLD)
    removals = removal_arms(data, memorized, seed)
    models = profile.removal_models
    utility = marginal_utility(data, spec, removals, models, store, device, seed) if removals else None
    decision = decide(utility)
    further = []
    if utility is not None:
        change = utility.bootstrap(lambda r: {"change": -utility.resampled_drop(r, WHOLE)})["change"]
        further = [utility.statistic("accuracy drop, truly memorized points removed", utility.drop(WHOLE),
                                     "IMN26: no drop"),
                   utility.statistic("accuracy change after removal (after minus before)", change,
                                     "IMN26: often rises (> 0)")]
        purged = utility.purged_test_points(WHOLE)
        if purged.any():
            further.append(utility.statistic("accuracy drop on test points of purged sub-populations",
                                             utility.drop(WHOLE, purged),
                                             "sub-populations whose every training point was removed"))
    counts = {part: int(chosen.sum()) for part, chosen in removals.items() if part != CONTROL_ARM}
    result = ClaimResult.from_decision(
        decision, statistics=further, claim=CLAIM, case=case.id, dataset=data.name, paper=PAPER,
        models_trained=score_models + (utility.models if utility is not None else 0),
        notes=[f"{describe_scores(case.rate, score_models, grouped)}; {int(singleton.sum())} singletons and "
               f"{int(mislabeled.sum())} mislabeled points; removed (score >= {MEMORIZATION_THRESHOLD}): {counts}; "
               f"{models} models per arm; accuracies as fractions (0.01 = 1 point)"])
    if utility is None:
        return CaseReport(result)
    drops = [s for s in result.statistics if s.name.startswith("accuracy drop")] + [decision.control.statistic]
    figure = plots.interval_bars([s.name.replace("accuracy drop, ", "") for s in drops], [s.estimate for s in drops],
                                 [s.lower for s in drops], [s.upper for s in drops], "test accuracy drop",
                                 f"{case.id}: removing truly memorized points")
    return CaseReport(result, {"drops": figure}, {"arms": utility.to_dataframe().round(4)})
