"""approx-overestimates at the papers' scale: IMN25 4.2's own study, VGG-6 on CIFAR-10.

IMN25 4.2 trains VGG-6 (appendix A.1) on CIFAR-10 with batch 512, SGD momentum 0.9 and a
triangular learning rate peaking at 0.4 (``harness.specs.RECIPES["paper"]``, 100 epochs, weight
decay 1e-5 from its section 5.1), and compares exact LOO on 200 points x 100 models (20,000
models) with FZ20's estimator from 4,000 models at r = 0.7. The paper profile
(``harness.profiles.PAPER``) repeats that: its ``cnn`` is that VGG-6 (flips and 2-pixel
translations, FFCV's CIFAR-10 augmentation), 67 LOO targets from each sub-population size bin
(201 points, sub-populations inferred as for every image data set, ``harness.experiments``),
100 models per target and 4,000 subsampled models: about 24,200 VGG-6 trainings, days on one
GPU. Every ensemble goes through the store, so an interrupted run resumes where it stopped.

Study, statistic, threshold and verdict are ``harness.claims.approx_overestimates``'s, as for
``claims/test_approx_overestimates.py``, so both always test the same thing. Runs only with ``--profile paper`` on a CUDA
device with CIFAR-10 on disk (``harness.images.cifar10(download=True)`` once, or torchvision's
``cifar-10-batches-py`` folder in ``$MEMSUITE_DATA/cifar10``); otherwise it is skipped, saying why.
"""

from __future__ import annotations

import pytest

from harness.claims.approx_overestimates import CLAIM, study
from harness.experiments import Case
from harness.profiles import FZ20_RATE


def cases(profile):
    return [Case("cifar10", "cnn", FZ20_RATE)]


@pytest.mark.paper
@pytest.mark.gpu
@pytest.mark.claim(CLAIM)
def test_subsampled_estimator_overestimates_small_subpopulations_at_paper_scale(case, profile, store, device,
                                                                                  conclude):
    result, figures, tables = study(case, profile, store, device)
    result.notes.append("paper scale: IMN25 4.2's VGG-6 on CIFAR-10 (module docstring of claims/test_paper_scale.py)")
    conclude(result, figures=figures, tables=tables)
