"""error-is-subpopulation (IMN25 4.2): among the points the subsampled estimator flags as
memorized, those with the largest approximation error are members of small
sub-populations, those with the smallest error are outliers (singletons).

Per case, the approx-overestimates study (exact LOO and subsampled scores of the same points,
shared through the store); the study, the decision (two contrasts between the ends of the error
ranking) and its negative control are ``harness.claims.error_is_subpopulation``. The paper's SPP
comparison (0.77 +- 0.26 vs 0.32 +- 0.26) is reported beside it, SPP taken from models that
did not train on the point (an outlier is one the model is unsure of when it has not seen it).

On MNIST and Fashion-MNIST (stratified subsets, sub-populations inferred by clustering learned
features within each class, ``harness.experiments``) the report adds the test images that
nearly duplicate a training image (``harness.duplicates``: normalised pixels, closer than the
0.01 quantile of training nearest-neighbour distances) with a table of their distances: near
copies are the points whose "memorization" a test set cannot tell from generalization.
"""

from __future__ import annotations

import pytest

from harness.claims.error_is_subpopulation import CLAIM, study
from harness.experiments import REAL_IMAGES, Case
from harness.profiles import FZ20_RATE


def cases(profile):
    if profile.name == "smoke":
        return [Case("synthetic", "ridge", FZ20_RATE), Case("digits", "ridge", FZ20_RATE)]
    # The approx-overestimates study, shared through the store.
    return [Case(data, family, FZ20_RATE) for data in ("synthetic", "synthetic-steep", "digits", *REAL_IMAGES)
            for family in ("ridge", "mlp")]


@pytest.mark.claim(CLAIM)
def test_largest_errors_fall_on_small_subpopulations(case, profile, store, device, seed, conclude):
    conclude(*study(case, profile, store, device, seed))
