"""FFCV round trip (harness.ffcv_loader); skipped where FFCV is not installed."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("ffcv", reason="FFCV not installed: apt-get install libopencv-dev libturbojpeg0-dev "
                                   "pkg-config, then pip install -e '.[ffcv]'")

from harness import ffcv_loader  # noqa: E402
from harness.data import Dataset, digits  # noqa: E402


def tiny_images(channels: int) -> Dataset:
    generator = torch.Generator().manual_seed(channels)
    return Dataset(
        name="tiny", num_classes=10,
        x_train=torch.randint(0, 256, (37, channels, 8, 6), dtype=torch.uint8, generator=generator),
        y_train=torch.randint(0, 10, (37,), generator=generator),
        x_test=torch.randint(0, 256, (5, channels, 8, 6), dtype=torch.uint8, generator=generator),
        y_test=torch.randint(0, 10, (5,), generator=generator))


@pytest.mark.parametrize("channels", [1, 3])
def test_round_trip_keeps_every_image_label_and_the_order(tmp_path, channels):
    data = tiny_images(channels)
    for split, images, labels in (("train", data.x_train, data.y_train), ("test", data.x_test, data.y_test)):
        path = ffcv_loader.write_beton(data, split, tmp_path / split / "data.beton")
        read_images, read_labels = ffcv_loader.read_beton(path)
        assert read_images.dtype == torch.uint8 and read_labels.dtype == torch.int64
        assert torch.equal(read_images, images) and torch.equal(read_labels, labels)


def test_bad_split_features_and_missing_files_are_named(tmp_path):
    with pytest.raises(ValueError, match="split"):
        ffcv_loader.write_beton(tiny_images(1), "validation", tmp_path / "x.beton")
    with pytest.raises(ValueError, match="uint8 images"):
        ffcv_loader.write_beton(digits(), "train", tmp_path / "x.beton")
    with pytest.raises(FileNotFoundError, match="no .beton"):
        ffcv_loader.read_beton(tmp_path / "absent.beton")
