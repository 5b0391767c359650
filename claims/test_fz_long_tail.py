"""fz-long-tail (FZ20): high-memorization points are atypical: singletons, mislabeled points
or members of rare sub-populations.

Per case, Feldman & Zhang's subsampled scores (r = 0.7) of every training point; the study,
the decision (the enrichment of atypical points among high scores), its negative control and
the statistics beside it (odds ratios, the top decile, each kind of atypical point) are
``harness.claims.fz_long_tail``.
"""

from __future__ import annotations

import pytest

from harness.claims.fz_long_tail import CLAIM, study
from harness.experiments import REAL_IMAGES, Case


def cases(profile):
    # synthetic-classes: the class shapes the centres, so being a singleton does not make a point
    # atypical by construction (harness.experiments.SYNTHETIC_VARIANTS).
    extra = [] if profile.name == "smoke" else ["synthetic-classes", *REAL_IMAGES]
    return [Case(data, "mlp") for data in ["synthetic", "synthetic-noisy", *extra, "digits"]]


@pytest.mark.claim(CLAIM)
def test_high_memorization_points_are_mostly_atypical(case, profile, store, device, seed, conclude):
    conclude(*study(case, profile, store, device, seed))
