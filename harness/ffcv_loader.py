"""FFCV ``.beton`` files of a data set's images, written and read back as uint8 tensors.

IMN25 trained its VGG-6 ensembles with FFCV (Leclerc et al., 2023). This module writes one
split of a :class:`harness.data.Dataset` to a ``.beton`` file and reads it back as the
``(n, C, H, W)`` uint8 images and int64 labels the harness trains on (``harness.zoo``
normalises and augments whole batches on the device, so FFCV's own decoders and augmentations
are not used). Images are stored as FFCV ``NDArrayField`` of shape ``(C, H, W)``: raw bytes,
lossless, any number of channels (``RGBImageField`` would store height-width-RGB, and JPEG
by default). Labels are an ``IntField``.

FFCV is optional (``pip install -e '.[ffcv]'``); building it needs pkg-config, OpenCV 4
and libjpeg-turbo headers (Debian: ``apt-get install libopencv-dev libturbojpeg0-dev``).
Importing this module without FFCV raises ImportError with that instruction.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from harness.data import Dataset

try:
    from ffcv.fields import IntField, NDArrayField
    from ffcv.fields.decoders import IntDecoder, NDArrayDecoder
    from ffcv.loader import Loader, OrderOption
    from ffcv.transforms import ToTensor
    from ffcv.writer import DatasetWriter
except ImportError as missing:
    raise ImportError("harness.ffcv_loader needs FFCV: apt-get install libopencv-dev libturbojpeg0-dev "
                      "pkg-config, then pip install -e '.[ffcv]'") from missing

SPLITS = ("train", "test")
READ_BATCH = 1024


class _Split:
    """One split as FFCV's writer indexes it: item i is (image (C, H, W) uint8, label int)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.images[i], int(self.labels[i])


def write_beton(dataset: Dataset, split: str, path: str | Path, workers: int = 1) -> Path:
    """Write the ``split`` ("train" or "test") of an image data set to ``path``; return the path."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    images = dataset.x_train if split == "train" else dataset.x_test
    labels = dataset.y_train if split == "train" else dataset.y_test
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(f"{dataset.name}: a .beton holds uint8 images (n, C, H, W), got "
                         f"{images.dtype} {tuple(images.shape)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = {"image": NDArrayField(dtype=np.dtype("uint8"), shape=tuple(images.shape[1:])),
              "label": IntField()}
    DatasetWriter(str(path), fields, num_workers=workers).from_indexed_dataset(
        _Split(images.cpu().numpy(), labels.cpu().numpy()))
    return path


def read_beton(path: str | Path, workers: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``(n, C, H, W)`` uint8 and labels ``(n,)`` int64 of a file :func:`write_beton` wrote,
    in the order they were written."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no .beton file at {path}")
    loader = Loader(str(path), batch_size=READ_BATCH, num_workers=workers, order=OrderOption.SEQUENTIAL,
                    drop_last=False, pipelines={"image": [NDArrayDecoder(), ToTensor()],
                                                "label": [IntDecoder(), ToTensor()]})
    images, labels = [], []
    for image_batch, label_batch in loader:
        # FFCV reuses its batch buffers: copy before the next batch overwrites them.
        images.append(image_batch.clone())
        labels.append(label_batch.reshape(-1).to(torch.int64))
    return torch.cat(images), torch.cat(labels)
