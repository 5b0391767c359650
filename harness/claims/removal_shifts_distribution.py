"""removal-shifts-distribution (IMN25 4.3): removing every point above a memorization threshold
purges whole sub-populations from the training set; the accuracy drop then comes from the test
points of the purged sub-populations (a distribution shift).

R = {i : mem(i) >= 0.25} (FZ20's high-influence cut); M models are trained on S and on S \\ R
(``harness.removal``). A sub-population is purged when R holds all of its training points. Purged
sub-populations are small by construction (every member must score high), and small
sub-populations lose accuracy when R thins the training set around them whether or not they are
purged; so the drop on purged sub-populations is compared with the drop on *stand-ins*: for each
purged sub-population an unpurged one of the same size bin (singleton, small, large) with test
points (``harness.controls.stand_in_groups``). With P the test points of purged sub-populations
and Q those of the stand-ins, the decisive statistic (crossed bootstrap over model indices and
the test points by sub-population, P and Q each resampled within itself) is

    drop(R; P) - drop(R; Q) > 0,      drop(R; T) = mean acc_T(h^S) - mean acc_T(h^{S \\ R}),

the sign being the claim: the drop comes from the purge, beyond what sub-populations of the same
size lose without one. If R purges no sub-population with test points, or no unpurged one of the
same sizes has test points, the contrast does not exist and the case is undecided. Reported
beside it: the drop on purged minus all kept sub-populations' test points (IMN25's reading,
which mixes the purge with size).

Negative control: the same contrast with "purged" shuffled among the purged and stand-in
sub-populations within each size bin, so the two sides differ only by chance; a fresh shuffle in
every bootstrap replicate, so the interval holds the shuffle's own variation (with one shuffle
for the whole interval the smoke seed check found the control supported under 1 seed of 8, at
0.32 [0.15, 0.46]: with a handful of sub-populations, which ones pose as purged moves the
contrast more than resampling them does).
"""

from __future__ import annotations

import numpy as np

from harness import controls
from harness.profiles import FZ20_HIGH_INFLUENCE
from harness.verdict import Control, Decision, Threshold, undecidable

CLAIM = "removal-shifts-distribution"
MEMORIZATION_THRESHOLD = FZ20_HIGH_INFLUENCE
THRESHOLD = Threshold(0.0, "above", "IMN25 4.3: the drop comes from the test points of purged "
                                    "sub-populations (the sign is the claim)")
CONTROL = "which sub-populations are purged: shuffled among the purged and their like-sized stand-ins within size bins"
NAME = "drop on purged minus like-sized kept sub-populations' test points"


def decide(utility, seed: int = 0) -> Decision:
    """From a removal experiment whose arm ``"memorized"`` removes R (its data set carries the
    sub-populations of both splits)."""
    data = utility.dataset
    removed = utility.arm("memorized").fixed_set
    purged_groups = utility.purged_groups("memorized")
    stand_ins = controls.stand_in_groups(data, purged_groups, seed) if removed.any() else np.array([], dtype=int)
    purged, standing_in = np.isin(data.group_test, purged_groups), np.isin(data.group_test, stand_ins)
    if not purged.any() or not standing_in.any():
        missing = undecidable(NAME, f"{int(purged.sum())} test points of purged sub-populations, "
                                    f"{int(standing_in.sum())} of like-sized kept ones" if removed.any() else
                                    f"no point has a score >= {MEMORIZATION_THRESHOLD}")
        return Decision(missing, THRESHOLD, Control(missing, CONTROL))
    decisive = utility.statistic(NAME, utility.drop_contrast("memorized", purged, standing_in),
                                 f"{len(purged_groups)} purged sub-populations against {len(stand_ins)} stand-ins")
    both = np.concatenate([purged_groups, stand_ins])
    is_purged, bins = np.isin(both, purged_groups), controls.group_bins(data, both)
    shuffles = controls.rng(seed)

    def shuffled_contrast(replicate):
        # A fresh shuffle in every replicate: with a handful of sub-populations, which ones pose as
        # purged varies the contrast more than resampling them does.
        flags = controls.shuffled_within(is_purged, bins, seed=int(shuffles.integers(2**31)))
        posing = np.isin(data.group_test, both[flags])
        return {"d": utility.resampled_drop(replicate, "memorized", posing)
                - utility.resampled_drop(replicate, "memorized", (purged | standing_in) & ~posing)}

    control = utility.statistic(f"{NAME}, purge shuffled within size bins",
                                utility.bootstrap(shuffled_contrast, strata=purged | standing_in)["d"])
    parts = [utility.statistic("drop on purged minus all kept sub-populations' test points",
                               utility.drop_contrast("memorized", purged, ~purged), "IMN25's reading: purge and size "
                                                                                    "together"),
             utility.statistic("accuracy drop on purged sub-populations' test points", utility.drop("memorized", purged)),
             utility.statistic("accuracy drop on like-sized kept sub-populations' test points",
                               utility.drop("memorized", standing_in)),
             utility.statistic("accuracy drop on kept sub-populations' test points", utility.drop("memorized", ~purged))]
    return Decision(decisive, THRESHOLD, Control(control, CONTROL), parts)
