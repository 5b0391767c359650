"""Near-duplicate detection between test and training split (harness.duplicates)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.data import Dataset
from harness.duplicates import find_near_duplicates, unit_rows


def random_images(n_train: int, n_test: int, seed: int = 0) -> Dataset:
    generator = torch.Generator().manual_seed(seed)
    return Dataset(
        name="random", num_classes=3,
        x_train=torch.randint(0, 256, (n_train, 1, 8, 8), dtype=torch.uint8, generator=generator),
        y_train=torch.arange(n_train) % 3,
        x_test=torch.randint(0, 256, (n_test, 1, 8, 8), dtype=torch.uint8, generator=generator),
        y_test=torch.arange(n_test) % 3)


def test_unit_rows_ignore_brightness_and_contrast():
    x = torch.tensor([[1.0, 2.0, 4.0], [12.0, 14.0, 18.0], [5.0, 5.0, 5.0]])
    z = unit_rows(x)
    np.testing.assert_allclose(z[0], z[1], atol=1e-12)        # 2 x + 10 is the same point
    np.testing.assert_allclose(np.linalg.norm(z[0]), 1.0)
    assert (z[2] == 0).all()                                   # a constant point has no direction


def test_copies_of_training_images_are_found_with_their_partners():
    data = random_images(200, 50)
    x_test = data.x_test.clone()
    x_test[7] = data.x_train[30]                                               # exact copy
    x_test[20] = (data.x_train[99].int() // 2 + 60).to(torch.uint8)            # dimmer, lower contrast
    y_test = data.y_test.clone()
    y_test[7] = data.y_train[30]
    y_test[20] = (data.y_train[99] + 1) % 3                                    # and relabelled
    data = Dataset(data.name, data.x_train, data.y_train, x_test, y_test, num_classes=3)
    found = find_near_duplicates(data, quantile=0.01)
    pairs = found.to_dataframe()
    assert pairs[["test", "train"]].values.tolist()[:2] == [[7, 30], [20, 99]]
    assert pairs["distance"].iloc[0] < 1e-6 and pairs["distance"].iloc[1] < 0.02
    assert pairs["same_label"].tolist()[:2] == [True, False]
    assert (pairs["distance"] <= found.threshold).all() and pairs["distance"].is_monotonic_increasing
    assert found.expected_by_chance == pytest.approx(0.5)
    assert "1 exact copies" in found.summary()


def test_without_duplicates_about_the_quantile_of_test_points_pass():
    # The calibration the module docstring promises: q * n_test by chance.
    rng = np.random.default_rng(1)
    train, test = rng.normal(size=(3000, 20)), rng.normal(size=(2000, 20))
    data = Dataset("gauss", torch.from_numpy(train).float(), torch.zeros(3000, dtype=torch.int64),
                   torch.from_numpy(test).float(), torch.zeros(2000, dtype=torch.int64), num_classes=2)
    found = find_near_duplicates(data, quantile=0.05)
    assert found.expected_by_chance == pytest.approx(100)
    assert 65 <= len(found.pairs) <= 135  # Binomial(2000, 0.05): sd ~ 10


def test_features_replace_the_inputs_and_bad_arguments_are_named():
    data = random_images(20, 5)
    train_features = np.random.default_rng(2).normal(size=(20, 6))
    features = (train_features, train_features[[2, 5, 7, 9, 11]] * 3.0)
    found = find_near_duplicates(data, quantile=0.01, features=features)
    assert found.pairs.sort_values("test")["train"].tolist() == [2, 5, 7, 9, 11]
    with pytest.raises(ValueError, match="quantile"):
        find_near_duplicates(data, quantile=1.0)
    with pytest.raises(ValueError, match="one row per point"):
        find_near_duplicates(data, features=(features[0][:3], features[1]))
    with pytest.raises(ValueError, match="at least 2 training"):
        find_near_duplicates(random_images(1, 5))
