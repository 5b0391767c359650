"""Image grids of the reports (harness.image_plots) on tiny random images."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure

from harness import image_plots
from harness.data import Dataset, digits
from harness.estimators import MemorizationScores


@pytest.fixture(scope="module")
def fashion() -> Dataset:
    generator = torch.Generator().manual_seed(0)
    return Dataset(
        name="fashion-mnist", num_classes=10,
        x_train=torch.randint(0, 256, (30, 1, 6, 6), dtype=torch.uint8, generator=generator),
        y_train=torch.arange(30) % 3,
        x_test=torch.randint(0, 256, (9, 1, 6, 6), dtype=torch.uint8, generator=generator),
        y_test=torch.arange(9) % 3,
        group_train=np.arange(30) // 2, group_test=np.arange(9))


def scores_of(points: np.ndarray, values: np.ndarray) -> MemorizationScores:
    n = np.full(len(points), 10)
    return MemorizationScores("test", points, values, values - 0.1, values + 0.1, n, n, n, n)


def titles(fig: Figure) -> list[str]:
    return [ax.get_title() for ax in fig.axes if ax.get_title()]


def test_memorization_grid_shows_each_class_highest_first(fashion):
    points = np.arange(0, 30, 2)  # every other point scored: classes 0, 2, 1, 0, 2, ...
    fig = image_plots.highest_memorization_grid(fashion, scores_of(points, points / 30), per_class=4)
    assert len(fig.axes) == 3 * 4
    first_row = titles(fig)[:4]
    assert first_row[0].startswith(f"{24 / 30:.2f}") and first_row[0].endswith("size 2")
    assert [float(t.split(",")[0]) for t in first_row] == sorted((float(t.split(",")[0]) for t in first_row),
                                                                 reverse=True)
    assert fig.axes[0].get_ylabel() == "T-shirt/top"
    fig.savefig(io.BytesIO())


def test_pair_grid_puts_each_test_image_above_its_training_image(fashion):
    pairs = pd.DataFrame({"test": [4, 1], "train": [12, 7], "distance": [0.01, 0.2]})
    fig = image_plots.pair_grid(fashion, pairs, per_row=8)
    top_row, bottom_row = fig.axes[:2], fig.axes[2:4]  # two pairs: two columns
    assert top_row[0].get_title().startswith("test 4: Trouser") and "d = 0.010" in top_row[0].get_title()
    assert bottom_row[0].get_title() == "train 12: T-shirt/top"
    assert bottom_row[1].get_title() == "train 7: Trouser"
    empty = image_plots.pair_grid(fashion, pairs.head(0))
    assert "no test image" in empty.axes[0].texts[0].get_text()


def test_grids_reject_features_and_incomplete_pairs(fashion):
    features = digits()
    with pytest.raises(ValueError, match="uint8 images"):
        image_plots.highest_memorization_grid(features, scores_of(np.arange(3), np.ones(3)))
    with pytest.raises(ValueError, match="distance"):
        image_plots.pair_grid(fashion, pd.DataFrame({"test": [1], "train": [2]}))
    with pytest.raises(ValueError, match="training points"):
        image_plots.highest_memorization_grid(fashion, scores_of(np.array([40]), np.ones(1)))


def test_subpopulation_grid_shows_singleton_rows_then_one_row_per_small_and_large_subpopulation(fashion):
    from dataclasses import replace

    groups = np.concatenate([np.arange(5), np.repeat([5, 6], 3), np.repeat([7, 8], 11)])  # 5 singletons
    data = replace(fashion, x_train=fashion.x_train.repeat(2, 1, 1, 1)[: len(groups)],
                   y_train=torch.zeros(len(groups), dtype=torch.long), group_train=groups)
    fig = image_plots.subpopulation_grid(data, rows_per_bin=2, per_row=4)
    labels = [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()]
    assert labels == ["singletons", "singletons", "small: size 3", "small: size 3", "large: size 11", "large: size 11"]
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 5 + 3 + 3 + 4 + 4  # singletons fill 4 + 1, each sub-population up to per_row
    with pytest.raises(ValueError, match="no sub-populations"):
        image_plots.subpopulation_grid(replace(data, group_train=None))
