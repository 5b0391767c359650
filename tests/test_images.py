"""Image loaders on tiny files in the real layouts, the shared copies where present, augmentation."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from harness import images
from harness.images import DatasetNotFound, DeviceAugment


def write_idx(path: Path, array: np.ndarray, compress: bool = True) -> None:
    header = struct.pack(">BBBB", 0, 0, images.IDX_UNSIGNED_BYTE, array.ndim)
    header += struct.pack(f">{array.ndim}i", *array.shape)
    opener = gzip.open if compress else open
    with opener(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def write_mnist_like(folder: Path, n_train: int = 40, n_test: int = 20, compress: bool = True):
    """IDX files whose pixel (0, 0) holds the image index and whose labels cycle 0..9."""
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if compress else ""
    for split, n in (("train", n_train), ("t10k", n_test)):
        pixels = np.zeros((n, 28, 28), dtype=np.uint8)
        pixels[:, 0, 0] = np.arange(n)
        write_idx(folder / f"{split}-images-idx3-ubyte{suffix}", pixels, compress)
        write_idx(folder / f"{split}-labels-idx1-ubyte{suffix}", np.arange(n) % 10, compress)


def test_mnist_parses_idx_files(tmp_path):
    write_mnist_like(tmp_path)
    data = images.mnist(tmp_path)
    assert data.name == "mnist" and data.num_classes == 10
    assert data.x_train.shape == (40, 1, 28, 28) and data.x_train.dtype == torch.uint8
    assert data.x_test.shape == (20, 1, 28, 28)
    assert data.y_train.dtype == torch.int64
    assert data.y_train.tolist() == [i % 10 for i in range(40)]
    assert data.x_train[:, 0, 0, 0].tolist() == list(range(40))
    assert data.group_train is None and data.group_test is None
    assert data.meta["root"] == str(tmp_path) and data.meta["source"]


def test_torchvision_raw_folder_with_uncompressed_files(tmp_path):
    write_mnist_like(tmp_path / "FashionMNIST" / "raw", compress=False)
    data = images.fashion_mnist(tmp_path)
    assert data.name == "fashion-mnist" and data.x_train.shape == (40, 1, 28, 28)


def test_limit_takes_equal_numbers_per_class(tmp_path):
    write_mnist_like(tmp_path)
    data = images.mnist(tmp_path, limit_train=20, limit_test=10, seed=3)
    assert np.bincount(data.y_train.numpy()).tolist() == [2] * 10
    assert np.bincount(data.y_test.numpy()).tolist() == [1] * 10
    # Labels still belong to their images after subsetting.
    assert (data.x_train[:, 0, 0, 0].long() % 10 == data.y_train).all()
    again = images.mnist(tmp_path, limit_train=20, seed=3)
    assert torch.equal(again.x_train, data.x_train)


def test_stratified_subset_spreads_remainder_and_caps_small_classes():
    labels = np.array([0] * 10 + [1] * 10 + [2] * 2)
    counts = np.bincount(labels[images.stratified_subset(labels, 13, seed=0)], minlength=3)
    assert counts.tolist() in ([6, 5, 2], [5, 6, 2])
    assert images.stratified_subset(labels, 100, seed=0).tolist() == list(range(22))
    with pytest.raises(ValueError, match="positive"):
        images.stratified_subset(labels, 0, seed=0)


@pytest.mark.parametrize("damage, message", [
    (lambda raw: b"\x01" + raw[1:], "magic"),
    (lambda raw: raw[:-5], "truncated"),
])
def test_corrupt_idx_file_is_reported(tmp_path, damage, message):
    write_mnist_like(tmp_path, compress=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(ValueError, match=message):
        images.mnist(tmp_path)


def test_truncated_gzip_is_reported(tmp_path):
    write_mnist_like(tmp_path)
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-12])
    with pytest.raises(ValueError, match="corrupt or truncated"):
        images.mnist(tmp_path)


def write_cifar_batch(path: Path, n: int, label_key: bytes, first_label: int) -> None:
    # Channel c of every image holds the value c + 1: checks the channel-major layout.
    data = np.repeat(np.arange(1, 4, dtype=np.uint8), 32 * 32)[None].repeat(n, axis=0)
    batch = {b"data": data, label_key: [(first_label + i) % 10 for i in range(n)]}
    if label_key == b"fine_labels":
        batch[b"coarse_labels"] = [0] * n
    with open(path, "wb") as f:
        pickle.dump(batch, f)


def test_cifar10_parses_torchvision_pickles(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for i in range(1, 6):
        write_cifar_batch(folder / f"data_batch_{i}", 4, b"labels", first_label=i)
    write_cifar_batch(folder / "test_batch", 3, b"labels", first_label=0)
    data = images.cifar10(tmp_path)
    assert data.name == "cifar10" and data.num_classes == 10
    assert data.x_train.shape == (20, 3, 32, 32) and data.x_train.dtype == torch.uint8
    assert data.x_test.shape == (3, 3, 32, 32)
    assert data.x_train[0, :, 5, 7].tolist() == [1, 2, 3]
    assert data.y_train[:4].tolist() == [1, 2, 3, 4] and data.y_train.dtype == torch.int64


def test_cifar100_uses_fine_labels(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    write_cifar_batch(folder / "train", 6, b"fine_labels", first_label=5)
    write_cifar_batch(folder / "test", 2, b"fine_labels", first_label=0)
    data = images.load("cifar100", tmp_path)
    assert data.name == "cifar100" and data.num_classes == 100
    assert data.y_train.tolist() == [5, 6, 7, 8, 9, 0]


def test_tiny_imagenet_reads_jpeg_folders(tmp_path):
    from PIL import Image

    root = tmp_path / "tiny-imagenet-200"
    wnids = ["n01", "n02"]
    (root / "val" / "images").mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(wnids) + "\n")
    for label, wnid in enumerate(wnids):
        folder = root / "train" / wnid / "images"
        folder.mkdir(parents=True)
        for j in range(2):
            Image.new("RGB", (64, 64), (100 * label, 50, 0)).save(folder / f"{wnid}_{j}.JPEG")
    # One grayscale file, as in the real data: must come back with three channels.
    Image.new("L", (64, 64), 128).save(root / "val" / "images" / "val_0.JPEG")
    Image.new("RGB", (64, 64), (0, 0, 200)).save(root / "val" / "images" / "val_1.JPEG")
    (root / "val" / "val_annotations.txt").write_text(
        "val_0.JPEG\tn02\t0\t0\t63\t63\nval_1.JPEG\tn01\t1\t1\t62\t62\n")

    data = images.tiny_imagenet(tmp_path)
    assert data.name == "tiny-imagenet" and data.num_classes == 2
    assert data.x_train.shape == (4, 3, 64, 64) and data.x_train.dtype == torch.uint8
    assert data.y_train.tolist() == [0, 0, 1, 1]
    assert data.x_test.shape == (2, 3, 64, 64) and data.y_test.tolist() == [1, 0]
    assert abs(int(data.x_train[2, 0, 32, 32]) - 100) < 8  # JPEG is lossy
    assert data.x_test[1, 2, 10, 10] > 150


@pytest.mark.parametrize("loader, hint", [
    (images.mnist, "put torchvision's raw"),
    (images.fashion_mnist, "apt-get install -y dataset-fashion-mnist"),
    (images.cifar10, "download=True"),
    (images.cifar100, "download=True"),
    (images.tiny_imagenet, images.TINY_IMAGENET_URL),
])
def test_missing_root_names_folder_files_and_remedy(tmp_path, loader, hint):
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetNotFound) as caught:
        loader(missing)
    message = str(caught.value)
    assert isinstance(caught.value, FileNotFoundError)
    assert str(missing) in message and hint in message
    assert any(name in message for name in ("t10k-images-idx3-ubyte", "data_batch_1",
                                            "cifar-100-python", "wnids.txt"))


def test_default_search_uses_environment_then_names_every_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("MEMSUITE_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    write_mnist_like(tmp_path / "data" / "mnist")
    assert images.load("mnist").meta["root"] == str(tmp_path / "data" / "mnist")
    with pytest.raises(DatasetNotFound) as caught:
        images.cifar10()
    for folder in images.default_roots("cifar10"):
        assert str(folder) in str(caught.value)


def test_load_rejects_unknown_names():
    with pytest.raises(ValueError, match="cifar10"):
        images.load("imagenet")


SHARED_MNIST = images.repository_root().parent / "shared" / "data" / "mnist"


@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason=f"no shared MNIST at {SHARED_MNIST}")
def test_shared_mnist_loads_with_stratified_limit():
    data = images.mnist(SHARED_MNIST, limit_train=500)
    assert data.x_train.shape == (500, 1, 28, 28)
    assert np.bincount(data.y_train.numpy()).tolist() == [50] * 10
    assert data.n_test == 10_000


@pytest.mark.skipif(not images.FASHION_MNIST_SYSTEM_ROOT.is_dir(),
                    reason="Fashion-MNIST not installed: apt-get install -y dataset-fashion-mnist")
def test_debian_fashion_mnist_loads():
    data = images.fashion_mnist(images.FASHION_MNIST_SYSTEM_ROOT, limit_train=100, limit_test=100)
    assert data.x_train.shape == (100, 1, 28, 28)
    assert np.bincount(data.y_test.numpy()).tolist() == [10] * 10


def test_device_augment_keeps_shape_and_is_deterministic():
    x = torch.randn(16, 3, 8, 8)
    augment = DeviceAugment(flip=True, translate=2)
    first = augment(x, torch.Generator().manual_seed(5))
    again = augment(x, torch.Generator().manual_seed(5))
    other = augment(x, torch.Generator().manual_seed(6))
    assert first.shape == x.shape and first.dtype == x.dtype
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert torch.equal(DeviceAugment(flip=False, translate=0)(x), x)


def test_device_augment_flips_and_shifts_as_documented():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    augment = DeviceAugment(flip=True, translate=1)
    flipped = augment.apply(x, torch.tensor([True]), torch.tensor([[0, 0]]))
    assert torch.equal(flipped, x.flip(-1))
    shifted = augment.apply(x, torch.tensor([False]), torch.tensor([[0, 1]]))
    assert torch.equal(shifted[..., :3], x[..., 1:])  # content moves left by dx = 1
    assert (shifted[..., 3] == 0).all()               # zero padding enters on the right
    with pytest.raises(ValueError, match="translate"):
        DeviceAugment(translate=-1)


def test_normalize_and_channel_statistics():
    x = torch.randint(0, 256, (10, 3, 4, 4), dtype=torch.uint8)
    mean, std = images.channel_mean_std(x, chunk=3)
    as_float = x.double().numpy() / 255
    np.testing.assert_allclose(mean, as_float.mean(axis=(0, 2, 3)), rtol=1e-9)
    np.testing.assert_allclose(std, as_float.std(axis=(0, 2, 3)), rtol=1e-6)
    z = images.normalize(x, mean, std)
    assert z.dtype == torch.float32
    np.testing.assert_allclose(z.mean(dim=(0, 2, 3)).numpy(), 0, atol=1e-5)
    with pytest.raises(ValueError, match="uint8"):
        images.normalize(x.float(), mean, std)
    with pytest.raises(ValueError, match="one value per channel"):
        images.normalize(x, [0.5], [0.2])


def write_random_mnist_like(folder: Path, n_train: int, n_test: int) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        write_idx(folder / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(folder / f"{split}-labels-idx1-ubyte.gz", np.arange(n) % 10)


@pytest.fixture
def isolated_image_roots(tmp_path, monkeypatch):
    """Loaders search only tmp_path/<name>; load_dataset's per-process cache starts empty."""
    from harness import experiments

    monkeypatch.setattr(images, "default_roots", lambda folder: [tmp_path / folder])
    experiments.load_dataset.cache_clear()
    yield tmp_path
    experiments.load_dataset.cache_clear()


def test_load_dataset_subsets_images_and_infers_subpopulations(isolated_image_roots):
    from harness import experiments, profiles

    write_random_mnist_like(isolated_image_roots / "mnist", n_train=500, n_test=300)
    smoke = profiles.get("smoke")
    data = experiments.load_dataset("mnist", "smoke")
    assert data.name == "mnist" and data.is_image
    assert (data.n_train, data.n_test) == (smoke.image_limit_train, smoke.image_limit_test)
    assert np.bincount(data.y_train.numpy()).tolist() == [smoke.image_limit_train // 10] * 10
    assert (data.group_train >= 0).all() and (data.group_test >= 0).all()
    # The embedding network trained on the 100 images the subset left out.
    assert "100 training images outside the subset" in data.meta["embedding"]
    assert "sub-populations" in experiments.subpopulation_summary(data)
    experiments.load_dataset.cache_clear()
    assert experiments.load_dataset("mnist", "smoke").fingerprint == data.fingerprint


def test_load_or_skip_skips_with_where_to_put_the_files(isolated_image_roots):
    from harness import experiments

    with pytest.raises(pytest.skip.Exception, match="cifar10 not found"):
        experiments.load_or_skip("cifar10", "smoke")


def test_gathering_uint8_pixels_augments_as_device_augment_does_after_normalising():
    generator = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (6, 3, 5, 7), dtype=torch.uint8, generator=generator)
    augment = DeviceAugment(flip=True, translate=2)
    flips, shifts = augment.draw(12, generator)
    indices = torch.randint(0, 6, (12,), generator=generator)
    normalization = images.Normalization([0.4, 0.5, 0.6], [0.2, 0.25, 0.3])
    expected = augment.apply(normalization(x[indices]), flips, shifts)
    # The same 12 images as 4 rows of 3 (a stacked ensemble's layout): (B, H, W, K, C).
    gathered, valid = images.gather_images(x.permute(0, 2, 3, 1).contiguous(), indices.view(4, 3),
                                           flips.view(4, 3), shifts.view(4, 3, 2))
    z = torch.where(valid, normalization.channels_last(gathered), 0.0)
    assert torch.equal(z.permute(0, 3, 4, 1, 2).reshape(12, 3, 5, 7), expected)
    with pytest.raises(ValueError, match="positive"):
        images.Normalization([0.5], [0.0])
