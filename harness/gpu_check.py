"""What one GPU does for the suite: ``python -m harness.gpu_check`` (one JSON object on stdout).

Meant for the few minutes a GPU is lent (at most ``BUDGET_SECONDS``, 8 minutes, on one H100 or
H200): it measures what the README's cost model needs and prints it as one JSON object, every
other line (progress, Ray's log) going to stderr. ``--dry-run`` runs every section at toy sizes
on the CPU, so CI checks that the whole script works before a GPU ever sees it.

The check is a list of named *sections* (:data:`SECTIONS`), each a function of the
:class:`Check` returning a dict of figures; a section that raises is reported with its error
and the others still run, and once the budget is spent the rest are reported as skipped. Adding
a section is one line in :data:`SECTIONS`. Every timing reuses ``harness.bench``:

- ``environment``: device, torch, CUDA, Ray;
- ``matmul_peak``: the measured matmul peak in float32 (the MLP and ridge families) and
  bfloat16 (the conv nets train under bfloat16 autocast on CUDA), the denominators of every
  utilisation below;
- ``mlp``: ``harness.bench.mlp_figures``: the default MLP ensemble's models/s and utilisation,
  and the per-model-loop ratio (the same models as a plain PyTorch loop, one after another);
- ``ridge``: ``harness.bench.ridge_figures``: exact LOO of every point and a subsampled
  estimate, with the machine's floor for the latter;
- ``small_cnn`` and ``vgg6``: an ensemble of each trained by ``harness.zoo.train_conv_ensemble``
  with the paper recipe's batch, augmentation and learning rate (fewer epochs) on random
  32x32 images (8x8 in the dry run): models/s, image-epochs/s (what a full recipe's time scales with), utilisation
  against the bfloat16 peak (FLOPs of one model's training step counted by torch's
  ``FlopCounterMode``), peak memory, and the ratio to the per-model loop path;
- ``conv_paths`` and ``conv_compiled``: ``harness.bench.conv_figures``: each conv path's models/s
  per K; then the stacked path with its step compiled by inductor at K = 8 (models/s, the first
  pass's seconds with compilation, recompiles, compiled over eager; the dry run compiles with
  aot_eager, which generates no code);
- ``approximation``: the approximation study (``harness.experiments.approximation_error``:
  exact LOO against the subsampled estimator at r = 0.7) on the paper profile's synthetic data
  with the paper's ridge and MLP specs and reduced model counts, projected to the paper's
  counts (linear in models; partial passes make the projection an upper bound);
- ``ray_fractional_gpus``: one ensemble's chunks as Ray tasks, four 0.25-GPU tasks at once
  against one whole-GPU task at a time (``harness.executors``), with the most chunks seen
  training at once and whether both gave the same bytes.

Peak memory is reset before each section (CUDA: the largest allocation; CPU: the process's
peak resident memory so far).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import math
import os
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np
import torch

from harness import bench

BUDGET_SECONDS = 8 * 60
IMAGE_CHANNELS, IMAGE_CLASSES = 3, 10  # CIFAR-10's


@dataclass(frozen=True)
class Sizes:
    """How big each section runs: ``GPU`` fits the budget on one H100/H200, ``DRY_RUN`` is toy."""

    peak_sizes: tuple[int, ...]
    repeats: int
    mlp_models: int
    mlp_loop_models: int
    ridge_loo_draws: int
    ridge_subsampled_models: int
    conv_images: int
    conv_image_size: int
    conv_models: int
    conv_epochs: int
    conv_batch: int
    conv_loop_models: int
    warm_up: bool  # train once untimed first (kernels, autotuning): only where it is what gets measured
    approx_ridge: dict
    approx_mlp: dict
    approx_mlp_epochs: int | None
    ray_models: int
    ray_models_per_pass: int


GPU = Sizes(peak_sizes=(4096, 8192), repeats=2, mlp_models=200, mlp_loop_models=4, ridge_loo_draws=100,
            ridge_subsampled_models=2000, conv_images=10_000, conv_image_size=32, conv_models=16, conv_epochs=2, conv_batch=512,
            conv_loop_models=2, warm_up=True,
            approx_ridge={"loo_draws": 100, "subsampled_models": 400},
            approx_mlp={"loo_targets_per_bin": 2, "loo_models_per_target": 8, "subsampled_models": 200},
            approx_mlp_epochs=None, ray_models=200, ray_models_per_pass=25)
DRY_RUN = Sizes(peak_sizes=(256,), repeats=1, mlp_models=4, mlp_loop_models=1, ridge_loo_draws=2,
                ridge_subsampled_models=4, conv_images=32, conv_image_size=8, conv_models=2, conv_epochs=1,
                conv_batch=16,
                conv_loop_models=1, warm_up=False,
                approx_ridge={"loo_draws": 4, "subsampled_models": 8},
                approx_mlp={"loo_targets_per_bin": 1, "loo_models_per_target": 2, "subsampled_models": 4},
                approx_mlp_epochs=1, ray_models=8, ray_models_per_pass=2)


@dataclass
class Check:
    """What every section gets: the device, the sizes, the clock, and the figures of the
    sections before it (``figures["matmul_peak"]`` holds the peaks)."""

    device: torch.device
    dry_run: bool
    sizes: Sizes
    deadline: float
    figures: dict = field(default_factory=dict)

    def seconds_left(self) -> float:
        return self.deadline - time.monotonic()

    def peak(self, dtype: str) -> float:
        return self.figures.get("matmul_peak", {}).get(f"{dtype}_flops", math.nan)


# ---------------------------------------------------------------------------- sections


def environment(check: Check) -> dict:
    from harness.ensemble import HARNESS_RESULTS_VERSION, THREADS_PER_PASS

    figures = {"device": str(check.device), "torch": torch.__version__, "cuda": torch.version.cuda,
               "cpu_count": os.cpu_count(), "threads_per_pass": THREADS_PER_PASS,
               "harness_results_version": HARNESS_RESULTS_VERSION}
    if check.device.type == "cuda":
        properties = torch.cuda.get_device_properties(check.device)
        figures |= {"gpu": properties.name, "gpu_memory_gib": properties.total_memory / 2**30,
                    "gpu_count": torch.cuda.device_count()}
    try:
        import ray
        figures["ray"] = ray.__version__
    except ImportError:
        figures["ray"] = None
    return figures


def matmul_peak(check: Check) -> dict:
    """float32 through ``harness.bench.matmul_peak_flops``; bfloat16 timed the same way."""
    sizes, repeats = check.sizes.peak_sizes, max(3, check.sizes.repeats)
    best = 0.0
    for n in sizes:
        a, b = (torch.randn(n, n, device=check.device, dtype=torch.bfloat16) for _ in range(2))
        a @ b  # warm-up
        seconds, _ = bench._timed(lambda: a @ b, check.device, repeats)
        best = max(best, 2 * n**3 / seconds)
    return {"float32_flops": bench.matmul_peak_flops(check.device, sizes, repeats), "bfloat16_flops": best,
            "sizes": list(sizes)}


def mlp(check: Check) -> dict:
    return bench.mlp_figures(check.device, check.sizes.mlp_models, check.sizes.mlp_loop_models,
                             check.sizes.repeats, check.sizes.peak_sizes[:1])


def ridge(check: Check) -> dict:
    return bench.ridge_figures(check.device, check.sizes.ridge_loo_draws, check.sizes.ridge_subsampled_models,
                               check.sizes.repeats, check.peak("float32"))


def random_images(n_train: int, n_test: int, image_size: int, seed: int = 0):
    """Random images and labels of CIFAR-10's channels and classes: throughput does not depend
    on the pixels."""
    from harness.data import Dataset

    generator = torch.Generator().manual_seed(seed)
    shape = (IMAGE_CHANNELS, image_size, image_size)
    return Dataset(name=f"random-{n_train}", num_classes=IMAGE_CLASSES,
                   x_train=torch.randint(0, 256, (n_train, *shape), dtype=torch.uint8, generator=generator),
                   y_train=torch.randint(0, IMAGE_CLASSES, (n_train,), generator=generator),
                   x_test=torch.randint(0, 256, (n_test, *shape), dtype=torch.uint8, generator=generator),
                   y_test=torch.randint(0, IMAGE_CLASSES, (n_test,), generator=generator))


def training_step_flops(model: str, batch: int, image_size: int) -> float:
    """Matmul and convolution FLOPs of one model's training step (forward and backward) on
    ``batch`` images, counted on the meta device (nothing computed)."""
    from torch.utils.flop_counter import FlopCounterMode

    from harness import zoo

    with torch.device("meta"):
        net = zoo.build(model, IMAGE_CLASSES, IMAGE_CHANNELS, image_size)
        images = torch.empty(batch, IMAGE_CHANNELS, image_size, image_size)
        labels = torch.zeros(batch, dtype=torch.long)
    counter = FlopCounterMode(display=False)
    with counter:
        torch.nn.functional.cross_entropy(net(images), labels).backward()
    return float(counter.get_total_flops())


def conv_ensemble(model: str) -> Callable[[Check], dict]:
    """A section timing ``model``'s ensemble (module docstring)."""

    def section(check: Check) -> dict:
        from harness import specs, zoo
        from harness.images import DeviceAugment
        from harness.masks import subsampled_plan

        sizes = check.sizes
        recipe = replace(specs.PAPER_RECIPE, name="gpu_check", epochs=sizes.conv_epochs, batch_size=sizes.conv_batch)
        augment = DeviceAugment(flip=True, translate=2)  # the paper profile's
        dataset = random_images(sizes.conv_images, max(16, sizes.conv_images // 5), sizes.conv_image_size)
        # At least four masks: the plan's own rule (every point in and out of some model).
        plan = subsampled_plan(dataset.n_train, max(4, sizes.conv_models), bench.SAMPLING_RATE, seed=0)
        seeds = plan.seeds(0)

        def train(models: int, path: str = "auto"):
            return zoo.train_conv_ensemble(model, dataset, plan.masks[:models], seeds[:models], recipe, check.device,
                                           augment=augment, progress=False, path=path)

        if sizes.warm_up:
            train(min(2, sizes.conv_models))
        seconds, _ = bench._timed(lambda: train(sizes.conv_models), check.device, sizes.repeats)
        loop_seconds, _ = bench._timed(lambda: train(sizes.conv_loop_models, "loop"), check.device, 1)
        steps = sizes.conv_epochs * math.ceil(plan.masks[:sizes.conv_models].sum(1).max() / sizes.conv_batch)
        flops = training_step_flops(model, sizes.conv_batch, sizes.conv_image_size) * steps * sizes.conv_models
        dtype = "bfloat16" if check.device.type == "cuda" else "float32"
        models_per_second = sizes.conv_models / seconds
        loop_models_per_second = sizes.conv_loop_models / loop_seconds
        return {"path": zoo.resolve_path(model), "models": sizes.conv_models, "train_images": dataset.n_train,
                "epochs": sizes.conv_epochs, "batch": sizes.conv_batch, "seconds": seconds,
                "models_per_second": models_per_second,
                "image_epochs_per_second": sizes.conv_models * sizes.conv_epochs * bench.SAMPLING_RATE
                * dataset.n_train / seconds,
                "flops_per_second": flops / seconds, "utilisation_dtype": dtype,
                "utilisation": flops / seconds / check.peak(dtype),
                "loop_models": sizes.conv_loop_models, "loop_models_per_second": loop_models_per_second,
                "ensemble_over_loop": models_per_second / loop_models_per_second}

    section.__name__ = f"conv_ensemble_{model}"
    return section


def approximation(check: Check) -> dict:
    """The approximation study at the paper profile's sizes, fewer models (module docstring)."""
    from harness import profiles
    from harness.data import synthetic
    from harness.experiments import approximation_error, pick_targets
    from harness.masks import loo_plan
    from harness.store import Store

    sizes = check.sizes
    paper = profiles.PAPER
    dataset = synthetic(paper.synthetic if not check.dry_run else profiles.SMOKE.synthetic)
    mlp_spec = paper.mlp if sizes.approx_mlp_epochs is None else replace(paper.mlp, epochs=sizes.approx_mlp_epochs)
    ridge_spec = paper.ridge if not check.dry_run else replace(paper.ridge, features=64)
    figures = {"train_points": dataset.n_train, "rate": profiles.FZ20_RATE}
    for family, spec, counts in (("ridge", ridge_spec, sizes.approx_ridge), ("mlp", mlp_spec, sizes.approx_mlp)):
        reduced = replace(paper, **counts)
        with tempfile.TemporaryDirectory(prefix="memsuite-gpu-check-") as root:
            started = time.perf_counter()
            study = approximation_error(dataset, spec, profiles.FZ20_RATE, reduced, Store(root), str(check.device))
            seconds = time.perf_counter() - started
        if family == "ridge":
            paper_models = paper.loo_draws + paper.subsampled_models
        else:
            targets = pick_targets(dataset, paper.loo_targets_per_bin)
            paper_models = loo_plan(dataset.n_train, targets, paper.loo_models_per_target).n_models \
                + paper.subsampled_models
        errors = study.table.groupby("bin")["error"].mean()
        figures[family] = {"spec": spec.config(), "models": study.models, "seconds": seconds,
                           "models_per_second": study.models / seconds, "points_scored": len(study.table),
                           "mean_error_by_bin": {str(name): float(value) for name, value in errors.items()},
                           "paper_models": paper_models,
                           "projected_paper_seconds": seconds * paper_models / study.models}
    return figures


def ray_fractional_gpus(check: Check) -> dict:
    """Four chunks on a quarter of the GPU each against one chunk on the whole GPU at a time.
    The dry run gives a local cluster one logical GPU and trains on the CPU."""
    try:
        import ray
    except ImportError:
        return {"skipped": "the ray extra is not installed: pip install -e '.[ray]'"}
    from harness import executors
    from harness.data import synthetic
    from harness.ensemble import open_run
    from harness.masks import subsampled_plan
    from harness.store import Store
    from harness.train import MLPSpec, RidgeSpec

    sizes = check.sizes
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False,
                 **({"num_cpus": 4, "num_gpus": 1} if check.dry_run else {}))
    try:
        dataset = synthetic()
        spec = (RidgeSpec(features=64, models_per_pass=sizes.ray_models_per_pass) if check.dry_run
                else MLPSpec(models_per_pass=sizes.ray_models_per_pass))
        plan = subsampled_plan(dataset.n_train, sizes.ray_models, bench.SAMPLING_RATE, seed=0)
        figures, arrays = {"family": spec.family, "models": plan.n_models,
                           "chunks": math.ceil(plan.n_models / spec.models_per_pass),
                           "cluster_gpus": ray.cluster_resources().get("GPU", 0)}, {}
        # The first fill starts the worker processes (torch imported, CUDA initialised): untimed.
        for label, fraction in (("warm_up", 0.25), ("one_at_a_time", 1.0), ("four_at_once", 0.25)):
            with tempfile.TemporaryDirectory(prefix="memsuite-gpu-check-") as root:
                run = open_run(dataset, spec, plan, Store(root))
                started = time.perf_counter()
                filled = executors.fill(run, dataset, spec, plan.masks, plan.seeds(0), check.device.type,
                                        executors.Executor("ray", gpu_fraction=fraction), progress=False)
                seconds = time.perf_counter() - started
                arrays[label] = {name: np.asarray(value).tobytes() for name, value in run.arrays().items()}
            if label != "warm_up":
                figures[label] = {"gpu_fraction": fraction, "seconds": seconds,
                                  "models_per_second": plan.n_models / seconds,
                                  "most_chunks_at_once": most_at_once(filled.spans)}
        figures["four_at_once_over_one_at_a_time"] = (figures["four_at_once"]["models_per_second"]
                                                      / figures["one_at_a_time"]["models_per_second"])
        figures["same_bytes"] = arrays["one_at_a_time"] == arrays["four_at_once"]
        return figures
    finally:
        if started_here:
            executors.shutdown()


def most_at_once(spans) -> int:
    """The most chunks whose (started, finished) spans overlap at one moment."""
    events = sorted([(span.started, 1) for span in spans] + [(span.finished, -1) for span in spans])
    return int(max(np.cumsum([step for _, step in events]), default=0))


SECTIONS: list[tuple[str, Callable[[Check], dict]]] = [
    ("environment", environment),
    ("matmul_peak", matmul_peak),
    ("mlp", mlp),
    ("ridge", ridge),
    ("small_cnn", conv_ensemble("small_cnn")),
    ("vgg6", conv_ensemble("vgg6")),
    ("conv_paths", bench.conv_paths_section),          # stacked, vmap, loop per K (harness.bench)
    ("conv_compiled", bench.conv_compiled_section),    # the stacked path's step compiled by inductor
    ("host_syncs", bench.host_syncs_section),          # per training step, under set_sync_debug_mode
    ("kernel_profile", bench.kernel_profile_section),  # the top kernels of a stacked vgg6 pass
    ("approximation", approximation),
    ("ray_fractional_gpus", ray_fractional_gpus),
]


# ---------------------------------------------------------------------------- running


def run_sections(check: Check, names: list[str] | None = None) -> dict:
    """Every section (or those named) in order, each reported with its seconds and peak memory,
    its error, or why it was skipped."""
    for name, section in SECTIONS:
        if names is not None and name not in names:
            continue
        if check.seconds_left() <= 0:
            check.figures[name] = {"skipped": "the time budget is spent"}
            continue
        if check.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(check.device)
        started = time.perf_counter()
        try:
            figures = section(check)
        except Exception as error:  # noqa: BLE001 - one section's failure must not lose the others' figures
            figures = {"error": f"{type(error).__name__}: {error}",
                       "traceback": traceback.format_exc(limit=-3)}
        figures = {**figures, "seconds_total": time.perf_counter() - started,
                   "peak_memory_mb": bench.peak_memory_mb(check.device)}
        check.figures[name] = figures
        print(f"gpu_check: {name} done in {figures['seconds_total']:.1f} s", file=sys.stderr, flush=True)
    return check.figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.gpu_check", description=(
        "Measure what one GPU does for the suite (ensembles' models/s and utilisation, the per-model-loop "
        "ratio, the approximation study at reduced paper sizes, Ray with fractional GPUs) and print one JSON "
        "object. Sections: " + ", ".join(name for name, _ in SECTIONS) + "."))
    parser.add_argument("--dry-run", action="store_true",
                        help="every section at toy sizes on the CPU (seconds to a minute): checks the script, "
                             "measures nothing worth reading")
    parser.add_argument("--device", help="torch device (default: cuda; cpu with --dry-run)")
    parser.add_argument("--budget", type=float, default=BUDGET_SECONDS,
                        help=f"seconds after which the remaining sections are skipped (default {BUDGET_SECONDS})")
    parser.add_argument("--sections", help="comma-separated names of the sections to run (default: all)")
    args = parser.parse_args(argv)
    device = torch.device(args.device or ("cpu" if args.dry_run else "cuda"))
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA device here: run it where a GPU is, or use --dry-run")
    names = None if args.sections is None else [name.strip() for name in args.sections.split(",")]
    unknown = sorted(set(names or ()) - {name for name, _ in SECTIONS})
    if unknown:
        parser.error(f"unknown sections {unknown}; known: {', '.join(name for name, _ in SECTIONS)}")
    check = Check(device, args.dry_run, DRY_RUN if args.dry_run else GPU, time.monotonic() + args.budget)
    started = time.perf_counter()
    # Anything a section prints (a library's progress or notices) goes to stderr: stdout is the JSON.
    with contextlib.redirect_stdout(sys.stderr):
        sections = run_sections(check, names)
    report = {"gpu_check": 1, "dry_run": args.dry_run, "device": str(device),
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "seconds": time.perf_counter() - started, "sizes": dataclasses.asdict(check.sizes),
              "sections": sections}
    print(json.dumps(report, default=str))
    return 1 if any("error" in figures for figures in sections.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
