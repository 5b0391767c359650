"""fractional-definition (IMN26): the fractional memorization score, thresholded by a null
distribution of randomly relabelled points, has fewer false positives than the original.

On ``synthetic-noisy`` the truth is known: singletons and mislabeled points are memorized
(positives); correctly labelled members of sub-populations of two or more are not
(negatives). On ``mnist-noisy`` and ``fashion-mnist-noisy`` (the image subsets with 5 % of
their training labels planted wrong; not in the smoke profile) only the planted points are known to be
memorized; clean members of inferred sub-populations of 11 or more are the negatives, and the
other clean images are left out of the rates (``memorized_truth``). Both scores come from one
subsampled ensemble (r = 0.7); the study, the decision (the paired difference of
false-positive rates at 95 % true-positive rate) and its negative control are
``harness.claims.fractional_definition``. FZ20's fixed thresholds (0.25, 0.45) are reported
beside it.

The null (:mod:`harness.null`): ``NULL_SHARE`` of the training set's size in fresh points (test
inputs of the same sub-populations) with a random wrong label, trained alongside the real
points and left out of the evaluation. Random wrong labels can be fitted only by
memorizing, so their scores show what a memorized point scores; the threshold is their 5 %
quantile, which aims at the same 95 % true-positive rate as the decisive operating point.
The rates of each score at its null threshold are reported beside it.
"""

from __future__ import annotations

import pytest

from harness.claims.fractional_definition import CLAIM, study
from harness.experiments import Case


def cases(profile):
    synthetic = [Case("synthetic-noisy", "ridge"), Case("synthetic-noisy", "mlp")]
    images = [Case("mnist-noisy", "mlp"), Case("fashion-mnist-noisy", "mlp")] if profile.name != "smoke" else []
    return synthetic + images


@pytest.mark.claim(CLAIM)
def test_fractional_score_with_a_null_threshold_has_fewer_false_positives(case, profile, store, device, seed,
                                                                         conclude):
    conclude(*study(case, profile, store, device, seed))
