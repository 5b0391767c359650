"""approx-overestimates' decomposition of a network's error (harness.claims.approx_overestimates):
subsampled - LOO(n) = [subsampled - LOO(r n)] + [LOO(r n) - LOO(n)], LOO(r n) from a LOO plan
on subsets of its own, on tables whose parts are known."""

from __future__ import annotations

import numpy as np
import pandas as pd

from harness import estimators, stats
from harness.claims.approx_overestimates import decomposition
from harness.experiments import ApproximationStudy
from harness.masks import loo_plan, loo_plan_on_subsets, subsampled_plan
from harness.profiles import size_bin


def right_when_trained_on(masks: np.ndarray, always_right: np.ndarray) -> np.ndarray:
    """Margins of models right on their own training points and, everywhere, on ``always_right``."""
    return np.where(masks | always_right[None, :], 1.0, -1.0).astype(np.float32)


def test_a_network_whose_memorization_grows_at_r_n_shows_a_training_size_effect_and_no_own_error():
    """Every model is right on its training points. Trained on all n points, the models also
    get every small-sub-population point right without it (nothing memorized at n); on r n
    points they do not (fully memorized). So the subsampled estimate and LOO at r n agree (own
    error 0) and the whole error on small sub-populations is the training-size effect (1)."""
    sizes = np.repeat([1, 4, 20], [12, 24, 24])
    groups = np.concatenate([np.arange(12), 12 + np.arange(24) // 4, 18 + np.arange(24) // 20])
    small = size_bin(sizes) == "small"
    targets = np.arange(len(sizes))
    at_n = loo_plan(len(sizes), targets, 4)
    loo = estimators.exact_loo(at_n.masks, right_when_trained_on(at_n.masks, small), at_n.left_out, targets)
    never_right = np.zeros(len(sizes), dtype=bool)
    sub_plan = subsampled_plan(len(sizes), 40, 0.7, seed=1)
    sub = estimators.subsampled(sub_plan.masks, right_when_trained_on(sub_plan.masks, never_right))
    at_r_n = loo_plan_on_subsets(len(sizes), targets, 12, 0.7, seed=2)
    at_size = estimators.exact_loo(at_r_n.masks, right_when_trained_on(at_r_n.masks, never_right), at_r_n.left_out,
                                   targets)
    table = pd.DataFrame({"bin": size_bin(sizes), "error": sub.score - loo.score})
    study = ApproximationStudy(loo, sub, table, 0, stats.Points(groups, size_bin(sizes)))

    parts = {s.name: s for s in decomposition(study, at_size=at_size)}
    own, effect = (parts["estimator's own error (subsampled - exact LOO at r n, on subsets of its own), small"],
                   parts["training-size effect (exact LOO at r n - at n), small"])
    assert own.estimate == 0.0 and effect.estimate == 1.0
    assert decomposition(study) == []
