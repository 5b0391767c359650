"""Real image data sets as uint8 tensors, and batched augmentation on the device.

Every loader returns a :class:`harness.data.Dataset` whose images are uint8 tensors
``(n, C, H, W)`` and labels int64, read straight from the files the data set is shipped in
(no PIL for MNIST and CIFAR, no per-image Python objects kept around). The tensors are small
enough to move to the accelerator once; training then indexes, normalises and augments
whole batches there (the airbench style), never per image on the CPU.

Sources and layouts (``root`` is the folder named in brackets):

* MNIST, Fashion-MNIST: the IDX files ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
  ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, gzip'd (``.gz``) or not, directly
  in ``root`` or in torchvision's ``root/MNIST/raw`` (``root/FashionMNIST/raw``).
  An IDX file is a big-endian header ``0x00 0x00 <type> <ndim>`` followed by ``ndim`` int32
  sizes and the data; type 0x08 is unsigned byte.
* CIFAR-10 / CIFAR-100: torchvision's pickles in ``root/cifar-10-batches-py``
  (``data_batch_1..5``, ``test_batch``) and ``root/cifar-100-python`` (``train``, ``test``,
  labels under ``fine_labels``); each holds ``data`` as ``(n, 3072)`` uint8 rows in
  channel-major order.
* Tiny ImageNet: ``root/tiny-imagenet-200`` with ``wnids.txt``,
  ``train/<wnid>/images/*.JPEG`` and ``val/images`` + ``val/val_annotations.txt``; the labelled
  validation split serves as the test split (the official test split has no labels).

Without ``root`` a loader searches, in order, ``$MEMSUITE_DATA/<name>``, the team's shared
copy ``<repository>/../shared/data/<name>`` and ``~/.cache/memsuite/data/<name>``, where
``<name>`` is the data set's name in :data:`LOADERS` and ``<repository>`` holds ``pyproject.toml``
(Fashion-MNIST also ``/usr/share/datasets/fashion-mnist``, where Debian's package
``dataset-fashion-mnist`` installs it). ``limit_train`` / ``limit_test`` keep a seeded,
class-stratified subset: ``limit // C`` points per class, the remainder spread one each over
randomly chosen classes (classes with too few points give all they have).
"""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from harness.data import Dataset

IDX_UNSIGNED_BYTE = 0x08
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
FASHION_MNIST_SYSTEM_ROOT = Path("/usr/share/datasets/fashion-mnist")
# Names of the labels, where they are not the labels themselves (MNIST's are its digits).
CLASS_NAMES = {
    "fashion-mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                      "Sneaker", "Bag", "Ankle boot"),
    "cifar10": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                "truck"),
}
TINY_IMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"


class DatasetNotFound(FileNotFoundError):
    """No folder holds the files a data set needs; the message says where to put them."""


# ---------------------------------------------------------------------------------------
# Where data lives


def repository_root() -> Path:
    """The folder that holds ``pyproject.toml`` above this file (its parent folder if none)."""
    here = Path(__file__).resolve().parent
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file():
            return folder
    return here.parent


def default_roots(folder: str) -> list[Path]:
    """Folders searched, in order, for a data set stored under ``folder``."""
    roots = []
    if os.environ.get("MEMSUITE_DATA"):
        roots.append(Path(os.environ["MEMSUITE_DATA"]).expanduser() / folder)
    roots.append(repository_root().parent / "shared" / "data" / folder)
    roots.append(Path.home() / ".cache" / "memsuite" / "data" / folder)
    return roots


def download_root(folder: str) -> Path:
    """Where ``download=True`` puts a data set when no root is given."""
    base = os.environ.get("MEMSUITE_DATA") or Path.home() / ".cache" / "memsuite" / "data"
    return Path(base).expanduser() / folder


def _first_root(candidates: list[Path], holds_data, name: str, expected: str, how_to_get: str):
    for root in candidates:
        found = holds_data(root)
        if found is not None:
            return found
    searched = "\n".join(f"  {root}" for root in candidates)
    raise DatasetNotFound(f"{name} not found. Searched:\n{searched}\n"
                          f"Expected {expected}.\nTo get it: {how_to_get}")


# ---------------------------------------------------------------------------------------
# Stratified subsets


def stratified_subset(labels: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """Sorted indices of a seeded subset of ``limit`` points, as equal per class as possible."""
    if limit < 1:
        raise ValueError(f"limit must be a positive number of points, got {limit}")
    if limit >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    classes, available = np.unique(labels, return_counts=True)
    quota = np.zeros(len(classes), dtype=np.int64)
    remaining = limit
    # Water-filling: give every class with room an equal share, cap at what it has, repeat.
    while remaining > 0:
        open_classes = np.flatnonzero(quota < available)
        share, extra = divmod(remaining, len(open_classes))
        grant = np.full(len(open_classes), share)
        grant[rng.choice(len(open_classes), size=extra, replace=False)] += 1
        grant = np.minimum(grant, available[open_classes] - quota[open_classes])
        quota[open_classes] += grant
        remaining -= int(grant.sum())
    chosen = [rng.choice(np.flatnonzero(labels == c), size=q, replace=False)
              for c, q in zip(classes, quota)]
    return np.sort(np.concatenate(chosen))


def limited(labels: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    """Indices kept by ``limit``: all of them if None, else :func:`stratified_subset`."""
    return np.arange(len(labels)) if limit is None else stratified_subset(labels, limit, seed)


def _make_dataset(name: str, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                  y_test: np.ndarray, num_classes: int, meta: dict) -> Dataset:
    return Dataset(
        name=name,
        x_train=torch.from_numpy(np.ascontiguousarray(x_train)),
        y_train=torch.from_numpy(y_train.astype(np.int64)),
        x_test=torch.from_numpy(np.ascontiguousarray(x_test)),
        y_test=torch.from_numpy(y_test.astype(np.int64)),
        num_classes=num_classes,
        meta=meta,
    )


# ---------------------------------------------------------------------------------------
# MNIST and Fashion-MNIST (IDX files)


def read_idx(path: Path) -> np.ndarray:
    """Parse one IDX file (gzip'd if its name ends in .gz) of unsigned bytes."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as error:
        raise ValueError(f"{path}: cannot read ({error}); the file is corrupt or truncated") from error
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: not an IDX file (its magic number must start with two zero bytes)")
    if raw[2] != IDX_UNSIGNED_BYTE:
        raise ValueError(f"{path}: IDX data type 0x{raw[2]:02x}; only unsigned bytes (0x08) are supported")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{ndim}i", raw[4:header])
    expected = int(np.prod(shape))
    if len(raw) - header != expected:
        raise ValueError(f"{path}: header promises shape {shape} ({expected} bytes) "
                         f"but {len(raw) - header} bytes follow; the file is corrupt or truncated")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _idx_path(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    return None


def _idx_folder(torchvision_subfolder: str):
    """A function mapping a root to the folder holding all four IDX files, or None."""
    def holds_data(root: Path) -> Path | None:
        for folder in (root, root / torchvision_subfolder / "raw"):
            if all(_idx_path(folder, stem) for stem in IDX_FILES.values()):
                return folder
        return None
    return holds_data


def _load_idx_dataset(name: str, folder: Path, limit_train, limit_test, seed) -> Dataset:
    arrays = {key: read_idx(_idx_path(folder, stem)) for key, stem in IDX_FILES.items()}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(f"{folder}: {split} images {images.shape} and labels {labels.shape} "
                             f"do not match (expected (n, H, W) and (n,))")
    train = limited(arrays["train_labels"], limit_train, seed)
    test = limited(arrays["test_labels"], limit_test, seed)
    return _make_dataset(
        name, arrays["train_images"][train, None], arrays["train_labels"][train],
        arrays["test_images"][test, None], arrays["test_labels"][test], num_classes=10,
        meta={"source": "IDX files", "root": str(folder), "limit_train": limit_train,
              "limit_test": limit_test, "seed": seed})


_IDX_EXPECTED = ", ".join(f"{stem}[.gz]" for stem in IDX_FILES.values())


def mnist(root: str | Path | None = None, limit_train: int | None = None,
          limit_test: int | None = None, seed: int = 0) -> Dataset:
    """MNIST from its IDX files: 60,000 + 10,000 images (1, 28, 28)."""
    holds_data = _idx_folder("MNIST")
    candidates = [Path(root)] if root is not None else default_roots("mnist")
    folder = _first_root(candidates, holds_data, "MNIST", f"the files {_IDX_EXPECTED}",
                         "put torchvision's raw MNIST files (as written by "
                         "torchvision.datasets.MNIST(root, download=True) under MNIST/raw) "
                         "in one of the folders above, or pass root=")
    return _load_idx_dataset("mnist", folder, limit_train, limit_test, seed)


def fashion_mnist(root: str | Path | None = None, limit_train: int | None = None,
                  limit_test: int | None = None, seed: int = 0) -> Dataset:
    """Fashion-MNIST from its IDX files: 60,000 + 10,000 images (1, 28, 28)."""
    holds_data = _idx_folder("FashionMNIST")
    candidates = ([Path(root)] if root is not None
                  else default_roots("fashion-mnist") + [FASHION_MNIST_SYSTEM_ROOT])
    folder = _first_root(candidates, holds_data, "Fashion-MNIST", f"the files {_IDX_EXPECTED}",
                         "apt-get install -y dataset-fashion-mnist (installs them in "
                         f"{FASHION_MNIST_SYSTEM_ROOT}), or torchvision.datasets.FashionMNIST"
                         "(root, download=True) and pass that root")
    return _load_idx_dataset("fashion-mnist", folder, limit_train, limit_test, seed)


# ---------------------------------------------------------------------------------------
# CIFAR-10 and CIFAR-100 (torchvision's pickles)

CIFAR = {
    "cifar10": {"folder": "cifar-10-batches-py", "train": [f"data_batch_{i}" for i in range(1, 6)],
                "test": ["test_batch"], "label_key": b"labels", "num_classes": 10,
                "torchvision": "CIFAR10"},
    "cifar100": {"folder": "cifar-100-python", "train": ["train"], "test": ["test"],
                 "label_key": b"fine_labels", "num_classes": 100, "torchvision": "CIFAR100"},
}


def _read_cifar_batches(folder: Path, files: list[str], label_key: bytes):
    images, labels = [], []
    for file in files:
        with open(folder / file, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        if b"data" not in batch or label_key not in batch:
            raise ValueError(f"{folder / file}: expected the keys b'data' and {label_key!r}, "
                             f"found {sorted(batch)}")
        images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.append(np.asarray(batch[label_key], dtype=np.int64))
    return np.concatenate(images), np.concatenate(labels)


def _cifar(name: str, root, download: bool, limit_train, limit_test, seed) -> Dataset:
    spec = CIFAR[name]

    def holds_data(candidate: Path) -> Path | None:
        for folder in (candidate / spec["folder"], candidate):
            if all((folder / f).is_file() for f in spec["train"] + spec["test"]):
                return folder
        return None

    candidates = [Path(root)] if root is not None else default_roots(name)
    if download and not any(holds_data(candidate) for candidate in candidates):
        import torchvision.datasets

        target = candidates[0] if root is not None else download_root(name)
        getattr(torchvision.datasets, spec["torchvision"])(str(target), download=True)
        candidates.append(target)
    folder = _first_root(
        candidates, holds_data, name,
        f"a folder {spec['folder']}/ holding {', '.join(spec['train'] + spec['test'])}",
        f"call with download=True (torchvision.datasets.{spec['torchvision']}(root, download=True))")
    x_train, y_train = _read_cifar_batches(folder, spec["train"], spec["label_key"])
    x_test, y_test = _read_cifar_batches(folder, spec["test"], spec["label_key"])
    train, test = limited(y_train, limit_train, seed), limited(y_test, limit_test, seed)
    return _make_dataset(name, x_train[train], y_train[train], x_test[test], y_test[test],
                         spec["num_classes"],
                         meta={"source": "torchvision CIFAR pickles", "root": str(folder),
                               "limit_train": limit_train, "limit_test": limit_test, "seed": seed})


def cifar10(root: str | Path | None = None, download: bool = False, limit_train: int | None = None,
            limit_test: int | None = None, seed: int = 0) -> Dataset:
    """CIFAR-10: 50,000 + 10,000 images (3, 32, 32); ``download`` fetches it via torchvision."""
    return _cifar("cifar10", root, download, limit_train, limit_test, seed)


def cifar100(root: str | Path | None = None, download: bool = False, limit_train: int | None = None,
             limit_test: int | None = None, seed: int = 0) -> Dataset:
    """CIFAR-100 with its 100 fine labels: 50,000 + 10,000 images (3, 32, 32)."""
    return _cifar("cifar100", root, download, limit_train, limit_test, seed)


# ---------------------------------------------------------------------------------------
# Tiny ImageNet (JPEG folders)


def _read_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8).transpose(2, 0, 1)


def _read_images(paths: list[Path]) -> np.ndarray:
    # PIL releases the GIL while decoding, so threads do speed this up.
    with ThreadPoolExecutor(max_workers=min(16, os.cpu_count() or 1)) as pool:
        images = list(pool.map(_read_rgb, paths))
    shapes = {image.shape for image in images}
    if len(shapes) > 1:
        raise ValueError(f"images differ in size: {sorted(shapes)}")
    return np.stack(images) if images else np.zeros((0, 3, 64, 64), dtype=np.uint8)


def tiny_imagenet(root: str | Path | None = None, limit_train: int | None = None,
                  limit_test: int | None = None, seed: int = 0) -> Dataset:
    """Tiny ImageNet: 200 classes, 100,000 training and 10,000 validation images (3, 64, 64).

    With ``limit_*`` only the chosen images are decoded.
    """
    def holds_data(candidate: Path) -> Path | None:
        for folder in (candidate / "tiny-imagenet-200", candidate):
            if ((folder / "wnids.txt").is_file() and (folder / "train").is_dir()
                    and (folder / "val" / "val_annotations.txt").is_file()):
                return folder
        return None

    candidates = [Path(root)] if root is not None else default_roots("tiny-imagenet")
    folder = _first_root(
        candidates, holds_data, "Tiny ImageNet",
        "a folder tiny-imagenet-200/ with wnids.txt, train/<wnid>/images/*.JPEG, "
        "val/images/*.JPEG and val/val_annotations.txt",
        f"download {TINY_IMAGENET_URL} and unzip it into one of the folders above")
    wnids = (folder / "wnids.txt").read_text().split()
    label_of = {wnid: i for i, wnid in enumerate(wnids)}

    train_paths, train_labels = [], []
    for wnid in wnids:
        paths = sorted((folder / "train" / wnid / "images").glob("*.JPEG"))
        train_paths += paths
        train_labels += [label_of[wnid]] * len(paths)
    test_paths, test_labels = [], []
    for line in (folder / "val" / "val_annotations.txt").read_text().splitlines():
        if line.strip():
            file, wnid = line.split("\t")[:2]
            if wnid not in label_of:
                raise ValueError(f"{folder}/val/val_annotations.txt names {wnid}, absent from wnids.txt")
            test_paths.append(folder / "val" / "images" / file)
            test_labels.append(label_of[wnid])
    y_train, y_test = np.array(train_labels, dtype=np.int64), np.array(test_labels, dtype=np.int64)

    # Subset before decoding: reading 110,000 JPEGs is the slow part.
    train, test = limited(y_train, limit_train, seed), limited(y_test, limit_test, seed)
    return _make_dataset(
        "tiny-imagenet", _read_images([train_paths[i] for i in train]), y_train[train],
        _read_images([test_paths[i] for i in test]), y_test[test], len(wnids),
        meta={"source": "tiny-imagenet-200 JPEG folders", "root": str(folder),
              "limit_train": limit_train, "limit_test": limit_test, "seed": seed})


# ---------------------------------------------------------------------------------------
# Dispatch

LOADERS = {
    "mnist": mnist,
    "fashion-mnist": fashion_mnist,
    "cifar10": cifar10,
    "cifar100": cifar100,
    "tiny-imagenet": tiny_imagenet,
}


def load(name: str, root: str | Path | None = None, **kwargs) -> Dataset:
    """Load an image data set by name (one of ``LOADERS``); keywords go to its loader."""
    if name not in LOADERS:
        raise ValueError(f"unknown image data set {name!r}; known: {', '.join(LOADERS)}")
    return LOADERS[name](root, **kwargs)


# ---------------------------------------------------------------------------------------
# On-device preprocessing


def channel_mean_std(x_uint8: torch.Tensor, chunk: int = 4096) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation of uint8 images ``(n, C, H, W)`` on the [0, 1] scale.

    Accumulated in float64 over chunks, so a whole data set never exists as floats at once.
    """
    if x_uint8.dtype != torch.uint8 or x_uint8.dim() != 4 or len(x_uint8) == 0:
        raise ValueError(f"expected a non-empty uint8 batch (n, C, H, W), got {x_uint8.dtype} "
                         f"{tuple(x_uint8.shape)}")
    total = torch.zeros(x_uint8.shape[1], dtype=torch.float64, device=x_uint8.device)
    total_sq = torch.zeros_like(total)
    for start in range(0, len(x_uint8), chunk):
        part = x_uint8[start:start + chunk].double() / 255.0
        total += part.sum(dim=(0, 2, 3))
        total_sq += (part * part).sum(dim=(0, 2, 3))
    count = x_uint8.numel() // x_uint8.shape[1]
    mean = total / count
    std = (total_sq / count - mean * mean).clamp_min(0).sqrt()
    return mean.tolist(), std.tolist()


class Normalization:
    """``(x / 255 - mean) / std`` per channel of uint8 images, its constants device tensors.

    Built once per pass: the constants are checked on the host here, so applying it never
    waits for the device (a check of device values, like ``(std <= 0).any()``, is a host sync).
    ``repeat`` tiles the constants for ``repeat`` images stacked along the channels (channel
    ``k C + c`` is channel c of image k), the layout of :mod:`harness.stacked`.
    """

    def __init__(self, mean, std, device: str | torch.device = "cpu", repeat: int = 1):
        mean, std = [float(m) for m in mean], [float(s) for s in std]
        if len(mean) != len(std) or not mean:
            raise ValueError(f"mean and std need one value per channel each, got {len(mean)} and {len(std)}")
        if not all(s > 0 for s in std):  # also refuses NaN
            raise ValueError(f"std must be positive, got {std}")
        self.channels = len(mean)
        self.mean = torch.tensor(mean * repeat, dtype=torch.float32, device=device)
        self.std = torch.tensor(std * repeat, dtype=torch.float32, device=device)

    def channels_last(self, x_uint8: torch.Tensor) -> torch.Tensor:
        """uint8 ``(..., C)`` (channels last) to normalised float32 of the same shape."""
        return (x_uint8.float() / 255.0 - self.mean) / self.std

    def __call__(self, x_uint8: torch.Tensor) -> torch.Tensor:
        """uint8 ``(..., C, H, W)`` to normalised float32 of the same shape."""
        return (x_uint8.float() / 255.0 - self.mean[:, None, None]) / self.std[:, None, None]


def normalize(x_uint8: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 images ``(..., C, H, W)`` to float32 ``(x / 255 - mean) / std`` per channel.

    ``mean`` and ``std`` are per-channel values on the [0, 1] scale. For many batches with
    the same constants build one :class:`Normalization` instead.
    """
    if x_uint8.dtype != torch.uint8:
        raise ValueError(f"normalize expects uint8 images, got {x_uint8.dtype}")
    channels = x_uint8.shape[-3]
    if len(mean) != channels or len(std) != channels:
        raise ValueError(f"mean and std need one value per channel ({channels}), "
                         f"got {len(mean)} and {len(std)}")
    return Normalization(mean, std, x_uint8.device)(x_uint8)


def gather_images(x_hwc: torch.Tensor, indices: torch.Tensor, flips: torch.Tensor | None = None,
                  shifts: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Images ``x_hwc[indices]`` flipped and translated as :class:`DeviceAugment` does, in one
    gather of the uint8 pixels (augmenting before normalising moves a quarter of the bytes).

    ``x_hwc`` is ``(n, H, W, C)`` uint8, ``indices`` ``(B, K)`` (K images for each of B rows,
    one per model of a stacked ensemble); ``flips`` ``(B, K)`` bool and ``shifts``
    ``(B, K, 2)`` (dy, dx) or None. Returns the images ``(B, H, W, K, C)`` and, with
    ``shifts``, where they hold pixels ``(B, H, W, K, 1)`` bool: the rest is the translation's
    zero padding, which is zero *after* normalising (the data-set mean), so the caller sets it
    there (``torch.where(valid, z, 0)``).
    """
    _, height, width, _ = x_hwc.shape
    device = x_hwc.device
    rows = torch.arange(height, device=device)[None, :, None]   # (1, H, 1): (B, H, K) with shifts
    cols = torch.arange(width, device=device)[None, :, None]    # (1, W, 1)
    valid = None
    if shifts is not None:
        rows = rows + shifts[..., 0][:, None, :]
        cols = cols + shifts[..., 1][:, None, :]
        valid = (((rows >= 0) & (rows < height))[:, :, None, :]
                 & ((cols >= 0) & (cols < width))[:, None, :, :])[..., None]
        rows, cols = rows.clamp(0, height - 1), cols.clamp(0, width - 1)
    if flips is not None:
        cols = torch.where(flips[:, None, :], width - 1 - cols, cols)
    return x_hwc[indices[:, None, None, :], rows[:, :, None, :], cols[:, None, :, :]], valid


class DeviceAugment:
    """Random horizontal flips and translations of a float batch ``(B, C, H, W)``, vectorised.

    A translation by ``(dy, dx)``, each uniform in ``[-translate, translate]``, pads the image
    with zeros by ``translate`` pixels on every side and crops the original size at offset
    ``translate + (dy, dx)``; on normalised images zero is the data-set mean. Random draws come
    from ``generator`` (on its own device, then moved), so a seeded generator gives the same
    augmentation on every device. :meth:`draw` and :meth:`apply` split the two steps, which lets
    several generators (one per model) draw for slices of one batch.
    """

    def __init__(self, flip: bool = True, translate: int = 0):
        if translate < 0:
            raise ValueError(f"translate must be >= 0 pixels, got {translate}")
        self.flip = bool(flip)
        self.translate = int(translate)

    def __repr__(self) -> str:
        return f"DeviceAugment(flip={self.flip}, translate={self.translate})"

    def draw(self, batch: int, generator: torch.Generator | None = None):
        """Per-image flip flags ``(batch,)`` bool and shifts ``(batch, 2)`` int64 (dy, dx)."""
        device = generator.device if generator is not None else torch.device("cpu")
        flips = (torch.rand(batch, generator=generator, device=device) < 0.5 if self.flip
                 else torch.zeros(batch, dtype=torch.bool, device=device))
        shifts = torch.randint(-self.translate, self.translate + 1, (batch, 2),
                               generator=generator, device=device)
        return flips, shifts

    def apply(self, x: torch.Tensor, flips: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"DeviceAugment expects a batch (B, C, H, W), got shape {tuple(x.shape)}")
        flips, shifts = flips.to(x.device), shifts.to(x.device)
        x = torch.where(flips[:, None, None, None], x.flip(-1), x)
        if self.translate == 0:
            return x
        batch, _, height, width = x.shape
        t = self.translate
        padded = torch.nn.functional.pad(x, (t, t, t, t))
        rows = torch.arange(height, device=x.device) + t + shifts[:, :1]  # (B, H)
        cols = torch.arange(width, device=x.device) + t + shifts[:, 1:]   # (B, W)
        images = torch.arange(batch, device=x.device)[:, None, None]
        cropped = padded.permute(0, 2, 3, 1)[images, rows[:, :, None], cols[:, None, :]]
        return cropped.permute(0, 3, 1, 2).contiguous()

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.apply(x, *self.draw(len(x), generator))
