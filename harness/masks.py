"""Mask plans: which training points each model of an ensemble is trained on.

A plan is a boolean matrix ``masks`` of shape (K models, n points) plus, per model, the
target it leaves out (``left_out[k]``; -1 when none):

- **exact leave-one-out** (:func:`loo_plan`): M models on the base set S and, for each
  target i, M models on S \\ {i}; K = M (T + 1) models for T targets.
- **subsampled** (:func:`subsampled_plan`, Feldman & Zhang 2020): k models on random subsets
  of about m = r n points, balanced so that every point is in exactly round(r k) models
  (each point's in/out counts, and so its interval width, are the same).
- **exact leave-one-out at about r n points** (:func:`loo_plan_on_subsets`): B random subsets of
  round(r n) points; on each, one model on the subset and one on the subset minus each target
  it holds. A target counts the subset models that hold it toward P_in and its own left-out
  models toward P_out, so its score is exact LOO at training size r n, averaged over subsets:
  what the subsampled estimator at rate r estimates, for splitting its error in two.
- **full** (:func:`full_plan`): K models on all of S; with the ridge family's closed-form
  LOO this is exact LOO for every point.
- **removal** (:func:`removal_plan`): model k on S minus its own set R_k (the arms of a
  removal experiment, ``harness.removal``); every removal plan draws the same training seed
  for model k, so the arms of one experiment pair up by model index.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, eq=False)
class MaskPlan:
    kind: str
    masks: np.ndarray
    left_out: np.ndarray
    params: dict = field(default_factory=dict)

    @property
    def n_models(self) -> int:
        return self.masks.shape[0]

    @property
    def n_points(self) -> int:
        return self.masks.shape[1]

    def config(self) -> dict:
        return {"kind": self.kind, **self.params}

    def seeds(self, seed: int) -> np.ndarray:
        """One training seed per model, independent across plan kinds for the same ``seed``."""
        return training_seeds(self.kind, self.n_models, seed)


def training_seeds(kind: str, n_models: int, seed: int) -> np.ndarray:
    """:meth:`MaskPlan.seeds` from what a run's config records (the plan's kind, the seed) and
    its number of models, for a process that rebuilds a run from the store (``harness.worker``)."""
    rng = np.random.default_rng([seed, zlib.crc32(kind.encode())])
    return rng.integers(0, 2**31 - 1, size=n_models)


def checked_masks(masks, n_points: int | None = None, seeds=None, name: str = "masks") -> np.ndarray:
    """``masks`` as an array, or a ValueError naming what is wrong with it.

    A 2-D bool array of K >= 1 models x ``n_points`` points (any number >= 1 when None). Given
    ``seeds``, the models are about to be trained: one seed per model and at least one training
    point in every row.
    """
    masks = np.asarray(masks)
    columns = "n" if n_points is None else n_points
    if (masks.ndim != 2 or masks.dtype != np.bool_ or masks.size == 0
            or (n_points is not None and masks.shape[1] != n_points)):
        raise ValueError(f"{name} must be a non-empty 2-D bool array of shape (K, {columns}) (models x points), "
                         f"got {masks.dtype} {masks.shape}")
    if seeds is not None:
        if len(seeds) != len(masks):
            raise ValueError(f"{len(masks)} masks but {len(seeds)} seeds; give one seed per model")
        empty = np.flatnonzero(~masks.any(axis=1))
        if len(empty):
            raise ValueError(f"models {empty[:5].tolist()} have an empty training mask; every model needs data")
    return masks


def full_plan(n: int, models: int) -> MaskPlan:
    if n < 1 or models < 1:
        raise ValueError(f"need n >= 1 points and >= 1 models, got n={n}, models={models}")
    return MaskPlan("full", np.ones((models, n), dtype=bool), np.full(models, -1),
                    {"n": n, "models": models})


def removal_plan(removed: np.ndarray) -> MaskPlan:
    """Model k trained on S minus the points ``removed[k]`` (bool, models x n)."""
    removed = checked_masks(removed, name="removed")
    models, n = removed.shape
    return MaskPlan("removal", ~removed, np.full(models, -1), {"n": n, "models": models})


def loo_plan(n: int, targets, models_per_target: int, base: np.ndarray | None = None) -> MaskPlan:
    """M models on ``base`` (default: every point) and M on base minus each target."""
    targets = np.asarray(targets, dtype=np.int64)
    base = np.ones(n, dtype=bool) if base is None else np.asarray(base, dtype=bool)
    if models_per_target < 1:
        raise ValueError(f"models_per_target must be >= 1, got {models_per_target}")
    if base.shape != (n,):
        raise ValueError(f"base must be a bool mask of shape ({n},), got {base.shape}")
    if targets.ndim != 1 or len(targets) == 0 or len(np.unique(targets)) != len(targets):
        raise ValueError("targets must be a non-empty 1-D array of distinct point indices")
    if targets.min() < 0 or targets.max() >= n or not base[targets].all():
        raise ValueError(f"every target must be a point of the base set (indices 0..{n - 1})")
    rows = np.repeat(np.concatenate([[-1], targets]), models_per_target)
    masks = np.tile(base, (len(rows), 1))
    leave = rows >= 0
    masks[np.flatnonzero(leave), rows[leave]] = False
    return MaskPlan("loo", masks, rows, {"n": n, "models_per_target": models_per_target,
                                         "targets": len(targets)})


def loo_plan_on_subsets(n: int, targets, draws: int, rate: float, seed: int = 0) -> MaskPlan:
    """Exact LOO at training size about r n (module docstring): ``draws`` random subsets of
    round(r n) points, each with one model on it and one without each target it holds."""
    targets = np.asarray(targets, dtype=np.int64)
    if not 0.0 < rate < 1.0:
        raise ValueError(f"sampling rate r must lie strictly between 0 and 1, got {rate}")
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    if targets.ndim != 1 or len(targets) == 0 or len(np.unique(targets)) != len(targets):
        raise ValueError("targets must be a non-empty 1-D array of distinct point indices")
    if targets.min() < 0 or targets.max() >= n:
        raise ValueError(f"every target must be a point index in 0..{n - 1}")
    size = round(rate * n)
    if not 1 < size < n:
        raise ValueError(f"r n = {rate} x {n} leaves no room to leave a point out of a subset")
    rng = np.random.default_rng([seed, n, draws])
    subsets = np.zeros((draws, n), dtype=bool)
    for subset in subsets:
        subset[rng.choice(n, size, replace=False)] = True
    never = targets[~subsets[:, targets].any(axis=0)]
    if len(never):
        raise ValueError(f"targets {never[:5].tolist()} fell in none of the {draws} subsets; use more draws")
    masks, left_out = [], []
    for subset in subsets:
        masks.append(subset)
        left_out.append(-1)
        for target in targets[subset[targets]]:
            without = subset.copy()
            without[target] = False
            masks.append(without)
            left_out.append(int(target))
    return MaskPlan("loo_subsets", np.array(masks), np.array(left_out, dtype=np.int64),
                    {"n": n, "draws": draws, "rate": rate, "targets": len(targets), "seed": seed})


def subsampled_plan(n: int, models: int, rate: float, seed: int = 0) -> MaskPlan:
    """k models on subsets of about r n points; each point in exactly round(r k) models."""
    if not 0.0 < rate < 1.0:
        raise ValueError(f"sampling rate r must lie strictly between 0 and 1, got {rate}")
    if n < 1:
        raise ValueError(f"need n >= 1 points, got {n}")
    # k r >= 1 and k (1 - r) >= 1, so each point is both in and out of a model and the
    # realised rate round(r k) / k stays near r (k=2 at r=0.7 would silently give 0.5).
    # The tolerance absorbs rounding such as 1 - 0.8 = 0.19999999999999996.
    need = math.ceil(1.0 / min(rate, 1.0 - rate) - 1e-9)
    if models < need:
        raise ValueError(f"k={models} models at r={rate}: need k r >= 1 and k (1 - r) >= 1 so that every "
                         f"point is both in and out of models at a rate near r; use k >= {need}")
    included = round(rate * models)
    rng = np.random.default_rng(seed)
    # Each column picks its `included` rows at random: ranks of iid keys down the column.
    ranks = rng.random((models, n)).argsort(axis=0).argsort(axis=0)
    masks = ranks < included
    return MaskPlan("subsampled", masks, np.full(models, -1),
                    {"n": n, "models": models, "rate": rate, "seed": seed})
