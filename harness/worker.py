"""Train one shard of an existing run, for schedulers without Ray (SLURM arrays, GNU parallel, submitit).

    python -m harness.worker --run KEY --shard i --of N [--root STORE] [--profile P] [--device D]
    python -m harness.store merge KEY [--root STORE]

Shard ``i`` of ``N`` trains the run's missing chunks ``c`` (rows ``[c * models_per_pass,
(c + 1) * models_per_pass)``) with ``c % N == i`` and saves each as its own chunk file in the
run's folder; ``merge`` imports the finished files into the run's arrays (``harness.store``
states the protocol). A shard skips chunks that are done, that already have a chunk file or
that a live process has claimed, so rerunning a shard (a requeued array task) trains only what
is left. The arrays are bit-identical to what ``harness.ensemble.train_ensemble`` computes for
the same key: the same chunks, seeds and trainer, one torch thread per pass.

The run must exist: ``harness.ensemble.open_run(dataset, spec, plan, store, seed).key`` creates
it empty. The worker rebuilds what to train from the run alone: the spec from the config's
``spec`` (:func:`spec_from_config`), the seeds from the plan's kind, the seed and the number
of models (``harness.masks.training_seeds``), the masks from ``masks.npy`` and the data set
by name through ``harness.experiments.load_dataset``. The profile that sized the data set is
not in the config, so ``--profile`` names it; data whose fingerprint differs from the config's
is refused, naming the profile that does build it when one does.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from typing import Callable

import numpy as np

from harness import profiles
from harness.ensemble import (HARNESS_RESULTS_VERSION, THREADS_PER_PASS, pass_trainer, pass_workers,
                              torch_threads)
from harness.masks import training_seeds
from harness.specs import ConvSpec
from harness.store import DEFAULT_STORE_ENV, Run, Store
from harness.train import MLPSpec, RidgeSpec

SPEC_FAMILIES = {spec.family: spec for spec in (MLPSpec, RidgeSpec, ConvSpec)}
# Entries config() adds beside the dataclass fields: the family, and a conv recipe's values.
DERIVED_SPEC_ENTRIES = ("family", "recipe_values")
CONFIG_ENTRIES = ("version", "dataset", "data", "spec", "plan", "seed", "threads_per_pass")


class CannotRebuild(ValueError):
    """The run cannot be trained here as the in-process path would train it; the message says why."""


def spec_from_config(config: dict):
    """The :class:`MLPSpec`, :class:`RidgeSpec` or :class:`harness.specs.ConvSpec` whose ``config()``
    is ``config``, or :class:`CannotRebuild` (unknown family or field, a recipe changed since)."""
    family = config.get("family") if isinstance(config, dict) else None
    if family not in SPEC_FAMILIES:
        raise CannotRebuild(f"the run's spec has family {family!r}; this harness trains {sorted(SPEC_FAMILIES)}")
    spec_class = SPEC_FAMILIES[family]
    arguments = {name: value for name, value in config.items() if name not in DERIVED_SPEC_ENTRIES}
    if family == "cnn":
        arguments.setdefault("path", "vmap")   # a conv config names its path only when it is not vmap
    unknown = sorted(set(arguments) - {field.name for field in dataclasses.fields(spec_class)})
    if unknown:
        raise CannotRebuild(f"the run's {family} spec has fields {unknown} that {spec_class.__name__} does not: "
                            f"the run was made by another version of the harness")
    try:
        spec = spec_class(**arguments)
    except (TypeError, ValueError) as error:
        raise CannotRebuild(f"the run's {family} spec cannot be rebuilt: {error}") from None
    if _canonical(spec.config()) != _canonical(config):
        raise CannotRebuild(f"{spec} has config {spec.config()}, the run was trained with {config} "
                            f"(a recipe changed since the run was made?)")
    return spec


def load_run_dataset(name: str, fingerprint: str, profile: str):
    """``load_dataset(name, profile)``, refused unless its fingerprint is the run's."""
    from harness.experiments import load_dataset  # heavy (pandas, the image pipeline): only when data is needed

    try:
        dataset = load_dataset(name, profile)
    except ValueError as error:
        raise CannotRebuild(f"the run's data set {name!r} cannot be loaded by name: {error}") from None
    if dataset.fingerprint == fingerprint:
        return dataset
    builds_it = [other for other in profiles.PROFILES if other != profile
                 and _fingerprint_or_none(load_dataset, name, other) == fingerprint]
    hint = (f"try --profile {builds_it[0]}" if builds_it else
            f"no profile ({', '.join(profiles.PROFILES)}) builds it: the run's data set was made another way "
            f"(a subset, another version of the harness)")
    raise CannotRebuild(f"{name} under profile {profile!r} has fingerprint {dataset.fingerprint}, the run was "
                        f"trained on {fingerprint}; {hint}")


def rebuild(run: Run, profile: str, device: str) -> tuple[Callable, int]:
    """``(train_rows, chunk_size)`` that train the run's chunks as ``train_ensemble`` does."""
    spec = run_spec(run)
    config = run.config
    dataset = load_run_dataset(config["dataset"], config["data"], profile)
    schema = {name: [list(shape), str(np.dtype(dtype))] for name, (shape, dtype) in spec.schema(dataset).items()}
    if _canonical(schema) != _canonical({name: [list(shape), dtype] for name, (shape, dtype) in run.schema.items()}):
        raise CannotRebuild(f"{spec.family} on {dataset.name} stores {schema}, the run holds {run.schema}")
    seeds = training_seeds(config["plan"]["kind"], run.n_models, config["seed"])
    masks = np.array(run.masks)  # a writable copy, as the in-process plan's masks are
    return pass_trainer(dataset, spec, masks, seeds, device), spec.models_per_pass


def run_spec(run: Run):
    """The run's spec, after checking that its config is one ``train_ensemble`` wrote with this harness."""
    config = run.config
    absent = [entry for entry in CONFIG_ENTRIES if entry not in config]
    if absent:
        raise CannotRebuild(f"run {run.key}'s config has no {absent}: it was not made by "
                            f"harness.ensemble.train_ensemble, so the worker cannot rebuild it")
    if config["version"] != HARNESS_RESULTS_VERSION or config["threads_per_pass"] != THREADS_PER_PASS:
        raise CannotRebuild(f"run {run.key} was made by harness results version {config['version']} with "
                            f"{config['threads_per_pass']} thread(s) a pass; this harness writes version "
                            f"{HARNESS_RESULTS_VERSION} with {THREADS_PER_PASS}, whose bytes differ")
    if not isinstance(config["plan"], dict) or "kind" not in config["plan"]:
        raise CannotRebuild(f"run {run.key}'s plan config {config['plan']} names no kind")
    return spec_from_config(config["spec"])


def _fingerprint_or_none(load_dataset, name: str, profile: str) -> str | None:
    try:
        return load_dataset(name, profile).fingerprint
    except Exception:  # noqa: BLE001 - any profile that cannot build the data set is simply not the one
        return None


def _canonical(value) -> str:
    return json.dumps(value, sort_keys=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.worker", description=(
        "Train shard i of N of an existing run into chunk files; `python -m harness.store merge KEY` imports them."))
    parser.add_argument("--run", required=True, metavar="KEY", help="the run's key (its folder name in the store)")
    parser.add_argument("--shard", required=True, type=int, metavar="i", help="this shard, 0 .. N-1")
    parser.add_argument("--of", required=True, type=int, metavar="N", help="the number of shards")
    parser.add_argument("--root", help=f"store directory (default: ${DEFAULT_STORE_ENV} or ~/.cache/memsuite)")
    parser.add_argument("--profile", default=os.environ.get("MEMSUITE_PROFILE", "default"),
                        choices=sorted(profiles.PROFILES),
                        help="the profile that sized the run's data set (default: $MEMSUITE_PROFILE or default)")
    parser.add_argument("--device", default="cpu", help="torch device to train on (default: cpu)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.of < 1 or not 0 <= args.shard < args.of:
        parser.error(f"need N >= 1 and 0 <= i < N, got --shard {args.shard} --of {args.of}")
    store = Store(args.root)
    path = store.root / args.run
    if not (path / "done.npy").is_file():
        parser.error(f"{path} is not a run directory: create the run first (harness.ensemble.open_run)")
    run = Run(path)
    merge = f"python -m harness.store --root {store.root} merge {run.key}"
    try:
        chunk_size = run_spec(run).models_per_pass
        if not run.shard_chunks(chunk_size, args.shard, args.of):
            print(f"{run.key} shard {args.shard}/{args.of}: nothing to train (every chunk is done or in a chunk "
                  f"file); merge with `{merge}`")
            return 0
        train_rows, chunk_size = rebuild(run, args.profile, args.device)
    except CannotRebuild as error:
        print(f"error: cannot train run {run.key} here: {error}", file=sys.stderr)
        return 2
    with torch_threads(THREADS_PER_PASS):
        trained = run.train_shard(train_rows, chunk_size, args.shard, args.of, progress=not args.no_progress,
                                  workers=pass_workers(run.shard_chunks(chunk_size, args.shard, args.of), args.device))
    left = run.shard_chunks(chunk_size, args.shard, args.of)
    print(f"{run.key} shard {args.shard}/{args.of}: trained {trained} model(s) into chunk files"
          + (f"; {len(left)} chunk(s) of this shard are claimed by other processes" if left else "")
          + f"; merge with `{merge}`")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
