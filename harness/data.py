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
wrong label (recorded in ``mislabeled_train``); test labels stay clean. Any other data set gets
planted label noise from :func:`with_planted_label_noise`: an exact share of its training labels,
its inputs and sub-population ids unchanged.

One's own data (:func:`from_arrays`, :func:`from_torch`, :func:`from_npz`): numpy arrays or
tensors, float features ``(n, d)`` or uint8 images ``(n, C, H, W)`` (``(n, H, W)`` gets one
channel), or any map-style torch data set whose items are ``(input, label)`` or
``(input, label, sub-population id)`` (PIL images, uint8 or float arrays; float images in
[0, 1], as ``ToTensor`` makes them, become uint8). Every adapter checks the data first and
raises :class:`DataError` naming the problem (an empty split, inputs and labels of different
lengths, non-integer labels or labels outside ``0 .. num_classes - 1``, NaN or infinite
features, splits of different shapes, sub-population ids of the wrong length); nothing is
built, so nothing reaches the store, before the checks pass. Without sub-population ids the
adapters infer them with :func:`infer_subpopulations` (Ward clustering within each class).
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


def with_planted_label_noise(dataset: Dataset, share: float, seed: int, name: str | None = None) -> Dataset:
    """``dataset`` with ``round(share * n_train)`` training labels, chosen by ``seed``, each replaced by
    a uniformly drawn other class and flagged in ``mislabeled_train`` (added to any flags it had).
    Inputs, test labels and sub-population ids stay as they were: ids inferred from the clean
    labels keep saying which images belong together, whatever label an image now carries."""
    if not 0.0 <= share < 1.0:
        raise ValueError(f"share must lie in [0, 1), got {share}")
    rng = np.random.default_rng(seed)
    count = int(round(share * dataset.n_train))
    planted = np.zeros(dataset.n_train, dtype=bool)
    planted[rng.choice(dataset.n_train, count, replace=False)] = True
    labels = dataset.y_train.numpy().copy()
    # A shift of 1 .. C-1 classes is a uniform draw among the wrong labels.
    labels[planted] = (labels[planted] + rng.integers(1, dataset.num_classes, size=count)) % dataset.num_classes
    already = (np.zeros(dataset.n_train, dtype=bool) if dataset.mislabeled_train is None
               else np.asarray(dataset.mislabeled_train, dtype=bool))
    return Dataset(
        name=name or dataset.name, x_train=dataset.x_train, y_train=torch.from_numpy(labels),
        x_test=dataset.x_test, y_test=dataset.y_test, num_classes=dataset.num_classes,
        group_train=dataset.group_train, group_test=dataset.group_test, mislabeled_train=already | planted,
        meta={**dataset.meta, "planted_label_noise": {"share": share, "count": count, "seed": seed}},
    )


# ---------------------------------------------------------------------------------------
# One's own data


class DataError(ValueError):
    """Data that fail the adapters' checks; the message names the data set and the problem."""


def _as_array(values, what: str) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    try:
        return np.asarray(values)
    except (TypeError, ValueError) as error:
        raise DataError(f"{what} cannot be read as an array: {error}") from None


def _inputs(values, name: str, split: str) -> torch.Tensor:
    """Float32 features ``(n, d)`` or uint8 images ``(n, C, H, W)`` (module docstring)."""
    x = _as_array(values, f"{name}: the {split} inputs")
    if len(x) == 0:
        raise DataError(f"{name}: the {split} split is empty")
    if x.dtype == np.uint8:
        if x.ndim == 3:
            x = x[:, None]
        if x.ndim != 4:
            raise DataError(f"{name}: uint8 {split} inputs must be images (n, C, H, W) or (n, H, W), "
                            f"got shape {x.shape}")
        return torch.from_numpy(np.ascontiguousarray(x))
    if x.dtype == np.bool_ or not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise DataError(f"{name}: {split} inputs must be numbers (float features or uint8 images), got {x.dtype}")
    if x.ndim != 2:
        raise DataError(f"{name}: {split} inputs of dtype {x.dtype} must be features (n, d), got shape {x.shape}; "
                        f"images must be uint8 (n, C, H, W)")
    x = x.astype(np.float32)
    finite = np.isfinite(x).all(axis=1)
    if not finite.all():
        raise DataError(f"{name}: {int((~finite).sum())} {split} point(s) have NaN or infinite features "
                        f"(first: row {int(np.flatnonzero(~finite)[0])}); clean or drop them")
    return torch.from_numpy(np.ascontiguousarray(x))


def _labels(values, name: str, split: str, n: int) -> np.ndarray:
    y = _as_array(values, f"{name}: the {split} labels").reshape(-1)
    if len(y) != n:
        raise DataError(f"{name}: {n} {split} inputs but {len(y)} {split} labels")
    if y.dtype == np.bool_ or not (np.issubdtype(y.dtype, np.integer) or
                                   (np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0))):
        raise DataError(f"{name}: {split} labels must be integer class indices, got {y.dtype}")
    return y.astype(np.int64)


def _ids(values, name: str, what: str, n: int, dtype) -> np.ndarray | None:
    if values is None:
        return None
    ids = _as_array(values, f"{name}: {what}").reshape(-1)
    if len(ids) != n:
        raise DataError(f"{name}: {what} has {len(ids)} entries for {n} points")
    return ids.astype(dtype)


def from_arrays(x_train, y_train, x_test, y_test, *, name: str = "my-data", num_classes: int | None = None,
                group_train=None, group_test=None, mislabeled_train=None, infer_groups: bool = True,
                meta: dict | None = None) -> Dataset:
    """A :class:`Dataset` of one's own arrays or tensors, checked (module docstring).

    ``num_classes`` defaults to the largest label + 1. Sub-population ids (``group_*``, one
    per point, shared between splits) are inferred when both are absent and ``infer_groups``
    is set; ``mislabeled_train`` flags training points known to carry a wrong label.
    """
    x_train, x_test = _inputs(x_train, name, "training"), _inputs(x_test, name, "test")
    if x_train.shape[1:] != x_test.shape[1:] or x_train.dtype != x_test.dtype:
        raise DataError(f"{name}: training inputs are {x_train.dtype} {tuple(x_train.shape[1:])} per point, test "
                        f"inputs {x_test.dtype} {tuple(x_test.shape[1:])}; both splits need the same shape and dtype")
    y_train, y_test = _labels(y_train, name, "training", len(x_train)), _labels(y_test, name, "test", len(x_test))
    largest = int(max(y_train.max(), y_test.max()))
    num_classes = largest + 1 if num_classes is None else int(num_classes)
    for split, y in (("training", y_train), ("test", y_test)):
        outside = (y < 0) | (y >= num_classes)
        if outside.any():
            raise DataError(f"{name}: {int(outside.sum())} {split} label(s) lie outside 0 .. {num_classes - 1} "
                            f"(first: {int(y[outside][0])} at row {int(np.flatnonzero(outside)[0])})")
    if num_classes < 2 or len(np.unique(y_train)) < 2:
        raise DataError(f"{name}: the training labels hold {len(np.unique(y_train))} class(es); a classifier needs two")
    group_train = _ids(group_train, name, "group_train", len(y_train), np.int64)
    group_test = _ids(group_test, name, "group_test", len(y_test), np.int64)
    if (group_train is None) != (group_test is None):
        raise DataError(f"{name}: give sub-population ids for both splits or for neither")
    data = Dataset(name=name, x_train=x_train, y_train=torch.from_numpy(y_train), x_test=x_test,
                   y_test=torch.from_numpy(y_test), num_classes=num_classes, group_train=group_train,
                   group_test=group_test,
                   mislabeled_train=_ids(mislabeled_train, name, "mislabeled_train", len(y_train), bool),
                   meta={"source": "from_arrays", **(meta or {})})
    if group_train is None and infer_groups:
        return infer_subpopulations(data)
    return data


def _item_input(x) -> np.ndarray:
    """One item's input as an array: PIL images (H, W[, C]) as uint8 (C, H, W); float images in
    [0, 1] (``ToTensor``) as uint8; anything else as it is."""
    if hasattr(x, "getbands"):   # a PIL image, without importing PIL
        array = np.asarray(x)
        return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    array = _as_array(x, "an item's input")
    if array.ndim == 3 and np.issubdtype(array.dtype, np.floating) and array.size:
        if array.min() >= 0.0 and array.max() <= 1.0:
            return np.round(array * 255.0).astype(np.uint8)
        raise DataError(f"a float image item holds values in [{array.min():.3g}, {array.max():.3g}]; give images as "
                        f"uint8 or in [0, 1] (drop a Normalize transform: the suite normalises per channel)")
    return array


def _split_of(dataset, name: str, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    try:
        n = len(dataset)
    except TypeError:
        raise DataError(f"{name}: the {split} data set has no len(); give a map-style torch data set") from None
    if n == 0:
        raise DataError(f"{name}: the {split} split is empty")
    xs, ys, groups = [], [], []
    for i in range(n):
        item = dataset[i]
        if not isinstance(item, (tuple, list)) or len(item) not in (2, 3):
            raise DataError(f"{name}: {split} item {i} is a {type(item).__name__}; items must be (input, label) "
                            f"or (input, label, sub-population id)")
        xs.append(_item_input(item[0]))
        ys.append(int(item[1]))
        if len(item) == 3:
            groups.append(int(item[2]))
    if len({x.shape for x in xs}) > 1:
        raise DataError(f"{name}: {split} inputs differ in shape ({sorted({x.shape for x in xs})[:3]}); "
                        f"resize them to one shape")
    if groups and len(groups) != n:
        raise DataError(f"{name}: some {split} items carry a sub-population id and some do not")
    return np.stack(xs), np.asarray(ys), (np.asarray(groups) if groups else None)


def from_torch(train, test, *, name: str = "my-data", num_classes: int | None = None,
               infer_groups: bool = True) -> Dataset:
    """A :class:`Dataset` from map-style torch data sets (``len`` and ``[i]``), e.g. torchvision's,
    read once into memory and checked like :func:`from_arrays` (module docstring)."""
    x_train, y_train, g_train = _split_of(train, name, "training")
    x_test, y_test, g_test = _split_of(test, name, "test")
    return from_arrays(x_train, y_train, x_test, y_test, name=name, num_classes=num_classes,
                       group_train=g_train, group_test=g_test, infer_groups=infer_groups,
                       meta={"source": f"from_torch ({type(train).__name__})"})


NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def from_npz(path, *, name: str | None = None, infer_groups: bool = True) -> Dataset:
    """A :class:`Dataset` from a ``.npz`` file holding ``x_train``, ``y_train``, ``x_test``, ``y_test``
    and optionally ``group_train``, ``group_test``, ``mislabeled_train``, ``num_classes``."""
    from pathlib import Path

    path = Path(path)
    with np.load(path) as stored:
        missing = [key for key in NPZ_KEYS if key not in stored]
        if missing:
            raise DataError(f"{path}: missing the arrays {missing} (it holds {sorted(stored.files)})")
        arrays = {key: stored[key] for key in stored.files}
    num_classes = int(arrays.pop("num_classes")) if "num_classes" in arrays else None
    return from_arrays(*(arrays.pop(key) for key in NPZ_KEYS), name=name or path.stem, num_classes=num_classes,
                       group_train=arrays.get("group_train"), group_test=arrays.get("group_test"),
                       mislabeled_train=arrays.get("mislabeled_train"), infer_groups=infer_groups,
                       meta={"source": str(path)})
