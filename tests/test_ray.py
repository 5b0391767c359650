"""The Ray executor (issue 13): on a local cluster of two 1-CPU worker nodes a run's arrays are
the in-process run's bytes under the same key, whichever executor trained which chunk; a worker
killed during a chunk, a node removed mid-run and a driver killed between chunks cost retries,
never a row written twice; a pass's own error is not retried; 0.5 of a logical GPU per task lets
at most two chunks train at once. Serial (one cluster at a time, also under xdist), dashboard off,
no Ray process left behind; skipped without the extra. Choosing the executor
(``harness.executors.configure``) is checked with or without it."""

from __future__ import annotations

import collections
import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from filelock import FileLock

from harness import executors
from harness.ensemble import THREADS_PER_PASS, open_run, pass_trainer, torch_threads, train_ensemble
from harness.experiments import load_dataset
from harness.masks import subsampled_plan
from harness.store import Run, Store
from harness.train import RidgeSpec, TrainingDiverged

try:
    import ray
    from ray.cluster_utils import Cluster
except ImportError:
    ray = None
NO_RAY = "the ray extra is not installed: pip install -e '.[ray]'"

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA = load_dataset("synthetic", "smoke")
SPEC = RidgeSpec(features=32, models_per_pass=2)
PLAN = subsampled_plan(DATA.n_train, 8, 0.5)  # four chunks of two
LONG_PLAN = subsampled_plan(DATA.n_train, 12, 0.5)  # six chunks of two
ONE_CPU_NODES = 2

if ray is not None:
    # The faulty spec below lives in this module, which Ray's workers cannot import: ship it by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


@dataclasses.dataclass(frozen=True)
class FaultyRidge(RidgeSpec):
    """RidgeSpec with faults injected by the chunk's first seed; its config, and so the run's
    key, is the plain spec's. Every attempt leaves a file ``<first seed>-<attempt>`` in
    ``attempts`` holding its node's id."""

    attempts: str = ""
    pause: float = 0.0  # seconds each attempt sleeps before training
    die_at: int | None = None  # the first attempt of this chunk ends its worker process
    diverge_at: tuple = ()  # these chunks raise TrainingDiverged

    def config(self) -> dict:
        return RidgeSpec(**{item.name: getattr(self, item.name) for item in dataclasses.fields(RidgeSpec)}).config()

    def train(self, dataset, masks, seeds, device="cpu"):
        first = int(seeds[0])
        folder = Path(self.attempts)
        attempt = len(list(folder.glob(f"{first}-*")))
        (folder / f"{first}-{attempt}").write_text(ray.get_runtime_context().get_node_id())
        if first == self.die_at and attempt == 0:
            os._exit(1)
        if first in self.diverge_at:
            raise TrainingDiverged(f"injected divergence at seed {first}")
        time.sleep(self.pause)
        return super().train(dataset, masks, seeds, device)


def faulty(tmp_path, **faults) -> FaultyRidge:
    folder = tmp_path / "attempts"
    folder.mkdir(exist_ok=True)
    return FaultyRidge(**dataclasses.asdict(SPEC), attempts=str(folder), **faults)


def attempts(spec: FaultyRidge) -> collections.Counter:
    return collections.Counter(int(file.name.split("-")[0]) for file in Path(spec.attempts).iterdir())


def chunk_seeds(plan=PLAN, chunk=SPEC.models_per_pass) -> list[int]:
    return [int(seed) for seed in plan.seeds(0)[::chunk]]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The in-process run's arrays and key."""
    ensemble = train_ensemble(DATA, SPEC, PLAN, Store(tmp_path_factory.mktemp("in-process")), progress=False,
                              executor="local")
    return ensemble.key, {name: np.asarray(array).tobytes() for name, array in ensemble.arrays.items()}


def assert_reference_bytes(run_or_ensemble, reference):
    key, arrays = reference
    assert run_or_ensemble.key == key
    stored = run_or_ensemble.arrays() if isinstance(run_or_ensemble, Run) else run_or_ensemble.arrays
    assert {name: np.asarray(array).tobytes() for name, array in stored.items()} == arrays


def _descendants(pid: int) -> set[int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A head node with no CPUs (tasks never land on it) and two 1-CPU worker nodes, this process
    connected; the lock lets one module's cluster up at a time under xdist."""
    if ray is None:
        pytest.skip(NO_RAY)
    with FileLock(tmp_path_factory.getbasetemp().parent / "memsuite-ray-cluster.lock"):
        before = _descendants(os.getpid())
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
        try:
            for _ in range(ONE_CPU_NODES):
                cluster.add_node(num_cpus=1)
            cluster.wait_for_nodes()
            ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
            yield cluster
        finally:
            started = _descendants(os.getpid()) - before
            executors.shutdown()
            cluster.shutdown()
            deadline = time.monotonic() + 30
            while (left := [pid for pid in started if _alive(pid)]) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert not left, f"Ray processes left behind: {left}"


@pytest.fixture
def two_worker_nodes(cluster):
    """The cluster with two live 1-CPU worker nodes (a test may have removed one)."""
    for _ in range(ONE_CPU_NODES - len(cluster.worker_nodes)):  # the GPU test removes its own node
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    return cluster


def test_a_ray_run_is_the_in_process_run_under_the_same_key(two_worker_nodes, reference, tmp_path):
    filled = executors.fill(open_run(DATA, SPEC, PLAN, Store(tmp_path)), DATA, SPEC, PLAN.masks, PLAN.seeds(0),
                            executor="ray", progress=False)
    assert filled.trained == PLAN.n_models
    assert [(span.start_row, span.stop_row) for span in filled.spans] == [(0, 2), (2, 4), (4, 6), (6, 8)]
    assert_reference_bytes(Store(tmp_path).runs()[0], reference)
    again = train_ensemble(DATA, SPEC, PLAN, Store(tmp_path), progress=False, executor="ray")
    assert again.models_trained == 0
    assert_reference_bytes(again, reference)


def test_a_run_half_trained_in_process_is_finished_by_ray_and_the_reverse(two_worker_nodes, reference, tmp_path):
    # In-process first: the first two chunks, as an interrupted in-process fill leaves them.
    run = open_run(DATA, SPEC, PLAN, Store(tmp_path / "local-first"))
    train_pass = pass_trainer(DATA, SPEC, PLAN.masks, PLAN.seeds(0), "cpu")
    with torch_threads(THREADS_PER_PASS):
        for rows in run.missing_chunks(SPEC.models_per_pass)[:2]:
            run.write(rows, train_pass(rows))
    finished = train_ensemble(DATA, SPEC, PLAN, Store(tmp_path / "local-first"), progress=False, executor="ray")
    assert finished.models_trained == 4
    assert_reference_bytes(finished, reference)

    # Ray first: its last two chunks diverge, tried once each (a pass's own error is never
    # retried); the chunks before them are stored, and the in-process path finishes the run.
    seeds = chunk_seeds()
    diverging = faulty(tmp_path, diverge_at=tuple(seeds[2:]))
    with pytest.raises(TrainingDiverged, match="injected divergence"):
        train_ensemble(DATA, diverging, PLAN, Store(tmp_path / "ray-first"), progress=False,
                       executor=executors.Executor("ray", max_in_flight=1))
    assert attempts(diverging) == {seeds[0]: 1, seeds[1]: 1, seeds[2]: 1}
    (run,) = Store(tmp_path / "ray-first").runs()
    assert run.missing().tolist() == [4, 5, 6, 7]
    finished = train_ensemble(DATA, SPEC, PLAN, Store(tmp_path / "ray-first"), progress=False, executor="local")
    assert finished.models_trained == 4
    assert_reference_bytes(finished, reference)


@pytest.fixture
def written_rows(monkeypatch):
    """Every row the driver writes into a run, in order."""
    rows_written, write = [], Run.write

    def counted_write(self, rows, outputs):
        write(self, rows, outputs)
        rows_written.extend(np.asarray(rows).tolist())

    monkeypatch.setattr(Run, "write", counted_write)
    return rows_written


def test_a_worker_killed_during_a_chunk_is_retried_and_every_row_written_once(
        two_worker_nodes, reference, written_rows, tmp_path):
    seeds = chunk_seeds()
    dying = faulty(tmp_path, die_at=seeds[1])
    ensemble = train_ensemble(DATA, dying, PLAN, Store(tmp_path), progress=False, executor="ray")
    assert attempts(dying) == {seeds[0]: 1, seeds[1]: 2, seeds[2]: 1, seeds[3]: 1}
    assert sorted(written_rows) == list(range(PLAN.n_models))
    assert ensemble.models_trained == PLAN.n_models
    assert_reference_bytes(ensemble, reference)


def test_a_node_removed_mid_run_loses_its_chunk_to_a_retry_and_every_row_is_written_once(
        two_worker_nodes, reference, written_rows, tmp_path):
    cluster = two_worker_nodes
    slow = faulty(tmp_path, pause=1.0)
    removed = []

    def remove_the_node_of_the_first_attempt():
        folder = Path(slow.attempts)
        deadline = time.monotonic() + 60
        while not (started := sorted(folder.iterdir())) or not (node_id := started[0].read_text()):
            assert time.monotonic() < deadline, "no chunk started"
            time.sleep(0.02)
        (node,) = [node for node in cluster.worker_nodes if node.node_id == node_id] or \
            pytest.fail(f"node {node_id} is not one of {[node.node_id for node in cluster.worker_nodes]}")
        cluster.remove_node(node)
        removed.append(int(started[0].name.split("-")[0]))

    remover = threading.Thread(target=remove_the_node_of_the_first_attempt)
    remover.start()
    try:
        ensemble = train_ensemble(DATA, slow, PLAN, Store(tmp_path), progress=False, executor="ray")
    finally:
        remover.join()
    assert removed and attempts(slow)[removed[0]] == 2  # its chunk was lost mid-pass and retried
    assert sorted(written_rows) == list(range(PLAN.n_models))
    assert_reference_bytes(ensemble, reference)


DRIVER = """
import sys
import ray
from harness.ensemble import train_ensemble
from harness.store import Store
from tests.test_ray import DATA, LONG_PLAN, faulty
from pathlib import Path

ray.init(address=sys.argv[1], include_dashboard=False, log_to_driver=False)
train_ensemble(DATA, faulty(Path(sys.argv[2]), pause=0.5), LONG_PLAN, Store(sys.argv[3]), progress=False,
               executor="ray")
"""


def test_a_driver_killed_between_chunks_leaves_only_the_missing_chunks_to_its_rerun(
        two_worker_nodes, reference, tmp_path):
    plan, root = LONG_PLAN, tmp_path / "store"
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, two_worker_nodes.address, str(tmp_path), str(root)],
                              cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (runs := Store(root).runs()) or len(runs[0].missing()) > plan.n_models - 4:
            assert driver.poll() is None, driver.communicate()
            assert time.monotonic() < deadline, "the driver stored no chunk"
            time.sleep(0.05)
        driver.send_signal(signal.SIGKILL)
    finally:
        driver.kill()
        driver.wait()  # reaped: its claims now name a dead process
    (run,) = Store(root).runs()
    missing = run.missing().tolist()
    assert 0 < len(missing) < plan.n_models

    filled = executors.fill(run, DATA, SPEC, plan.masks, plan.seeds(0), executor="ray", progress=False)
    assert filled.trained == len(missing)
    assert [row for span in filled.spans for row in range(span.start_row, span.stop_row)] == missing
    expected = train_ensemble(DATA, SPEC, plan, Store(tmp_path / "in-process"), progress=False, executor="local")
    assert_reference_bytes(run, (expected.key, {name: np.asarray(array).tobytes()
                                                for name, array in expected.arrays.items()}))


def test_half_a_logical_gpu_per_task_lets_at_most_two_chunks_train_at_once(cluster, reference, tmp_path):
    """Only the GPU node can run a task that asks for a GPU share; its four CPUs and six tasks
    in flight would allow more, so the fraction alone caps the overlap."""
    gpu_node = cluster.add_node(num_cpus=4, num_gpus=1)
    cluster.wait_for_nodes()
    try:
        slow = faulty(tmp_path, pause=0.6)
        plan = subsampled_plan(DATA.n_train, 16, 0.5)  # eight chunks
        filled = executors.fill(open_run(DATA, slow, plan, Store(tmp_path)), DATA, slow, plan.masks, plan.seeds(0),
                                executor=executors.Executor("ray", gpu_fraction=0.5, max_in_flight=6),
                                progress=False)
    finally:
        cluster.remove_node(gpu_node)
    assert filled.trained == plan.n_models
    events = sorted([(span.started, 1) for span in filled.spans] + [(span.finished, -1) for span in filled.spans])
    overlap = max(np.cumsum([step for _, step in events]))
    assert overlap == 2  # two tasks shared the GPU, never three
    assert executors.task_resources("cpu", executors.Executor("ray", gpu_fraction=0.5)) == \
        {"num_cpus": THREADS_PER_PASS, "num_gpus": 0.5}
    assert executors.task_resources("cuda", executors.Executor("ray")) == \
        {"num_cpus": THREADS_PER_PASS, "num_gpus": executors.DEFAULT_GPU_FRACTION}


# --- choosing the executor (no cluster needed) ---------------------------------------------


@pytest.fixture
def default_executor(monkeypatch):
    """The process-wide default, put back after the test."""
    monkeypatch.setattr(executors, "_default", executors.default())


def test_the_default_executor_is_local_and_configure_checks_what_it_is_given(default_executor, monkeypatch):
    assert executors.default() == executors.Executor("local")
    with pytest.raises(ValueError, match="executor must be one of"):
        executors.configure("dask")
    with pytest.raises(ValueError, match="needs executor 'ray'"):
        executors.configure("local", address="auto")
    with pytest.raises(ValueError, match="gpu_fraction"):
        executors.configure("ray", gpu_fraction=1.5)
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    with pytest.raises(ImportError, match=r"pip install -e '\.\[ray\]'"):
        executors.configure("ray", address="auto")
    assert executors.default() == executors.Executor("local")  # a refused choice changes nothing


def test_train_ensemble_trains_where_the_configured_default_says(default_executor, monkeypatch, reference, tmp_path):
    asked = []

    def fill_on_ray(run, dataset, spec, masks, seeds, device, executor, progress, desc):
        asked.append(executor)
        return executors._fill_locally(run, dataset, spec, masks, seeds, device, progress, desc)

    monkeypatch.setattr(executors, "_fill_on_ray", fill_on_ray)
    monkeypatch.setattr(executors, "_default", executors.Executor("ray", address="ray://head:10001"))
    ensemble = train_ensemble(DATA, SPEC, PLAN, Store(tmp_path), progress=False)
    assert asked == [executors.Executor("ray", address="ray://head:10001")]
    assert_reference_bytes(ensemble, reference)
    assert executors.resolve("ray").address == "ray://head:10001"  # the configured cluster's options
    assert executors.resolve("local") == executors.Executor("local")
    assert train_ensemble(DATA, SPEC, PLAN, Store(tmp_path), progress=False, executor="local").models_trained == 0
    assert len(asked) == 1
