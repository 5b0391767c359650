"""Throughput of the harness's trainers on this machine: ``python -m harness.bench``.

Prints a table (``--json``: one JSON object of the same figures; ``--quick``: a smaller run
for CI smoke, seconds). Every time is the best of ``--repeats`` runs, because the machine may
be shared: the load average before and after is printed with the figures.

- ``matmul_peak_flops``: the machine's own float32 peak, the best of a few large square
  matmuls (2 n^3 FLOPs each);
- every ensemble is trained the suite's way, by ``train_ensemble`` into a throw-away store:
  passes of ``models_per_pass`` models, as many at once as torch has CPU threads, one thread
  each (``harness.ensemble.torch_threads``);
- MLP family: K models (default ``MLPSpec``, each on its own random 70 % subset of the default
  synthetic set, ~1,600 points) trained as an ensemble, against a plain per-model PyTorch loop doing the same work (:func:`plain_loop_mlp`: an
  ``nn.Sequential``, ``torch.optim.SGD`` with the same recipe, epochs and batch size, one
  model after another). The loop is timed on its first ``--loop-models`` models (its time is
  linear in the models) and both families' test accuracies are compared on those models:
  ``mlp_ensemble_speedup`` counts only if their means agree within 2 points.
  Effective FLOP/s of the ensemble: forward + backward = 3x the forward matmul FLOPs,
  ``3 * 2 B sum(fan_in fan_out)`` per model and step, over the steps actually taken (the
  usual model-FLOPs convention, 6 per parameter and example; neither the ensemble nor the
  loop computes the first layer's input gradient, so the arithmetic done is 0.71 of this
  count at the default sizes); ``mlp_ensemble_mfu`` is that over the matmul peak. Both ratios
  come from paired rounds (``--repeats`` of them): the peak (best of 3 2,048 matmuls), the
  ensemble and the loop timed back to back, each ratio taken within its round; the figure is
  the median round, ``_rounds`` lists them all;
- ridge family on ``RIDGE_DATA`` (1,995 training points): ``ridge_exact_loo_seconds``, exact
  LOO scores of every training point from 100 random-feature draws (``RidgeSpec``,
  ``full_plan``, ``estimators.closed_form_loo``), and ``ridge_subsampled_2000_seconds``,
  a 2,000-model subsampled estimate at r = 0.7 (``RidgeSpec(closed_form_loo=False)``,
  ``subsampled_plan``, ``estimators.subsampled``). ``--quick`` times
  fewer models and reports them as ``ridge_subsampled_seconds`` / ``ridge_subsampled_models``
  only (the ``_2000`` key appears only when 2,000 models were timed).
  ``ridge_subsampled_floor_seconds`` is what the same models cannot go below on this machine:
  per model, its Gram matrix's distinct multiply-adds (m D^2 FLOPs for m in-mask points, what
  BLAS syrk does) and a Cholesky factorisation (D^3 / 3) at ``matmul_peak_flops``, plus a
  cosine for each of its (n + n_test) x D features at the machine's measured rate for
  ``torch.cos`` (``cos_values_per_second``); nothing else (drawing, solving, predicting) counted;
- per family and size (MLP width 64, 128, 256; ridge 256, 512, 1,024 features):
  ``<family>_<size>_models_per_second`` and ``_mfu``, the ensemble's FLOPs (:func:`mlp_flops`,
  :func:`ridge_flops`) per second over the matmul peak, from paired rounds like the MLP's;
- conv ensembles (:func:`conv_figures`, also called by the GPU check): ``small_cnn`` and
  ``vgg6`` on generated CIFAR-shaped images (random uint8 pixels and labels, flips and 2-pixel
  translations), K models a pass each on a random 70 % of them, trained one epoch by each path
  of ``harness.zoo.train_conv_ensemble`` (stacked, vmap, the per-model loop; training only:
  ``train_ensemble`` runs this per chunk and then writes to the store). On CPU tiny images
  (8 or 16 pixels) and K in {4, 8}: the ratio between the paths, not a paper-scale rate; on
  CUDA 32x32 at batch 512 and K in {4, 8, 16, 32}, with each pass's peak allocated memory and
  models/hour at the paper recipe estimated from the step time (6,900 steps a model).
  ``conv_<model>_stacked_over_vmap``: stacked over vmap models per second at K = 8, the
  median of paired rounds (``_rounds``), like the MLP's ratios. At the CPU's image sizes
  VGG-6's last convolution sees one-pixel maps and so takes the stacked path's matrix-product
  form (``harness.stacked``); at 32x32 it sees 2x2 maps and stays grouped, so VGG-6's CPU
  ratio does not carry over to CIFAR-10's size. The stacked path with its step compiled
  (``torch.compile`` with inductor, ``harness.zoo``) is timed at K = 8 on CUDA, with its first
  pass's seconds (compilation included), its recompiles and ``conv_<model>_compiled_over_stacked``;
  on a CPU only with ``--compile`` (inductor's C++ code generation takes over a minute here);
- ``peak_memory_mb``: the process's peak resident memory on CPU, peak allocated memory on CUDA.

Threads: torch's default (one per core) unless ``--threads``; the plain loop runs on all of
them, the ensemble's passes one thread each. On a machine other jobs share, OpenMP threads
wait for each other at every operation: compare with ``--threads 1``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import tempfile
import time
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from harness import estimators
from harness.data import Dataset, SubpopulationSpec, synthetic
from harness.ensemble import train_ensemble
from harness.images import DeviceAugment
from harness.masks import MaskPlan, full_plan, subsampled_plan
from harness.store import Store
from harness.train import MLPSpec, RidgeSpec, triangular_lr

# The default generator with a larger head sub-population: 5 classes x (16 Zipf sizes from
# 185 down + 6 singletons) = 1,995 training points, 32 dimensions.
RIDGE_DATA = SubpopulationSpec(largest=185)
SAMPLING_RATE = 0.7
ACCURACY_TOLERANCE = 0.02


def _timed(fn: Callable[[], object], device: torch.device, repeats: int) -> tuple[float, object]:
    """Best wall-clock seconds of ``repeats`` calls, and the last call's result."""
    best, result = math.inf, None
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        result = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best, result


def _paired_rounds(device: torch.device, peak_sizes: tuple[int, ...], repeats: int,
                   *calls: Callable[[], object]) -> tuple[np.ndarray, list[np.ndarray], list]:
    """``repeats`` rounds, each timing the matmul peak and then every call once, back to back:
    the peaks per round, each call's seconds per round, and the last round's results."""
    peaks, times, results = [], [[] for _ in calls], []
    for _ in range(repeats):
        peaks.append(matmul_peak_flops(device, peak_sizes, 3))
        results = []
        for call, seconds in zip(calls, times):
            elapsed, result = _timed(call, device, 1)
            seconds.append(elapsed)
            results.append(result)
    return np.array(peaks), [np.array(seconds) for seconds in times], results


def matmul_peak_flops(device: torch.device, sizes: tuple[int, ...], repeats: int) -> float:
    best = 0.0
    for n in sizes:
        a, b = (torch.randn(n, n, device=device) for _ in range(2))
        a @ b  # warm-up: thread pools, kernels
        seconds, _ = _timed(lambda: a @ b, device, repeats)
        best = max(best, 2 * n**3 / seconds)
    return best


def _trained(dataset: Dataset, spec, plan: MaskPlan, device: torch.device) -> dict[str, np.ndarray]:
    """The ensemble trained from scratch by the suite's own path (``train_ensemble``) into a
    throw-away store; its arrays, read into memory."""
    with tempfile.TemporaryDirectory(prefix="memsuite-bench-") as root:
        ensemble = train_ensemble(dataset, spec, plan, Store(root), device=str(device), progress=False)
        return {name: np.array(values) for name, values in ensemble.arrays.items()}


def plain_loop_mlp(dataset: Dataset, spec: MLPSpec, mask: np.ndarray, seed: int, device: torch.device) -> float:
    """One model the way a researcher writes it: nn.Sequential, torch.optim.SGD, a minibatch
    loop over a fresh permutation of the model's points each epoch. Returns its test accuracy."""
    if spec.optimizer != "sgd" or spec.input_noise:
        raise ValueError("the plain loop reproduces the SGD recipe without input noise only")
    torch.manual_seed(seed)
    widths = [dataset.x_train.shape[1]] + [spec.width] * spec.depth
    layers = []
    for fan_in, fan_out in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
    model = nn.Sequential(*layers, nn.Linear(widths[-1], dataset.num_classes)).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=spec.lr, momentum=spec.momentum,
                                weight_decay=spec.weight_decay, nesterov=True)
    members = torch.from_numpy(np.flatnonzero(mask)).to(device)
    total_steps = spec.epochs * math.ceil(len(members) / spec.batch_size)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: triangular_lr(step, total_steps, spec.peak_at))
    x, y = dataset.x_train.to(device), dataset.y_train.to(device)
    for _ in range(spec.epochs):
        for batch in members[torch.randperm(len(members), device=device)].split(spec.batch_size):
            loss = F.cross_entropy(model(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    with torch.no_grad():
        return float((model(dataset.x_test.to(device)).argmax(1) == dataset.y_test.to(device)).float().mean())


def mlp_figures(device: torch.device, models: int, loop_models: int, repeats: int,
                peak_sizes: tuple[int, ...]) -> dict:
    dataset, spec = synthetic(), MLPSpec()
    plan = subsampled_plan(dataset.n_train, models, SAMPLING_RATE, seed=0)
    seeds = plan.seeds(0)  # as train_ensemble draws them (seed 0)
    # Untimed warm-up: the first call in a process pays one-off costs (thread pools, kernel
    # choices: 1.5 s instead of 0.3 s for 10 models on one thread).
    brief = MLPSpec(epochs=1)
    _trained(dataset, brief, subsampled_plan(dataset.n_train, 4, SAMPLING_RATE, seed=1), device)
    plain_loop_mlp(dataset, brief, plan.masks[0], int(seeds[0]), device)
    # Paired rounds: the peak, the ensemble and the loop timed back to back, each ratio taken
    # within its round. On a shared machine whose speed drifts (the peak measured here moved
    # between 1.1e11 and 1.7e11 FLOP/s within an hour), best-of times taken minutes apart
    # pair a fast moment with a slow one.
    peaks, (times, loop_times), (out, loop_accuracy) = _paired_rounds(
        device, peak_sizes, repeats, lambda: _trained(dataset, spec, plan, device),
        lambda: [plain_loop_mlp(dataset, spec, plan.masks[k], int(seeds[k]), device) for k in range(loop_models)])
    ensemble_accuracy = (out["test_margin"] > 0).mean(1)
    gap = abs(float(np.mean(loop_accuracy)) - float(ensemble_accuracy[:loop_models].mean()))
    flops = mlp_flops(spec, dataset, plan)
    speedups = (models / times) / (loop_models / loop_times)
    utilisations = flops / times / peaks
    return {
        "mlp_models": models,
        "mlp_train_points": dataset.n_train,
        "mlp_ensemble_seconds": float(times.min()),
        "mlp_ensemble_models_per_second": models / float(times.min()),
        "mlp_loop_models": loop_models,
        "mlp_loop_seconds": float(loop_times.min()),
        "mlp_loop_models_per_second": loop_models / float(loop_times.min()),
        "mlp_ensemble_speedup": float(np.median(speedups)),
        "mlp_ensemble_speedup_rounds": speedups.round(2).tolist(),
        "mlp_ensemble_test_accuracy": float(ensemble_accuracy.mean()),
        "mlp_ensemble_test_accuracy_loop_models": float(ensemble_accuracy[:loop_models].mean()),
        "mlp_loop_test_accuracy": float(np.mean(loop_accuracy)),
        "mlp_accuracies_agree": gap <= ACCURACY_TOLERANCE,
        "mlp_ensemble_flops": flops / float(times.min()),
        "mlp_ensemble_mfu": float(np.median(utilisations)),
        "mlp_ensemble_mfu_rounds": utilisations.round(3).tolist(),
    }


def mlp_flops(spec: MLPSpec, dataset: Dataset, plan: MaskPlan) -> float:
    """Training FLOPs of the ensemble (module docstring): 3x the forward matmuls, over the steps
    taken. Every model of a pass takes the steps of the pass's largest mask (harness.train)."""
    dims = [dataset.x_train.shape[1]] + [spec.width] * spec.depth + [dataset.num_classes]
    forward_flops = 2 * spec.batch_size * sum(a * b for a, b in zip(dims[:-1], dims[1:]))
    model_steps = 0
    for start in range(0, plan.n_models, spec.models_per_pass):
        counts = plan.masks[start:start + spec.models_per_pass].sum(1)
        model_steps += len(counts) * spec.epochs * math.ceil(counts.max() / spec.batch_size)
    return 3 * forward_flops * model_steps


def ridge_flops(spec: RidgeSpec, dataset: Dataset, plan: MaskPlan) -> float:
    """Fitting FLOPs of the ensemble, per model with m in-mask points, D features, C classes,
    d inputs and N = n + n_test points: features 2 N (d + 1) D, Gram m D^2 (its distinct
    entries), Cholesky D^3 / 3, moment 2 m D C, solve 2 D^2 C, predictions 2 N D C. Cosines
    are not FLOPs (see ``ridge_subsampled_floor_seconds``); closed-form LOO is not counted."""
    n_points, classes, inputs = dataset.n_train + dataset.n_test, dataset.num_classes, dataset.x_train[0].numel()
    features = spec.features
    per_model = (2 * n_points * (inputs + 1) * features + features**3 / 3 + 2 * features**2 * classes
                 + 2 * n_points * features * classes)
    in_mask = plan.masks.sum(1).astype(float)
    return float(plan.n_models * per_model + (in_mask * features**2 + 2 * in_mask * features * classes).sum())


# The sizes timed per family (the defaults, MLP width 128 and 512 ridge features, among them).
MLP_WIDTHS = (64, 128, 256)
RIDGE_FEATURES = (256, 512, 1024)


def size_figures(device: torch.device, quick: bool, repeats: int, peak_sizes: tuple[int, ...]) -> dict:
    """Models per second and utilisation for each family and size, in paired rounds like the
    MLP's: a matmul then the ensemble, the utilisation taken within each round (median)."""
    mlp_data, ridge_data = synthetic(), synthetic(RIDGE_DATA)
    mlp_plan = subsampled_plan(mlp_data.n_train, 10 if quick else 200, SAMPLING_RATE, seed=2)
    ridge_plan = subsampled_plan(ridge_data.n_train, 16 if quick else 96, SAMPLING_RATE, seed=2)
    cases = ([(f"mlp_width_{width}", mlp_data, MLPSpec(width=width), mlp_plan, mlp_flops) for width in MLP_WIDTHS]
             + [(f"ridge_features_{features}", ridge_data, RidgeSpec(features=features, closed_form_loo=False),
                 ridge_plan, ridge_flops) for features in RIDGE_FEATURES])
    figures = {}
    for name, dataset, spec, plan, count_flops in cases:
        peaks, (times,), _ = _paired_rounds(device, peak_sizes, repeats, lambda: _trained(dataset, spec, plan, device))
        figures[f"{name}_models_per_second"] = plan.n_models / float(times.min())
        figures[f"{name}_mfu"] = float(np.median(count_flops(spec, dataset, plan) / times / peaks))
    return figures


def cos_values_per_second(device: torch.device, repeats: int) -> float:
    values = torch.rand(2**23, device=device) * 2 * math.pi
    out = torch.empty_like(values)
    torch.cos(values, out=out)  # warm-up
    seconds, _ = _timed(lambda: torch.cos(values, out=out), device, repeats)
    return values.numel() / seconds


def ridge_floor_seconds(models: int, in_mask: float, points: int, features: int, peak: float,
                        cosines_per_second: float) -> float:
    """Seconds ``models`` ridge fits of ``in_mask`` points each take at the least: the Gram
    matrix's distinct FLOPs and the Cholesky factorisation's at ``peak``, and the features'
    cosines on ``points`` training and test points (module docstring)."""
    flops = in_mask * features**2 + features**3 / 3
    return models * (flops / peak + points * features / cosines_per_second)


def ridge_figures(device: torch.device, loo_draws: int, subsampled_models: int, repeats: int,
                  peak: float) -> dict:
    dataset = synthetic(RIDGE_DATA)
    spec, fit_only = RidgeSpec(), RidgeSpec(closed_form_loo=False)
    _trained(dataset, spec, full_plan(dataset.n_train, 2), device)  # warm-up

    def exact_loo():
        plan = full_plan(dataset.n_train, loo_draws)
        out = _trained(dataset, spec, plan, device)
        return estimators.closed_form_loo(plan.masks, out["train_margin"], out["loo_margin"]), out

    def subsampled():
        plan = subsampled_plan(dataset.n_train, subsampled_models, SAMPLING_RATE, seed=0)
        out = _trained(dataset, fit_only, plan, device)
        return estimators.subsampled(plan.masks, out["train_margin"]), out

    loo_seconds, (loo, loo_out) = _timed(exact_loo, device, repeats)
    sub_seconds, (sub, sub_out) = _timed(subsampled, device, repeats)
    cosines = cos_values_per_second(device, repeats)
    floor = ridge_floor_seconds(subsampled_models, SAMPLING_RATE * dataset.n_train, dataset.n_train + dataset.n_test,
                                spec.features, peak, cosines)
    figures = {
        "ridge_train_points": dataset.n_train,
        "ridge_features": spec.features,
        "ridge_loo_draws": loo_draws,
        "ridge_exact_loo_seconds": loo_seconds,
        "ridge_loo_test_accuracy": float((loo_out["test_margin"] > 0).mean()),
        "ridge_mean_loo_memorization": float(loo.score.mean()),
        "ridge_subsampled_models": subsampled_models,
        "ridge_subsampled_seconds": sub_seconds,
        "cos_values_per_second": cosines,
        "ridge_subsampled_floor_seconds": floor,
        "ridge_subsampled_test_accuracy": float((sub_out["test_margin"] > 0).mean()),
        "ridge_mean_subsampled_memorization": float(sub.score.mean()),
    }
    if subsampled_models == 2000:
        figures["ridge_subsampled_2000_seconds"] = sub_seconds
    return figures


# Conv ensembles: the paths of harness.zoo.train_conv_ensemble on generated CIFAR-shaped images.
CONV_MODELS = ("small_cnn", "vgg6")
CONV_PATHS = ("stacked", "vmap", "loop")
CONV_PAIRED_K = 8
# CPU: tiny images and one short epoch (the ratio between paths, not a paper-scale figure);
# CUDA: CIFAR-10's 32x32 at the paper recipe's batch of 512.
CONV_WORKLOADS = {  # (image size, training images, batch) per device type, quick or not
    ("cpu", True): (8, 64, 32), ("cpu", False): (16, 128, 32),
    ("cuda", True): (32, 2048, 512), ("cuda", False): (32, 4096, 512),
}
CONV_KS = {"cpu": (4, 8), "cuda": (4, 8, 16, 32)}
# IMN25's recipe: 100 epochs of ceil(0.7 x 50,000 / 512) = 69 steps for a model at r = 0.7.
PAPER_STEPS_PER_MODEL = 100 * math.ceil(0.7 * 50_000 / 512)


def paper_models_per_hour(models: int, seconds_per_step: float) -> float:
    """Models an hour at the paper recipe when a pass of ``models`` takes ``seconds_per_step``
    a step (evaluation and set-up left out: a few percent of 6,900 steps)."""
    return 3600 * models / (seconds_per_step * PAPER_STEPS_PER_MODEL)


def conv_dataset(image_size: int, n_train: int, seed: int = 0) -> Dataset:
    """Random uint8 images (3, size, size) with 10 random labels: the shape of CIFAR-10."""
    generator = torch.Generator().manual_seed(seed)
    n_test = max(1, n_train // 8)
    return Dataset(name=f"random-{image_size}px", num_classes=10,
                   x_train=torch.randint(0, 256, (n_train, 3, image_size, image_size), dtype=torch.uint8,
                                         generator=generator),
                   y_train=torch.randint(0, 10, (n_train,), generator=generator),
                   x_test=torch.randint(0, 256, (n_test, 3, image_size, image_size), dtype=torch.uint8,
                                        generator=generator),
                   y_test=torch.randint(0, 10, (n_test,), generator=generator))


def _conv_fit(model: str, path: str, dataset: Dataset, k: int, recipe, device: torch.device,
              sync_debug_mode: str | None = None, compile_backend: str | None = None):
    """One pass of ``k`` models, each on a random 70 % of the images, trained (not evaluated):
    what ``train_ensemble`` runs per chunk, without the store's writes."""
    from harness import zoo

    plan = subsampled_plan(dataset.n_train, k, SAMPLING_RATE, seed=3)
    masks, seeds = zoo._check_inputs(dataset, plan.masks, plan.seeds(0))
    return zoo._fit(model, dataset, masks, seeds, recipe, device, DeviceAugment(flip=True, translate=2),
                    progress=False, path=path, sync_debug_mode=sync_debug_mode, compile_backend=compile_backend)


# Why a CPU does not time the compiled stacked path unless asked (bench --compile).
COMPILE_SKIPPED_ON_CPU = ("not compiled on a CPU unless asked (python -m harness.bench --compile): inductor's C++ "
                          "code generation took 83 s for the stacked small_cnn's forward and backward on this "
                          "project's 2-core CPU")


def conv_compile_backend(device: torch.device, compile_backend: str | None = "auto") -> str | None:
    """The backend :func:`conv_figures` compiles the stacked path with: ``"auto"`` is inductor on
    CUDA and nothing on a CPU (:data:`COMPILE_SKIPPED_ON_CPU`); None compiles nothing."""
    if compile_backend == "auto":
        from harness.specs import COMPILE_BACKEND

        return COMPILE_BACKEND if device.type == "cuda" else None
    return compile_backend


def compiled_conv_figures(model: str, dataset: Dataset, k: int, recipe, device: torch.device, backend: str,
                          repeats: int, paired_rounds: int, steps: int) -> dict:
    """The compiled stacked path of ``model`` at K = ``k`` (:func:`conv_figures`'s docstring)."""
    name = f"conv_{model}_stacked_compiled"
    passes = []

    def compiled_pass():
        passes.append(_conv_fit(model, "stacked", dataset, k, recipe, device, compile_backend=backend))

    # The first pass compiles (unless an earlier one in this process did): untimed, but reported.
    first_pass_seconds, _ = _timed(compiled_pass, device, 1)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds, _ = _timed(compiled_pass, device, repeats)
    figures = {f"{name}_k{k}_models_per_second": k / seconds}
    if device.type == "cuda":
        figures[f"{name}_k{k}_peak_memory_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
        figures[f"{name}_k{k}_paper_models_per_hour"] = paper_models_per_hour(k, seconds / steps)
    _, (compiled_seconds, eager_seconds), _ = _paired_rounds(
        device, (256,), paired_rounds, compiled_pass,
        lambda: _conv_fit(model, "stacked", dataset, k, recipe, device))
    ratios = eager_seconds / compiled_seconds
    first, later = passes[0], passes[1:]
    return figures | {
        f"{name}_backend": backend, f"{name}_k": k, f"{name}_models_per_second": k / seconds,
        f"{name}_first_pass_seconds": first_pass_seconds,
        f"{name}_first_pass_graphs_compiled": first.graphs_compiled,
        f"{name}_recompiles": first.recompiles + sum(p.graphs_compiled for p in later),
        f"conv_{model}_compiled_over_stacked": float(np.median(ratios)),
        f"conv_{model}_compiled_over_stacked_rounds": ratios.round(2).tolist()}


def conv_figures(device: str | torch.device, ks: tuple[int, ...] | None = None, quick: bool = False,
                 repeats: int | None = None, paths: tuple[str, ...] = CONV_PATHS,
                 models: tuple[str, ...] = CONV_MODELS, compile_backend: str | None = "auto") -> dict:
    """Training throughput of the conv ensemble paths (module docstring), one dict of figures.

    Per model, path and K: ``conv_<model>_<path>_k<K>_models_per_second`` and, on CUDA,
    ``_peak_memory_mb`` (the pass's peak allocated memory) and ``_paper_models_per_hour`` (the
    measured step time over the paper recipe's 6,900 steps a model). ``conv_<model>_<path>
    _models_per_second`` is the figure at K = 8, and ``conv_<model>_stacked_over_vmap`` the
    median over paired rounds (stacked then vmap back to back, ``_rounds`` each round's ratio)
    of stacked over vmap models per second at K = 8.

    The stacked path compiled (``compile_backend``, :func:`conv_compile_backend`: by default on
    CUDA only, else ``conv_stacked_compiled_skipped`` says why), at K = 8 (the largest K when
    8 is not timed), as ``conv_<model>_stacked_compiled_...``: ``models_per_second`` (and per K,
    with CUDA's memory and paper rate as above), ``first_pass_seconds`` (an untimed first pass,
    compiling unless an earlier pass in the process did) and ``first_pass_graphs_compiled``,
    ``recompiles`` (graphs compiled after that first pass's first step, in it and in every later
    compiled pass: 0 when the graphs are reused), and ``conv_<model>_compiled_over_stacked``,
    compiled over eager stacked models per second in paired rounds.
    """
    from harness import zoo

    device = torch.device(device)
    ks = tuple(ks or CONV_KS[device.type])
    repeats = repeats or (1 if quick else 3)
    size, n_train, batch = CONV_WORKLOADS[(device.type, quick)]
    dataset = conv_dataset(size, n_train)
    recipe = zoo.Recipe("bench", epochs=1, batch_size=batch, peak_lr=0.1, weight_decay=5e-4)
    steps = math.ceil(max(subsampled_plan(n_train, max(ks), SAMPLING_RATE, seed=3).masks.sum(1)) / batch)
    figures = {"conv_image_size": size, "conv_train_points": n_train, "conv_batch": batch,
               "conv_steps": steps, "conv_ks": list(ks)}
    backend = conv_compile_backend(device, compile_backend)
    if backend is None:
        figures["conv_stacked_compiled_skipped"] = (COMPILE_SKIPPED_ON_CPU if compile_backend == "auto"
                                                    else "compile_backend=None")
    paired_rounds = repeats if quick else max(repeats, 3)
    for model in models:
        for path in paths:
            # Untimed: the first pass of a path pays one-off costs (vmap's tracing, kernel choices).
            _conv_fit(model, path, dataset, ks[0], recipe, device)
            for k in ks:
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                seconds, _ = _timed(lambda: _conv_fit(model, path, dataset, k, recipe, device), device, repeats)
                name = f"conv_{model}_{path}_k{k}"
                figures[f"{name}_models_per_second"] = k / seconds
                if device.type == "cuda":
                    figures[f"{name}_peak_memory_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
                    figures[f"{name}_paper_models_per_hour"] = paper_models_per_hour(k, seconds / steps)
            if CONV_PAIRED_K in ks:
                figures[f"conv_{model}_{path}_models_per_second"] = figures[
                    f"conv_{model}_{path}_k{CONV_PAIRED_K}_models_per_second"]
        if {"stacked", "vmap"} <= set(paths) and CONV_PAIRED_K in ks:
            # Paired rounds: on a shared machine speed drifts; a ratio within a round does not.
            _, (stacked, vmapped), _ = _paired_rounds(
                device, (256,), paired_rounds,
                lambda: _conv_fit(model, "stacked", dataset, CONV_PAIRED_K, recipe, device),
                lambda: _conv_fit(model, "vmap", dataset, CONV_PAIRED_K, recipe, device))
            ratios = vmapped / stacked
            figures[f"conv_{model}_stacked_over_vmap"] = float(np.median(ratios))
            figures[f"conv_{model}_stacked_over_vmap_rounds"] = ratios.round(2).tolist()
        if backend is not None:
            k = CONV_PAIRED_K if CONV_PAIRED_K in ks else max(ks)
            figures |= compiled_conv_figures(model, dataset, k, recipe, device, backend, repeats, paired_rounds, steps)
    return figures


# Sections of harness.gpu_check (each a function of its Check: .device, .dry_run).


def conv_paths_section(check) -> dict:
    """:func:`conv_figures` at the device's sizes, uncompiled (the dry run: small_cnn, stacked and
    vmap only)."""
    if check.dry_run:
        return conv_figures(check.device, ks=(CONV_PAIRED_K,), quick=True, repeats=1, paths=("stacked", "vmap"),
                            models=("small_cnn",), compile_backend=None)
    # Best of 2: the first pass at each K also pays cuDNN's autotuning for its shapes.
    return conv_figures(check.device, repeats=2 if check.device.type == "cuda" else 1, compile_backend=None)


def conv_compiled_section(check) -> dict:
    """The stacked path compiled (:func:`compiled_conv_figures` of each model at K = 8, the device's
    sizes): inductor on CUDA, a section of its own so that a failed compilation loses no other
    figure. The dry run compiles small_cnn with aot_eager (no generated code): the plumbing, in seconds."""
    if check.dry_run:
        return conv_figures(check.device, ks=(CONV_PAIRED_K,), quick=True, repeats=1, paths=(),
                            models=("small_cnn",), compile_backend="aot_eager")
    return conv_figures(check.device, ks=(CONV_PAIRED_K,), repeats=2 if check.device.type == "cuda" else 1,
                        paths=(), compile_backend="auto")


def _sync_workload(check):
    from harness import zoo

    size, n_train, batch = CONV_WORKLOADS[(check.device.type, True)]
    recipe = zoo.Recipe("sync-check", epochs=1 if check.dry_run else 2, batch_size=batch, peak_lr=0.1,
                        weight_decay=5e-4)
    return conv_dataset(size, n_train), recipe


def host_syncs_section(check) -> dict:
    """Host syncs per training step of each path (vgg6, K = 8, two epochs): the epochs run under
    ``torch.cuda.set_sync_debug_mode("error")``; a path that raises is run again under "warn"
    and its warnings counted, with the first one's message."""
    import warnings

    if check.device.type != "cuda":
        return {"skipped": "CUDA only: torch.cuda.set_sync_debug_mode sees CUDA host syncs, and a CPU has none"}
    dataset, recipe = _sync_workload(check)
    figures = {}
    for path in CONV_PATHS:
        first_sync = None
        try:
            fitted = _conv_fit("vgg6", path, dataset, CONV_PAIRED_K, recipe, check.device, sync_debug_mode="error")
        except RuntimeError as error:
            first_sync = str(error).splitlines()[0][:300]
        # The failed loop puts the mode back only once its traceback is gone: do it here.
        torch.cuda.set_sync_debug_mode(0)
        if first_sync is None:
            figures[f"{path}_host_syncs_per_step"] = 0.0
            continue
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fitted = _conv_fit("vgg6", path, dataset, CONV_PAIRED_K, recipe, check.device, sync_debug_mode="warn")
        torch.cuda.set_sync_debug_mode(0)
        steps = recipe.epochs * fitted.setup.steps_per_epoch * (CONV_PAIRED_K if path == "loop" else 1)
        figures[f"{path}_host_syncs_per_step"] = len(caught) / steps
        figures[f"{path}_first_sync"] = first_sync
    return figures


def kernel_profile_section(check, top: int = 10) -> dict:
    """The ``top`` kernels (CUDA; operators on a CPU) by their own time in one stacked vgg6 pass
    (K = 8, two epochs), from ``torch.profiler``: name, calls, milliseconds, share of the total."""
    from torch.profiler import ProfilerActivity, profile

    dataset, recipe = _sync_workload(check)
    on_cuda = check.device.type == "cuda"
    if not check.dry_run:
        _conv_fit("vgg6", "stacked", dataset, CONV_PAIRED_K, recipe, check.device)  # kernels chosen, untimed
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_cuda else [])
    with profile(activities=activities) as profiler:
        _conv_fit("vgg6", "stacked", dataset, CONV_PAIRED_K, recipe, check.device)
        if on_cuda:
            torch.cuda.synchronize(check.device)
    own = "self_device_time_total" if on_cuda else "self_cpu_time_total"
    events = [e for e in profiler.key_averages() if getattr(e, own) > 0]
    total = sum(getattr(e, own) for e in events)
    events.sort(key=lambda e: getattr(e, own), reverse=True)
    return {"time": "device" if on_cuda else "cpu", "total_ms": total / 1e3,
            "top": [{"name": e.key[:120], "calls": e.count, "ms": getattr(e, own) / 1e3,
                     "share": getattr(e, own) / total} for e in events[:top]]}


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def mlp_sizes(quick: bool, loop_models: int | None = None) -> tuple[int, int]:
    """Models in the MLP ensemble, and how many of them the plain loop is timed on."""
    models = 10 if quick else 200  # 200: two passes, one per core on 2 cores
    loop_models = loop_models if loop_models is not None else (2 if quick else 20)
    if not 1 <= loop_models <= models:
        raise ValueError(f"the plain loop is timed on 1 to {models} of the ensemble's models, got {loop_models}")
    return models, loop_models


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            return next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        return "cpu"


def run(device: str, quick: bool, repeats: int, loop_models: int | None = None, conv: bool = True,
        compile_backend: str | None = "auto") -> dict:
    models, loop_models = mlp_sizes(quick, loop_models)
    device = torch.device(device)
    load_before = os.getloadavg()[0]
    peak = matmul_peak_flops(device, (1024,) if quick else (2048, 4096), repeats)
    figures = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({_cpu_name()})",
        "torch_version": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "repeats": repeats,
        "load_average_before": load_before,
        "matmul_peak_flops": peak,
    }
    figures |= mlp_figures(device, models, loop_models, repeats, (1024,) if quick else (2048,))
    figures |= ridge_figures(device, loo_draws=8 if quick else 100, subsampled_models=16 if quick else 2000,
                             repeats=repeats, peak=peak)
    figures |= size_figures(device, quick, repeats, (1024,) if quick else (2048,))
    if conv:
        figures |= conv_figures(device, quick=quick, repeats=repeats, compile_backend=compile_backend)
    figures["peak_memory_mb"] = peak_memory_mb(device)
    figures["load_average_after"] = os.getloadavg()[0]
    return figures


def _table(figures: dict) -> str:
    def show(value):
        if isinstance(value, float):
            return f"{value:.4g}" if abs(value) < 1e6 else f"{value:.3e}"
        return str(value)

    width = max(map(len, figures))
    lines = [f"{name:<{width}}  {show(value)}" for name, value in figures.items()]
    if not figures["mlp_accuracies_agree"]:
        lines.append(f"mlp_ensemble_speedup does not count: test accuracies differ by more than "
                     f"{ACCURACY_TOLERANCE:.0%} ({figures['mlp_ensemble_test_accuracy_loop_models']:.4f} vs "
                     f"{figures['mlp_loop_test_accuracy']:.4f})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m harness.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="small sizes, one repeat: a smoke run of seconds")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--repeats", type=int, help="timings per figure, best kept (default 5, --quick 1)")
    parser.add_argument("--loop-models", type=int, help="models the plain loop is timed on (default 20, --quick 2)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's own choice)")
    parser.add_argument("--no-conv", action="store_true", help="leave out the conv ensemble figures")
    parser.add_argument("--compile", action="store_true",
                        help="time the compiled stacked conv path on a CPU too (inductor: over a minute of C++ code "
                             "generation here); on CUDA it is timed anyway")
    args = parser.parse_args(argv)
    if args.repeats is not None and args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    try:
        mlp_sizes(args.quick, args.loop_models)
    except ValueError as error:
        parser.error(str(error))
    figures = run(args.device, args.quick, args.repeats or (1 if args.quick else 5), args.loop_models,
                  conv=not args.no_conv, compile_backend="inductor" if args.compile else "auto")
    print(json.dumps(figures) if args.json else _table(figures))


if __name__ == "__main__":
    main()
