"""fz-marginal-utility (FZ20, as its authors state it): removing the training points with
memorization score >= theta lowers test accuracy more than removing as many random points.

Per case, memorization scores from FZ20's subsampled estimator (r = 0.7, FZ20's setting) or, for
the ridge family, exact leave-one-out in closed form (case without a rate); the study, the
decision (a paired difference of drops) and its negative control are
``harness.claims.fz_marginal_utility``.
"""

from __future__ import annotations

import pytest

from harness.claims.fz_marginal_utility import CLAIM, study
from harness.experiments import REAL_IMAGES, Case
from harness.profiles import FZ20_RATE


def cases(profile):
    if profile.name == "smoke":
        return [Case("synthetic", "ridge", FZ20_RATE), Case("digits", "ridge", FZ20_RATE)]
    return [Case(data, family, FZ20_RATE) for data in ("synthetic", "synthetic-steep", "digits")
            for family in ("ridge", "mlp")] + [Case("synthetic", "ridge")] + [Case(data, "mlp", FZ20_RATE) for data in REAL_IMAGES]


@pytest.mark.claim(CLAIM)
def test_removing_memorized_points_costs_more_than_removing_random_points(case, profile, store, device, seed,
                                                                          conclude):
    conclude(*study(case, profile, store, device, seed))
