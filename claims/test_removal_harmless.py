"""removal-harmless (IMN26): removing the truly memorized points does not lower test accuracy,
and often raises it.

Per case, exact LOO scores of the singletons and mislabeled points (the ridge family in closed
form, the MLP with a LOO plan over them), so that *truly memorized* (defined in
``harness.claims.removal_harmless``) does not inherit the subsampled estimator's bias. The study,
the removal arms, the decision (a non-inferiority test of each part's drop, mislabeled and
singletons, by intersection-union) and its negative control are
``harness.claims.removal_harmless``. Also reported: the drop from removing both parts together,
the accuracy change (after minus before: IMN26 says it often rises), and the drop on the test
points of purged sub-populations.
"""

from __future__ import annotations

import pytest

from harness.claims.removal_harmless import CLAIM, study
from harness.experiments import REAL_IMAGES, Case


def cases(profile):
    if profile.name == "smoke":
        return [Case("synthetic-noisy", "ridge")]
    # On the real images the singleton part alone (no label noise is known there); the default
    # profile scores the inferred singletons by grouped leave-out (profile.grouped_loo_on_images).
    images = [Case(data, "mlp") for data in REAL_IMAGES]
    return [Case(data, "ridge") for data in ("synthetic", "synthetic-noisy", "synthetic-steep")] + \
        [Case(data, "mlp") for data in ("synthetic", "synthetic-noisy")] + images


@pytest.mark.claim(CLAIM)
def test_removing_truly_memorized_points_does_not_lower_accuracy(case, profile, store, device, seed, conclude):
    conclude(*study(case, profile, store, device, seed))
