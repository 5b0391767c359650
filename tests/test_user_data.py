"""One's own data (harness.data.from_arrays / from_torch / from_npz): what they accept, and a
clear error naming the problem for what they do not, before anything reaches the store."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.data import DataError, Dataset, from_arrays, from_npz, from_torch


def features(n=40, d=5, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)).astype(np.float32), np.arange(n) % classes


def images(n=40, classes=2, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 1, 6, 6), dtype=np.uint8), np.arange(n) % classes


def test_features_from_numpy_keep_their_values_and_get_inferred_subpopulations():
    x, y = features()
    data = from_arrays(x[:30], y[:30], x[30:], y[30:], name="mine")
    assert data.x_train.dtype == torch.float32 and data.num_classes == 3
    assert np.array_equal(data.x_train.numpy(), x[:30])
    assert data.group_train is not None and (data.group_train >= 0).all() and "inferred" in data.meta["subpopulations"]


def test_tensors_with_given_subpopulations_are_used_as_given():
    x, y = images()
    groups = np.arange(40) // 4
    data = from_arrays(torch.from_numpy(x[:30]), torch.from_numpy(y[:30]), torch.from_numpy(x[30:]),
                       torch.from_numpy(y[30:]), group_train=groups[:30], group_test=groups[30:], num_classes=4)
    assert data.is_image and data.x_train.dtype == torch.uint8 and data.num_classes == 4
    assert np.array_equal(data.group_train, groups[:30]) and "subpopulations" not in data.meta


def test_single_channel_images_without_a_channel_axis_get_one():
    x, y = images()
    data = from_arrays(x[:30, 0], y[:30], x[30:, 0], y[30:], infer_groups=False)
    assert tuple(data.x_train.shape) == (30, 1, 6, 6)


BAD_INPUTS = {
    "the training split is empty": lambda x, y: (x[:0], y[:0], x, y, {}),
    "the test split is empty": lambda x, y: (x, y, x[:0], y[:0], {}),
    "inputs and labels of different lengths": lambda x, y: (x, y[:-1], x, y, {}),
    "labels outside the classes": lambda x, y: (x, np.where(y == 2, 7, y), x, y, {"num_classes": 3}),
    "negative labels": lambda x, y: (x, y - 1, x, y, {}),
    "fractional labels": lambda x, y: (x, y + 0.5, x, y, {}),
    "NaN features": lambda x, y: (np.where(np.arange(len(x))[:, None] == 3, np.nan, x), y, x, y, {}),
    "infinite test features": lambda x, y: (x, y, np.where(np.arange(len(x))[:, None] == 0, np.inf, x), y, {}),
    "splits of different widths": lambda x, y: (x, y, x[:, :4], y, {}),
    "float images": lambda x, y: (x.reshape(len(x), 1, 1, 5), y, x.reshape(len(x), 1, 1, 5), y, {}),
    "one class only": lambda x, y: (x, np.zeros_like(y), x, np.zeros_like(y), {}),
    "sub-populations for one split only": lambda x, y: (x, y, x, y, {"group_train": np.zeros(len(y))}),
    "sub-population ids of the wrong length": lambda x, y: (x, y, x, y, {"group_train": np.zeros(3),
                                                                        "group_test": np.zeros(len(y))}),
}
EXPECTED_WORDS = {
    "the training split is empty": "training split is empty",
    "the test split is empty": "test split is empty",
    "inputs and labels of different lengths": "40 training inputs but 39 training labels",
    "labels outside the classes": "outside 0 .. 2",
    "negative labels": "outside 0 ..",
    "fractional labels": "integer class indices",
    "NaN features": "NaN or infinite features (first: row 3)",
    "infinite test features": "test point(s) have NaN or infinite",
    "splits of different widths": "same shape",
    "float images": "must be features (n, d)",
    "one class only": "a classifier needs two",
    "sub-populations for one split only": "both splits or for neither",
    "sub-population ids of the wrong length": "group_train has 3 entries for 40 points",
}


@pytest.mark.parametrize("problem", list(BAD_INPUTS), ids=[f"{p} is refused by name" for p in BAD_INPUTS])
def test_bad_data_is_refused_with_an_error_naming_the_problem(problem):
    x, y = features()
    x_train, y_train, x_test, y_test, options = BAD_INPUTS[problem](x, y)
    with pytest.raises(DataError) as refused:
        from_arrays(x_train, y_train, x_test, y_test, name="mine", **options)
    assert EXPECTED_WORDS[problem] in str(refused.value) and "mine" in str(refused.value)


class ListDataset(torch.utils.data.Dataset):
    """A map-style torch data set over a list of items."""

    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def test_a_map_style_torch_dataset_of_tensor_images_reads_like_its_arrays():
    x, y = images()
    floats = torch.from_numpy(x).float() / 255.0   # what torchvision's ToTensor gives
    train = torch.utils.data.TensorDataset(floats[:30], torch.from_numpy(y[:30]))
    test = torch.utils.data.TensorDataset(floats[30:], torch.from_numpy(y[30:]))
    data = from_torch(train, test, name="mine")
    assert data.x_train.dtype == torch.uint8 and np.array_equal(data.x_train.numpy(), x[:30])
    assert np.array_equal(data.y_test.numpy(), y[30:])


def test_pil_images_and_subpopulation_ids_from_the_items_are_read():
    from PIL import Image

    x, y = images()
    items = [(Image.fromarray(x[i, 0]), int(y[i]), i // 5) for i in range(40)]
    data = from_torch(ListDataset(items[:30]), ListDataset(items[30:]))
    assert tuple(data.x_train.shape) == (30, 1, 6, 6) and np.array_equal(data.x_train.numpy(), x[:30])
    assert np.array_equal(data.group_test, np.arange(30, 40) // 5)


@pytest.mark.parametrize("items, words", [
    ([], "training split is empty"),
    ([np.zeros(3)] * 4, "items must be (input, label)"),
    ([(np.zeros(3), 0), (np.zeros(4), 1)], "differ in shape"),
    ([(np.full((1, 2, 2), 3.0), 0), (np.zeros((1, 2, 2)), 1)], "uint8 or in [0, 1]"),
], ids=["an empty data set", "items without labels", "inputs of different shapes", "normalised float images"])
def test_bad_torch_datasets_are_refused_with_an_error_naming_the_problem(items, words):
    x, y = features(n=4)
    with pytest.raises(DataError, match=None) as refused:
        from_torch(ListDataset(items), torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y)))
    assert words in str(refused.value)


def test_npz_files_name_missing_arrays(tmp_path):
    x, y = features()
    np.savez(tmp_path / "mine.npz", x_train=x, y_train=y, x_test=x)
    with pytest.raises(DataError, match=r"missing the arrays \['y_test'\]"):
        from_npz(tmp_path / "mine.npz")
    np.savez(tmp_path / "mine.npz", x_train=x, y_train=y, x_test=x, y_test=y, num_classes=5)
    data = from_npz(tmp_path / "mine.npz")
    assert data.name == "mine" and data.num_classes == 5


def test_bad_data_reaches_nothing_in_the_store(tmp_path):
    from harness import runner

    x, y = features()
    x[5, 0] = np.nan
    unchecked = Dataset("unchecked", torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(x),
                        torch.from_numpy(y), 3)
    with pytest.raises(ValueError, match="NaN or infinite features"):
        runner.run("fz-long-tail", unchecked, "ridge", profile="smoke", store=tmp_path / "store", device="cpu")
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").iterdir())
