"""subpopulations-stable (a check of the suite itself): the sub-populations inferred on real
images are a property of the images, not of one embedding network; a training point's size
bin agrees across two embedding seeds (Cohen's kappa above 0.4).

Per image data set, the suite's sub-populations against those inferred on a second embedding
network's features; the study, the decision and its negative control are
``harness.claims.subpopulations_stable``. The report shows the size histogram under both
embeddings and rows of singletons, small and large sub-populations.
"""

from __future__ import annotations

import pytest

from harness.claims.subpopulations_stable import CLAIM, study
from harness.experiments import REAL_IMAGES, Case


def cases(profile):
    return [Case(data, "embedding") for data in REAL_IMAGES]


@pytest.mark.claim(CLAIM)
def test_inferred_subpopulations_do_not_depend_on_the_embedding_seed(case, profile, store, device, seed, conclude):
    conclude(*study(case, profile, store, device, seed))
