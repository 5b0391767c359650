"""The toy checks have power: with a planted estimator bug, a toy property fails.

The bug: FZ20's subsampled estimator with P_out taken over every model (in and out) instead of
the models that left the point out, so each score shrinks to (1 - r) times itself. A
well-separated singleton then scores about 0.3 of its paired LOO score, and
``harness.toy.check_subsampled_matches_paired_loo`` fails on the singleton bin.
"""

from __future__ import annotations

import numpy as np
import pytest

from harness import estimators, toy
from harness.data import SubpopulationSpec
from harness.profiles import FZ20_RATE
from harness.store import Store

STRUCTURE = SubpopulationSpec(num_classes=3, dim=16, subpops_per_class=4, largest=30, tail_exponent=1.5,
                              singletons_per_class=3, separation=1.6, spread=0.3, test_ratio=0.2, seed=5)
ALPHA = 0.01 / 10   # the default profile's per-example level


def p_out_over_every_model(masks, train_margin, alpha: float = 0.05):
    correct = train_margin > 0
    every = np.ones_like(masks)
    return estimators.from_rows("subsampled", np.arange(masks.shape[1]),
                                estimators.ModelRows.of(correct, masks, correct, every,
                                                        np.zeros(len(masks), dtype=np.int64)), alpha)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return Store(tmp_path_factory.mktemp("toy-store"))


def test_the_correct_estimator_passes_the_paired_loo_check(store):
    toy.check_subsampled_matches_paired_loo(toy.score_structure(STRUCTURE, FZ20_RATE, store), ALPHA)


def test_a_planted_p_out_bug_fails_the_paired_loo_check_on_singletons(store, monkeypatch):
    monkeypatch.setattr(estimators, "subsampled", p_out_over_every_model)
    scored = toy.score_structure(STRUCTURE, FZ20_RATE, store)
    with pytest.raises(AssertionError, match="singleton points"):
        toy.check_subsampled_matches_paired_loo(scored, ALPHA)
