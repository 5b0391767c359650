"""Small random image data for the conv-path tests: 12x12 images (VGG-6's last convolution then
sees one-pixel maps) and nested masks of different sizes."""

from __future__ import annotations

import numpy as np
import torch

from harness.data import Dataset


def random_images(n_train: int, seed: int) -> Dataset:
    generator = torch.Generator().manual_seed(seed)
    return Dataset(
        name="random", num_classes=10,
        x_train=torch.randint(0, 256, (n_train, 3, 12, 12), dtype=torch.uint8, generator=generator),
        y_train=torch.randint(0, 10, (n_train,), generator=generator),
        x_test=torch.randint(0, 256, (16, 3, 12, 12), dtype=torch.uint8, generator=generator),
        y_test=torch.randint(0, 10, (16,), generator=generator))


def nested_masks(n_train: int, sizes, seed: int) -> np.ndarray:
    """One mask per size, each the first ``size`` points of one random order."""
    order = np.random.default_rng(seed).permutation(n_train)
    masks = np.zeros((len(sizes), n_train), dtype=bool)
    for row, size in zip(masks, sizes):
        row[order[:size]] = True
    return masks
