"""Image grids for the claim reports (matplotlib, headless): the images behind the numbers.

- :func:`highest_memorization_grid`: per class, the training images with the highest
  memorization scores (FZ20's figures of memorized examples), each captioned with its score
  and, where known, the size of its sub-population;
- :func:`pair_grid`: test images above the training images they nearly duplicate
  (:mod:`harness.duplicates`), captioned with distance and labels;
- :func:`subpopulation_grid`: a few inferred sub-populations of each size bin, one row each
  (singletons share a row), so a reader can judge whether they look like sub-populations.

Each returns a Figure for :func:`harness.report.write_case_report`, which saves and closes it.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from harness.data import Dataset  # noqa: E402
from harness.estimators import MemorizationScores  # noqa: E402
from harness.images import CLASS_NAMES  # noqa: E402
from harness.profiles import SIZE_BINS  # noqa: E402

CELL_INCHES = 1.15


def class_name(dataset: Dataset, label: int) -> str:
    names = CLASS_NAMES.get(dataset.name)
    return names[label] if names is not None and label < len(names) else str(label)


def _show(ax, image: torch.Tensor) -> None:
    """One uint8 image (C, H, W): grey for one channel, colour for three."""
    array = image.cpu().numpy()
    if array.shape[0] == 1:
        ax.imshow(array[0], cmap="gray", vmin=0, vmax=255)
    else:
        ax.imshow(array.transpose(1, 2, 0))
    ax.set_xticks([])
    ax.set_yticks([])


def _check_images(dataset: Dataset) -> None:
    if not dataset.is_image or dataset.x_train.dtype != torch.uint8:
        raise ValueError(f"{dataset.name}: image grids need uint8 images (n, C, H, W), got "
                         f"{dataset.x_train.dtype} {tuple(dataset.x_train.shape)}")


def highest_memorization_grid(dataset: Dataset, scores: MemorizationScores, per_class: int = 8,
                              title: str = "") -> Figure:
    """One row per class: its ``per_class`` scored training images with the highest scores."""
    _check_images(dataset)
    if per_class < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}")
    if len(scores) == 0 or scores.points.max() >= dataset.n_train:
        raise ValueError(f"scores must name training points of {dataset.name} (0..{dataset.n_train - 1})")
    labels = dataset.y_train.numpy()[scores.points]
    sizes = dataset.group_size_train
    classes = np.unique(labels)
    fig, axes = plt.subplots(len(classes), per_class, squeeze=False,
                             figsize=(CELL_INCHES * per_class + 1.2, CELL_INCHES * 1.15 * len(classes)))
    for row, label in zip(axes, classes):
        members = np.flatnonzero(labels == label)
        top = members[np.argsort(-scores.score[members], kind="stable")[:per_class]]
        for ax, k in zip(row, top):
            point = int(scores.points[k])
            _show(ax, dataset.x_train[point])
            caption = f"{scores.score[k]:.2f}" + (f", size {sizes[point]}" if sizes[point] else "")
            ax.set_title(caption, fontsize=7, pad=2)
        for ax in row[len(top):]:
            ax.axis("off")
        row[0].set_ylabel(class_name(dataset, int(label)), fontsize=8, rotation=0, ha="right", va="center")
    fig.suptitle(title or f"{dataset.name}: highest {scores.method} memorization per class "
                          "(score, sub-population size)", fontsize=9)
    fig.tight_layout()
    return fig


def pair_grid(dataset: Dataset, pairs: pd.DataFrame, max_pairs: int = 16, per_row: int = 8,
              title: str = "") -> Figure:
    """Each pair as a test image above its training image; ``pairs`` needs columns ``test``,
    ``train`` and ``distance`` (as :meth:`harness.duplicates.NearDuplicates.to_dataframe`).
    The first ``max_pairs`` rows are drawn."""
    _check_images(dataset)
    missing = {"test", "train", "distance"} - set(pairs.columns)
    if missing:
        raise ValueError(f"pairs lacks the columns {sorted(missing)}; it needs test, train and distance")
    shown = pairs.head(max_pairs)
    if len(shown) == 0:
        fig, ax = plt.subplots(figsize=(4, 1.2))
        ax.axis("off")
        ax.text(0.5, 0.5, "no test image is a near-duplicate of a training image", ha="center",
                va="center", fontsize=9)
        ax.set_title(title or dataset.name, fontsize=9)
        return fig
    columns = min(per_row, len(shown))
    blocks = -(-len(shown) // columns)
    fig, axes = plt.subplots(2 * blocks, columns, squeeze=False,
                             figsize=(CELL_INCHES * columns + 0.8, CELL_INCHES * 1.25 * 2 * blocks))
    for ax in axes.flat:
        ax.axis("off")
    y_train, y_test = dataset.y_train.numpy(), dataset.y_test.numpy()
    for k, pair in enumerate(shown.itertuples(index=False)):
        block, column = divmod(k, columns)
        top, bottom = axes[2 * block, column], axes[2 * block + 1, column]
        for ax in (top, bottom):
            ax.axis("on")
        _show(top, dataset.x_test[int(pair.test)])
        _show(bottom, dataset.x_train[int(pair.train)])
        top.set_title(f"test {int(pair.test)}: {class_name(dataset, int(y_test[int(pair.test)]))}\n"
                      f"d = {pair.distance:.3f}", fontsize=6.5, pad=2)
        bottom.set_title(f"train {int(pair.train)}: {class_name(dataset, int(y_train[int(pair.train)]))}",
                         fontsize=6.5, pad=2)
    fig.suptitle(title or f"{dataset.name}: test images (above) and their nearest training images (below)",
                 fontsize=9)
    fig.tight_layout()
    return fig


def subpopulation_grid(dataset: Dataset, rows_per_bin: int = 2, per_row: int = 8, seed: int = 0,
                       title: str = "") -> Figure:
    """Rows of training images: ``rows_per_bin`` random singletons rows, then ``rows_per_bin``
    random small and large sub-populations, one per row (its first ``per_row`` members)."""
    _check_images(dataset)
    sizes, groups = dataset.group_size_train, dataset.group_train
    if not sizes.any():
        raise ValueError(f"{dataset.name} has no sub-populations to show")
    rng = np.random.default_rng(seed)
    rows = []
    singletons = rng.permutation(np.flatnonzero(sizes == 1))[: rows_per_bin * per_row]
    rows += [("singletons", singletons[start:start + per_row]) for start in range(0, len(singletons), per_row)]
    for name in ("small", "large"):
        low, high = SIZE_BINS[name]
        ids = np.unique(groups[(sizes >= low) & (sizes <= high)])
        for group in rng.permutation(ids)[:rows_per_bin]:
            members = np.flatnonzero(groups == group)
            rows.append((f"{name}: size {len(members)}", members[:per_row]))
    fig, axes = plt.subplots(len(rows), per_row, squeeze=False,
                             figsize=(CELL_INCHES * per_row + 1.2, CELL_INCHES * 1.1 * len(rows)))
    y_train = dataset.y_train.numpy()
    for (label, members), row in zip(rows, axes):
        for ax in row:
            ax.axis("off")
        for ax, point in zip(row, members):
            ax.axis("on")
            _show(ax, dataset.x_train[int(point)])
            ax.set_title(class_name(dataset, int(y_train[point])), fontsize=6.5, pad=2)
        row[0].set_ylabel(label, fontsize=7, rotation=0, ha="right", va="center")
        row[0].axis("on")
    fig.suptitle(title or f"{dataset.name}: inferred sub-populations", fontsize=9)
    fig.tight_layout()
    return fig
