"""sampling-rate-bias (IMN26): raising the sampling rate r of Feldman & Zhang's subsampled
estimator toward leave-one-out (e.g. r = 0.95) removes its bias.

Per case and rate r, the subsampled scores and exact LOO scores of the same points
(:func:`harness.experiments.approximation_error`), with enough models at each rate that every
point is left out of at least MIN_MODELS_OUT of them; the study, the decision (the bias of small
sub-populations falls from the lowest to the highest rate *and* lies within a margin of zero at
the highest) and its negative control are ``harness.claims.sampling_rate_bias``. Beside it: a
Spearman correlation of bias(small) with r across the rates, and the change between r = 0.5 and
r = 0.9, where the reviews of IMN26 saw the error flat on CIFAR-10.
"""

from __future__ import annotations

import pytest

from harness.claims.sampling_rate_bias import CLAIM, study
from harness.experiments import REAL_IMAGES, Case


def cases(profile):
    if profile.name == "smoke":
        return [Case("synthetic", "ridge")]
    # On the real images the default profile compares FZ20's rate with r = 0.95 only
    # (profile.image_sampling_rates); the exact LOO is approx-overestimates', shared through the store.
    return [Case("synthetic", "ridge"), Case("synthetic-steep", "ridge"), Case("synthetic", "mlp")] + \
        [Case(data, "mlp") for data in REAL_IMAGES]


@pytest.mark.claim(CLAIM)
def test_raising_the_sampling_rate_removes_the_bias_of_small_subpopulations(case, profile, store, device, seed,
                                                                            conclude):
    conclude(*study(case, profile, store, device, seed))
