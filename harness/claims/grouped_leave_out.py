"""grouped-leave-out (a harness design claim, not from the papers): grouped leave-out
(:mod:`harness.grouped`) gives the exact leave-one-out scores of its targets, also for members
of small sub-populations, at (G + 1) M models instead of exact LOO's (T + 1) M.

Decisive statistic, an equivalence test on the targets in small sub-populations (2-10):

    D = mean over small targets of (grouped(i) - exact(i)),  [D_lo, D_hi] its 95 % crossed
    bootstrap interval (the grouped models in their pools, the exact LOO models in theirs, the
    small targets by sub-population);  |D| with the image of that interval under |.|.

Threshold: below MARGIN = 0.05, so the claim is supported when the whole interval of D lies
inside (-0.05, 0.05) (two one-sided tests, each at 2.5 %), refuted when it lies wholly outside
on one side. The margin is IMN25 4.2's own tolerance (a point "within 5 % error" of exact LOO
agrees with it).

Negative control: the same equivalence test with FZ20's subsampled estimator in the grouped
design's place; it is biased up on small sub-populations (IMN25 4.2), so a test that finds it
equivalent to exact LOO could not tell a biased estimator from an exact one.
"""

from __future__ import annotations

import numpy as np

from harness import stats
from harness.profiles import FZ20_RATE
from harness.verdict import Control, Decision, Statistic, Threshold, absolute_value

CLAIM = "grouped-leave-out"
MARGIN = 0.05
THRESHOLD = Threshold(MARGIN, "below",
                      "harness design claim, not from the papers: the margin is IMN25 4.2's tolerance, a score "
                      "within 5 % of exact LOO agrees with it; the whole 95 % interval of the mean difference "
                      "on small sub-populations must lie inside (-0.05, 0.05)")
CONTROL = (f"the grouped design: FZ20's subsampled estimator (r = {FZ20_RATE}) in its place, biased on small "
           f"sub-populations (IMN25 4.2)")


def small_difference(estimate, exact, small: np.ndarray, clusters: np.ndarray, name: str, models_per_arm: int,
                     seed: int = 0) -> Statistic:
    """Mean of ``estimate`` - ``exact`` over the small targets, crossed bootstrap (module docstring)."""
    def difference(replicate):
        points = replicate.points["small"]
        return {"d": np.nanmean(estimate.rescored(replicate.models["estimate"])[small][points]
                                - exact.rescored(replicate.models["exact"])[small][points])}

    interval = stats.crossed_bootstrap(difference, {"estimate": estimate.model_groups, "exact": exact.model_groups},
                                       {"small": stats.Points(clusters[small])}, seed=seed)["d"]
    return Statistic.from_interval(name, interval, models_per_arm={"models per arm (M)": models_per_arm})


def decide(grouped, exact, subsampled, small: np.ndarray, clusters: np.ndarray, models_per_arm: int,
           seed: int = 0) -> Decision:
    """From the grouped, exact LOO and subsampled scores of the same targets (with their model rows),
    which targets are in small sub-populations, and every target's sub-population."""
    signed = small_difference(grouped, exact, small, clusters, "mean grouped - exact LOO, small sub-populations",
                              models_per_arm, seed)
    control = small_difference(subsampled, exact, small, clusters,
                               f"mean subsampled (r={FZ20_RATE}) - exact LOO, small sub-populations", models_per_arm,
                               seed)
    return Decision(absolute_value(signed), THRESHOLD, Control(absolute_value(control), CONTROL), [signed])
