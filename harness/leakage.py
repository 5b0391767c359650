"""Train-test leakage: near-duplicates of training points in the test split, planted or detected.

Distances are Euclidean on the flattened inputs (images scaled to [0, 1]). The length scale is

    nn(i)     = min_{i' != i} ||x_i - x_i'||       over training points i, i'
    median_nn = median_i nn(i),

the typical distance from a training point to its nearest other training point.

- :func:`plant_near_duplicates` appends to the test split one copy of each source training point,
      x' = x_i + eps,   eps ~ N(0, sigma^2 I_d),   sigma = relative_noise * median_nn / sqrt(d),
  so a copy lies about ``relative_noise * median_nn`` from its source (for the default 0.1, ten
  times closer than a typical training point is to its nearest neighbour). A copy takes its
  source's label and sub-population.
- :func:`detect_near_duplicates` flags test point j when its nearest training point is closer than
  the ``quantile`` of the training split's own nn(i),
      min_i ||x_j - x_i|| < Q_quantile({nn(i)}),
  i.e. (default 0.05) closer than 19 in 20 training points are to their nearest neighbour;
  distances on centred unit-length inputs (:mod:`harness.duplicates`, the suite's one rule).
- :func:`copy_weights_matching_clean_mix` weights planted copies so that they come from the
  sub-populations in the clean test split's proportions: a copy c of a point of sub-population g
  gets
      w_c = n_clean(g) / (n_clean * n_copies(g)),
  so a weighted average over copies is the expectation over "a clean test point replaced by a
  near-duplicate of a training point of its own sub-population" (sub-populations of clean test
  points with no copy drop out and the rest is renormalised).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from harness.data import Dataset
from harness.duplicates import find_near_duplicates
from harness.neighbours import nearest_other_distances


@dataclass(frozen=True, eq=False)
class LeakedTestSplit:
    """A data set whose test split holds near-duplicates of training points.

    ``leaked[j]`` flags test point j as a near-duplicate and ``source[j]`` names its training
    point (-1 for clean test points).
    """

    dataset: Dataset
    leaked: np.ndarray
    source: np.ndarray

    @property
    def leak_share(self) -> float:
        return float(self.leaked.mean())


def _flat(x: torch.Tensor) -> np.ndarray:
    flat = x.reshape(len(x), -1).double().numpy()
    return flat / 255.0 if x.dtype == torch.uint8 else flat


def training_nn_distances(dataset: Dataset) -> np.ndarray:
    """nn(i): each training point's distance to its nearest other training point."""
    if dataset.n_train < 2:
        raise ValueError(f"{dataset.name}: need at least 2 training points for nearest-neighbour distances")
    return nearest_other_distances(_flat(dataset.x_train))


def plant_near_duplicates(dataset: Dataset, sources, relative_noise: float = 0.1,
                          seed: int = 0) -> LeakedTestSplit:
    """The data set with a noisy copy of each ``sources`` training point appended to its test split."""
    sources = np.asarray(sources, dtype=np.int64)
    if sources.ndim != 1 or len(sources) == 0:
        raise ValueError("sources must be a non-empty 1-D array of training point indices")
    if sources.min() < 0 or sources.max() >= dataset.n_train:
        raise ValueError(f"sources must be training point indices in 0..{dataset.n_train - 1}")
    if relative_noise < 0:
        raise ValueError(f"relative_noise must be >= 0, got {relative_noise}")
    if dataset.is_image:
        raise ValueError(f"{dataset.name}: planting works on feature vectors; images would need "
                         "noise that keeps them uint8")
    dim = dataset.x_train[0].numel()
    sigma = relative_noise * float(np.median(training_nn_distances(dataset))) / np.sqrt(dim)
    generator = torch.Generator().manual_seed(seed)
    index = torch.from_numpy(sources)
    copies = dataset.x_train[index] + sigma * torch.randn(dataset.x_train[index].shape, generator=generator)
    group_test = dataset.group_test
    if group_test is not None and dataset.group_train is not None:
        group_test = np.concatenate([group_test, dataset.group_train[sources]])
    leaked_dataset = replace(
        dataset, name=f"{dataset.name} + near-duplicates",
        x_test=torch.cat([dataset.x_test, copies.to(dataset.x_test.dtype)]),
        y_test=torch.cat([dataset.y_test, dataset.y_train[index]]),
        group_test=group_test,
        meta={**dataset.meta, "planted_near_duplicates": {"count": len(sources),
                                                          "relative_noise": relative_noise, "seed": seed}},
    )
    leaked = np.concatenate([np.zeros(dataset.n_test, dtype=bool), np.ones(len(sources), dtype=bool)])
    source = np.concatenate([np.full(dataset.n_test, -1, dtype=np.int64), sources])
    return LeakedTestSplit(leaked_dataset, leaked, source)


def detect_near_duplicates(dataset: Dataset, quantile: float = 0.05) -> LeakedTestSplit:
    """Test points flagged by :func:`harness.duplicates.find_near_duplicates` (the suite's one
    detection rule: closer to a training point than the ``quantile`` of training nn distances,
    on centred unit-length inputs), as a leaked split."""
    found = find_near_duplicates(dataset, quantile)
    leaked = np.zeros(dataset.n_test, dtype=bool)
    source = np.full(dataset.n_test, -1, dtype=np.int64)
    leaked[found.pairs["test"].to_numpy()] = True
    source[found.pairs["test"].to_numpy()] = found.pairs["train"].to_numpy()
    return LeakedTestSplit(dataset, leaked, source)


def copy_weights_matching_clean_mix(split: LeakedTestSplit) -> np.ndarray:
    """Weights over the test split (0 on clean points) giving the copies the clean sub-population mix."""
    groups = split.dataset.group_test
    if groups is None:
        raise ValueError(f"{split.dataset.name} has no sub-population ids to match")
    clean_groups, clean_counts = np.unique(groups[~split.leaked], return_counts=True)
    copy_groups, copy_counts = np.unique(groups[split.leaked], return_counts=True)
    clean_share = dict(zip(clean_groups.tolist(), (clean_counts / clean_counts.sum()).tolist()))
    copies_of = dict(zip(copy_groups.tolist(), copy_counts.tolist()))
    weights = np.zeros(len(groups))
    for j in np.flatnonzero(split.leaked).tolist():
        weights[j] = clean_share.get(int(groups[j]), 0.0) / copies_of[int(groups[j])]
    if weights.sum() == 0:
        raise ValueError("no planted copy shares a sub-population with a clean test point")
    return weights / weights.sum()
