"""Image models, training recipes, and training many conv nets at once on one device.

Models (:func:`build` by name): ``pixel_mlp`` (a two-hidden-layer MLP on pixels) and a
CPU-sized ``small_cnn``; the VGG of IMN25's appendix A.1,

    conv 64 -> maxpool -> 64 -> maxpool -> 64 -> maxpool -> 64 -> maxpool -> 512 -> maxpool -> FC,

each conv a 3x3 convolution + BatchNorm + ReLU, in IMN25's sizes (``vgg6`` and the widened
``vgg_0_5m`` .. ``vgg_20m``, named by their parameter count on 32x32 CIFAR-10); ResNet-18/50
with the CIFAR stem (3x3 stride-1 first convolution, no max-pool); ViT tiny/small with 4x4
patches.

Ensembles (:func:`train_conv_ensemble`): K models of one architecture train side by side.
Model k sees only the training points in row k of ``masks``: each epoch it visits a
permutation of them drawn from its own generator, in batches of ``B``; a model with fewer
points wraps around (position ``% m_k``) so every model takes the same ``ceil(max_k m_k / B)``
steps per epoch. A model's seed alone fixes its initial weights and its batches and
augmentations (two independent streams derived from it), whichever way the K models are
trained (``path``):

- ``"stacked"`` (:mod:`harness.stacked`; the default for ``small_cnn`` and the VGGs): one
  network whose activations are ``(N, K C, H, W)``, convolutions grouped by model (on a CPU,
  those of one-pixel maps a matrix product per model), ``BatchNorm2d(K C)`` (per-model batch
  and running statistics), the head one einsum; channels-last on CUDA from the input on, no
  copies between layouts;
- ``"vmap"`` (the default for every other model, ``pixel_mlp`` among them): the weights
  stacked along a leading axis (``torch.func.stack_module_state``), one model's
  ``functional_call`` vectorised over it (``torch.func.vmap``); BatchNorm's stacked running
  statistics are updated in place;
- ``"loop"``: each model a plain ``nn.Module`` trained alone, one after another: the
  reference the others are tested against, and the path for models neither can hold.

The paths train the same models: on a CPU they agree to floating-point rounding
(``tests/test_stacked.py``: margins and running statistics within 1e-4 after 20 steps; a
chaotic recipe, such as VGG-6 on random labels at a peak rate of 0.01, amplifies rounding
into visible differences, as it does between two runs whose weights differ in the 7th digit).
A run's bytes depend on its path, so ``harness.specs.ConvSpec.config`` names the path (when not vmap,
the path of the runs stored before the others existed).

What is bit-identical where: on a CPU the same seeds, masks, path and thread count give
bit-identical results, so an interrupted run resumes exactly (``harness.ensemble`` runs every
pass on one thread for this); a model's results do not depend on the other models of its
pass beyond the rounding of batched kernels. On CUDA they do not repeat bit for bit: cuDNN
chooses its algorithms by timing them (``cudnn.benchmark``, on for speed), atomics reorder
float sums, and bfloat16 autocast rounds the forward pass, so a resumed CUDA run is equal in
distribution to an uninterrupted one (same seeds, batches and recipe), not in its bytes.

Each pass builds its constants once: the inputs move to the device once as uint8
``(n, H, W, C)`` (the one layout conversion), the normalisation constants are device
tensors checked on the host before training (:class:`harness.images.Normalization`), flips and
translations are one gather of the uint8 pixels before normalising
(:func:`harness.images.gather_images`), batch orders are copied from pinned memory without
waiting, and each epoch's losses reach the host asynchronously and are checked for divergence
an epoch later: nothing in a training step waits for the device.

Compiling the step is opt-in (``compile_backend``; ``ConvSpec(compiled=True)`` asks for
inductor): on the stacked path the forward pass and the loss (:func:`stacked_losses`) run
through ``torch.compile``, and so the backward pass runs the compiled graph's backward. The
optimizer's update and the scheduler stay eager, so the learning rate never enters a graph
and a schedule cannot recompile it. The update is not compiled because neither way is clean:
``optimizer.step`` compiled recompiles for every new optimizer (one a pass) and, past dynamo's
recompile limit (8), runs eagerly again; a functional SGD update compiles once for all passes but
bypasses the recipe's optimizer, which its scheduler warns about and a recipe of one's own would
not follow. Graphs are specialised to a pass's shapes (``dynamic=False``) and reused by later
passes of the same shapes in the process; past the recompile limit of distinct shapes a step runs
eagerly (dynamo warns). A pass counts the graphs compiled while it trained (``graphs_compiled``;
0 when an earlier pass compiled them, or when the limit left it eager) and those compiled after
its first step (``recompiles``: 0 unless something in the step changes between steps).
Evaluation stays eager. On a CPU the compiled step
(``aot_eager``: the same graphs, no generated code) trains the eager step's models to rounding
(``tests/test_compiled.py``). The default step is not compiled: ``torch.compile`` of the
stacked small_cnn's forward and backward took 83 s before its first step on this project's
2-core CPU (inductor's C++ code generation), longer than a smoke run trains. What compiling
costs and gains where a GPU is (compile time, models/s) is still to be measured:
``harness.bench.conv_figures`` times it on CUDA, in the GPU check's ``conv_compiled`` section.

Learning rate, triangular (step ``s`` of ``T``, peak
``w = max(1, peak_at * T)``; :func:`harness.train.triangular_lr` counting steps from 1):

    lr(s) = peak_lr * min((s + 1) / w, (T - s) / (T + 1 - w)).

Outputs per model and point: the margin ``logit[y] - max_{c != y} logit[c]`` (positive iff
the point is classified correctly) and the SPP score (maximum softmax probability).

``harness.specs.ConvSpec`` makes these ensembles a model family of the one training path
(``harness.ensemble.train_ensemble``), like ``MLPSpec`` and ``RidgeSpec`` in ``harness.train``.
:func:`penultimate_features` trains one model and returns what its last layer sees, an
embedding for clustering images into sub-populations.
"""

from __future__ import annotations

import copy
import math
import threading
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from harness.data import Dataset
from harness.images import DeviceAugment, Normalization, channel_mean_std, gather_images
from harness.masks import checked_masks
from harness.specs import VGG6_WIDTHS, VGG_PRESET_WIDTHS, Recipe, resolve_path
from harness.stacked import StackedConvNet
from harness.train import TrainingDiverged, margins


# ---------------------------------------------------------------------------------------
# Models


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """3x3 convolution (no bias: BatchNorm has one) + BatchNorm + ReLU."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


def pixel_mlp(num_classes: int, in_channels: int, image_size: int,
              widths: tuple[int, ...] = (256, 128)) -> nn.Module:
    """A ReLU MLP on the flattened pixels: a feature extractor ~30x cheaper than ``small_cnn``."""
    layers, fan_in = [nn.Flatten()], in_channels * image_size * image_size
    for width in widths:
        layers += [nn.Linear(fan_in, width), nn.ReLU(inplace=True)]
        fan_in = width
    return nn.Sequential(*layers, nn.Linear(fan_in, num_classes))


def small_cnn(num_classes: int, in_channels: int, width: int = 32) -> nn.Module:
    """Three conv blocks (width, 2 width, 2 width) with two max-pools and a global average pool."""
    return nn.Sequential(
        conv_block(in_channels, width), nn.MaxPool2d(2),
        conv_block(width, 2 * width), nn.MaxPool2d(2),
        conv_block(2 * width, 2 * width),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, num_classes))


def vgg(num_classes: int, in_channels: int, widths: tuple[int, ...] = VGG6_WIDTHS) -> nn.Module:
    """IMN25's VGG: a conv block then a 2x2 max-pool per width, global max-pool, linear layer.

    The max-pools round up (``ceil_mode``), so 28x28 inputs shrink 28-14-7-4-2-1 like 32x32
    ones do 32-16-8-4-2-1; the global pool makes the classifier independent of input size.
    """
    if not widths:
        raise ValueError("vgg needs at least one width")
    layers, channels = [], in_channels
    for width in widths:
        layers += [conv_block(channels, width), nn.MaxPool2d(2, ceil_mode=True)]
        channels = width
    layers += [nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes)]
    return nn.Sequential(*layers)


def _resnet_cifar(constructor, num_classes: int, in_channels: int) -> nn.Module:
    model = constructor(num_classes=num_classes)
    # CIFAR images are too small for ImageNet's 7x7 stride-2 stem and max-pool.
    model.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    model.maxpool = nn.Identity()
    return model


# torchvision is imported where its models are built: importing it takes seconds, and every
# process that reads the profiles imports this module.
def resnet18_cifar(num_classes: int, in_channels: int) -> nn.Module:
    import torchvision

    return _resnet_cifar(torchvision.models.resnet18, num_classes, in_channels)


def resnet50_cifar(num_classes: int, in_channels: int) -> nn.Module:
    import torchvision

    return _resnet_cifar(torchvision.models.resnet50, num_classes, in_channels)


def vit(num_classes: int, in_channels: int, image_size: int, patch_size: int = 4,
        hidden_dim: int = 192, num_layers: int = 12, num_heads: int = 3,
        mlp_ratio: int = 4) -> nn.Module:
    """torchvision's VisionTransformer for small images (``image_size`` divisible by ``patch_size``)."""
    import torchvision

    if image_size % patch_size:
        raise ValueError(f"image_size {image_size} is not divisible by patch_size {patch_size}")
    model = torchvision.models.VisionTransformer(
        image_size=image_size, patch_size=patch_size, num_layers=num_layers, num_heads=num_heads,
        hidden_dim=hidden_dim, mlp_dim=mlp_ratio * hidden_dim, num_classes=num_classes)
    if in_channels != 3:
        model.conv_proj = nn.Conv2d(in_channels, hidden_dim, patch_size, stride=patch_size)
        fan_in = in_channels * patch_size * patch_size
        nn.init.trunc_normal_(model.conv_proj.weight, std=math.sqrt(1 / fan_in))
        nn.init.zeros_(model.conv_proj.bias)
    return model


def vit_tiny(num_classes: int, in_channels: int, image_size: int = 32) -> nn.Module:
    return vit(num_classes, in_channels, image_size, hidden_dim=192, num_layers=12, num_heads=3)


def vit_small(num_classes: int, in_channels: int, image_size: int = 32) -> nn.Module:
    return vit(num_classes, in_channels, image_size, hidden_dim=384, num_layers=12, num_heads=6)


def _vgg_builder(widths):
    return lambda num_classes, in_channels, image_size: vgg(num_classes, in_channels, widths)


MODELS = {
    "pixel_mlp": pixel_mlp,
    "small_cnn": lambda num_classes, in_channels, image_size: small_cnn(num_classes, in_channels),
    **{name: _vgg_builder(widths) for name, widths in VGG_PRESET_WIDTHS.items()},
    "resnet18_cifar": lambda num_classes, in_channels, image_size: resnet18_cifar(num_classes, in_channels),
    "resnet50_cifar": lambda num_classes, in_channels, image_size: resnet50_cifar(num_classes, in_channels),
    "vit_tiny": vit_tiny,
    "vit_small": vit_small,
}


ModelBuilder = Callable[[int, int, int | None], nn.Module]
"""``builder(num_classes, in_channels, image_size)``: a freshly initialised model (on features,
``in_channels`` is the number of features and ``image_size`` None)."""


def build(model: str | ModelBuilder, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """A freshly initialised model (initialised from torch's global RNG): ``model`` names one of
    :data:`MODELS`, or is a builder of one's own (see :data:`ModelBuilder`)."""
    if callable(model):
        return model(num_classes, in_channels, image_size)
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; known: {', '.join(MODELS)}")
    return MODELS[model](num_classes, in_channels, image_size)


def model_label(model: str | ModelBuilder) -> str:
    """How progress bars and errors name ``model``."""
    return model if isinstance(model, str) else getattr(model, "__name__", type(model).__name__)


# ---------------------------------------------------------------------------------------
# Ensemble training


def _stream_seed(seed: int, stream: int) -> int:
    """An independent seed for one use (``stream``) of a model's ``seed``."""
    return int(np.random.SeedSequence([int(seed), stream]).generate_state(1, np.uint64)[0])


def seeded_models(model: str | ModelBuilder, seeds, num_classes: int, in_channels: int,
                  image_size: int | None) -> list[nn.Module]:
    """One freshly built model per seed, initialised from its own stream of that seed."""
    models = []
    for seed in seeds:
        with _GLOBAL_RNG, torch.random.fork_rng(devices=[]):
            torch.manual_seed(_stream_seed(seed, 0))
            models.append(build(model, num_classes, in_channels, image_size))
    return models


def _check_inputs(dataset: Dataset, masks: np.ndarray, seeds,
                  model: str | ModelBuilder | None = None) -> tuple[np.ndarray, list[int]]:
    """The masks checked and the seeds as ints; features ``(n, d)`` only for a builder of one's own."""
    if not dataset.is_image and not callable(model):
        raise ValueError(f"{dataset.name}: the suite's image models need images (n, C, H, W), "
                         f"got inputs of shape {tuple(dataset.x_train.shape)}")
    seeds = [int(s) for s in np.asarray(seeds).reshape(-1)]
    if any(s < 0 for s in seeds):
        raise ValueError(f"seeds must be non-negative integers, got {seeds}")
    return checked_masks(masks, dataset.n_train, seeds), seeds


def train_conv_ensemble(model: str | ModelBuilder, dataset: Dataset, masks: np.ndarray, seeds,
                        recipe: Recipe, device: str | torch.device = "cpu",
                        augment: DeviceAugment | None = None,
                        progress: bool = True, path: str = "auto",
                        compile_backend: str | None = None) -> dict[str, np.ndarray]:
    """Train K models, model k on the training points in ``masks[k]`` from ``seeds[k]``, with
    ``recipe``'s optimizer (``recipe.build``: a :class:`Recipe`, or a recipe of one's own from
    ``harness.model_family``); a builder of one's own may take float features ``(n, d)``.

    Returns the arrays of ``harness.train.output_schema`` (what each holds is in
    ``harness.train``'s docstring): ``train_margin`` (K, n_train), ``test_margin`` (K, n_test),
    ``train_spp`` (K, n_train) and ``final_loss`` (K,), all float32. Inputs are normalised with
    the per-channel statistics of the whole training split (the same constants for every model).
    ``path`` (``harness.specs.PATHS``) says how the K models train side by side; every path
    trains the same models (same seeds, batches, augmentations and recipe), equal up to
    floating-point rounding. ``compile_backend`` (a ``torch.compile`` backend, stacked path only)
    compiles the training step (module docstring). On CUDA the forward pass runs in bfloat16
    autocast with channels-last inputs; evaluation always runs in float32.
    Raises ``TrainingDiverged`` on a NaN or infinite loss.
    """
    masks, seeds = _check_inputs(dataset, masks, seeds, model)
    fitted = _fit(model, dataset, masks, seeds, recipe, torch.device(device), augment, progress, path,
                  compile_backend=compile_backend)
    return _evaluate(fitted, dataset)


def _evaluate(fitted: _Fitted, dataset: Dataset) -> dict[str, np.ndarray]:
    """:func:`train_conv_ensemble`'s arrays from the trained models, in float32 batches."""
    setup = fitted.setup
    results = {}
    with torch.no_grad():
        for split, x_all, y_all in (("train", setup.x_train, setup.y_train),
                                    ("test", setup.stored_inputs(dataset.x_test), dataset.y_test.to(setup.device))):
            split_margins, spps = [], []
            for start in range(0, len(y_all), setup.batch):
                logits = fitted.logits(x_all[start:start + setup.batch])
                split_margins.append(margins(logits, y_all[start:start + setup.batch]))
                spps.append(logits.softmax(-1).amax(-1))
            results[f"{split}_margin"] = torch.cat(split_margins, dim=1).cpu().numpy().astype(np.float32)
            if split == "train":
                results["train_spp"] = torch.cat(spps, dim=1).cpu().numpy().astype(np.float32)
    results["final_loss"] = fitted.final_loss.numpy().astype(np.float32)
    return results


# Passes may train side by side on threads (harness.ensemble.torch_threads); torch's global
# RNG, which initialises the models, is seeded and drawn by one of them at a time.
_GLOBAL_RNG = threading.Lock()


class _Setup:
    """What every path of one pass shares: the per-seed models, the data on the device (images
    uint8 ``(n, H, W, C)``, the pass's one layout conversion, and their normalisation; features
    as given), each model's generator and members, the steps."""

    def __init__(self, model, dataset: Dataset, masks: np.ndarray, seeds: list[int], recipe: Recipe,
                 device: torch.device, augment: DeviceAugment | None, sync_debug_mode: str | None = None):
        self.model, self.seeds, self.recipe, self.device, self.augment = model, seeds, recipe, device, augment
        self.sync_debug_mode = sync_debug_mode
        self.on_cuda = device.type == "cuda"
        if self.on_cuda:
            # cuDNN picks its fastest kernels per shape; a pass has few shapes, all reused.
            torch.backends.cudnn.benchmark = True
        self.on_images = dataset.is_image
        in_channels, image_size = dataset.x_train.shape[1], dataset.x_train.shape[2] if self.on_images else None
        self.models = seeded_models(model, seeds, dataset.num_classes, in_channels, image_size)
        self.normalization = None
        if self.on_images:
            # On the NCHW copy, as before: float sums in another memory order round differently.
            self.mean, self.std = channel_mean_std(dataset.x_train.to(device))
            self.normalization = Normalization(self.mean, self.std, device)
        self.x_train = self.stored_inputs(dataset.x_train)
        self.y_train = dataset.y_train.to(device)
        self.members = [torch.from_numpy(np.flatnonzero(row)) for row in masks]
        self.generators = [torch.Generator().manual_seed(_stream_seed(seed, 1)) for seed in seeds]
        self.batch = recipe.batch_size
        self.steps_per_epoch = math.ceil(max(len(m) for m in self.members) / self.batch)
        self.total_steps = recipe.epochs * self.steps_per_epoch
        self.autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.on_cuda)

    def epoch_plan(self, ks) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Models ``ks``' batches for the next epoch, each its own permutation wrapped to equal
        length, and their augmentations: order ``(len(ks), steps B)``, flips, shifts (``, 2``)."""
        positions = torch.arange(self.steps_per_epoch * self.batch)
        order, flips, shifts = [], [], []
        for k in ks:
            mine, generator = self.members[k], self.generators[k]
            order.append(mine[torch.randperm(len(mine), generator=generator)][positions % len(mine)])
            if self.augment is not None:
                flip, shift = self.augment.draw(len(positions), generator)
                flips.append(flip); shifts.append(shift)
        order = self._to_device(torch.stack(order))
        if self.augment is None:
            return order, None, None
        flips = self._to_device(torch.stack(flips)) if self.augment.flip else None
        shifts = self._to_device(torch.stack(shifts)) if self.augment.translate else None
        return order, flips, shifts

    def _to_device(self, x: torch.Tensor) -> torch.Tensor:
        # From pinned memory a copy is queued without the host waiting for the device.
        return x.pin_memory().to(self.device, non_blocking=True) if self.on_cuda else x

    def stored_inputs(self, x: torch.Tensor) -> torch.Tensor:
        """A split's inputs on the device as the pass keeps them: images uint8 ``(n, H, W, C)``."""
        return x.to(self.device).permute(0, 2, 3, 1).contiguous() if self.on_images else x.to(self.device)

    def model_inputs(self, x_stored: torch.Tensor) -> torch.Tensor:
        """A batch of stored inputs as one model takes them: images normalised, NCHW."""
        if not self.on_images:
            return x_stored
        x = self.normalization(x_stored.permute(0, 3, 1, 2))
        # Channels-last on CUDA (free: the gather made it); NCHW on CPU, as the stored runs had.
        return x if self.on_cuda else x.contiguous()

    def inputs(self, indices, flips, shifts) -> torch.Tensor:
        """Normalised, augmented float images ``(B, H, W, K, C)`` for ``indices`` ``(B, K)``."""
        x, valid = gather_images(self.x_train, indices, flips, shifts)
        x = self.normalization.channels_last(x)
        return x if valid is None else torch.where(valid, x, 0.0)

    def plain_inputs(self, indices, flips, shifts) -> torch.Tensor:
        """:meth:`inputs` for a flat list of ``indices`` as one NCHW batch (vmap and loop paths);
        features as given."""
        if not self.on_images:
            return self.x_train[indices]
        x = self.inputs(indices[:, None], None if flips is None else flips[:, None],
                        None if shifts is None else shifts[:, None]).squeeze(3).permute(0, 3, 1, 2)
        # Channels-last on CUDA (free: the gather made it); NCHW on CPU, as the stored runs had.
        return x if self.on_cuda else x.contiguous()

    def watch(self, ks) -> "_LossWatch":
        return _LossWatch(self, list(ks))

    def raise_if_diverged(self, epoch_loss: torch.Tensor, epoch: int, ks) -> None:
        diverged = np.flatnonzero(~torch.isfinite(epoch_loss).numpy())
        if len(diverged):
            k = ks[int(diverged[0])]
            raise TrainingDiverged(f"{model_label(self.model)} (seed {self.seeds[k]}, model {k} of "
                                   f"{len(self.seeds)}) diverged in epoch {epoch + 1} of {self.recipe.epochs}: "
                                   f"loss {epoch_loss[int(diverged[0])].item()} with {self.recipe}")

    def epochs(self, progress: bool, label: str):
        """The training loop's epochs; with ``sync_debug_mode`` on CUDA it runs under
        ``torch.cuda.set_sync_debug_mode``, which flags every host sync inside it (a CPU has none)."""
        epochs = range(self.recipe.epochs)
        if progress:
            from tqdm.auto import tqdm

            epochs = tqdm(epochs, desc=label, unit="epoch")
        return epochs if self.sync_debug_mode is None or not self.on_cuda else self._watched(epochs)

    def _watched(self, epochs):
        before = torch.cuda.get_sync_debug_mode()
        torch.cuda.set_sync_debug_mode(self.sync_debug_mode)
        try:
            yield from epochs
        finally:
            torch.cuda.set_sync_debug_mode(before)


class _Stepper:
    """The recipe's optimizer of ``params`` and its scheduler (``recipe.build``), each training
    step: gradients cleared, the loss's backward pass, the optimizer's step, the scheduler's."""

    def __init__(self, recipe, params, total_steps: int):
        self.optimizer, self.scheduler = recipe.build(params, total_steps)

    def step(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()


class _LossWatch:
    """Each epoch's mean losses, copied to the host without waiting and checked for divergence
    one epoch later: the host never waits for the device inside an epoch, and at its end only
    for the epoch before, while this one's steps keep the device busy."""

    def __init__(self, setup: _Setup, ks: list[int]):
        self.setup, self.ks, self.pending = setup, ks, None

    def add(self, epoch: int, epoch_loss: torch.Tensor) -> None:
        self.check()
        event = None
        if self.setup.on_cuda:
            epoch_loss = epoch_loss.to("cpu", non_blocking=True)
            event = torch.cuda.Event()
            event.record()
        self.pending = (epoch, epoch_loss, event)

    def check(self) -> torch.Tensor | None:
        if self.pending is None:
            return None
        epoch, loss, event = self.pending
        if event is not None:
            event.synchronize()
        self.setup.raise_if_diverged(loss, epoch, self.ks)
        return loss

    def last(self) -> torch.Tensor:
        """The last epoch's losses, checked, on the host."""
        return self.check()


class _Fitted:
    """K trained models (in eval mode) of one path: logits on batches of stored inputs
    (:meth:`_Setup.stored_inputs`)."""

    setup: _Setup
    final_loss: torch.Tensor

    def logits(self, x_stored: torch.Tensor) -> torch.Tensor:
        """Logits ``(K, n, classes)`` float32."""
        raise NotImplementedError

    def state_dicts(self) -> list[dict[str, torch.Tensor]]:
        """Each model's weights and buffers, as its own module's ``state_dict`` names them."""
        raise NotImplementedError


def _fit(model: str | ModelBuilder, dataset: Dataset, masks: np.ndarray, seeds: list[int], recipe: Recipe,
         device: torch.device, augment: DeviceAugment | None, progress: bool, path: str = "auto",
         sync_debug_mode: str | None = None, compile_backend: str | None = None) -> _Fitted:
    """The training loop of :func:`train_conv_ensemble` on ``path`` (module docstring);
    ``sync_debug_mode`` (``"warn"``, ``"error"``) watches its epochs for host syncs (CUDA);
    ``compile_backend`` compiles the stacked path's step with that ``torch.compile`` backend."""
    path = resolve_path(model, path)
    if compile_backend is not None and path != "stacked":
        raise ValueError(f"compile_backend compiles the stacked path's training step, not the {path} path's")
    setup = _Setup(model, dataset, masks, seeds, recipe, device, augment, sync_debug_mode)
    label = f"{model_label(model)} x{len(seeds)} ({path}{', compiled' if compile_backend else ''})"
    if path == "stacked":
        return _StackedFitted(setup, progress, label, compile_backend)
    return {"vmap": _VmapFitted, "loop": _LoopFitted}[path](setup, progress, label)


class _LoopFitted(_Fitted):
    """Each model trained alone as a plain ``nn.Module``, one after another."""

    def __init__(self, setup: _Setup, progress: bool, label: str):
        self.setup = setup
        steps, batch = setup.steps_per_epoch, setup.batch
        self.final_loss = torch.zeros(len(setup.models))
        for k, model in enumerate(setup.models):
            watch = setup.watch([k])
            model.to(setup.device).train()
            if setup.on_cuda:
                model.to(memory_format=torch.channels_last)
            stepper = _Stepper(setup.recipe, model.parameters(), setup.total_steps)
            for epoch in setup.epochs(progress, f"{label} model {k}"):
                order, flips, shifts = setup.epoch_plan([k])
                epoch_loss = torch.zeros((), device=setup.device)
                for step in range(steps):
                    in_batch = slice(step * batch, (step + 1) * batch)
                    indices = order[0, in_batch]
                    x = setup.plain_inputs(indices, None if flips is None else flips[0, in_batch],
                                           None if shifts is None else shifts[0, in_batch])
                    with setup.autocast:
                        loss = F.cross_entropy(model(x).float(), setup.y_train[indices])
                    stepper.step(loss)
                    epoch_loss += loss.detach()
                watch.add(epoch, (epoch_loss / steps)[None])
            self.final_loss[k] = watch.last()[0]
            model.eval()
        self.models = setup.models

    def logits(self, x_stored):
        x = self.setup.model_inputs(x_stored)
        return torch.stack([model(x).float() for model in self.models])

    def state_dicts(self):
        return [model.state_dict() for model in self.models]


class _VmapFitted(_Fitted):
    """The models' weights stacked along a leading axis, one model's functional call vmapped."""

    def __init__(self, setup: _Setup, progress: bool, label: str):
        self.setup = setup
        n_models, steps, batch = len(setup.models), setup.steps_per_epoch, setup.batch
        params, buffers = stack_module_state([m.to(setup.device) for m in setup.models])
        skeleton = copy.deepcopy(setup.models[0]).to("meta")
        self.template = copy.deepcopy(setup.models[0]).to("cpu")

        def loss_of_one(p, b, x, y):
            return F.cross_entropy(functional_call(skeleton, (p, b), (x,)).float(), y)

        losses_of_all = vmap(loss_of_one)
        stepper = _Stepper(setup.recipe, params.values(), setup.total_steps)
        everyone = range(n_models)
        watch = setup.watch(everyone)
        skeleton.train()
        for epoch in setup.epochs(progress, label):
            order, flips, shifts = setup.epoch_plan(everyone)
            epoch_loss = torch.zeros(n_models, device=setup.device)
            for step in range(steps):
                in_batch = slice(step * batch, (step + 1) * batch)
                indices = order[:, in_batch]
                x = setup.plain_inputs(indices.reshape(-1), None if flips is None else flips[:, in_batch].reshape(-1),
                                       None if shifts is None else shifts[:, in_batch].reshape(-1, 2))
                with setup.autocast:
                    losses = losses_of_all(params, buffers, x.unflatten(0, (n_models, batch)),
                                           setup.y_train[indices])
                stepper.step(losses.sum())   # each model's gradient is its own loss's
                epoch_loss += losses.detach()
            watch.add(epoch, epoch_loss / steps)
        skeleton.eval()
        self.skeleton, self.params, self.buffers, self.final_loss = skeleton, params, buffers, watch.last()

        def logits_of_one(p, b, x):
            return functional_call(skeleton, (p, b), (x,)).float()

        self._evaluate = vmap(logits_of_one, in_dims=(0, 0, None))

    def logits(self, x_stored):
        return self._evaluate(self.params, self.buffers, self.setup.model_inputs(x_stored))

    def state_dicts(self):
        stacked = {**self.params, **self.buffers}
        return [{name: value[k].detach() for name, value in stacked.items()} for k in range(len(self.setup.models))]


def stacked_losses(net: StackedConvNet, x: torch.Tensor, y: torch.Tensor, on_cuda: bool) -> torch.Tensor:
    """Each model's mean loss ``(K,)`` on its batch: images ``(B, K C, H, W)``, labels ``(K, B)``;
    the stacked path's forward pass and loss, compiled or not."""
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=on_cuda):
        logits = net(x)
    return F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="none").view(y.shape).mean(1)


class _GraphCount(threading.local):
    """Graphs the counting backends compiled in this thread: a pass compiles in its own thread,
    so passes training side by side count only their own."""

    graphs = 0


_GRAPHS_COMPILED = _GraphCount()
_COMPILED_LOSSES: dict[str, Callable] = {}
_COMPILED_LOSSES_LOCK = threading.Lock()


def compiled_stacked_losses(backend: str) -> Callable:
    """:func:`stacked_losses` through ``torch.compile`` with ``backend``, one per backend for the
    process: every pass of the same shapes reuses its graphs (a new backend object would fail
    dynamo's backend guard and compile again)."""
    with _COMPILED_LOSSES_LOCK:
        if backend not in _COMPILED_LOSSES:
            compile_graph = torch._dynamo.lookup_backend(backend)

            def counted(graph, example_inputs):
                _GRAPHS_COMPILED.graphs += 1
                return compile_graph(graph, example_inputs)

            _COMPILED_LOSSES[backend] = torch.compile(stacked_losses, backend=counted, dynamic=False)
        return _COMPILED_LOSSES[backend]


class _StackedFitted(_Fitted):
    """The K models as one network stacked along the channels (:mod:`harness.stacked`).

    With ``compile_backend`` the step's forward pass and loss are compiled; ``graphs_compiled``
    and ``recompiles`` count the graphs compiled while training and after the first step
    (module docstring), both None when not compiled."""

    def __init__(self, setup: _Setup, progress: bool, label: str, compile_backend: str | None = None):
        self.setup = setup
        n_models, steps, batch = len(setup.models), setup.steps_per_epoch, setup.batch
        losses_of = stacked_losses if compile_backend is None else compiled_stacked_losses(compile_backend)
        graphs_before = graphs_after_first_step = _GRAPHS_COMPILED.graphs
        self.template = setup.models[0]
        net = StackedConvNet(setup.models).to(setup.device)
        if setup.on_cuda:
            net.to(memory_format=torch.channels_last)
        self.normalization = Normalization(setup.mean, setup.std, setup.device, repeat=n_models)
        stepper = _Stepper(setup.recipe, net.parameters(), setup.total_steps)
        everyone = range(n_models)
        watch = setup.watch(everyone)
        net.train()
        for epoch in setup.epochs(progress, label):
            order, flips, shifts = setup.epoch_plan(everyone)
            epoch_loss = torch.zeros(n_models, device=setup.device)
            for step in range(steps):
                in_batch = slice(step * batch, (step + 1) * batch)
                indices = order[:, in_batch]
                x = setup.inputs(indices.T, None if flips is None else flips[:, in_batch].T,
                                 None if shifts is None else shifts[:, in_batch].transpose(0, 1))
                # (B, H, W, K, C) -> (B, K C, H, W) in channels_last: a view, no copy.
                x = x.flatten(3).permute(0, 3, 1, 2)
                losses = losses_of(net, x, setup.y_train[indices], setup.on_cuda)
                stepper.step(losses.sum())
                epoch_loss += losses.detach()
                if epoch == step == 0:
                    graphs_after_first_step = _GRAPHS_COMPILED.graphs
            watch.add(epoch, epoch_loss / steps)
        self.net, self.final_loss = net.eval(), watch.last()
        compiled = compile_backend is not None
        self.graphs_compiled = _GRAPHS_COMPILED.graphs - graphs_before if compiled else None
        self.recompiles = _GRAPHS_COMPILED.graphs - graphs_after_first_step if compiled else None

    def logits(self, x_stored):
        # Every model sees the same images: tile them along the channels.
        x = self.normalization.channels_last(x_stored.repeat(1, 1, 1, self.net.n_models))
        return self.net(x.permute(0, 3, 1, 2)).float()

    def state_dicts(self):
        return [self.net.model_state(k, self.template) for k in range(self.net.n_models)]


def penultimate_features(model_name: str, fit_on: Dataset, inputs: tuple[torch.Tensor, ...],
                         recipe: Recipe, seed: int = 0, device: str | torch.device = "cpu",
                         ) -> tuple[np.ndarray, ...]:
    """Train one model on every training point of ``fit_on``; embed each uint8 batch in ``inputs``.

    The embedding of an image is the input of the model's last layer (for ``pixel_mlp`` its
    last hidden layer, for ``small_cnn`` its globally average-pooled channels), the images
    normalised with ``fit_on``'s channel statistics. Only models built as ``nn.Sequential``
    (``pixel_mlp``, ``small_cnn``, the VGGs) can be cut this way.
    Returns one float32 array ``(n, features)`` per batch in ``inputs``.
    """
    device = torch.device(device)
    masks, seeds = _check_inputs(fit_on, np.ones((1, fit_on.n_train), dtype=bool), [seed])
    _, channels, height, _ = fit_on.x_train.shape
    model = build(model_name, fit_on.num_classes, channels, height).to(device)
    if not isinstance(model, nn.Sequential):
        raise ValueError(f"penultimate_features cuts nn.Sequential models (pixel_mlp, small_cnn, the VGGs); "
                         f"{model_name} is a {type(model).__name__}")
    for x in inputs:
        if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[1:] != fit_on.x_train.shape[1:]:
            raise ValueError(f"inputs must be uint8 images shaped like fit_on's "
                             f"{tuple(fit_on.x_train.shape[1:])}, got {x.dtype} {tuple(x.shape)}")
    # The vmap path: the embeddings key the stored runs of every image data set.
    fitted = _fit(model_name, fit_on, masks, seeds, recipe, device, augment=None, progress=False, path="vmap")
    model.load_state_dict(fitted.state_dicts()[0])
    body = model.eval()[:-1]
    embedded = []
    with torch.no_grad():
        for x in inputs:
            parts = [body(fitted.setup.normalization(x[start:start + 1024].to(device)))
                     for start in range(0, len(x), 1024)]
            embedded.append(torch.cat(parts).cpu().numpy().astype(np.float32))
    return tuple(embedded)
