"""threshold-dependence (IMN25 4.1): memorization has no standard threshold, and conclusions
depend on the one chosen: high thresholds pick singleton outliers, low ones whole or partial
sub-populations, and the marginal utility of the selected points changes sign or size.

Per case, memorization scores of every training point from FZ20's subsampled estimator
(r = 0.7), or for the ridge case without a rate exact leave-one-out; for each threshold theta
the points with score >= theta are removed and M models are trained per arm
(``harness.removal``). The study, the decision (the excess utility over random removal of the
same count, lowest against highest threshold, against a material change of 0.55 points) and its
negative control are ``harness.claims.threshold_dependence``.

Reported beside it: the plain drop at every threshold, its range (max minus min, biased upward
as a maximum of noisy estimates is, and driven by the counts), the shares of singletons / small /
large sub-population members among the selected points (IMN25's first two parts) and whether
any threshold's drop is significantly negative.
"""

from __future__ import annotations

import pytest

from harness.claims.threshold_dependence import CLAIM, study
from harness.experiments import REAL_IMAGES, Case
from harness.profiles import FZ20_RATE


def cases(profile):
    if profile.name == "smoke":
        return [Case("synthetic", "ridge", FZ20_RATE)]
    # On the real images the default profile sweeps fewer thresholds (profile.image_removal_thresholds).
    return [Case(data, family, FZ20_RATE) for data in ("synthetic", "synthetic-steep", "digits")
            for family in ("ridge", "mlp")] + [Case("synthetic", "ridge")] + \
        [Case(data, "mlp", FZ20_RATE) for data in REAL_IMAGES]


@pytest.mark.claim(CLAIM)
def test_marginal_utility_changes_materially_across_thresholds(case, profile, store, device, seed, conclude):
    conclude(*study(case, profile, store, device, seed))
