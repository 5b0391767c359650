"""Near-duplicates shared by the training and test split of a real data set, found by distance.

Every point (an image's pixels, or a feature vector) is centred and scaled to unit length,

    z = (x - mean(x)) / ||x - mean(x)||,   so   ||z_a - z_b||^2 = 2 (1 - corr(x_a, x_b)),

a distance that depends only on the correlation of the two points' pixels: an image and a
brighter or higher-contrast copy of it are at distance 0. For test point j,

    d(j) = min_i ||z_j - z_i||  over training points i,   i(j) its argmin,

and the yardstick is the training split's own nearest-neighbour distances
nn(i) = min_{i' != i} ||z_i - z_i'||. The pair (j, i(j)) is a near-duplicate when

    d(j) <= tau = Q_q({nn(i)}),   q = 0.01 by default:

test point j is as close to the training set as only the closest 1 % of training points are
to each other. Why this threshold: when the test split is drawn like the training split and
shares no images with it, d(j) has nearly the distribution of nn(i) (each is a point's
distance to the nearest of ~n training points), so about q * n_test pairs pass by chance
(:attr:`NearDuplicates.expected_by_chance`); the excess over that count is the evidence of
duplication, and the pairs' images show what was found. Exact copies (d = 0) always pass.
``harness.leakage`` plants duplicates in synthetic data and flags them with the same kind of
rule on raw inputs; this module reports the pairs found in real data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from harness.data import Dataset
from harness.neighbours import nearest


@dataclass(frozen=True, eq=False)
class NearDuplicates:
    """Test-train pairs closer than ``threshold``; ``pairs`` has one row per flagged test point.

    Columns: ``test`` and ``train`` (indices into the splits), ``distance`` (d(j) of the module
    docstring), ``relative`` (distance / median nn(i)), ``test_label``, ``train_label`` and
    ``same_label``. Rows are sorted by distance.
    """

    pairs: pd.DataFrame
    threshold: float
    quantile: float
    median_train_nn: float
    n_test: int

    @property
    def expected_by_chance(self) -> float:
        """Pairs expected below the threshold if the splits shared no images: q * n_test."""
        return self.quantile * self.n_test

    def to_dataframe(self) -> pd.DataFrame:
        return self.pairs.copy()

    def summary(self) -> str:
        exact = int((self.pairs["distance"] <= 1e-6).sum())
        return (f"{len(self.pairs)} of {self.n_test} test points have a training point within "
                f"{self.threshold:.3f} (the {self.quantile:g} quantile of training nearest-neighbour "
                f"distances, {self.threshold / self.median_train_nn:.2f} x their median); "
                f"{self.expected_by_chance:.1f} expected without duplication; {exact} exact copies")


def unit_rows(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """Each point flattened, centred and scaled to unit length, in float64 (module docstring).

    A constant point (zero variance) stays all zeros.
    """
    flat = torch.as_tensor(x).reshape(len(x), -1).cpu().numpy().astype(np.float64)
    centred = flat - flat.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(centred, axis=1, keepdims=True)
    return np.divide(centred, norms, out=np.zeros_like(centred), where=norms > 0)


def find_near_duplicates(dataset: Dataset, quantile: float = 0.01,
                         features: tuple[np.ndarray, np.ndarray] | None = None) -> NearDuplicates:
    """Test points whose nearest training point is closer than the ``quantile`` of training
    nearest-neighbour distances (module docstring); ``features`` (train, test) replace the inputs."""
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"quantile must lie strictly between 0 and 1, got {quantile}")
    if dataset.n_train < 2 or dataset.n_test < 1:
        raise ValueError(f"{dataset.name}: need at least 2 training and 1 test point, "
                         f"got {dataset.n_train} and {dataset.n_test}")
    train_inputs, test_inputs = features if features is not None else (dataset.x_train, dataset.x_test)
    if len(train_inputs) != dataset.n_train or len(test_inputs) != dataset.n_test:
        raise ValueError(f"features must have one row per point: got {len(train_inputs)} and "
                         f"{len(test_inputs)} rows for {dataset.n_train} and {dataset.n_test} points")
    train, test = unit_rows(train_inputs), unit_rows(test_inputs)
    train_nn, _ = nearest(train, train, exclude_self=True, unit_length=True)
    threshold = float(np.quantile(train_nn, quantile))
    distance, partner = nearest(test, train, unit_length=True)
    flagged = np.flatnonzero(distance <= threshold)
    flagged = flagged[np.argsort(distance[flagged], kind="stable")]
    y_train, y_test = dataset.y_train.numpy(), dataset.y_test.numpy()
    median = float(np.median(train_nn))
    pairs = pd.DataFrame({
        "test": flagged, "train": partner[flagged], "distance": distance[flagged],
        "relative": distance[flagged] / median if median > 0 else np.nan,
        "test_label": y_test[flagged], "train_label": y_train[partner[flagged]],
    })
    pairs["same_label"] = pairs["test_label"] == pairs["train_label"]
    return NearDuplicates(pairs, threshold, quantile, median, dataset.n_test)
