"""Processes on one machine share a run chunk by chunk (issue 13): a claim left by a killed
process is taken over, a live one is waited for, another host's claim is taken over only once
it has gone untouched for CLAIM_STALE_SECONDS, and a held claim is kept fresh while it trains.
(Two processes training disjoint chunks side by side: tests/test_store.py.)"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time

import numpy as np

from harness import store as store_module
from harness.store import Store, _Claims
from tests.test_store import CONFIG, N_MODELS, SCHEMA, fake_train, make_masks, reference_arrays, start_filler

CHUNK = 3


def assert_reference_bytes(run, root):
    expected = reference_arrays(root, CHUNK)
    for name, array in run.arrays().items():
        assert array.tobytes() == expected[name].tobytes(), name


def write_claim(run, name, host, pid, age=0.0):
    claim = run.path / "claims" / name
    claim.parent.mkdir(exist_ok=True)
    claim.write_text(json.dumps({"host": host, "pid": pid, "since": time.time() - age}))
    os.utime(claim, (time.time() - age,) * 2)
    return claim


def test_a_claim_left_by_a_killed_process_is_taken_over(tmp_path):
    root = tmp_path / "store"
    filler = start_filler(root, CHUNK, sleep=60)  # claims chunk 0-3, then trains it for a minute
    try:
        deadline = time.monotonic() + 30
        while next(root.glob("*/claims/0-3"), None) is None:
            assert filler.poll() is None, filler.communicate()
            assert time.monotonic() < deadline, "the filler never claimed a chunk"
            time.sleep(0.01)
        filler.send_signal(signal.SIGKILL)
        filler.wait()
    finally:
        filler.kill()
        filler.wait()
    run = Store(root).open(CONFIG, make_masks(), SCHEMA)
    assert (run.path / "claims" / "0-3").exists()  # the dead process's claim is still there

    trained = []
    assert run.fill(lambda rows: trained.extend(rows.tolist()) or fake_train(rows), CHUNK,
                    progress=False) == N_MODELS
    assert sorted(trained) == list(range(N_MODELS))
    assert list((run.path / "claims").iterdir()) == []
    assert_reference_bytes(run, tmp_path / "reference")


def test_a_fill_waits_for_a_chunk_a_live_process_holds(tmp_path):
    run = Store(tmp_path / "store").open(CONFIG, make_masks(), SCHEMA)
    claim = write_claim(run, "0-3", socket.gethostname(), os.getpid())  # alive: this very process

    def the_holder_finishes():
        time.sleep(0.5)
        run.write(np.arange(CHUNK), fake_train(np.arange(CHUNK)))
        claim.unlink()

    holder = threading.Thread(target=the_holder_finishes)
    holder.start()
    trained = []
    try:
        assert run.fill(lambda rows: trained.extend(rows.tolist()) or fake_train(rows), CHUNK,
                        progress=False) == N_MODELS - CHUNK
    finally:
        holder.join()
    assert sorted(trained) == list(range(CHUNK, N_MODELS))  # never the held chunk
    assert_reference_bytes(run, tmp_path / "reference")


def test_another_hosts_claim_is_taken_over_only_once_stale(tmp_path):
    run = Store(tmp_path).open(CONFIG, make_masks(), SCHEMA)
    rows = np.arange(CHUNK)
    write_claim(run, "0-3", "another-host", os.getpid(), age=store_module.CLAIM_STALE_SECONDS / 2)
    with _Claims(run) as claims:
        assert not claims.take(rows)
        write_claim(run, "0-3", "another-host", os.getpid(), age=store_module.CLAIM_STALE_SECONDS + 1)
        assert claims.take(rows)
        holder = json.loads((run.path / "claims" / "0-3").read_text())
        assert (holder["host"], holder["pid"]) == (socket.gethostname(), os.getpid())
        with _Claims(run) as others:  # a second claimer in this process finds it held, by a live pid
            assert not others.take(rows)
    assert not (run.path / "claims" / "0-3").exists()  # let go when the block ends


def test_a_held_claim_is_touched_while_its_chunk_trains(tmp_path, monkeypatch):
    monkeypatch.setattr(store_module, "CLAIM_REFRESH_SECONDS", 0.05)
    run = Store(tmp_path).open(CONFIG, make_masks(), SCHEMA)
    touched = []

    def slow_train(rows):
        claim = run.path / "claims" / f"{rows[0]}-{rows[-1] + 1}"
        os.utime(claim, (0, 0))  # as if untouched since 1970
        time.sleep(0.3)
        touched.append(time.time() - claim.stat().st_mtime)
        return fake_train(rows)

    run.fill(slow_train, chunk_size=N_MODELS, progress=False)
    assert touched and touched[0] < 5
