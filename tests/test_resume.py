"""A run's bytes depend on its key only: a resume in a process with any torch thread count,
after a kill at any chunk boundary, gives the arrays of an uninterrupted run (issue 15)."""

from __future__ import annotations

import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch

from harness.data import SubpopulationSpec, synthetic
from harness.ensemble import train_ensemble
from harness.masks import subsampled_plan
from harness.store import Run, Store
from harness.train import RidgeSpec

# Large enough that a ridge fit splits its sums between threads (the margins of one pass move
# by about 1e-5 between 1 and 2 threads when the pass picks its own count).
DATA = synthetic(SubpopulationSpec(num_classes=3, dim=16, subpops_per_class=4, largest=200, singletons_per_class=2))
SPEC = RidgeSpec(features=256, models_per_pass=2)
PLAN = subsampled_plan(DATA.n_train, 6, 0.7)  # three chunks


@pytest.fixture
def threads():
    """Set torch's thread count for the test; put back after."""
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


def train(root, spec=SPEC) -> dict[str, np.ndarray]:
    ensemble = train_ensemble(DATA, spec, PLAN, Store(root), progress=False)
    return {name: np.array(array) for name, array in ensemble.arrays.items()}


def interrupt_after(run: Run, chunks_done: int) -> None:
    """What a kill after ``chunks_done`` chunks leaves: later flags unset, later rows half written."""
    later = np.arange(chunks_done * SPEC.models_per_pass, run.n_models)
    done = np.load(run.path / "done.npy", mmap_mode="r+")
    done[later] = 0
    done.flush()
    for name in run.schema:
        array = np.load(run.path / f"{name}.npy", mmap_mode="r+")
        array[later[: len(later) // 2 + 1]] = 7  # garbage the resume must overwrite
        array.flush()


@pytest.mark.parametrize("resume_threads", [1, 2], ids=lambda t: f"resumed on {t} thread(s)")
@pytest.mark.parametrize("chunks_done", [0, 1, 2], ids=lambda c: f"killed after {c} chunk(s)")
def test_a_resume_on_any_thread_count_is_byte_equal_to_an_uninterrupted_run(tmp_path, threads, chunks_done,
                                                                            resume_threads):
    threads(2)
    expected = train(tmp_path / "uninterrupted")
    shutil.copytree(tmp_path / "uninterrupted", tmp_path / "interrupted")
    (run,) = Store(tmp_path / "interrupted").runs()
    interrupt_after(run, chunks_done)
    threads(resume_threads)
    resumed = train(tmp_path / "interrupted")
    for name, array in expected.items():
        assert resumed[name].tobytes() == array.tobytes(), name


def test_the_same_key_holds_the_same_bytes_whatever_the_threads(tmp_path, threads):
    arrays = {}
    one_pass = replace(SPEC, models_per_pass=PLAN.n_models)  # a lone pass once had every thread
    for count in (1, 2):
        threads(count)
        arrays[count] = train(tmp_path / f"threads-{count}", one_pass)
    assert [run.key for run in Store(tmp_path / "threads-1").runs()] == \
        [run.key for run in Store(tmp_path / "threads-2").runs()]
    for name in arrays[1]:
        assert arrays[1][name].tobytes() == arrays[2][name].tobytes(), name


def test_the_config_records_the_threads_each_pass_used(tmp_path):
    train(tmp_path)
    (run,) = Store(tmp_path).runs()
    assert run.config["threads_per_pass"] == 1
