"""Datasets: one type for every source, and the synthetic long-tailed generator.

Every source (synthetic sub-populations, scikit-learn's digits, the image data sets in
``harness.images``) is returned as a :class:`Dataset`: training and test tensors, integer
labels and, where known, the sub-population id of every point.

Synthetic sub-populations follow Feldman's long-tail model. Each of ``C`` classes is a
mixture of sub-populations (clusters in ``dim`` dimensions) whose sizes follow a Zipf law,

    size(rank) = max(2, round(largest * rank ** -tail_exponent)),   rank = 1 .. subpops_per_class,

plus ``singletons_per_class`` sub-populations of size one. Cluster centres are drawn
N(0, separation^2 I) independently of the class, points N(centre, spread^2 I), so a
sub-population can only be classified once some of its members have been seen: the
setting in which memorization is expected to matter. With ``class_spread`` set, the class
shapes the centres instead: each class has a centre N(0, separation^2 I) and its
sub-populations' centres lie N(class centre, class_spread^2 I) around it, so a singleton near
its class centre is typical of its class and one far from it is not. The test split is drawn from the
same sub-populations (``max(test_min, round(test_ratio * size))`` points each), so accuracy
per sub-population is measurable. A fraction ``label_noise`` of training points gets a
wrong label (recorded in ``mislabeled_train``); test labels stay clean.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from functools import cached_property

import numpy as np
import torch

UNKNOWN_GROUP = -1


@dataclass(frozen=True, eq=False)
class Dataset:
    """Training and test split of one source, with sub-population ids where known.

    ``x_*`` are float32 feature matrices ``(n, d)`` or uint8 images ``(n, C, H, W)``;
    ``y_*`` are int64 labels. ``group_*`` hold a sub-population id per point (ids are
    shared between splits; ``UNKNOWN_GROUP`` where unknown), ``None`` if the source has none.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    group_train: np.ndarray | None = None
    group_test: np.ndarray | None = None
    mislabeled_train: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        if len(self.x_train) != len(self.y_train) or len(self.x_test) != len(self.y_test):
            raise ValueError(f"{self.name}: inputs and labels differ in length")
        for split, groups, size in (("train", self.group_train, len(self.y_train)),
                                    ("test", self.group_test, len(self.y_test))):
            if groups is not None and len(groups) != size:
                raise ValueError(f"{self.name}: group_{split} has {len(groups)} ids for {size} points")

    @property
    def n_train(self) -> int:
        return len(self.y_train)

    @property
    def n_test(self) -> int:
        return len(self.y_test)

    @property
    def is_image(self) -> bool:
        return self.x_train.dim() == 4

    @cached_property
    def group_size_train(self) -> np.ndarray:
        """Size (in the training split) of each training point's sub-population; 0 if unknown."""
        if self.group_train is None:
            return np.zeros(self.n_train, dtype=np.int64)
        ids, inverse, counts = np.unique(self.group_train, return_inverse=True, return_counts=True)
        sizes = counts[inverse]
        sizes[self.group_train == UNKNOWN_GROUP] = 0
        return sizes

    @cached_property
    def fingerprint(self) -> str:
        """Content hash of the data: runs in the store are keyed by it."""
        digest = hashlib.sha256(self.name.encode())
        for array in (self.x_train, self.y_train, self.x_test, self.y_test):
            digest.update(np.ascontiguousarray(array.cpu().numpy()).tobytes())
        for array in (self.group_train, self.group_test, self.mislabeled_train):
            if array is not None:
                digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()[:20]

    def without(self, drop: np.ndarray, name_suffix: str = "") -> "Dataset":
        """The same data set with the training points flagged in ``drop`` (bool, n_train) removed."""
        keep = ~np.asarray(drop, dtype=bool)
        keep_t = torch.from_numpy(keep)
        return Dataset(
            name=self.name + name_suffix,
            x_train=self.x_train[keep_t], y_train=self.y_train[keep_t],
            x_test=self.x_test, y_test=self.y_test, num_classes=self.num_classes,
            group_train=None if self.group_train is None else self.group_train[keep],
            group_test=self.group_test,
            mislabeled_train=None if self.mislabeled_train is None else self.mislabeled_train[keep],
            meta={**self.meta, "dropped": int((~keep).sum())},
        )


@dataclass(frozen=True)
class SubpopulationSpec:
    """Parameters of the synthetic long-tailed generator (see the module docstring)."""

    num_classes: int = 5
    dim: int = 32
    subpops_per_class: int = 16
    largest: int = 150
    tail_exponent: float = 1.5
    singletons_per_class: int = 6
    separation: float = 1.0
    spread: float = 0.5
    label_noise: float = 0.0
    test_ratio: float = 0.3
    test_min: int = 2
    class_spread: float | None = None
    seed: int = 0

    def __post_init__(self):
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {self.num_classes}")
        if not 0.0 <= self.label_noise < 1.0:
            raise ValueError(f"label_noise must lie in [0, 1), got {self.label_noise}")
        if self.largest < 2 or self.subpops_per_class < 0 or self.singletons_per_class < 0:
            raise ValueError("largest must be >= 2 and the sub-population counts >= 0")
        if self.subpops_per_class + self.singletons_per_class == 0:
            raise ValueError("each class needs at least one sub-population")
        if self.dim < 1 or self.separation < 0 or self.spread < 0:
            raise ValueError(f"dim must be >= 1 and separation, spread >= 0, got dim={self.dim}, "
                             f"separation={self.separation}, spread={self.spread}")
        if self.class_spread is not None and self.class_spread < 0:
            raise ValueError(f"class_spread must be >= 0 or None, got {self.class_spread}")
        if self.test_ratio < 0 or self.test_min < 1:
            raise ValueError(f"test_ratio must be >= 0 and test_min >= 1 (every sub-population needs "
                             f"test points), got {self.test_ratio}, {self.test_min}")

    def sizes(self) -> list[int]:
        """Sub-population sizes of one class, largest first, singletons last."""
        ranks = np.arange(1, self.subpops_per_class + 1)
        tail = np.maximum(2, np.round(self.largest * ranks ** -self.tail_exponent)).astype(int)
        return tail.tolist() + [1] * self.singletons_per_class


def synthetic(spec: SubpopulationSpec = SubpopulationSpec()) -> Dataset:
    """Draw a long-tailed data set with known sub-populations; deterministic in ``spec.seed``."""
    rng = np.random.default_rng(spec.seed)
    sizes = spec.sizes()
    xs_train, ys_train, gs_train, xs_test, ys_test, gs_test = [], [], [], [], [], []
    group = 0
    # Class centres come from a stream of their own, so the default draws stay as they were.
    class_centres = np.random.default_rng([spec.seed, 1]).normal(0.0, spec.separation, (spec.num_classes, spec.dim))
    for label in range(spec.num_classes):
        for size in sizes:
            centre = (rng.normal(0.0, spec.separation, spec.dim) if spec.class_spread is None else
                      class_centres[label] + rng.normal(0.0, spec.class_spread, spec.dim))
            n_test = max(spec.test_min, int(round(spec.test_ratio * size)))
            points = centre + rng.normal(0.0, spec.spread, (size + n_test, spec.dim))
            xs_train.append(points[:size]); xs_test.append(points[size:])
            ys_train += [label] * size; ys_test += [label] * n_test
            gs_train += [group] * size; gs_test += [group] * n_test
            group += 1
    y_train = np.array(ys_train, dtype=np.int64)
    mislabeled = rng.random(len(y_train)) < spec.label_noise
    shift = rng.integers(1, spec.num_classes, size=len(y_train))
    y_train = np.where(mislabeled, (y_train + shift) % spec.num_classes, y_train)
    return Dataset(
        name="synthetic",
        x_train=torch.tensor(np.concatenate(xs_train), dtype=torch.float32),
        y_train=torch.from_numpy(y_train),
        x_test=torch.tensor(np.concatenate(xs_test), dtype=torch.float32),
        y_test=torch.tensor(ys_test, dtype=torch.int64),
        num_classes=spec.num_classes,
        group_train=np.array(gs_train, dtype=np.int64),
        group_test=np.array(gs_test, dtype=np.int64),
        mislabeled_train=mislabeled,
        meta={"generator": asdict(spec)},
    )


def digits(test_fraction: float = 0.33, seed: int = 0) -> Dataset:
    """scikit-learn's bundled 8x8 digits (1,797 images) as 64 features in [0, 1]; no download.

    Sub-populations are unknown: use :func:`infer_subpopulations` to add inferred ones.
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.data / 16.0).astype(np.float32)
    y = bunch.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = int(round(test_fraction * len(y)))
    test, train = order[:n_test], order[n_test:]
    return Dataset(
        name="digits",
        x_train=torch.from_numpy(x[train]), y_train=torch.from_numpy(y[train]),
        x_test=torch.from_numpy(x[test]), y_test=torch.from_numpy(y[test]),
        num_classes=10, meta={"source": "sklearn.datasets.load_digits", "seed": seed},
    )


def infer_subpopulations(dataset: Dataset, distance_threshold: float | None = None,
                         features: tuple[np.ndarray, np.ndarray] | None = None,
                         scale: float = 2.0) -> Dataset:
    """Infer sub-populations by clustering within each class (Ward linkage on features).

    Clusters are cut at ``distance_threshold`` (default: the median within-class
    nearest-neighbour distance times ``scale``), which yields a long tail of cluster sizes including
    singletons. Test points join the nearest training cluster of their own class.
    ``features`` (train, test) replaces the raw inputs, e.g. with learned embeddings.
    """
    from sklearn.cluster import AgglomerativeClustering
    # sklearn's float32 distances, not harness.neighbours (float64): the inferred groups key every stored run.
    from sklearn.metrics import pairwise_distances

    f_train, f_test = features if features is not None else (
        dataset.x_train.reshape(dataset.n_train, -1).float().numpy(),
        dataset.x_test.reshape(dataset.n_test, -1).float().numpy())
    y_train, y_test = dataset.y_train.numpy(), dataset.y_test.numpy()
    if distance_threshold is None:
        nn = []
        for label in np.unique(y_train):
            d = pairwise_distances(f_train[y_train == label])
            np.fill_diagonal(d, np.inf)
            nn.append(d.min(axis=1))
        distance_threshold = scale * float(np.median(np.concatenate(nn)))
    group_train = np.full(dataset.n_train, UNKNOWN_GROUP, dtype=np.int64)
    group_test = np.full(dataset.n_test, UNKNOWN_GROUP, dtype=np.int64)
    next_id = 0
    for label in np.unique(y_train):
        members = np.flatnonzero(y_train == label)
        if len(members) == 1:
            cluster = np.zeros(1, dtype=np.int64)
        else:
            cluster = AgglomerativeClustering(n_clusters=None, linkage="ward",
                                              distance_threshold=distance_threshold
                                              ).fit_predict(f_train[members])
        group_train[members] = cluster + next_id
        tests = np.flatnonzero(y_test == label)
        if len(tests):
            nearest = pairwise_distances(f_test[tests], f_train[members]).argmin(axis=1)
            group_test[tests] = group_train[members][nearest]
        next_id += int(cluster.max()) + 1
    return Dataset(
        name=dataset.name, x_train=dataset.x_train, y_train=dataset.y_train,
        x_test=dataset.x_test, y_test=dataset.y_test, num_classes=dataset.num_classes,
        group_train=group_train, group_test=group_test,
        mislabeled_train=dataset.mislabeled_train,
        meta={**dataset.meta, "subpopulations": f"inferred (ward, threshold {distance_threshold:.3g})"},
    )
