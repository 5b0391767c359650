"""removal-shifts-distribution (IMN25 4.3): removing every point above a memorization threshold
purges whole sub-populations from the training set; the accuracy drop then comes from the test
points of the purged sub-populations (a distribution shift), and removing as many low-score
points of large sub-populations also lowers accuracy.

Per case, FZ20's subsampled scores (r = 0.7); R = {i : mem(i) >= 0.25}; M models are trained on
S and on S \\ R and on the contrast arms of ``removal_experiment`` (``harness.removal``). The
study, the decision (the drop on purged minus kept sub-populations' test points) and its
negative control are ``harness.claims.removal_shifts_distribution``. Also reported: the share of
sub-populations purged (Wilson interval), the drops on purged and kept test points, and the
contrast arms: as many of the lowest-scoring points of large sub-populations (IMN25 4.3: this
also lowers accuracy) and as many random points.
"""

from __future__ import annotations

import pytest

from harness.claims.removal_shifts_distribution import CLAIM, study
from harness.experiments import removal_cases


def cases(profile):
    return removal_cases(profile)


@pytest.mark.claim(CLAIM)
def test_accuracy_drop_comes_from_purged_subpopulations(case, profile, store, device, seed, conclude):
    conclude(*study(case, profile, store, device, seed))
