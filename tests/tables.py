"""Tables for the decision tests: the arrays a study would produce, drawn from known truths.

Nothing here trains a model: a model's correctness on a point is a coin with the probability
the table asks for, so the truth behind every decision is known.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from harness import estimators
from harness.data import Dataset
from harness.experiments import ApproximationStudy, training_points
from harness.profiles import size_bin

# Sub-populations of a decision table: 10 singletons, 12 of 3 points, 8 of 12 points.
GROUP_SIZES = [1] * 10 + [3] * 12 + [12] * 8


def groups(sizes=GROUP_SIZES) -> np.ndarray:
    return np.repeat(np.arange(len(sizes)), sizes)


def coins(rng, probability, shape) -> np.ndarray:
    return rng.random(shape) < np.broadcast_to(probability, shape)


def subsampled(p_in, p_out, models: int, rng, rate: float = 0.7) -> estimators.MemorizationScores:
    """Subsampled scores: each model holds each point with probability ``rate``."""
    n = len(np.asarray(p_out))
    masks = rng.random((models, n)) < rate
    correct = np.where(masks, coins(rng, p_in, (models, n)), coins(rng, p_out, (models, n)))
    return estimators.subsampled(masks, np.where(correct, 1.0, -1.0).astype(np.float32))


def loo(p_in, p_out, models: int, rng) -> estimators.MemorizationScores:
    """Exact LOO scores as the ridge family gives them: each draw with and without each point."""
    n = len(np.asarray(p_out))
    margin = lambda p: np.where(coins(rng, p, (models, n)), 1.0, -1.0).astype(np.float32)  # noqa: E731
    return estimators.closed_form_loo(np.ones((models, n), dtype=bool), margin(p_in), margin(p_out))


def per_bin(values: dict, point_groups: np.ndarray, sizes=GROUP_SIZES) -> np.ndarray:
    """A value per point from its sub-population's size bin."""
    bins = size_bin(np.asarray(sizes)[point_groups])
    return np.array([values[b] for b in bins], dtype=float)


def approximation_study(error_by_bin: dict, seed: int = 0, loo_models: int = 60,
                        subsampled_models: int = 120, group_sizes=GROUP_SIZES,
                        p_out_by_bin: dict | None = None) -> ApproximationStudy:
    """Exact LOO and subsampled scores of every point, the subsampled estimator erring by
    ``error_by_bin`` (P_in = 1; exact P_out = 0.6, or ``p_out_by_bin``; subsampled P_out = exact's
    - error)."""
    rng = np.random.default_rng(seed)
    point_groups = groups(group_sizes)
    n = len(point_groups)
    p_out = per_bin(p_out_by_bin, point_groups, group_sizes) if p_out_by_bin else np.full(n, 0.6)
    exact = loo(np.ones(n), p_out, loo_models, rng)
    sub = subsampled(np.ones(n), p_out - per_bin(error_by_bin, point_groups, group_sizes), subsampled_models, rng)
    sizes = np.asarray(group_sizes)[point_groups]
    bins = size_bin(sizes)
    table = pd.DataFrame({"point": np.arange(n), "loo": exact.score, "subsampled": sub.score,
                          "error": sub.score - exact.score, "size": sizes, "bin": bins})
    data = tiny_dataset(point_groups)
    return ApproximationStudy(exact, sub, table, loo_models + subsampled_models,
                              training_points(data, np.arange(n), bins))


def tiny_dataset(group_train: np.ndarray, group_test: np.ndarray | None = None, mislabeled=None) -> Dataset:
    """A data set with the given sub-populations and no features worth training on."""
    import torch

    group_test = group_train if group_test is None else group_test
    return Dataset(name="table", x_train=torch.zeros(len(group_train), 2), y_train=torch.zeros(len(group_train),
                   dtype=torch.long), x_test=torch.zeros(len(group_test), 2),
                   y_test=torch.zeros(len(group_test), dtype=torch.long), num_classes=2,
                   group_train=np.asarray(group_train), group_test=np.asarray(group_test),
                   mislabeled_train=mislabeled)


def removal(data: Dataset, full: np.ndarray, arms: dict, models: int = 40, seed: int = 0, shared: float = 0.5):
    """A removal experiment's tables: model k is right on test point t with probability ``full[t]``
    on S and ``accuracy[t]`` on S minus an arm's points, ``arms = {name: (removed, accuracy)}``
    (``removed`` a bool mask over the training points, or one row per model). A share ``shared``
    of model k's coins is the same in every arm, as arms sharing a training seed are alike."""
    from harness.removal import MarginalUtility, RemovalArm

    rng = np.random.default_rng(seed)
    common = rng.random((models, data.n_test))

    def correct(probability):
        coin = np.where(rng.random(common.shape) < shared, common, rng.random(common.shape))
        return coin < np.broadcast_to(np.asarray(probability, dtype=float), (data.n_test,))

    built = {name: RemovalArm(name, np.broadcast_to(np.asarray(removed, dtype=bool), (models, data.n_train)),
                              correct(accuracy))
             for name, (removed, accuracy) in arms.items()}
    return MarginalUtility(data, correct(full), built, models * (len(arms) + 1), seed)
