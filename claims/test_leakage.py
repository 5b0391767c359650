"""leakage (IMN26): near-duplicates shared by the training and test splits inflate the measured
marginal utility of memorized points; on a leakage-free test set it shrinks.

Per case, FZ20's procedure: subsampled scores (r = 0.7) of the training points, R = {i : mem(i)
>= 0.25}, M models on S and on S \\ R, evaluated on a test split with near-duplicates D of
training points (planted in synthetic data at CIFAR-100's leak share s = 10 %, each copy weighted
to the clean split's sub-population mix; detected in digits, MNIST and Fashion-MNIST) and on its
clean part C. The study, the decision (intersection-union of the sign, inflation = s * (drop(R; D)
- drop(R; C)) > 0, and the size, the inflation more than 21.8 % of the measured utility, a change
FZ20's own 2.54 +- 0.20 % could resolve) and its negative control (the clean test points of a
random half of the sub-populations posing as the leaked ones) are ``harness.claims.leakage``.
"""

from __future__ import annotations

import pytest

from harness.claims.leakage import CLAIM, study
from harness.experiments import removal_cases


def cases(profile):
    return removal_cases(profile)


@pytest.mark.claim(CLAIM)
def test_near_duplicates_inflate_marginal_utility(case, profile, store, device, seed, conclude):
    conclude(*study(case, profile, store, device, seed))
