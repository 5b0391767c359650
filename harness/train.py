"""Training K models in one pass, each on its own mask over the training points.

Two model families share one output schema (per model k and point i):

- ``train_margin[k, i]``: logit of the true class minus the largest other logit
  (the point is classified correctly iff the margin is > 0);
- ``test_margin[k, j]``: the same on test points;
- ``train_spp[k, i]``: maximum softmax probability (SPP, Hendrycks & Gimpel 2016);
- ``final_loss[k]``: training loss at the end of training;
- ridge only, ``loo_margin[k, i]``: the margin of the model refitted without point i
  (closed form, below); NaN for points outside the model's mask.

**MLP** (:class:`MLPSpec`): the K models' weights are stacked into ``(K, fan_in, fan_out)``
tensors and trained together with batched matmuls, so K small models cost about as much
as one K-times-wider model. Each model draws its minibatches from its own mask with its
own generator: every epoch a fresh permutation of its in-mask points, batches wrapping
around so all models take the same number of steps. The loss is the sum of the K models'
mean cross-entropies, so each model's gradient is exactly its own.
Learning rate: triangular, linear from 0 to ``lr`` at ``peak_at`` of the steps, then to 0.

**Random-feature ridge** (:class:`RidgeSpec`): features ``phi(x) = sqrt(2/D) cos(x W / s + b)``
(random Fourier features of an RBF kernel of bandwidth ``s``, given relative to the median
distance between training points; W, b drawn per model), ridge
regression on one-hot targets Y over the model's in-mask points S:

    beta = (Phi_S^T Phi_S + lambda I)^-1 Phi_S^T Y_S.

Its exact leave-one-out prediction for i in S follows from the same fit (hat-matrix identity),

    f_{-i}(x_i) = (f(x_i) - h_ii y_i) / (1 - h_ii),   h_ii = phi_i^T (Phi_S^T Phi_S + lambda I)^-1 phi_i,

so exact LOO over every training point costs one fit per draw instead of one per point.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from harness.data import Dataset


class TrainingDiverged(RuntimeError):
    """A model's loss became NaN or infinite; the message names the configuration."""


def output_schema(dataset: Dataset, with_loo: bool = False) -> dict[str, tuple[tuple[int, ...], str]]:
    """Per-model arrays a family writes to the store (see the module docstring)."""
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


def _check_masks(masks: np.ndarray, seeds: np.ndarray, n_train: int) -> None:
    if masks.ndim != 2 or masks.shape[1] != n_train or masks.dtype != np.bool_:
        raise ValueError(f"masks must be a bool array of shape (K, {n_train}), got {masks.dtype} {masks.shape}")
    if len(seeds) != len(masks):
        raise ValueError(f"{len(masks)} masks but {len(seeds)} seeds")
    empty = np.flatnonzero(masks.sum(axis=1) == 0)
    if len(empty):
        raise ValueError(f"models {empty[:5].tolist()} have an empty training mask")


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
    models_per_pass: int = 100

    def __post_init__(self):
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        if self.width < 1 or self.depth < 0 or self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"width, epochs and batch_size must be >= 1 and depth >= 0: {self}")

    def config(self) -> dict:
        return {"family": self.family, **asdict(self)}

    def schema(self, dataset: Dataset) -> dict:
        return output_schema(dataset)

    def _init(self, seeds: np.ndarray, dims: list[int], device) -> list[torch.Tensor]:
        """nn.Linear's default init, drawn per model from that model's own generator."""
        params = []
        for fan_in, fan_out in zip(dims[:-1], dims[1:]):
            bound = 1.0 / math.sqrt(fan_in)
            weights, biases = [], []
            for seed in seeds:
                g = torch.Generator().manual_seed(int(seed) * 7919 + fan_in * 31 + fan_out)
                weights.append(torch.rand(fan_in, fan_out, generator=g) * 2 * bound - bound)
                biases.append(torch.rand(fan_out, generator=g) * 2 * bound - bound)
            params += [torch.stack(weights).to(device).requires_grad_(),
                       torch.stack(biases).to(device).requires_grad_()]
        return params

    @staticmethod
    def _forward(params: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """x: (K, B, d) or (B, d) shared by all models -> logits (K, B, C)."""
        h = x
        for layer in range(0, len(params), 2):
            weight, bias = params[layer], params[layer + 1]
            h = torch.matmul(h, weight) + bias.unsqueeze(1)
            if layer + 2 < len(params):
                h = F.relu(h)
        return h

    def train(self, dataset: Dataset, masks: np.ndarray, seeds: np.ndarray,
              device: str | torch.device = "cpu") -> dict[str, np.ndarray]:
        _check_masks(masks, seeds, dataset.n_train)
        device = torch.device(device)
        x_train, x_test = _features(dataset, device)
        y_train, y_test = dataset.y_train.to(device), dataset.y_test.to(device)
        n_models = len(masks)
        dims = [x_train.shape[1]] + [self.width] * self.depth + [dataset.num_classes]
        params = self._init(seeds, dims, device)
        if self.optimizer == "sgd":
            opt = torch.optim.SGD(params, lr=self.lr, momentum=self.momentum,
                                  weight_decay=self.weight_decay, nesterov=True)
        else:
            opt = torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
        members = [np.flatnonzero(m) for m in masks]
        counts = torch.tensor([len(m) for m in members], device=device)
        generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
        steps_per_epoch = math.ceil(max(len(m) for m in members) / self.batch_size)
        total_steps = self.epochs * steps_per_epoch
        offsets = torch.arange(self.batch_size, device=device)
        step = 0
        for epoch in range(self.epochs):
            # Pad each model's permutation to the longest in-set; wrapping keeps batches inside the mask.
            order = torch.zeros(n_models, max(len(m) for m in members), dtype=torch.long)
            for k, (m, g) in enumerate(zip(members, generators)):
                order[k, :len(m)] = torch.from_numpy(m)[torch.randperm(len(m), generator=g)]
            order = order.to(device)
            noise = (torch.stack([torch.randn(steps_per_epoch, self.batch_size, x_train.shape[1],
                                              generator=g) for g in generators]).to(device) * self.input_noise
                     if self.input_noise > 0 else None)
            for batch in range(steps_per_epoch):
                position = (batch * self.batch_size + offsets).unsqueeze(0) % counts.unsqueeze(1)
                index = order.gather(1, position)
                xb = x_train[index]
                if noise is not None:
                    xb = xb + noise[:, batch]
                logits = self._forward(params, xb)
                loss = F.cross_entropy(logits.flatten(0, 1), y_train[index].flatten(),
                                       reduction="none").view(n_models, -1).mean(1)
                lr = self.lr * _triangular(step, total_steps, self.peak_at)
                for group in opt.param_groups:
                    group["lr"] = lr
                opt.zero_grad(set_to_none=True)
                loss.sum().backward()
                opt.step()
                step += 1
            bad = ~torch.isfinite(loss)
            if bad.any():
                k = int(bad.nonzero()[0])
                raise TrainingDiverged(f"{self} on {dataset.name}: model {k} (seed {int(seeds[k])}) "
                                       f"loss {float(loss[k])} at epoch {epoch + 1}/{self.epochs}; "
                                       f"lower lr or raise weight_decay")
        with torch.inference_mode():
            train_logits = self._forward(params, x_train)
            test_logits = self._forward(params, x_test)
            return {
                "train_margin": margins(train_logits, y_train).cpu().numpy(),
                "test_margin": margins(test_logits, y_test).cpu().numpy(),
                "train_spp": train_logits.softmax(-1).amax(-1).cpu().numpy(),
                "final_loss": loss.detach().cpu().numpy(),
            }


def median_distance(x: torch.Tensor, sample: int = 500) -> float:
    """Median Euclidean distance between ``sample`` evenly spaced points: the data's length scale."""
    head = x[:: max(1, len(x) // sample)].double()
    distances = torch.cdist(head, head)
    return float(distances[torch.triu(torch.ones_like(distances, dtype=torch.bool), 1)].median())


def _triangular(step: int, total: int, peak_at: float) -> float:
    peak = max(1.0, peak_at * total)
    return step / peak if step < peak else max(0.0, (total - step) / max(1.0, total - peak))


@dataclass(frozen=True)
class RidgeSpec:
    """Random Fourier-feature ridge classifier: exact LOO in closed form (module docstring)."""

    family: ClassVar[str] = "ridge"
    features: int = 512
    ridge: float = 1e-3
    bandwidth: float = 0.45
    models_per_pass: int = 50
    dtype: str = "float32"

    def __post_init__(self):
        if self.features < 1 or self.ridge <= 0 or self.bandwidth <= 0:
            raise ValueError(f"features must be >= 1, ridge and bandwidth > 0: {self}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")

    def config(self) -> dict:
        return {"family": self.family, **asdict(self)}

    def schema(self, dataset: Dataset) -> dict:
        return output_schema(dataset, with_loo=True)

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
        _check_masks(masks, seeds, dataset.n_train)
        device, dtype = torch.device(device), getattr(torch, self.dtype)
        x_train, x_test = (x.to(dtype) for x in _features(dataset, device))
        y_train, y_test = dataset.y_train.to(device), dataset.y_test.to(device)
        weights, phases = self._draw(seeds, x_train.shape[1], device, dtype)
        weights = weights / median_distance(x_train)
        scale = math.sqrt(2.0 / self.features)
        phi = torch.cos(torch.matmul(x_train, weights) + phases) * scale          # (K, n, D)
        phi_test = torch.cos(torch.matmul(x_test, weights) + phases) * scale
        inside = torch.from_numpy(masks).to(device, dtype).unsqueeze(-1)          # (K, n, 1)
        targets = F.one_hot(y_train, dataset.num_classes).to(dtype)               # (n, C)
        phi_in = phi * inside
        gram = phi_in.transpose(1, 2) @ phi_in
        gram.diagonal(dim1=1, dim2=2).add_(self.ridge)
        chol, info = torch.linalg.cholesky_ex(gram)
        if info.any():
            raise TrainingDiverged(f"{self} on {dataset.name}: Gram matrix not positive definite "
                                   f"for seeds {seeds[info.cpu().numpy() > 0][:5].tolist()}; raise ridge")
        beta = torch.cholesky_solve(phi_in.transpose(1, 2) @ targets, chol)       # (K, D, C)
        fitted = phi @ beta
        half = torch.linalg.solve_triangular(chol, phi.transpose(1, 2), upper=False)
        hat = (half * half).sum(1)                                                 # (K, n): h_ii
        loo = (fitted - hat.unsqueeze(-1) * targets) / (1.0 - hat).unsqueeze(-1)
        loo_margin = margins(loo, y_train).masked_fill(~torch.from_numpy(masks).to(device), float("nan"))
        residual = ((fitted - targets) ** 2).sum(-1) * inside.squeeze(-1)
        loss = residual.sum(1) / inside.squeeze(-1).sum(1)
        if not torch.isfinite(loss).all():
            raise TrainingDiverged(f"{self} on {dataset.name}: non-finite fit; raise ridge")
        return {
            "train_margin": margins(fitted, y_train).float().cpu().numpy(),
            "test_margin": margins(phi_test @ beta, y_test).float().cpu().numpy(),
            "train_spp": fitted.float().softmax(-1).amax(-1).cpu().numpy(),
            "final_loss": loss.float().cpu().numpy(),
            "loo_margin": loo_margin.float().cpu().numpy(),
        }
