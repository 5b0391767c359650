"""The conv family as data: image models by name, training recipes, training paths, :class:`ConvSpec`.

What a profile (``harness.profiles``) names for its conv nets, checked where it is named,
without the code that builds and trains them (``harness.zoo``): a spec trains through
:func:`harness.zoo.train_conv_ensemble`, imported when :meth:`ConvSpec.train` runs, since zoo
imports its recipes and paths from here. ``MLPSpec`` and ``RidgeSpec`` live beside their
trainers in ``harness.train``, which imports no other model module.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Callable, ClassVar

import numpy as np
import torch
from torch.optim.lr_scheduler import LambdaLR

from harness.data import Dataset
from harness.images import DeviceAugment
from harness.train import output_schema, triangular_lr

# ---------------------------------------------------------------------------------------
# Models by name (harness.zoo.MODELS builds them)

VGG6_WIDTHS = (64, 64, 64, 64, 512)
# IMN25 names its VGG variants by parameter count without giving widths; these scale every
# layer of VGG-6 by one factor, chosen to land within 5 % of the named count (32x32x3 inputs,
# 10 classes): 0.52M, 1.00M, 8.25M and 19.9M; VGG-6 itself has 0.41M.
VGG_PRESET_WIDTHS = {
    "vgg6": VGG6_WIDTHS,
    "vgg_0_5m": (72, 72, 72, 72, 576),
    "vgg_1m": (100, 100, 100, 100, 800),
    "vgg_8m": (288, 288, 288, 288, 2304),
    "vgg_20m": (448, 448, 448, 448, 3584),
}

MODEL_NAMES = ("pixel_mlp", "small_cnn", *VGG_PRESET_WIDTHS, "resnet18_cifar", "resnet50_cifar", "vit_tiny",
               "vit_small")


# ---------------------------------------------------------------------------------------
# Recipes


@dataclass(frozen=True)
class Recipe:
    """SGD with momentum, weight decay and a triangular learning rate (``harness.zoo``'s docstring).

    ``RECIPES["paper"]`` is IMN25's (section 5.1, following FZ20): "100 epochs, using a batch
    size of 512, with a triangular learning rate of 0.4, weight decay of 1e-5 for all models",
    momentum 0.9 from its section 4.2. Its ViTs use a peak of 0.1 instead
    (``paper_vit``); its CIFAR-10 repeat without weight decay is ``paper_no_wd``. ``cpu_short``
    trains small_cnn on a few thousand images in minutes on a CPU; ``embedding`` trains the one
    feature extractor of :func:`penultimate_features`; ``smoke`` tests the plumbing only.
    """

    name: str
    epochs: int
    batch_size: int
    peak_lr: float
    momentum: float = 0.9
    weight_decay: float = 5e-4
    peak_at: float = 0.2

    def __post_init__(self):
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1, got {self.epochs}, {self.batch_size}")
        if self.peak_lr <= 0 or not 0.0 < self.peak_at < 1.0:
            raise ValueError(f"peak_lr must be > 0 and peak_at in (0, 1), got {self.peak_lr}, {self.peak_at}")

    def learning_rates(self, total_steps: int) -> np.ndarray:
        """Learning rate of each of ``total_steps`` steps: linear up to ``peak_at``, down to ~0."""
        shares = [triangular_lr(step, total_steps, self.peak_at, first_step=1) for step in range(total_steps)]
        return self.peak_lr * np.array(shares)

    def build(self, params, total_steps: int) -> tuple[torch.optim.SGD, LambdaLR]:
        """The optimizer of ``params`` and its scheduler for a pass of ``total_steps`` steps."""
        return sgd_at_rates(params, self.learning_rates(total_steps), self.momentum, self.weight_decay)


def sgd_at_rates(params, rates, momentum: float, weight_decay: float) -> tuple[torch.optim.SGD, LambdaLR]:
    """SGD with momentum and weight decay whose learning rate at step ``s`` is ``rates[s]``, and
    the scheduler that sets it after each step: a LambdaLR on a base rate of 1, so each step's
    rate is ``rates[s]`` to the bit (1 * r is r)."""
    rates = [float(rate) for rate in rates]
    optimizer = torch.optim.SGD(params, lr=1.0, momentum=momentum, weight_decay=weight_decay)
    # The scheduler steps once after the last step too; that rate is never used.
    return optimizer, LambdaLR(optimizer, lambda step: rates[min(step, len(rates) - 1)])


PAPER_RECIPE = Recipe(name="paper", epochs=100, batch_size=512, peak_lr=0.4, momentum=0.9,
                      weight_decay=1e-5)
RECIPES = {
    "paper": PAPER_RECIPE,
    # IMN25 5.1's variants: its ViTs peak at 0.1; its CIFAR-10 repeat drops weight decay.
    "paper_vit": replace(PAPER_RECIPE, name="paper_vit", peak_lr=0.1),
    "paper_no_wd": replace(PAPER_RECIPE, name="paper_no_wd", weight_decay=0.0),
    "cpu_short": Recipe(name="cpu_short", epochs=8, batch_size=128, peak_lr=0.2, weight_decay=5e-4),
    # One pixel_mlp as a feature extractor: ~5 s on a CPU core for 5,000 MNIST-sized images,
    # 95 % test accuracy on MNIST, 85 % on Fashion-MNIST.
    "embedding": Recipe(name="embedding", epochs=8, batch_size=128, peak_lr=0.1, weight_decay=5e-4),
    "smoke": Recipe(name="smoke", epochs=2, batch_size=128, peak_lr=0.2, weight_decay=5e-4),
}


# ---------------------------------------------------------------------------------------
# Training paths

# How K models train side by side (harness.zoo's docstring): "vmap" maps one model's functional call
# over their stacked weights; "stacked" trains them as one network, stacked along the channels
# (harness.stacked); "loop" trains each as a plain nn.Module, one after another (the reference,
# and the fallback for models neither of the others can hold). "auto": "stacked" for the conv
# nets it holds, "vmap" for the rest (pixel_mlp among them, so its results stay as stored).
PATHS = ("auto", "vmap", "stacked", "loop")
STACKED_MODELS = ("small_cnn", *VGG_PRESET_WIDTHS)
# The names ConvSpec.config stores a path's runs under, where not the path's own: a path whose
# results change in bytes gets a new stored name, so runs of two versions are never mixed.
# "stacked-2": the stacked path with convolutions of one-pixel images computed as matrix products
# on a CPU (harness.stacked).
STORED_PATH_NAMES = {"stacked": "stacked-2"}
# The torch.compile backend of ConvSpec(compiled=True), on every device: the one that generates
# fused kernels (Triton on CUDA, C++ on a CPU). Tests pass "eager" or "aot_eager" to
# harness.zoo.train_conv_ensemble instead, which trace the same graphs without generating code.
COMPILE_BACKEND = "inductor"


def resolve_path(model: str | Callable, path: str = "auto") -> str:
    """The path ``path`` names for ``model`` (a name or a ``harness.zoo.ModelBuilder``): ``"auto"``
    resolved, the others checked; a stored name (:data:`STORED_PATH_NAMES`) names its path."""
    path = {stored: name for name, stored in STORED_PATH_NAMES.items()}.get(path, path)
    if path not in PATHS:
        raise ValueError(f"unknown path {path!r}; known: {', '.join(PATHS)}")
    if path == "auto":
        return "stacked" if isinstance(model, str) and model in STACKED_MODELS else "vmap"
    if path == "stacked" and isinstance(model, str) and model not in STACKED_MODELS:
        raise ValueError(f"{model} does not stack along channels; the stacked path holds {', '.join(STACKED_MODELS)} "
                         f"(and builders of nets like them: harness.stacked.stackable)")
    return path


# ---------------------------------------------------------------------------------------
# The conv family of the one training path


@dataclass(frozen=True)
class ConvSpec:
    """Conv nets of :data:`MODEL_NAMES` trained by :func:`harness.zoo.train_conv_ensemble` with a named recipe.

    ``flip`` and ``translate`` configure :class:`harness.images.DeviceAugment` (no
    augmentation when both are off); ``path`` is how a pass trains its models (:data:`PATHS`),
    named resolved in :meth:`config` unless it is vmap, by its stored name (:data:`STORED_PATH_NAMES`).
    ``compiled`` runs the stacked path's training step through ``torch.compile`` (inductor;
    ``harness.zoo``'s docstring); :meth:`config` names it only when on, since compiled kernels
    round differently and their runs are stored apart. The recipe's values are part of
    :meth:`config`, so changing a recipe changes the store key of every run that used it.
    """

    family: ClassVar[str] = "cnn"
    model: str = "small_cnn"
    recipe: str = "cpu_short"
    flip: bool = False
    translate: int = 0
    models_per_pass: int = 8
    path: str = "auto"
    compiled: bool = False

    def __post_init__(self):
        if self.model not in MODEL_NAMES:
            raise ValueError(f"unknown model {self.model!r}; known: {', '.join(MODEL_NAMES)}")
        if self.recipe not in RECIPES:
            raise ValueError(f"unknown recipe {self.recipe!r}; known: {', '.join(RECIPES)}")
        if self.translate < 0 or self.models_per_pass < 1:
            raise ValueError(f"translate must be >= 0 pixels and models_per_pass >= 1: {self}")
        # Resolved here: a spec rebuilt from its config (harness.worker) equals this one.
        object.__setattr__(self, "path", resolve_path(self.model, self.path))
        if self.compiled and self.path != "stacked":
            raise ValueError(f"compiled=True compiles the stacked path's training step; {self.model} trains on "
                             f"the {self.path} path")

    @property
    def augment(self) -> DeviceAugment | None:
        return DeviceAugment(self.flip, self.translate) if self.flip or self.translate else None

    def config(self) -> dict:
        # The path resolved, since "auto" may change its mind; named only when it is not vmap,
        # the path every run stored before the others existed was trained on (same keys, same bytes).
        # Compiled runs are keyed apart; uncompiled ones keep the keys stored before the switch existed.
        fields = asdict(self)
        path = fields.pop("path")
        stored_path = {"path": STORED_PATH_NAMES.get(path, path)} if path != "vmap" else {}
        compiled = {"compiled": True} if fields.pop("compiled") else {}
        return {"family": self.family, **fields, **stored_path, **compiled,
                "recipe_values": asdict(RECIPES[self.recipe])}

    def schema(self, dataset: Dataset) -> dict:
        return output_schema(dataset)

    def train(self, dataset: Dataset, masks: np.ndarray, seeds: np.ndarray,
              device: str | torch.device = "cpu") -> dict[str, np.ndarray]:
        from harness.zoo import train_conv_ensemble

        return train_conv_ensemble(self.model, dataset, masks, seeds, RECIPES[self.recipe], device,
                                   augment=self.augment, progress=False, path=self.path,
                                   compile_backend=COMPILE_BACKEND if self.compiled else None)
