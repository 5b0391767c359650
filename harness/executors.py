"""Where a run's chunks train: on threads of this process, or as Ray tasks on a cluster.

A run trains in fixed chunks of ``models_per_pass`` rows (``harness.store``). An *executor*
decides where a chunk's pass runs; the process that asked for the run (the *driver*) always
claims the chunks, writes each chunk's arrays into the store as it arrives and marks it done
(:meth:`harness.store.Run.fill`). Only the driver touches the store, so a Ray cluster needs no
file system shared with it, and the chunks, seeds and trainer are the ones the in-process path
uses: on CPU the arrays are bit-identical whichever executor trained which chunk, under the same
key (on CUDA, as for any resume there, up to the kernels each process picks).

- ``local`` (the default): passes on threads of this process, one torch thread each
  (``harness.ensemble.torch_threads``).
- ``ray``: each chunk is one Ray Core task that trains it and returns its arrays. The data
  set goes into the object store once, as numpy arrays (the driver keeps the last data set's
  reference for the runs that follow on it); a worker process rebuilds the
  :class:`~harness.data.Dataset` once and keeps it for the chunks that follow. A task asks
  for ``THREADS_PER_PASS`` CPUs, plus ``gpu_fraction`` of a GPU when the device is CUDA (several
  small ensembles packed on one GPU), takes its device from the GPUs Ray assigned it and sets
  torch's thread count itself (a pass's bytes depend on it). At most ``max_in_flight`` tasks
  are out at once (by default one per slot the cluster has: its CPUs, or its GPUs over the
  fraction), each holding a claim on its chunk. A task whose worker process or node dies is
  retried up to ``max_retries`` times; an error the pass raises (``TrainingDiverged``) is
  never retried: Ray retries application errors only when asked to.

``configure(executor, address)`` sets the process-wide default that
:func:`harness.ensemble.train_ensemble` uses when its ``executor`` argument is None (the pytest
options ``--executor`` and ``--ray-address`` call it). With ``address`` None the first Ray fill
joins ``$RAY_ADDRESS`` or a cluster ``ray start`` began on this machine, else starts a local one
(dashboard off) that stops with the process or :func:`shutdown`; ``HOST:6379`` or
``ray://HOST:10001`` joins that cluster, whose nodes need this package installed
(``pip install -e '.[ray]'``) with the same torch.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import torch

EXECUTORS = ("local", "ray")
# Share of one GPU a chunk asks for on CUDA: four small ensembles train side by side on a GPU.
DEFAULT_GPU_FRACTION = 0.25
# A task lost with its worker process or node is submitted again this many times.
DEFAULT_MAX_RETRIES = 3
RAY_EXTRA_HINT = "install the extra: pip install -e '.[ray]'"


@dataclass(frozen=True)
class Executor:
    """Where chunks train (module docstring). ``gpu_fraction`` None means ``DEFAULT_GPU_FRACTION``
    on CUDA and no GPU otherwise; a number asks for that share of a GPU on any device (a cluster's
    logical GPUs)."""

    kind: str = "local"
    address: str | None = None
    gpu_fraction: float | None = None
    max_in_flight: int | None = None
    max_retries: int = DEFAULT_MAX_RETRIES

    def __post_init__(self):
        if self.kind not in EXECUTORS:
            raise ValueError(f"executor must be one of {EXECUTORS}, got {self.kind!r}")
        if self.kind == "local" and self.address is not None:
            raise ValueError(f"a Ray address ({self.address!r}) needs executor 'ray', not 'local'")
        if self.gpu_fraction is not None and not 0 < self.gpu_fraction <= 1:
            raise ValueError(f"gpu_fraction must lie in (0, 1], got {self.gpu_fraction!r}")
        if self.max_in_flight is not None and self.max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, got {self.max_in_flight!r}")
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be non-negative, got {self.max_retries!r}")


@dataclass(frozen=True)
class ChunkSpan:
    """When and where one chunk trained (the task's own clock and process)."""

    start_row: int
    stop_row: int
    host: str
    pid: int
    started: float
    finished: float


@dataclass
class Filled:
    """What a fill did: the models this call trained, and a span per chunk it trained."""

    trained: int
    spans: list[ChunkSpan] = field(default_factory=list)


_default = Executor()


def configure(executor: str = "local", address: str | None = None, **options) -> Executor:
    """Set the process-wide default executor (module docstring); ``options`` are
    :class:`Executor`'s other fields. Asking for Ray without the extra installed fails here."""
    global _default
    chosen = Executor(executor, address, **options)
    if chosen.kind == "ray":
        _import_ray()
    _default = chosen
    return chosen


def default() -> Executor:
    return _default


def resolve(executor: Executor | str | None) -> Executor:
    """``executor`` as an :class:`Executor`: None is the configured default, a name that kind
    (with the default's address and options when the default is of that kind)."""
    if executor is None:
        return _default
    if isinstance(executor, Executor):
        return executor
    if executor == _default.kind:
        return _default
    return Executor(executor)


def fill(run, dataset, spec, masks: np.ndarray, seeds: np.ndarray, device: str = "cpu",
         executor: Executor | str | None = None, progress: bool = True, desc: str = "") -> Filled:
    """Train the run's missing chunks (``spec`` on ``masks`` and ``seeds``) where ``executor``
    says; return when the run is complete."""
    chosen = resolve(executor)
    if chosen.kind == "ray":
        return _fill_on_ray(run, dataset, spec, masks, seeds, device, chosen, progress, desc)
    return _fill_locally(run, dataset, spec, masks, seeds, device, progress, desc)


def _fill_locally(run, dataset, spec, masks, seeds, device, progress, desc) -> Filled:
    from harness.ensemble import THREADS_PER_PASS, pass_trainer, pass_workers, torch_threads

    train_pass = pass_trainer(dataset, spec, masks, seeds, device)
    spans, guard = [], threading.Lock()

    def timed_pass(rows):
        started = time.time()
        arrays = train_pass(rows)
        with guard:
            spans.append(ChunkSpan(int(rows[0]), int(rows[-1]) + 1, socket.gethostname(), os.getpid(),
                                   started, time.time()))
        return arrays

    with torch_threads(THREADS_PER_PASS):
        trained = run.fill(timed_pass, chunk_size=spec.models_per_pass, progress=progress, desc=desc,
                           workers=pass_workers(run.missing_chunks(spec.models_per_pass), device))
    return Filled(trained, sorted(spans, key=lambda span: span.start_row))


# ---------------------------------------------------------------- Ray


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ImportError(f"executor 'ray' needs Ray: {RAY_EXTRA_HINT}") from None
    return ray


def connect(address: str | None = None):
    """The ``ray`` module, connected: to ``address``; when None, to ``$RAY_ADDRESS`` or a cluster
    that ``ray start`` started on this machine, else to a local cluster started here (dashboard
    off). A process already connected (a test's cluster) stays so."""
    ray = _import_ray()
    if not ray.is_initialized():
        # log_to_driver off: the passes' warnings stay in the workers' logs, not in pytest's output.
        ray.init(address=address, log_to_driver=False, configure_logging=False,
                 **({"include_dashboard": False} if address is None else {}))
    return ray


def shutdown() -> None:
    """Disconnect from Ray; a local cluster :func:`connect` started stops with it."""
    ray = _import_ray()
    _data_references.clear()
    if ray.is_initialized():
        ray.shutdown()


def task_resources(device: str, executor: Executor) -> dict:
    """``num_cpus`` and ``num_gpus`` one chunk's task asks for (module docstring)."""
    from harness.ensemble import THREADS_PER_PASS

    fraction = executor.gpu_fraction
    if fraction is None:
        fraction = DEFAULT_GPU_FRACTION if torch.device(device).type == "cuda" else 0.0
    return {"num_cpus": THREADS_PER_PASS, "num_gpus": fraction}


def _slots(ray, resources: dict) -> int:
    """How many such tasks the cluster runs at once now."""
    total = ray.cluster_resources()
    slots = [int(total.get(name, 0) // amount) for name, amount in
             (("CPU", resources["num_cpus"]), ("GPU", resources["num_gpus"])) if amount > 0]
    return max(1, min(slots)) if slots else 1


def _fill_on_ray(run, dataset, spec, masks, seeds, device, executor: Executor, progress, desc) -> Filled:
    ray = connect(executor.address)
    resources = task_resources(device, executor)
    in_flight = executor.max_in_flight or _slots(ray, resources)
    # retry_exceptions off: a lost worker or node is retried, an error the pass raised is not.
    train_chunk = ray.remote(_train_chunk_task).options(max_retries=executor.max_retries, retry_exceptions=False,
                                                        **resources)
    data = _data_reference(ray, dataset)
    spans, guard = [], threading.Lock()

    def train_remotely(rows):
        # Each of run.fill's threads waits on its own task: in_flight threads bound the tasks out.
        arrays, span = ray.get(train_chunk.remote(data, dataset.fingerprint, spec, masks[rows], seeds[rows],
                                                  torch.device(device).type, int(rows[0])))
        with guard:
            spans.append(span)
        return arrays

    trained = run.fill(train_remotely, chunk_size=spec.models_per_pass, progress=progress, desc=desc,
                       workers=in_flight)
    return Filled(trained, sorted(spans, key=lambda span: span.start_row))


# The driver's reference to the last data set it put, by (cluster, job, fingerprint): a claim
# trains many runs on one data set, and holding one reference bounds what the store keeps.
_data_references: dict[tuple, object] = {}


def _data_reference(ray, dataset):
    context = ray.get_runtime_context()
    key = (context.gcs_address, context.get_job_id(), dataset.fingerprint)
    if key not in _data_references:
        _data_references.clear()
        _data_references[key] = ray.put(_dataset_fields(dataset))
    return _data_references[key]


def _dataset_fields(dataset) -> dict:
    """The data set's fields, tensors as numpy (what the object store holds zero-copy)."""
    return {item.name: (value.numpy() if isinstance(value := getattr(dataset, item.name), torch.Tensor) else value)
            for item in dataclasses.fields(dataset)}


# A worker process keeps the last data set it rebuilt: the chunks that follow use it again, and
# with it what trainers remember per Dataset object (the ridge family's length scale).
_worker_dataset: dict[str, object] = {}


def _rebuilt_dataset(fields: dict, fingerprint: str):
    from harness.data import Dataset

    if fingerprint not in _worker_dataset:
        # Copies: the object store's arrays are read-only, torch tensors expect to own theirs.
        arguments = {name: (torch.from_numpy(np.array(value)) if name.startswith(("x_", "y_")) else value)
                     for name, value in fields.items()}
        _worker_dataset.clear()
        _worker_dataset[fingerprint] = Dataset(**arguments)
    return _worker_dataset[fingerprint]


def assigned_device(device_type: str, gpu_ids: list, visible: str | None) -> str:
    """The torch device of a task that Ray gave ``gpu_ids``: on CUDA, the first of them, counted
    within ``CUDA_VISIBLE_DEVICES`` (``visible``), which Ray narrows to the task's GPUs when it
    starts a worker (a reused worker may see more); any other device as it is."""
    if device_type != "cuda" or not gpu_ids:
        return device_type
    first = str(gpu_ids[0])
    shown = [entry.strip() for entry in visible.split(",")] if visible else []
    return f"cuda:{shown.index(first) if first in shown else int(first)}"


def _train_chunk_task(fields: dict, fingerprint: str, spec, masks: np.ndarray, seeds: np.ndarray,
                      device_type: str, start_row: int):
    """One chunk's pass in a Ray worker: its arrays and its :class:`ChunkSpan`."""
    from harness.ensemble import THREADS_PER_PASS

    import ray

    started = time.time()
    torch.set_num_threads(THREADS_PER_PASS)
    dataset = _rebuilt_dataset(fields, fingerprint)
    device = assigned_device(device_type, ray.get_gpu_ids(), os.environ.get("CUDA_VISIBLE_DEVICES"))
    arrays = spec.train(dataset, masks, seeds, device)
    return arrays, ChunkSpan(start_row, start_row + len(masks), socket.gethostname(), os.getpid(),
                             started, time.time())
