"""One's own model as a model family of the one training path.

A :class:`ModelFamily` wraps any callable ``factory(num_classes, input_shape) -> nn.Module``
(``input_shape`` is one image's ``(C, H, W)``) with a recipe, and is a model family like
``harness.zoo.ConvSpec``: ``family``, ``models_per_pass``, ``config()``, ``schema()`` and
``train()``, so ``harness.ensemble.train_ensemble`` trains it through the same masks, seeds,
chunks and store as every family, and every claim study takes it where it takes the suite's.

Training is :func:`harness.zoo.train_conv_ensemble` with the factory as its model builder: K
models side by side, their weights stacked and the forward pass vmap'd over them. Before the
first pass the family tries one vmap'd forward and backward pass of two models on a few
points; a module that cannot be vmap'd (data-dependent control flow, ``.item()``, in-place
updates of captured tensors, ...) trains one model after another instead (zoo's ``loop`` path),
with a warning that quotes why. The inputs are uint8 images, normalised per channel by zoo.

The recipe is the suite's :class:`harness.zoo.Recipe` (SGD with momentum, weight decay, a
triangular learning rate) or a :class:`Schedule`: one's own learning-rate function
``schedule(step, total_steps) -> lr`` with the same SGD.

The store key (``config()``) holds the factory's qualified name and a hash of its source
together with the source of every class of one's own in the model it builds (modules outside
``torch``), the model's printed architecture, the recipe's values (a schedule's source) and the
input shape: changing a line of the factory or of one's own layers gives new runs of this
family and leaves every other run as it was.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import threading
import warnings
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from harness import zoo
from harness.data import Dataset
from harness.train import output_schema

ModelFactory = Callable[[int, tuple], nn.Module]
"""``factory(num_classes, input_shape)``: a freshly initialised model for images ``(C, H, W)``."""

PROBE_POINTS = 4
# One vmap probe at a time: passes start on several threads at once (harness.ensemble).
_PROBING = threading.Lock()


def source_hash(function) -> str:
    """A hash of ``function``'s source (its bytecode and constants where the source is not on disk)."""
    try:
        text = inspect.getsource(function)
    except (OSError, TypeError):
        code = getattr(function, "__code__", None)
        text = repr(type(function)) if code is None else repr((code.co_code, code.co_consts, code.co_names))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _own_classes_hash(model: nn.Module) -> str:
    """A hash of the source of every module class in ``model`` that is not torch's own."""
    sources = []
    for cls in sorted({type(m) for m in model.modules()}, key=lambda c: f"{c.__module__}.{c.__qualname__}"):
        if cls.__module__.split(".")[0] not in ("torch", "torchvision"):
            sources.append(f"{cls.__module__}.{cls.__qualname__}:{source_hash(cls)}")
    return hashlib.sha256("\n".join(sources).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Schedule:
    """One's own learning rates with SGD: ``schedule(step, total_steps) -> lr`` for steps 0 .. T-1."""

    schedule: Callable[[int, int], float]
    epochs: int
    batch_size: int
    momentum: float = 0.9
    weight_decay: float = 5e-4
    name: str = "own schedule"

    def __post_init__(self):
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1, got {self.epochs}, {self.batch_size}")

    def learning_rates(self, total_steps: int) -> np.ndarray:
        rates = np.array([float(self.schedule(step, total_steps)) for step in range(total_steps)])
        if not np.isfinite(rates).all() or (rates < 0).any():
            raise ValueError(f"{self.name}: the schedule gave a negative or non-finite learning rate")
        return rates

    def values(self) -> dict:
        return {"schedule": source_hash(self.schedule), "epochs": self.epochs, "batch_size": self.batch_size,
                "momentum": self.momentum, "weight_decay": self.weight_decay}


@dataclass(frozen=True, eq=False)
class ModelFamily:
    """One's own model as a family of the one training path (module docstring)."""

    factory: ModelFactory
    num_classes: int
    input_shape: tuple
    recipe: zoo.Recipe | Schedule = field(default_factory=lambda: zoo.RECIPES["cpu_short"])
    name: str | None = None
    models_per_pass: int = 8

    def __post_init__(self):
        object.__setattr__(self, "input_shape", tuple(int(d) for d in self.input_shape))
        if len(self.input_shape) != 3:
            raise ValueError(f"input_shape is one image's (C, H, W), got {self.input_shape}")
        if self.num_classes < 2 or self.models_per_pass < 1:
            raise ValueError(f"num_classes must be >= 2 and models_per_pass >= 1, got {self.num_classes}, "
                             f"{self.models_per_pass}")
        if not callable(self.factory):
            raise ValueError(f"factory must be a callable (num_classes, input_shape) -> nn.Module, got {self.factory!r}")

    @property
    def family(self) -> str:
        return self.name or getattr(self.factory, "__name__", type(self.factory).__name__)

    def build(self) -> nn.Module:
        """One freshly initialised model (from torch's global RNG), checked to be an ``nn.Module``."""
        model = self.factory(self.num_classes, self.input_shape)
        if not isinstance(model, nn.Module):
            raise TypeError(f"{self.family}: the factory returned a {type(model).__name__}, not an nn.Module")
        return model

    def _seeded_models(self, count: int) -> list[nn.Module]:
        # zoo seeds torch's global RNG for each model it builds, under its lock, on several
        # threads at once: a model built here without that lock could shift theirs.
        with zoo._GLOBAL_RNG, torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return [self.build() for _ in range(count)]

    @cached_property
    def _identity(self) -> dict:
        model = self._seeded_models(1)[0]
        return {"source": source_hash(self.factory), "classes": _own_classes_hash(model),
                "architecture": hashlib.sha256(repr(model).encode()).hexdigest()[:16]}

    def config(self) -> dict:
        recipe = self.recipe.values() if isinstance(self.recipe, Schedule) else asdict(self.recipe)
        factory = f"{getattr(self.factory, '__module__', '?')}.{getattr(self.factory, '__qualname__', self.family)}"
        return {"family": self.family, "factory": factory, **self._identity, "num_classes": self.num_classes,
                "input_shape": list(self.input_shape), "recipe": recipe, "models_per_pass": self.models_per_pass}

    def schema(self, dataset: Dataset) -> dict:
        return output_schema(dataset)

    def check(self, dataset: Dataset) -> None:
        """A ValueError naming the mismatch when ``dataset`` is not what this family is built for."""
        if not dataset.is_image or dataset.x_train.dtype != torch.uint8:
            raise ValueError(f"{self.family} trains on uint8 images (n, C, H, W); {dataset.name} holds "
                             f"{dataset.x_train.dtype} inputs of shape {tuple(dataset.x_train.shape)} (use the suite's "
                             f"'mlp' or 'ridge' family for features)")
        if tuple(dataset.x_train.shape[1:]) != self.input_shape or dataset.num_classes != self.num_classes:
            raise ValueError(f"{self.family} is built for {self.num_classes} classes of {self.input_shape} images; "
                             f"{dataset.name} has {dataset.num_classes} classes of "
                             f"{tuple(dataset.x_train.shape[1:])} images")

    def _builder(self):
        def builder(num_classes, in_channels, image_size):
            return self.build()

        builder.__name__ = self.family
        return builder

    def vmap_problem(self, dataset: Dataset) -> str | None:
        """Why two of these models cannot train side by side under vmap, or None when they can."""
        from torch.func import functional_call, stack_module_state, vmap

        from harness.images import channel_mean_std, normalize

        models = self._seeded_models(2)
        x = dataset.x_train[:PROBE_POINTS]
        x = normalize(x, *channel_mean_std(x))
        y = dataset.y_train[:PROBE_POINTS]
        try:
            params, buffers = stack_module_state(models)
            skeleton = copy.deepcopy(models[0]).to("meta")

            def loss_of_one(p, b, x, y):
                return F.cross_entropy(functional_call(skeleton, (p, b), (x,)).float(), y)

            skeleton.train()
            vmap(loss_of_one)(params, buffers, x.expand(2, *x.shape), y.expand(2, *y.shape)).sum().backward()
            skeleton.eval()
            with torch.no_grad():
                vmap(lambda p, b, x: functional_call(skeleton, (p, b), (x,)), in_dims=(0, 0, None))(params, buffers, x)
        except Exception as error:   # whatever vmap refuses, the loop can still train
            return f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"
        return None

    @cached_property
    def _paths(self) -> dict:
        return {}

    def path_for(self, dataset: Dataset) -> str:
        """``"vmap"``, or ``"loop"`` with a warning saying why (module docstring); probed once per data shape."""
        shape = tuple(dataset.x_train.shape[1:])
        with _PROBING:
            return self._paths.get(shape) or self._probe(dataset, shape)

    def _probe(self, dataset: Dataset, shape: tuple) -> str:
        problem = self.vmap_problem(dataset)
        if problem is None:
            self._paths[shape] = "vmap"
            return "vmap"
        warnings.warn(f"{self.family} cannot be vmap'd ({problem}); its models train one after another "
                      f"(zoo's loop path): slower, the same models", stacklevel=3)
        self._paths[shape] = "loop"
        return "loop"

    def train(self, dataset: Dataset, masks: np.ndarray, seeds: np.ndarray,
              device: str | torch.device = "cpu") -> dict[str, np.ndarray]:
        self.check(dataset)
        return zoo.train_conv_ensemble(self._builder(), dataset, masks, seeds, self.recipe, device,
                                       progress=False, path=self.path_for(dataset))
