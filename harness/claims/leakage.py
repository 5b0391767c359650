"""leakage (IMN26): near-duplicates shared by the training and test splits inflate the measured
marginal utility of memorized points; on a leakage-free test set it shrinks.

FZ20's procedure: R = {i : mem(i) >= 0.25}, M models on S and on S \\ R (``harness.removal``),
evaluated on a test split with near-duplicates D of training points and on its clean part C
(``harness.leakage``). With s the leak share and drop(R; D) weighted to the clean split's
sub-population mix where the duplicates were planted,

    inflation = utility(leaked) - utility(clean) = s * (drop(R; D) - drop(R; C)) > 0,

with a crossed bootstrap over model indices (the same models are scored on both test sets) and
the test points by sub-population, leaked and clean points each within themselves; the sign is
the claim.

Negative control: the same inflation with no leak, the clean test points of a random half of
the sub-populations posing as the leaked ones against the rest.
"""

from __future__ import annotations

import numpy as np

from harness import controls
from harness.profiles import FZ20_HIGH_INFLUENCE
from harness.verdict import Control, Decision, Threshold, undecidable

CLAIM = "leakage"
MEMORIZATION_THRESHOLD = FZ20_HIGH_INFLUENCE
THRESHOLD = Threshold(0.0, "above", "IMN26: near-duplicates inflate the marginal utility (the sign is the claim)")
CONTROL = "the near-duplicates: the clean test points of a random half of the sub-populations pose as the leaked ones"
NAME = "inflation: utility with leaked test points minus utility on the clean test points"


def decide(utility, leaked: np.ndarray, duplicate_weights: np.ndarray, share: float, seed: int = 0) -> Decision:
    """From a removal experiment whose arm ``"memorized"`` removes R (None when R is empty), which
    test points are near-duplicates, the weights their drop is taken with, and the leak share s."""
    if utility is None or not leaked.any():
        missing = undecidable(NAME, "no near-duplicate in the test split" if utility is not None else
                                    f"no point has a score >= {MEMORIZATION_THRESHOLD}")
        return Decision(missing, THRESHOLD, Control(missing, CONTROL))
    clean = ~leaked

    def figures(replicate):
        drop_leaked = utility.resampled_drop(replicate, "memorized", duplicate_weights)
        drop_clean = utility.resampled_drop(replicate, "memorized", clean)
        return {"inflation": share * (drop_leaked - drop_clean), "clean": drop_clean,
                "leaked": (1 - share) * drop_clean + share * drop_leaked, "duplicates": drop_leaked}

    intervals = utility.bootstrap(figures, strata=leaked)
    decisive = utility.statistic(NAME, intervals["inflation"],
                                 f"s * (drop on near-duplicates - drop on clean), s = {share:.3f}")
    posing = clean & controls.random_half_of_groups(utility.dataset.group_test, clean, seed)
    rest = clean & ~posing
    no_leak = utility.bootstrap(lambda r: {"inflation": share * (utility.resampled_drop(r, "memorized", posing)
                                                                 - utility.resampled_drop(r, "memorized", rest))},
                                strata=posing)["inflation"]
    control = utility.statistic(f"{NAME}, half the clean sub-populations posing as leaked", no_leak)
    parts = [utility.statistic("marginal utility on the clean test points", intervals["clean"]),
             utility.statistic("marginal utility with leaked test points", intervals["leaked"]),
             utility.statistic("accuracy drop on near-duplicates", intervals["duplicates"],
                               "weighted to the clean sub-population mix" if duplicate_weights.dtype != bool else "")]
    return Decision(decisive, THRESHOLD, Control(control, CONTROL), parts)
