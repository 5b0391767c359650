"""The result store: round trip, addressing, resumption after SIGKILL, sharing between processes
(each trains part of the run, no model twice)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from harness.store import DEFAULT_STORE_ENV, DamagedRun, Store, default_root, run_key

REPO_ROOT = Path(__file__).resolve().parents[1]
N_MODELS, N_POINTS = 12, 20
SCHEMA = {"correct": ((N_POINTS,), "bool"), "margin": ((N_POINTS,), "float32"), "test_acc": ((), "float64")}
CONFIG = {"name": "unit", "seed": 0, "r": 0.7}


def fake_train(rows, sleep=0.0):
    """A deterministic fake trainer whose outputs depend on the whole chunk as well as the row,
    as a batched trainer's would, so only fixed chunks reproduce an uninterrupted run."""
    time.sleep(sleep)
    margins = np.stack([np.random.default_rng([int(row), int(rows[0]), len(rows)]).normal(size=N_POINTS)
                        for row in rows])
    return {"correct": margins > 0, "margin": margins, "test_acc": margins.mean(axis=1)}


def make_masks(seed=0):
    return np.random.default_rng(seed).random((N_MODELS, N_POINTS)) < 0.7


def reference_arrays(root, chunk_size):
    run = Store(root).open(CONFIG, make_masks(), SCHEMA)
    run.fill(fake_train, chunk_size, progress=False)
    return {name: np.array(array) for name, array in run.arrays().items()}


# Fills the unit run in a subprocess and prints: models trained, complete, sum of margins.
FILLER = """
import json, os, sys, time
from pathlib import Path
import numpy as np
from harness.store import Store
from tests.test_store import CONFIG, SCHEMA, fake_train, make_masks

args = json.loads(sys.argv[1])

def train(rows):
    if args["log"]:  # O_APPEND: lines from both processes interleave whole
        fd = os.open(args["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        os.write(fd, "".join(f"{row}\\n" for row in rows).encode())
        os.close(fd)
    return fake_train(rows, sleep=args["sleep"])

if args["go"]:  # say we are ready, then wait for the start signal
    Path(args["go"] + "." + args["name"]).touch()
    while not Path(args["go"]).exists():
        time.sleep(0.005)
run = Store(args["root"]).open(CONFIG, make_masks(), SCHEMA)
trained = run.fill(train, args["chunk_size"], progress=False)
print(trained, (len(run.missing()) == 0), float(np.asarray(run.arrays()["margin"]).sum()))
"""


def start_filler(root, chunk_size, sleep, log=None, go=None, name="filler"):
    args = {"root": str(root), "chunk_size": chunk_size, "sleep": sleep, "log": log and str(log),
            "go": go and str(go), "name": name}
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.Popen([sys.executable, "-c", FILLER, json.dumps(args)], cwd=REPO_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_round_trip_missing_shrinks_and_incomplete_arrays_raise(tmp_path):
    run = Store(tmp_path).open(CONFIG, make_masks(), SCHEMA)
    assert run.n_models == N_MODELS and run.path == tmp_path / run.key
    assert np.array_equal(run.missing(), np.arange(N_MODELS)) and len(run.missing()) > 0
    assert np.isnan(np.load(run.path / "margin.npy")).all()  # unwritten floats are NaN
    with pytest.raises(ValueError):
        run.masks[0, 0] = True  # read-only

    outputs = fake_train(np.array([3, 5]))
    run.write(np.array([3, 5]), outputs)
    assert 3 not in run.missing() and 5 not in run.missing() and len(run.missing()) == N_MODELS - 2
    with pytest.raises(RuntimeError, match=rf"{run.key}.*10 of 12 models missing"):
        run.arrays()

    assert run.fill(fake_train, chunk_size=5, progress=False) == N_MODELS  # every chunk had a missing row
    assert (len(run.missing()) == 0) and run.fill(fake_train, chunk_size=5, progress=False) == 0
    arrays = run.arrays()
    assert arrays["correct"].dtype == bool and arrays["margin"].dtype == np.float32
    assert arrays["test_acc"].shape == (N_MODELS,)
    assert not arrays["margin"].flags.writeable
    np.testing.assert_array_equal(arrays["margin"][:5], fake_train(np.arange(5))["margin"].astype(np.float32))

    reopened = Store(tmp_path).open(CONFIG, make_masks(), SCHEMA)
    assert len(reopened.missing()) == 0 and reopened.config == CONFIG
    assert [found.key for found in Store(tmp_path).runs()] == [run.key]


def test_key_depends_on_config_and_masks(tmp_path):
    masks = make_masks()
    assert run_key(CONFIG, masks) == run_key(dict(reversed(CONFIG.items())), masks.copy())
    assert len(run_key(CONFIG, masks)) == 16
    flipped = masks.copy()
    flipped[0, 0] = not flipped[0, 0]
    assert run_key(CONFIG, flipped) != run_key(CONFIG, masks)
    assert run_key({**CONFIG, "seed": 1}, masks) != run_key(CONFIG, masks)
    assert run_key(CONFIG, masks.reshape(N_POINTS, N_MODELS)) != run_key(CONFIG, masks)  # same bytes
    store = Store(tmp_path)
    assert store.open(CONFIG, masks, SCHEMA).path == store.open(CONFIG, masks.copy(), SCHEMA).path
    assert store.open(CONFIG, flipped, SCHEMA).path != store.open(CONFIG, masks, SCHEMA).path


def test_default_root_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(DEFAULT_STORE_ENV, str(tmp_path / "store"))
    assert default_root() == tmp_path / "store" and Store().root == tmp_path / "store"
    monkeypatch.delenv(DEFAULT_STORE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert default_root() == tmp_path / "cache" / "memsuite"
    assert not (tmp_path / "cache").exists()  # created on first use only


def test_sigkill_mid_fill_resumes_bit_identically(tmp_path):
    chunk_size = 2
    expected = reference_arrays(tmp_path / "uninterrupted", chunk_size)
    root = tmp_path / "interrupted"
    filler = start_filler(root, chunk_size, sleep=0.2)
    try:
        done_file = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            done_file = done_file or next(root.glob("[0-9a-f]*/done.npy"), None)
            if done_file is not None and np.load(done_file).sum() >= chunk_size:
                break
            assert filler.poll() is None, filler.communicate()
            time.sleep(0.005)
        filler.send_signal(signal.SIGKILL)
    finally:
        filler.kill()
        filler.wait()
    assert filler.returncode == -signal.SIGKILL

    run = Store(root).open(CONFIG, make_masks(), SCHEMA)
    done_rows = np.setdiff1d(np.arange(N_MODELS), run.missing())
    assert 0 < len(done_rows) < N_MODELS, "the kill should land mid-way"
    for name, array in expected.items():  # every row marked done is whole and correct
        np.testing.assert_array_equal(np.load(run.path / f"{name}.npy")[done_rows], array[done_rows])

    assert run.fill(fake_train, chunk_size, progress=False) == N_MODELS - len(done_rows)
    for name, array in run.arrays().items():
        np.testing.assert_array_equal(array, expected[name])
    assert [path.name for path in root.iterdir()] == [run.key]  # no staging directory left behind


def test_two_processes_share_the_chunks_and_train_each_model_once(tmp_path):
    root, log, go = tmp_path / "store", tmp_path / "trained.log", tmp_path / "go"
    # 0.2 s a chunk: long enough that the second process claims a chunk while the first trains one.
    fillers = [start_filler(root, chunk_size=3, sleep=0.2, log=log, go=go, name=f"filler{i}")
               for i in range(2)]
    deadline = time.monotonic() + 30
    while not all(Path(f"{go}.filler{i}").exists() for i in range(2)) and time.monotonic() < deadline:
        time.sleep(0.005)
    go.touch()
    results = []
    for filler in fillers:
        stdout, stderr = filler.communicate(timeout=30)
        assert filler.returncode == 0, stderr
        results.append(stdout.split())

    trained_rows = sorted(int(line) for line in log.read_text().split())
    assert trained_rows == list(range(N_MODELS))
    trained = [int(count) for count, _, _ in results]
    assert sum(trained) == N_MODELS and min(trained) > 0  # side by side, not taking turns
    assert all(complete == "True" for _, complete, _ in results)
    assert results[0][2] == results[1][2]  # both read the same arrays
    assert len(list(root.iterdir())) == 1  # the losing creator discarded its staging directory


def test_losing_a_creation_race_keeps_the_winners_run(tmp_path):
    store = Store(tmp_path)
    run = store.open(CONFIG, make_masks(), SCHEMA)
    run.write(np.array([0]), fake_train(np.array([0])))
    store._create(run.path, CONFIG, make_masks(), SCHEMA)  # a second creator renames too late
    assert [path.name for path in tmp_path.iterdir()] == [run.key]
    assert len(run.missing()) == N_MODELS - 1  # the winner's work survives


@pytest.mark.parametrize("masks, match", [
    (np.ones((3, 4), dtype=np.int64), "bool"),
    (np.ones(4, dtype=bool), "2-D"),
    (np.ones((0, 4), dtype=bool), "at least one model"),
])
def test_bad_masks(tmp_path, masks, match):
    with pytest.raises(ValueError, match=match):
        Store(tmp_path).open(CONFIG, masks, SCHEMA)


@pytest.mark.parametrize("schema, match", [
    ({}, "non-empty"),
    ({"x": ((3,), "not_a_dtype")}, "not a numpy dtype"),
    ({"x": ((3,), np.float32)}, "dtype string"),
    ({"x": ((3,), "object")}, "cannot be stored"),
    ({"x": (3, "float32")}, "shape tuple"),
    ({"done": ((3,), "float32")}, "not one of"),
    ({"a/b": ((3,), "float32")}, "letters, digits"),
])
def test_bad_schema(tmp_path, schema, match):
    with pytest.raises(ValueError, match=match):
        Store(tmp_path).open(CONFIG, make_masks(), schema)


def test_bad_config_and_mismatches(tmp_path):
    store = Store(tmp_path)
    with pytest.raises(ValueError, match="JSON-serializable"):
        store.open({"data": np.zeros(2)}, make_masks(), SCHEMA)
    with pytest.raises(ValueError, match="must be a dict"):
        store.open([1, 2], make_masks(), SCHEMA)
    run = store.open(CONFIG, make_masks(), SCHEMA)
    with pytest.raises(ValueError, match="created with schema"):
        store.open(CONFIG, make_masks(), {"margin": ((N_POINTS,), "float64")})
    np.save(run.path / "masks.npy", ~make_masks())  # corrupt the stored masks
    with pytest.raises(DamagedRun, match="do not hash to the run's key.*delete"):
        store.open(CONFIG, make_masks(), SCHEMA)


def test_bad_writes_and_chunk_size(tmp_path):
    run = Store(tmp_path).open(CONFIG, make_masks(), SCHEMA)
    good = fake_train(np.array([0, 1]))
    with pytest.raises(ValueError, match=r"\[0, 12\)"):
        run.write(np.array([0, 12]), good)
    with pytest.raises(ValueError, match="integer"):
        run.write(np.array([0.0, 1.0]), good)
    with pytest.raises(ValueError, match="repeat"):
        run.write(np.array([1, 1]), good)
    with pytest.raises(ValueError, match="exactly the schema's arrays"):
        run.write(np.array([0, 1]), {"margin": good["margin"]})
    with pytest.raises(ValueError, match=r"must have shape \(2, 20\)"):
        run.write(np.array([0, 1]), {**good, "margin": good["margin"][:, :5]})
    with pytest.raises(ValueError, match="chunk_size"):
        run.fill(fake_train, chunk_size=0)
    with pytest.raises(ValueError, match="workers"):
        run.fill(fake_train, chunk_size=2, workers=0)
    assert len(run.missing()) == N_MODELS  # nothing was marked done by the failed writes


def test_cli_lists_runs(tmp_path, capsys):
    from harness.store import main

    run = Store(tmp_path).open(CONFIG, make_masks(), SCHEMA)
    run.write(np.array([0]), fake_train(np.array([0])))
    main(["--root", str(tmp_path)])
    out = capsys.readouterr().out
    assert run.key in out and "1/12" in out and "name=unit" in out


def test_chunks_trained_side_by_side_give_the_sequential_arrays(tmp_path):
    run = Store(tmp_path / "threads").open(CONFIG, make_masks(), SCHEMA)
    assert run.fill(lambda rows: fake_train(rows, sleep=0.01), chunk_size=5, progress=False, workers=3) == N_MODELS
    sequential = reference_arrays(tmp_path / "sequential", chunk_size=5)
    for name, array in run.arrays().items():
        np.testing.assert_array_equal(array, sequential[name])


def test_a_failing_chunk_among_threads_keeps_the_chunks_before_it(tmp_path):
    run = Store(tmp_path).open(CONFIG, make_masks(), SCHEMA)

    def fails_on_the_second_chunk(rows):
        if rows[0] == 4:
            raise RuntimeError("diverged")
        return fake_train(rows, sleep=0.05 if rows[0] == 0 else 0.0)

    with pytest.raises(RuntimeError, match="diverged"):
        run.fill(fails_on_the_second_chunk, chunk_size=4, progress=False, workers=2)
    assert 0 not in run.missing() and {4, 8} <= set(run.missing().tolist())
    assert run.fill(fake_train, chunk_size=4, progress=False, workers=2) == 8
    for name, array in run.arrays().items():
        np.testing.assert_array_equal(array, reference_arrays(tmp_path / "reference", chunk_size=4)[name])
