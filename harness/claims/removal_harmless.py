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
margin (a one-sided test at 2.5 %): supported if upper < 0.005, refuted if lower >= 0.005.
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
"""

from __future__ import annotations

import numpy as np

from harness import controls
from harness.profiles import FZ20_HIGH_INFLUENCE
from harness.verdict import Control, Decision, Threshold, intersection_union, undecidable

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
