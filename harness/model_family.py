"""One's own model as a model family of the one training path.

A :class:`ModelFamily` wraps any callable ``factory(num_classes, input_shape) -> nn.Module``
(``input_shape`` is one input's shape: an image's ``(C, H, W)`` or a feature vector's ``(d,)``)
with a recipe, and is a model family like ``harness.specs.ConvSpec``: ``family``,
``models_per_pass``, ``config()``, ``schema()`` and ``train()``, so
``harness.ensemble.train_ensemble`` trains it through the same masks, seeds, chunks and store as
every family, and every claim study takes it where it takes the suite's.

The recipe is one of three:

- the suite's :class:`harness.specs.Recipe` (SGD with momentum, weight decay, a triangular
  learning rate);
- a :class:`Schedule`: one's own learning-rate function ``schedule(step, total_steps) -> lr``
  with the same SGD;
- an :class:`OwnOptimizer`: one's own ``optimizer(params) -> torch.optim.Optimizer`` and,
  optionally, ``scheduler(optimizer, total_steps) -> LRScheduler``, stepped once after every
  optimizer step (``total_steps``: the pass's steps, which follow from its largest mask, so
  schedules such as ``OneCycleLR`` can be built for them).

K models train side by side, their weights stacked and the forward pass vmap'd over them.
Before the first pass the family tries one vmap'd forward and backward pass of two models on a
few points; a module that cannot be vmap'd (data-dependent control flow, ``.item()``, in-place
updates of captured tensors, ...) trains one model after another instead, with a warning that
quotes why. So does one's own optimizer unless it is one whose update is elementwise
(:data:`ELEMENTWISE_OPTIMIZERS`: SGD, Adam, AdamW, RMSprop; ``tests/test_user_model.py`` pins
the stacked weights' results to the one-by-one loop's, equal up to rounding) with the same
parameter groups on the stacked weights as on one model's: an optimizer that mixes a tensor's
entries (LBFGS's line search, a layer-wise norm, a factored second moment) or groups parameters
by their shape would couple the models through their stacked weights, and the warning says
which. Rounding: Adam and RMSprop divide a gradient by its own size, so a gradient that is zero
up to rounding (a bias before a BatchNorm) moves its weight by the learning rate in a direction
the rounding picks, and the two paths' results then differ visibly, as two runs would.

Images (uint8 ``(n, C, H, W)``) are normalised per channel with the training split's statistics;
features (float32 ``(n, d)``) reach the model as given. Every recipe trains through the suite's
one training loop, :func:`harness.zoo.train_conv_ensemble` (its vmap or loop path), which takes
the optimizer and scheduler the recipe builds (``build(params, total_steps)``): a model's seed
fixes its initial weights and its batches (two streams derived from it), each epoch a
permutation of its own training points wrapped to the longest mask's steps.

The store key (``config()``) holds the factory's qualified name and a hash of its source
together with the source of every class of one's own in the model it builds (modules outside
``torch``), the model's printed architecture, the recipe's values (a schedule's source; an own
optimizer's and scheduler's source, the optimizer they build and the learning rates of a
nominal run of :data:`SCHEDULE_PROBE_STEPS` steps, which hold what the source refers to from
outside it) and the input shape: changing a line of the factory, of one's own layers, of the
optimizer or of the schedule gives new runs of this family and leaves every other run as it was.
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
from torch.func import functional_call, stack_module_state, vmap
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau

from harness import zoo
from harness.data import Dataset
from harness.images import Normalization, channel_mean_std
from harness.specs import RECIPES, Recipe, sgd_at_rates
from harness.train import output_schema

ModelFactory = Callable[[int, tuple], nn.Module]
"""``factory(num_classes, input_shape)``: a freshly initialised model for inputs of ``input_shape``."""
OptimizerFactory = Callable[[list], torch.optim.Optimizer]
"""``optimizer(params)``: an optimizer of the list of one model's (or the stacked models') parameters."""
SchedulerFactory = Callable[[torch.optim.Optimizer, int], LRScheduler]
"""``scheduler(optimizer, total_steps)``: a learning-rate scheduler, stepped after every optimizer step."""

PROBE_POINTS = 4
# One vmap probe at a time: passes start on several threads at once (harness.ensemble).
_PROBING = threading.Lock()
# Optimizers whose update of a tensor is elementwise, the same on K models' stacked weights as on
# each model's own: tests/test_user_model.py pins each to the one-by-one loop's results.
ELEMENTWISE_OPTIMIZERS = (torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW, torch.optim.RMSprop)
# The nominal run whose learning rates key an own scheduler (config()): long enough for warm-ups
# and decays to show.
SCHEDULE_PROBE_STEPS = 64


def source_hash(function) -> str:
    """A hash of ``function``'s source (its bytecode and constants where the source is not on disk)."""
    try:
        text = inspect.getsource(function)
    except (OSError, TypeError):
        code = getattr(function, "__code__", None)
        text = repr(type(function)) if code is None else repr((code.co_code, code.co_consts, code.co_names))
    return _text_hash(text)


def _text_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _own_classes_hash(model: nn.Module) -> str:
    """A hash of the source of every module class in ``model`` that is not torch's own."""
    sources = []
    for cls in sorted({type(m) for m in model.modules()}, key=lambda c: f"{c.__module__}.{c.__qualname__}"):
        if cls.__module__.split(".")[0] not in ("torch", "torchvision"):
            sources.append(f"{cls.__module__}.{cls.__qualname__}:{source_hash(cls)}")
    return _text_hash("\n".join(sources))


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

    def build(self, params, total_steps: int) -> tuple[torch.optim.SGD, LRScheduler]:
        """The optimizer of ``params`` and its scheduler for a pass of ``total_steps`` steps."""
        return sgd_at_rates(params, self.learning_rates(total_steps), self.momentum, self.weight_decay)

    def values(self) -> dict:
        return {"schedule": source_hash(self.schedule), "epochs": self.epochs, "batch_size": self.batch_size,
                "momentum": self.momentum, "weight_decay": self.weight_decay}


@dataclass(frozen=True)
class OwnOptimizer:
    """One's own optimizer and, optionally, learning-rate scheduler (module docstring)."""

    optimizer: OptimizerFactory
    epochs: int
    batch_size: int
    scheduler: SchedulerFactory | None = None
    name: str = "own optimizer"

    def __post_init__(self):
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1, got {self.epochs}, {self.batch_size}")
        if not callable(self.optimizer) or not (self.scheduler is None or callable(self.scheduler)):
            raise ValueError(f"{self.name}: optimizer must be a callable params -> torch.optim.Optimizer and "
                             f"scheduler None or a callable (optimizer, total_steps) -> LRScheduler")

    def build(self, params, total_steps: int) -> tuple[torch.optim.Optimizer, LRScheduler | None]:
        """The optimizer of ``params`` and its scheduler for ``total_steps`` steps, checked."""
        optimizer = self.optimizer(list(params))
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"{self.name}: the optimizer factory returned a {type(optimizer).__name__}, "
                            f"not a torch.optim.Optimizer")
        if self.scheduler is None:
            return optimizer, None
        scheduler = self.scheduler(optimizer, total_steps)
        if isinstance(scheduler, ReduceLROnPlateau) or not isinstance(scheduler, LRScheduler):
            raise TypeError(f"{self.name}: the scheduler factory returned a {type(scheduler).__name__}; the "
                            f"suite steps a torch.optim.lr_scheduler.LRScheduler once per training step, "
                            f"without a metric (ReduceLROnPlateau waits for one)")
        return optimizer, scheduler

    def values(self, model: nn.Module) -> dict:
        """What keys the runs: the factories' source, the optimizer they build for ``model`` and
        the learning rates of a nominal run (values the source refers to from outside it)."""
        optimizer, scheduler = self.build(copy.deepcopy(model).parameters(), SCHEDULE_PROBE_STEPS)
        rates = []
        with warnings.catch_warnings():
            # "lr_scheduler.step() before optimizer.step()": no optimizer steps in a nominal run.
            warnings.simplefilter("ignore", UserWarning)
            for _ in range(SCHEDULE_PROBE_STEPS if scheduler is not None else 1):
                rates.append([group["lr"] for group in optimizer.param_groups])
                if scheduler is not None:
                    scheduler.step()
        return {"optimizer": source_hash(self.optimizer), "built": _text_hash(repr(optimizer)),
                "scheduler": None if self.scheduler is None else source_hash(self.scheduler),
                "rates": _text_hash(repr(rates)), "epochs": self.epochs, "batch_size": self.batch_size}


AnyRecipe = Recipe | Schedule | OwnOptimizer


@dataclass(frozen=True, eq=False)
class ModelFamily:
    """One's own model as a family of the one training path (module docstring)."""

    factory: ModelFactory
    num_classes: int
    input_shape: tuple
    recipe: AnyRecipe = field(default_factory=lambda: RECIPES["cpu_short"])
    name: str | None = None
    models_per_pass: int = 8

    def __post_init__(self):
        object.__setattr__(self, "input_shape", tuple(int(d) for d in self.input_shape))
        if len(self.input_shape) not in (1, 3):
            raise ValueError(f"input_shape is one image's (C, H, W) or one feature vector's (d,), "
                             f"got {self.input_shape}")
        if self.num_classes < 2 or self.models_per_pass < 1:
            raise ValueError(f"num_classes must be >= 2 and models_per_pass >= 1, got {self.num_classes}, "
                             f"{self.models_per_pass}")
        if not callable(self.factory):
            raise ValueError(f"factory must be a callable (num_classes, input_shape) -> nn.Module, got {self.factory!r}")
        if not isinstance(self.recipe, (Recipe, Schedule, OwnOptimizer)):
            raise ValueError(f"recipe must be a harness.specs.Recipe, a Schedule or an OwnOptimizer, "
                             f"got {type(self.recipe).__name__}")

    @property
    def family(self) -> str:
        return self.name or getattr(self.factory, "__name__", type(self.factory).__name__)

    @property
    def on_images(self) -> bool:
        return len(self.input_shape) == 3

    def build(self) -> nn.Module:
        """One freshly initialised model (from torch's global RNG), checked to be an ``nn.Module``."""
        model = self.factory(self.num_classes, self.input_shape)
        if not isinstance(model, nn.Module):
            raise TypeError(f"{self.family}: the factory returned a {type(model).__name__}, not an nn.Module")
        return model

    def seeded_models(self, seeds) -> list[nn.Module]:
        """One model per seed, each initialised from its seed as training initialises it."""
        return zoo.seeded_models(self._builder(), seeds, self.num_classes, self.input_shape[0],
                                 self.input_shape[1] if self.on_images else None)

    @cached_property
    def _identity(self) -> dict:
        """What keys the model and its recipe, from one model built as training builds them."""
        model = self.seeded_models([0])[0]
        if isinstance(self.recipe, OwnOptimizer):
            recipe = self.recipe.values(model)   # the optimizer it builds for this model
        else:
            recipe = self.recipe.values() if isinstance(self.recipe, Schedule) else asdict(self.recipe)
        return {"source": source_hash(self.factory), "classes": _own_classes_hash(model),
                "architecture": _text_hash(repr(model)), "recipe": recipe}

    def config(self) -> dict:
        factory = f"{getattr(self.factory, '__module__', '?')}.{getattr(self.factory, '__qualname__', self.family)}"
        return {"family": self.family, "factory": factory, **self._identity, "num_classes": self.num_classes,
                "input_shape": list(self.input_shape), "models_per_pass": self.models_per_pass}

    def schema(self, dataset: Dataset) -> dict:
        return output_schema(dataset)

    def check(self, dataset: Dataset) -> None:
        """A ValueError naming the mismatch when ``dataset`` is not what this family is built for."""
        kind = "images" if self.on_images else "features"
        if self.on_images != dataset.is_image:
            given = "uint8 images" if dataset.is_image else f"{dataset.x_train.dtype} features"
            raise ValueError(f"{self.family} is built for {kind} of shape {self.input_shape}; {dataset.name} holds "
                             f"{given} of shape {tuple(dataset.x_train.shape[1:])}")
        if tuple(dataset.x_train.shape[1:]) != self.input_shape or dataset.num_classes != self.num_classes:
            raise ValueError(f"{self.family} is built for {self.num_classes} classes of {self.input_shape} {kind}; "
                             f"{dataset.name} has {dataset.num_classes} classes of "
                             f"{tuple(dataset.x_train.shape[1:])} {kind}")

    def _builder(self):
        def builder(num_classes, in_channels, image_size):
            return self.build()

        builder.__name__ = self.family
        return builder

    def vmap_problem(self, dataset: Dataset) -> str | None:
        """Why two of these models cannot train side by side under vmap, or None when they can."""
        models = self.seeded_models([0, 1])
        x, y = dataset.x_train[:PROBE_POINTS], dataset.y_train[:PROBE_POINTS]
        if dataset.is_image:
            x = Normalization(*channel_mean_std(dataset.x_train), "cpu")(x)
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
        return self.stacked_optimizer_problem(models)

    def stacked_optimizer_problem(self, models: list[nn.Module]) -> str | None:
        """Why one's own optimizer would not train stacked weights as it trains each model's, or None."""
        if not isinstance(self.recipe, OwnOptimizer):
            return None
        params, _ = stack_module_state(models)
        stacked, _ = self.recipe.build(params.values(), SCHEDULE_PROBE_STEPS)
        alone, _ = self.recipe.build(models[0].parameters(), SCHEDULE_PROBE_STEPS)
        if type(stacked) not in ELEMENTWISE_OPTIMIZERS:
            return (f"its optimizer, {type(stacked).__name__}, is none of those checked to update each weight "
                    f"on its own ({', '.join(o.__name__ for o in ELEMENTWISE_OPTIMIZERS)}): on stacked weights it "
                    f"could couple the models")
        if _groups(stacked, list(params.values())) != _groups(alone, list(models[0].parameters())):
            return ("its optimizer puts the stacked weights in other parameter groups than one model's "
                    "(grouped by shape or size?)")
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
                      f"(the loop path): slower, the same models", stacklevel=3)
        self._paths[shape] = "loop"
        return "loop"

    def train(self, dataset: Dataset, masks: np.ndarray, seeds: np.ndarray,
              device: str | torch.device = "cpu") -> dict[str, np.ndarray]:
        self.check(dataset)
        return train_models(self, dataset, masks, seeds, device, self.path_for(dataset))


def _groups(optimizer: torch.optim.Optimizer, params: list) -> list:
    """Each parameter group as the positions of its parameters in ``params`` and its options."""
    position = {id(p): i for i, p in enumerate(params)}
    return [([position.get(id(p)) for p in group["params"]],
             repr({name: value for name, value in group.items() if name != "params"}))
            for group in optimizer.param_groups]


def train_models(family: ModelFamily, dataset: Dataset, masks: np.ndarray, seeds, device: str | torch.device = "cpu",
                 path: str = "vmap") -> dict[str, np.ndarray]:
    """K models of ``family``, model k on the points in ``masks[k]`` from ``seeds[k]``, on ``path``
    (``"vmap"``: stacked weights; ``"loop"``: one after another; the same models), through the
    training loop of the suite's conv nets (:func:`harness.zoo.train_conv_ensemble`): the arrays
    of ``harness.train.output_schema``. Raises ``TrainingDiverged`` on a NaN or infinite loss."""
    if path not in ("vmap", "loop"):
        raise ValueError(f"path is 'vmap' or 'loop', got {path!r}")
    return zoo.train_conv_ensemble(family._builder(), dataset, masks, seeds, family.recipe, device, progress=False,
                                   path=path)
