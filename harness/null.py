"""A relabelled null: points that can only be memorized, trained alongside the real ones (IMN26).

IMN26 thresholds its fractional memorization score with a null distribution of randomly
relabelled points. A point carrying a random *wrong* label can be classified as labelled
only if the model memorizes it, so the scores of such points show what memorization
looks like under the estimator at hand. The threshold is their q-quantile,

    theta_q = quantile_q( score(j) : j a null point ),

so a real point is called memorized when its score reaches what a share 1 - q of surely
memorized points reach: the threshold aims at a true-positive rate of 1 - q.

Null points are fresh draws from the data's own distribution: the inputs (features or
images) of randomly chosen test points, each with a label drawn uniformly from the classes
other than its own, appended after the training points (sub-population ``UNKNOWN_GROUP``,
mislabeled).
Those test points leave the test split, so no test input is also a training input.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from harness.data import UNKNOWN_GROUP, Dataset


@dataclass(frozen=True, eq=False)
class RelabelledNull:
    """A data set with null points appended; ``is_null`` flags them among its training points."""

    dataset: Dataset
    is_null: np.ndarray
    source_test_points: np.ndarray

    @property
    def original_points(self) -> np.ndarray:
        """Indices of the training points the data set had before the null was added."""
        return np.flatnonzero(~self.is_null)

    @property
    def null_points(self) -> np.ndarray:
        return np.flatnonzero(self.is_null)

    def threshold(self, scores, quantile: float = 0.05) -> float:
        """The ``quantile`` of the null points' scores; ``scores`` has one entry per training point."""
        scores = np.asarray(scores, dtype=float)
        if scores.shape != self.is_null.shape:
            raise ValueError(f"scores needs one entry per training point ({self.is_null.size}), "
                             f"got shape {scores.shape}")
        if not 0.0 <= quantile <= 1.0:
            raise ValueError(f"quantile must lie in [0, 1], got {quantile}")
        return float(np.quantile(scores[self.is_null], quantile))


def with_relabelled_null(dataset: Dataset, count: int, seed: int = 0) -> RelabelledNull:
    """``dataset`` plus ``count`` null points drawn from its test split (module docstring)."""
    if not 1 <= count <= dataset.n_test:
        raise ValueError(f"count must lie between 1 and the {dataset.n_test} test points of "
                         f"{dataset.name}, got {count}")
    rng = np.random.default_rng(seed)
    sources = np.sort(rng.choice(dataset.n_test, count, replace=False))
    true_labels = dataset.y_test.numpy()[sources]
    # A shift of 1 .. C-1 classes is a uniform draw among the wrong labels.
    wrong_labels = (true_labels + rng.integers(1, dataset.num_classes, size=count)) % dataset.num_classes
    keep_test = np.ones(dataset.n_test, dtype=bool)
    keep_test[sources] = False
    n = dataset.n_train
    mislabeled = (np.zeros(n, dtype=bool) if dataset.mislabeled_train is None
                  else np.asarray(dataset.mislabeled_train, dtype=bool))
    augmented = Dataset(
        name=f"{dataset.name}+relabelled-null",
        x_train=torch.cat([dataset.x_train, dataset.x_test[torch.from_numpy(sources)]]),
        y_train=torch.cat([dataset.y_train, torch.from_numpy(wrong_labels).to(dataset.y_train.dtype)]),
        x_test=dataset.x_test[torch.from_numpy(keep_test)],
        y_test=dataset.y_test[torch.from_numpy(keep_test)],
        num_classes=dataset.num_classes,
        group_train=(None if dataset.group_train is None else
                     np.concatenate([dataset.group_train, np.full(count, UNKNOWN_GROUP, dtype=np.int64)])),
        group_test=None if dataset.group_test is None else dataset.group_test[keep_test],
        mislabeled_train=np.concatenate([mislabeled, np.ones(count, dtype=bool)]),
        meta={**dataset.meta, "relabelled_null": {"count": count, "seed": seed}},
    )
    is_null = np.concatenate([np.zeros(n, dtype=bool), np.ones(count, dtype=bool)])
    return RelabelledNull(augmented, is_null, sources)
