"""Training K models in one pass, each on its own mask over the training points.

Two model families share one output schema (per model k and point i):

- ``train_margin[k, i]``: logit of the true class minus the largest other logit
  (the point is classified correctly iff the margin is > 0);
- ``test_margin[k, j]``: the same on test points;
- ``train_spp[k, i]``: the largest softmax probability of the model's outputs. For a network
  that is its confidence, the SPP of IMN25 (Hendrycks & Gimpel 2016); for ridge it is the
  softmax of least-squares outputs fitted to one-hot targets, which sit near 1/C whatever the
  fit: a monotone score of the fit, not a confidence. One name for every family keeps one
  schema, so stored runs of every family stay readable; IMN25's SPP figures are about networks;
- ``final_loss[k]``: the model's training loss averaged over its last pass through its
  training points. A network's: the mean over the last epoch's batches of each batch's mean
  cross-entropy, taken before that batch's update (every family of ``harness.zoo`` and
  ``harness.model_family`` too). Ridge, fitted in one pass: its fit's squared error summed
  over the classes, averaged over its training points (the penalty left out);
- ridge only, ``loo_margin[k, i]``: the margin of the model refitted without point i
  (closed form, below); NaN for points outside the model's mask.

**MLP** (:class:`MLPSpec`): the K models' weights are stacked into ``(K, fan_out, fan_in)``
tensors (views of one flat parameter vector) and trained together with batched matmuls, so
K small models cost about as much as one K-times-wider model. Each model draws its
minibatches from its own mask with its own generator: every epoch a fresh permutation of its
in-mask points, batches wrapping around so all models take the same number of steps. The
loss is the sum of the K models' mean cross-entropies, so each model's gradient is exactly
its own. Gradients are written by hand (no autograd graph; the step's large arrays are
allocated once per pass): with a_0 the batch (features x B), z_l = W_l a_{l-1} + b_l,
a_l = relu(z_l) and logits z_L,

    delta_L = (softmax(z_L) - onehot(y)) / B,      grad W_l = delta_l a_{l-1}^T,
    grad b_l = sum over the batch of delta_l,      delta_{l-1} = (W_l^T delta_l) * [a_{l-1} > 0].

The optimizer is torch's own fused kernel (SGD with Nesterov momentum, or AdamW) on the flat vector.
Learning rate: triangular (:func:`triangular_lr`), linear from 0 to ``lr`` at ``peak_at`` of
the steps, then to 0; at step s of T, with w = max(1, peak_at T),

    lr(s) = lr * s / w                               for s < w,
    lr(s) = lr * max(0, (T - s) / max(1, T - w))     from s = w on.

**Random-feature ridge** (:class:`RidgeSpec`): features ``phi(x) = sqrt(2/D) cos(x W / s + b)``
(random Fourier features of an RBF kernel of bandwidth ``s``, given relative to the median
distance between training points; W, b drawn per model), ridge
regression on one-hot targets Y over the model's in-mask points S:

    beta = (Phi_S^T Phi_S + lambda I)^-1 Phi_S^T Y_S.

Its exact leave-one-out prediction for i in S follows from the same fit (hat-matrix identity),

    f_{-i}(x_i) = (f(x_i) - h_ii y_i) / (1 - h_ii),   h_ii = phi_i^T (Phi_S^T Phi_S + lambda I)^-1 phi_i,

so exact LOO over every training point costs one fit per draw instead of one per point.
With ``closed_form_loo=False`` the family skips h_ii and stores no ``loo_margin``.
"""

from __future__ import annotations

import math
import threading
import weakref
from dataclasses import asdict, dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from harness.data import Dataset
from harness.masks import checked_masks


class TrainingDiverged(RuntimeError):
    """A model's loss became NaN or infinite; the message names the configuration."""


def output_schema(dataset: Dataset, with_loo: bool = False) -> dict[str, tuple[tuple[int, ...], str]]:
    """Per-model arrays a family writes to the store; what each holds is in the module docstring."""
    schema = {
        "train_margin": ((dataset.n_train,), "float32"),
        "test_margin": ((dataset.n_test,), "float32"),
        "train_spp": ((dataset.n_train,), "float32"),
        "final_loss": ((), "float32"),
    }
    if with_loo:
        schema["loo_margin"] = ((dataset.n_train,), "float32")
    return schema


def margins(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """True-class logit minus the best other logit, for logits (..., n, C) and labels (n,)."""
    labels = labels.expand(logits.shape[:-1])
    true = logits.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    others = logits.scatter(-1, labels.unsqueeze(-1), float("-inf"))
    return true - others.amax(-1)


def _features(dataset: Dataset, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    x_train = dataset.x_train.reshape(dataset.n_train, -1).float()
    x_test = dataset.x_test.reshape(dataset.n_test, -1).float()
    if dataset.x_train.dtype == torch.uint8:
        x_train, x_test = x_train / 255.0, x_test / 255.0
    return x_train.to(device), x_test.to(device)


@dataclass(frozen=True)
class MLPSpec:
    """A ReLU MLP and its training recipe; every hyperparameter of the family lives here."""

    family: ClassVar[str] = "mlp"
    width: int = 128
    depth: int = 1
    optimizer: str = "sgd"
    lr: float = 0.2
    momentum: float = 0.9
    weight_decay: float = 5e-4
    epochs: int = 30
    batch_size: int = 64
    peak_at: float = 0.2
    input_noise: float = 0.0
    # 25: passes train side by side, one CPU thread each (harness.ensemble), and a pass of 25
    # keeps its (K, width, B) arrays near the cache. 200 default models on 2 threads, 8 paired
    # rounds: median 51.6 models/s at 25, 45.5 at 20, 47.8 at 50, 45.6 at 100 (25 over 100:
    # 1.12x per round; 1.20x in another 6 rounds). On a GPU, raise it.
    models_per_pass: int = 25

    def __post_init__(self):
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        if self.width < 1 or self.depth < 0 or self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"width, epochs and batch_size must be >= 1 and depth >= 0: {self}")
        if self.optimizer == "sgd" and self.momentum <= 0:
            raise ValueError(f"SGD here uses Nesterov momentum, which needs momentum > 0, got {self.momentum}")

    def config(self) -> dict:
        return {"family": self.family, **asdict(self)}

    def schema(self, dataset: Dataset) -> dict:
        return output_schema(dataset)

    def _init(self, seeds: np.ndarray, dims: list[int], device) -> torch.Tensor:
        """nn.Linear's default init, drawn per model from that model's own generator, as one flat
        vector laid out as :func:`_layers` reads it."""
        pieces = []
        for fan_in, fan_out in zip(dims[:-1], dims[1:]):
            bound = 1.0 / math.sqrt(fan_in)
            weights, biases = [], []
            for seed in seeds:
                g = torch.Generator().manual_seed(int(seed) * 7919 + fan_in * 31 + fan_out)
                weights.append((torch.rand(fan_in, fan_out, generator=g) * 2 * bound - bound).T)
                biases.append(torch.rand(fan_out, generator=g) * 2 * bound - bound)
            pieces += [torch.stack(weights).flatten(), torch.stack(biases).flatten()]
        return torch.cat(pieces).to(device)

    def train(self, dataset: Dataset, masks: np.ndarray, seeds: np.ndarray,
              device: str | torch.device = "cpu") -> dict[str, np.ndarray]:
        masks = checked_masks(masks, dataset.n_train, seeds)
        device = torch.device(device)
        x_train, x_test = _features(dataset, device)
        y_train, y_test = dataset.y_train.to(device), dataset.y_test.to(device)
        n_models = len(masks)
        dims = [x_train.shape[1]] + [self.width] * self.depth + [dataset.num_classes]
        params = self._init(seeds, dims, device)
        params.grad = torch.zeros_like(params)
        models = _StackedMLPs(params, n_models, dims, self.batch_size)
        opt = _FusedOptimizer(self, params)
        members = [np.flatnonzero(m) for m in masks]
        longest = max(len(m) for m in members)
        counts = torch.tensor([len(m) for m in members])
        generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
        steps_per_epoch = math.ceil(longest / self.batch_size)
        total_steps = self.epochs * steps_per_epoch
        # Batches wrap around each model's permutation, so every model takes the same steps
        # and every batch stays inside its mask.
        positions = torch.arange(steps_per_epoch * self.batch_size).unsqueeze(0) % counts.unsqueeze(1)
        members_padded = torch.nn.utils.rnn.pad_sequence([torch.from_numpy(m) for m in members], batch_first=True)
        epoch_inputs = x_train.new_empty(n_models * steps_per_epoch * self.batch_size, x_train.shape[1])
        epoch_targets = x_train.new_empty(n_models, steps_per_epoch, dataset.num_classes, self.batch_size)
        step = 0
        for epoch in range(self.epochs):
            permutations = torch.nn.utils.rnn.pad_sequence(
                [torch.randperm(len(m), generator=g) for m, g in zip(members, generators)], batch_first=True)
            order = members_padded.gather(1, permutations.gather(1, positions))
            batches = order.view(n_models, steps_per_epoch, self.batch_size).to(device)
            # One gather per epoch, into the same array every epoch.
            inputs = torch.index_select(x_train, 0, batches.flatten(), out=epoch_inputs).view(*batches.shape, -1)
            labels = y_train[batches]                                             # (K, steps, B)
            # -onehot(y) / B, laid out as the logits (K, C, B) of each step: delta_L in one add.
            targets = epoch_targets.zero_().scatter_(2, labels.unsqueeze(2), -1.0 / self.batch_size)
            if self.input_noise > 0:
                inputs += torch.stack([torch.randn(steps_per_epoch, self.batch_size, x_train.shape[1],
                                                   generator=g) for g in generators]).to(device) * self.input_noise
            epoch_loss = torch.zeros(n_models, device=device)
            for batch in range(steps_per_epoch):
                logits = models.backpropagate(inputs[:, batch].transpose(1, 2), targets[:, batch])
                epoch_loss += F.cross_entropy(logits, labels[:, batch], reduction="none").mean(1)
                opt.step(self.lr * triangular_lr(step, total_steps, self.peak_at))
                step += 1
            loss = epoch_loss / steps_per_epoch
            self._raise_if_diverged(loss, seeds, dataset, f"mean loss of epoch {epoch + 1}/{self.epochs}")
        with torch.inference_mode():
            train_logits, test_logits = models.logits(x_train), models.logits(x_test)   # (K, C, n)
            self._raise_if_diverged(train_logits.sum((1, 2)), seeds, dataset, "sum of logits after the last update")
            return {
                "train_margin": margins(train_logits.transpose(1, 2), y_train).cpu().numpy(),
                "test_margin": margins(test_logits.transpose(1, 2), y_test).cpu().numpy(),
                "train_spp": train_logits.softmax(1).amax(1).cpu().numpy(),
                "final_loss": loss.cpu().numpy(),
            }

    def _raise_if_diverged(self, per_model: torch.Tensor, seeds: np.ndarray, dataset: Dataset, what: str) -> None:
        """``per_model`` holds one number per model (its loss, or a sum of its logits)."""
        bad = ~torch.isfinite(per_model)
        if bad.any():
            k = int(bad.nonzero()[0])
            raise TrainingDiverged(f"{self} on {dataset.name}: model {k} (seed {int(seeds[k])}) {what} "
                                   f"is {float(per_model[k])}; lower lr or raise weight_decay")


class _FusedOptimizer:
    """torch's own fused SGD (Nesterov momentum) or AdamW update on one flat parameter vector,
    one pass over the parameters per step (3x faster than torch's default multi-tensor SGD on
    CPU, 7x for AdamW). Its learning rate is a tensor set in place each step: a float would
    make the kernels re-check their arguments every step.

    The kernels are called directly: torch.optim's ``step()`` wraps them in bookkeeping that,
    at the size of a pass, costs more than the update (71 vs 28 us a step for 25 default
    models); a 25-model pass trained 11 % faster without it (0.60 vs 0.67 s, best of 10, one
    thread). Updates are bit-identical to ``torch.optim.SGD`` / ``AdamW`` with ``fused=True``
    and their default betas and eps (tests/test_train.py holds both to it).
    """

    def __init__(self, spec: MLPSpec, params: torch.Tensor):
        self.spec, self.params, self.steps = spec, params, 0
        self.lr = torch.tensor(spec.lr, device=params.device)
        if spec.optimizer == "sgd":
            self.momentum_buffer = torch.empty_like(params)  # the first step copies the gradient in
        else:
            self.exp_avg, self.exp_avg_sq = torch.zeros_like(params), torch.zeros_like(params)
            self.step_count = torch.zeros((), dtype=torch.float32, device=params.device)

    def step(self, lr: float) -> None:
        spec, params = self.spec, self.params
        self.lr.fill_(lr)
        if spec.optimizer == "sgd":
            torch._fused_sgd_([params], [params.grad], [self.momentum_buffer], weight_decay=spec.weight_decay,
                              momentum=spec.momentum, lr=self.lr, dampening=0.0, nesterov=True, maximize=False,
                              is_first_step=self.steps == 0)
        else:
            self.step_count += 1
            torch._fused_adamw_([params], [params.grad], [self.exp_avg], [self.exp_avg_sq], [], [self.step_count],
                                amsgrad=False, lr=self.lr, beta1=0.9, beta2=0.999, weight_decay=spec.weight_decay,
                                eps=1e-8, maximize=False, grad_scale=None, found_inf=None)
        self.steps += 1


class _StackedMLPs:
    """K ReLU MLPs as views of one flat parameter vector (and its ``.grad``), layer by layer
    weights (K, fan_out, fan_in) and biases (K, fan_out), as nn.Linear keeps them.

    Activations are kept feature by batch, (K, features, B): the softmax over a few classes
    then runs along a long contiguous axis (~10x faster on CPU than along a last axis of 5)
    and every gradient comes out in its weights' own layout. The step's large work arrays are
    allocated once: fresh multi-megabyte arrays every step cost page faults on CPU (a step took
    10 ms instead of 7 with them, 100 models, one thread).
    """

    def __init__(self, params: torch.Tensor, n_models: int, dims: list[int], batch_size: int):
        self.layers, self.grads = _layers(params, n_models, dims), _layers(params.grad, n_models, dims)
        hidden = [(n_models, width, batch_size) for width in dims[1:-1]]
        self.activations = [params.new_empty(shape) for shape in hidden] + [None]  # logits: small, fresh
        self.deltas = [params.new_empty(shape) for shape in hidden]
        self.delta_logits = params.new_empty(n_models, dims[-1], batch_size)

    def backpropagate(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Write into the parameters' ``.grad`` the gradient of the sum of the models' mean
        cross-entropies on their batches (module docstring), for inputs (K, d, B) and targets
        -onehot(y) / B laid out (K, C, B); return the logits (K, C, B)."""
        activations = [inputs]
        for (weight, bias), out in zip(self.layers, self.activations):
            activations.append(torch.baddbmm(bias.unsqueeze(-1), weight, activations[-1], out=out))
            if out is not None:
                out.relu_()
        logits = activations.pop()
        delta = torch.add(targets, logits.softmax(1), alpha=1.0 / targets.shape[2], out=self.delta_logits)
        for layer in reversed(range(len(self.layers))):
            (weight, _), (weight_grad, bias_grad) = self.layers[layer], self.grads[layer]
            torch.bmm(delta, activations[layer].transpose(1, 2), out=weight_grad)
            torch.sum(delta, 2, out=bias_grad)
            if layer:
                delta = torch.bmm(weight.transpose(1, 2), delta, out=self.deltas[layer - 1])
                # The ReLU's derivative, in place: autograd's own kernel for it, one pass (half
                # the time of multiplying by the activations' sign; a bool mask is slower still).
                torch.ops.aten.threshold_backward.grad_input(delta, activations[layer], 0, grad_input=delta)
        return logits

    def logits(self, x: torch.Tensor, block: int = 256) -> torch.Tensor:
        """Logits (K, C, n) of every model on the shared inputs x (n, d), ``block`` points at a
        time: the hidden activations of all n points would take K x width x n floats (83 MB for
        100 models on 1,625 points; blocks that stay in cache took a third less time per pass)."""
        blocks = []
        for h in x.T.split(block, dim=1):  # (d, block), shared: the first layer is one matmul for all models
            for layer, (weight, bias) in enumerate(self.layers):
                h = torch.matmul(weight, h).add_(bias.unsqueeze(-1))
                if layer + 1 < len(self.layers):
                    h.relu_()
            blocks.append(h)
        return torch.cat(blocks, dim=2)


def _layers(flat: torch.Tensor, n_models: int, dims: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Views of a flat vector as each layer's (weight (K, fan_out, fan_in), bias (K, fan_out))."""
    layers, start = [], 0
    for fan_in, fan_out in zip(dims[:-1], dims[1:]):
        weight = flat[start:start + n_models * fan_out * fan_in].view(n_models, fan_out, fan_in)
        start += weight.numel()
        bias = flat[start:start + n_models * fan_out].view(n_models, fan_out)
        start += bias.numel()
        layers.append((weight, bias))
    return layers


def median_distance(x: torch.Tensor, sample: int = 500) -> float:
    """Median Euclidean distance between ``sample`` evenly spaced points: the data's length scale."""
    head = x[:: max(1, len(x) // sample)].double()
    distances = torch.cdist(head, head)
    return float(distances[torch.triu(torch.ones_like(distances, dtype=torch.bool), 1)].median())


# Every pass of a ridge ensemble needs its data's length scale (~10 ms to compute): once per data set.
_length_scales: weakref.WeakKeyDictionary[Dataset, float] = weakref.WeakKeyDictionary()


def _length_scale(dataset: Dataset) -> float:
    """:func:`median_distance` of the training inputs, on CPU, remembered per Dataset object."""
    if dataset not in _length_scales:
        _length_scales[dataset] = median_distance(_features(dataset, torch.device("cpu"))[0])
    return _length_scales[dataset]


def triangular_lr(step: int, total: int, peak_at: float, first_step: int = 0) -> float:
    """Share of the peak learning rate at ``step`` (0-based) of ``total`` steps (module docstring).

    The formula counts steps from ``first_step``: from 0 (:class:`MLPSpec`) the first step has
    rate 0; from 1 (``harness.zoo``'s recipes, T + 1 steps in the formula) the first step
    already moves and the last stops one step short of 0.
    """
    peak = max(1.0, peak_at * total)
    step, total = step + first_step, total + first_step
    return step / peak if step < peak else max(0.0, (total - step) / max(1.0, total - peak))


@dataclass(frozen=True)
class RidgeSpec:
    """Random Fourier-feature ridge classifier: exact LOO in closed form (module docstring).

    ``closed_form_loo=False`` skips the hat-matrix diagonal and stores no ``loo_margin``: for
    ensembles that only need the fits (e.g. the subsampled estimator), at about 60 % of the cost.
    """

    family: ClassVar[str] = "ridge"
    # 512: mean test accuracy 0.929 at r = 0.7 on 1,995 points against 0.916 at 384 and 0.896
    # at 256, and its LOO scores correlate 0.94 with those at 2,048 features (0.88 at 384). The
    # profiles choose their own count for their budget (harness/profiles.py).
    features: int = 512
    ridge: float = 1e-3
    bandwidth: float = 0.45
    # 8: on 2 CPU cores the pass's largest array (K x n x D features, 33 MB here) stays near
    # the cache. ms per model, 1,995 points, D = 512, subsampled masks: K = 4/8/16/32 gave
    # 11.3/11.5/18.8/15.1 on 2 threads; K = 4/6/8/12/16/25 gave 22/20/21/23/23/24 on one
    # (shared machine, best of 2-4); K = 50 gave 24 on one. On a GPU, raise it.
    models_per_pass: int = 8
    dtype: str = "float32"
    closed_form_loo: bool = True

    def __post_init__(self):
        if self.features < 1 or self.ridge <= 0 or self.bandwidth <= 0:
            raise ValueError(f"features must be >= 1, ridge and bandwidth > 0: {self}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")

    def config(self) -> dict:
        return {"family": self.family, **asdict(self)}

    def schema(self, dataset: Dataset) -> dict:
        return output_schema(dataset, with_loo=self.closed_form_loo)

    def _draw(self, seeds: np.ndarray, dim: int, device, dtype):
        weights, phases = [], []
        for seed in seeds:
            g = torch.Generator().manual_seed(int(seed))
            weights.append(torch.randn(dim, self.features, generator=g, dtype=torch.float64))
            phases.append(torch.rand(self.features, generator=g, dtype=torch.float64) * 2 * math.pi)
        return (torch.stack(weights).to(device, dtype) / self.bandwidth,
                torch.stack(phases).to(device, dtype).unsqueeze(1))

    def train(self, dataset: Dataset, masks: np.ndarray, seeds: np.ndarray,
              device: str | torch.device = "cpu") -> dict[str, np.ndarray]:
        masks = checked_masks(masks, dataset.n_train, seeds)
        device, dtype = torch.device(device), getattr(torch, self.dtype)
        x_train, x_test = (x.to(dtype) for x in _features(dataset, device))
        y_train, y_test = dataset.y_train.to(device), dataset.y_test.to(device)
        weights, phases = self._draw(seeds, x_train.shape[1], device, dtype)
        # x W + b as one product: b is the weight of a constant input 1 (no broadcast copy of b
        # over the K x n x D product: 4 % less time per model on CPU).
        weights = torch.cat([weights / _length_scale(dataset), phases], dim=1)   # (K, d + 1, D)
        x_train, x_test = (torch.cat([x, x.new_ones(len(x), 1)], dim=1) for x in (x_train, x_test))
        # Features without their factor sqrt(2/D), and the ridge divided by 2/D instead: the
        # same fit (beta is rescaled by sqrt(2/D), fitted values and h_ii are unchanged), one
        # pass less over the largest array.
        ridge = self.ridge * self.features / 2.0
        # Each model sees the training points in its own order, in-mask points first: its fit
        # reads the first counts[k] rows of its features as they are, with no masked copy.
        order, counts = _in_mask_first(masks, device)                             # (K, n), (K,)
        labels = y_train[order]                                                   # (K, n)
        phi = torch.bmm(x_train[order], weights, out=_reused("phi", (len(masks), dataset.n_train, self.features),
                                                             x_train)).cos_()    # (K, n, D)
        inside = (torch.arange(dataset.n_train, device=device) < counts.unsqueeze(1)).to(dtype)   # (K, n)
        targets = F.one_hot(labels, dataset.num_classes).to(dtype) * inside.unsqueeze(-1)       # (K, n, C)
        gram = _reused("gram", (len(masks), self.features, self.features), x_train)
        for k, count in enumerate(counts.tolist()):
            _lower_gram(phi[k, :count], out=gram[k])
        gram.diagonal(dim1=1, dim2=2).add_(ridge)
        chol, info = torch.linalg.cholesky_ex(gram)
        if info.any():
            raise TrainingDiverged(f"{self} on {dataset.name}: Gram matrix not positive definite "
                                   f"for seeds {seeds[info.cpu().numpy() > 0][:5].tolist()}; raise ridge")
        # Phi^T Y computed as (Y^T Phi)^T: the same product, in the layout BLAS is fast at.
        moment = targets.transpose(1, 2) @ phi                                    # (K, C, D)
        beta = torch.cholesky_solve(moment.transpose(1, 2), chol)                 # (K, D, C)
        fitted = _predict(phi, beta)                                              # (K, n, C)
        loss = (((fitted - targets) ** 2).sum(-1) * inside).sum(1) / counts
        if not torch.isfinite(loss).all():
            raise TrainingDiverged(f"{self} on {dataset.name}: non-finite fit; raise ridge")
        unpermute = order.argsort(1)
        phi_test = torch.bmm(x_test.expand(len(masks), -1, -1), weights,
                             out=_reused("phi_test", (len(masks), dataset.n_test, self.features), x_test)).cos_()
        out = {
            "train_margin": margins(fitted, labels).gather(1, unpermute).float().cpu().numpy(),
            "test_margin": margins(_predict(phi_test, beta), y_test).float().cpu().numpy(),
            "train_spp": fitted.float().softmax(-1).amax(-1).gather(1, unpermute).cpu().numpy(),
            "final_loss": loss.float().cpu().numpy(),
        }
        if self.closed_form_loo:
            # Rows of Phi_S L^-T are (L^-1 phi_i)^T, whose squared norms are the h_ii (computed
            # up to the longest mask only: the rows after it are outside every model's mask).
            last = int(counts.max())
            half = torch.linalg.solve_triangular(chol.transpose(1, 2), phi[:, :last], upper=True, left=False)
            hat = (half * half).sum(-1).unsqueeze(-1)                              # (K, m, 1)
            loo = (fitted[:, :last] - hat * targets[:, :last]) / (1.0 - hat)
            loo_margin = torch.full(masks.shape, float("nan"), dtype=dtype, device=device)
            loo_margin[:, :last] = margins(loo, labels[:, :last]).masked_fill(inside[:, :last] == 0, float("nan"))
            out["loo_margin"] = loo_margin.gather(1, unpermute).float().cpu().numpy()
        return out


def _predict(phi: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """phi @ beta for phi (K, n, D) and a few columns beta (K, D, C), computed as
    (beta^T phi^T)^T: BLAS is slow at products with a thin right-hand side (1.31 vs 0.44 ms per
    1,995 x 512 model and 5 classes, 2 CPU threads)."""
    return torch.bmm(beta.transpose(1, 2), phi.transpose(1, 2)).transpose(1, 2)


def _lower_gram(a: torch.Tensor, out: torch.Tensor, blocks: int = 4) -> torch.Tensor:
    """The lower triangle of a^T a for a (m, D), into out (D, D), in block rows: 5/8 of the
    multiply-adds of the whole product (BLAS syrk does this; torch does not expose it). Above
    the diagonal blocks ``out`` is left as it was: Cholesky factorisation reads the lower
    triangle only (tests/test_train.py checks this of torch). Measured 6.1 vs 8.1 ms per
    1,353 x 512 model on one core; 2 blocks: 6.6, 8 blocks: 6.3; mirroring the blocks into
    the upper triangle cost another 0.7 ms per model."""
    edges = [round(a.shape[1] * b / blocks) for b in range(blocks + 1)]
    for low, high in zip(edges[:-1], edges[1:]):
        torch.mm(a[:, low:high].T, a[:, :high], out=out[low:high, :high])   # rows low:high, columns :high
    return out


# The pass's largest arrays, kept from one pass to the next of the same shape: a fresh array
# of this size costs page faults on every pass on CPU (the K x n x D features of 8 models took
# 2.3 instead of 0.9 ms per model). One set per thread: passes may train side by side.
_buffers = threading.local()


def _reused(name: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    """An uninitialised array of this shape with ``like``'s dtype and device: the same one as
    this thread's last call with this name asked for, if shape, dtype and device match."""
    buffer = getattr(_buffers, name, None)
    if buffer is None or buffer.shape != shape or buffer.dtype != like.dtype or buffer.device != like.device:
        buffer = like.new_empty(shape)
        setattr(_buffers, name, buffer)
    return buffer


def _in_mask_first(masks: np.ndarray, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Per model, the training point indices with its in-mask points first (both parts
    ascending), and its number of in-mask points."""
    order = np.argsort(~masks, axis=1, kind="stable")
    return torch.from_numpy(order).to(device), torch.from_numpy(masks.sum(1)).to(device)
