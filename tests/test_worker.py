"""Shards (issue 13): `python -m harness.worker` shards plus `python -m harness.store merge` give
the in-process run's bytes; a rerun trains nothing; merge refuses damaged or foreign chunk files;
the worker refuses data another profile built and rebuilds every family's spec from its config."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from harness import profiles, store as store_module
from harness.ensemble import open_run, train_ensemble
from harness.experiments import load_dataset
from harness.masks import subsampled_plan
from harness.store import ChunkFileError, Store
from harness.train import MLPSpec, RidgeSpec
from harness.worker import CannotRebuild, main as worker_main, spec_from_config
from tests.test_store import CONFIG, N_MODELS, REPO_ROOT, SCHEMA, fake_train, make_masks, reference_arrays

PROFILE = "smoke"
SPEC = RidgeSpec(features=32, models_per_pass=2)
CHUNK = 3  # fake-trainer runs: 12 models in 4 chunks


def ridge_run(root):
    data = load_dataset("synthetic", PROFILE)
    plan = subsampled_plan(data.n_train, 6, 0.5)  # three chunks of two
    return data, plan, open_run(data, SPEC, plan, Store(root))


def start_worker(root, key, shard, shards):
    return subprocess.Popen([sys.executable, "-m", "harness.worker", "--run", key, "--shard", str(shard),
                             "--of", str(shards), "--root", str(root), "--profile", PROFILE, "--no-progress"],
                            cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_shards_then_merge_give_the_in_process_bytes_and_a_rerun_trains_nothing(tmp_path, capsys):
    data, plan, run = ridge_run(tmp_path / "sharded")
    workers = [start_worker(tmp_path / "sharded", run.key, shard, 2) for shard in range(2)]
    outputs = []
    for worker in workers:
        stdout, stderr = worker.communicate(timeout=120)
        assert worker.returncode == 0, stderr
        outputs.append(stdout)
    assert "shard 0/2: trained 4 model(s)" in outputs[0] and "shard 1/2: trained 2 model(s)" in outputs[1]
    assert sorted(file.name for file in run.chunk_files()) == ["0-2.npz", "2-4.npz", "4-6.npz"]
    assert len(run.missing()) == run.n_models  # shards never write the run's arrays

    before = {file.name: file.stat().st_mtime_ns for file in run.chunk_files()}
    assert worker_main(["--run", run.key, "--shard", "0", "--of", "2", "--root", str(tmp_path / "sharded"),
                        "--profile", PROFILE, "--no-progress"]) == 0
    assert "nothing to train" in capsys.readouterr().out
    assert {file.name: file.stat().st_mtime_ns for file in run.chunk_files()} == before

    assert store_module.main(["--root", str(tmp_path / "sharded"), "merge", run.key]) == 0
    assert "6 model(s) newly done from chunk files; 6/6 done" in capsys.readouterr().out
    assert run.chunk_files() == []
    expected = train_ensemble(data, SPEC, plan, Store(tmp_path / "in-process"), progress=False)
    assert expected.key == run.key
    merged = run.arrays()
    assert sorted(merged) == sorted(expected.arrays)
    for name, array in expected.arrays.items():
        assert merged[name].tobytes() == np.asarray(array).tobytes(), name


def test_shards_split_the_chunks_by_index_and_a_fill_imports_their_files(tmp_path, capsys):
    run = Store(tmp_path).open(CONFIG, make_masks(), SCHEMA)
    trained = []
    assert run.train_shard(lambda rows: trained.append(rows.tolist()) or fake_train(rows), CHUNK, 1, 2,
                           progress=False) == 2 * CHUNK
    assert trained == [[3, 4, 5], [9, 10, 11]]  # chunks 1 and 3
    store_module.main(["--root", str(tmp_path)])
    assert "0/12" in (listing := capsys.readouterr().out) and "2 chunk file(s) to merge" in listing
    assert run.train_shard(fake_train, CHUNK, 1, 2, progress=False) == 0  # their files are there
    assert run.fill(fake_train, CHUNK, progress=False) == N_MODELS - 2 * CHUNK
    expected = reference_arrays(tmp_path / "reference", CHUNK)
    for name, array in run.arrays().items():
        assert array.tobytes() == expected[name].tobytes(), name
    assert run.chunk_files() == []


def rewrite_chunk_file(file, **changes):
    with np.load(file) as contents:
        entries = {name: contents[name] for name in contents.files}
    entries.update(changes)
    with open(file, "wb") as handle:
        np.savez(handle, **entries)


def truncated(file, run, other):
    os.truncate(file, file.stat().st_size // 2)


def a_flipped_value(file, run, other):
    with np.load(file) as contents:
        margin = contents["array_margin"].copy()
    margin[0, 0] += 1
    rewrite_chunk_file(file, array_margin=margin)


def another_runs_file(file, run, other):
    other.train_shard(fake_train, CHUNK, 0, 4, progress=False)
    os.replace(other.path / "chunks" / "0-3.npz", file)


def renamed(file, run, other):
    shutil.copyfile(run.path / "chunks" / "6-9.npz", file)


def a_float64_array(file, run, other):
    with np.load(file) as contents:
        rewrite_chunk_file(file, array_margin=contents["array_margin"].astype(np.float64))


CHUNK_FILE_DAMAGE = {
    "truncated": (truncated, "cannot be read"),
    "a value changed": (a_flipped_value, "do not match their checksums"),
    "another run's file": (another_runs_file, "belongs to run [0-9a-f]{16}, not to run"),
    "another chunk's file": (renamed, r"holds rows \[6, 7, 8\], not the chunk 0-3"),
    "a float64 array": (a_float64_array, r"holds margin as float64 \(3, 20\)"),
}


@pytest.mark.parametrize("damage, message", CHUNK_FILE_DAMAGE.values(), ids=CHUNK_FILE_DAMAGE.keys())
def test_merge_refuses_a_damaged_or_foreign_chunk_file_and_imports_the_others(tmp_path, capsys, damage, message):
    store = Store(tmp_path)
    run = store.open(CONFIG, make_masks(), SCHEMA)
    other = store.open({**CONFIG, "seed": 1}, make_masks(), SCHEMA)
    for shard in range(4):
        run.train_shard(fake_train, CHUNK, shard, 4, progress=False)
    bad = run.path / "chunks" / "0-3.npz"
    damage(bad, run, other)

    assert store_module.main(["--root", str(tmp_path), "merge", run.key]) == 1
    out, err = capsys.readouterr()
    assert f"chunk file {bad} " in err and "delete it" in err
    assert re.search(message, err), err
    assert bad.exists() and [file.name for file in run.chunk_files()] == ["0-3.npz"]
    assert set(run.missing().tolist()) == {0, 1, 2}  # the good files were imported
    with pytest.raises(ChunkFileError, match=message):
        run.fill(fake_train, CHUNK, progress=False)  # a training call refuses it too, never waits on it

    bad.unlink()
    assert run.fill(fake_train, CHUNK, progress=False) == CHUNK
    expected = reference_arrays(tmp_path / "reference", CHUNK)
    for name, array in run.arrays().items():
        assert array.tobytes() == expected[name].tobytes(), name


def test_the_worker_refuses_data_another_profile_built_and_names_it(tmp_path, capsys):
    data = load_dataset("synthetic", "default")
    plan = subsampled_plan(data.n_train, 4, 0.5)
    run = open_run(data, SPEC, plan, Store(tmp_path))
    assert worker_main(["--run", run.key, "--shard", "0", "--of", "1", "--root", str(tmp_path),
                        "--profile", PROFILE, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"cannot train run {run.key}" in err and "try --profile default" in err
    assert run.chunk_files() == [] and len(run.missing()) == run.n_models


def test_the_worker_refuses_a_run_it_cannot_rebuild(tmp_path, capsys):
    run = Store(tmp_path).open(CONFIG, make_masks(), SCHEMA)  # not made by train_ensemble
    assert worker_main(["--run", run.key, "--shard", "0", "--of", "1", "--root", str(tmp_path)]) == 2
    assert "was not made by harness.ensemble.train_ensemble" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        worker_main(["--run", run.key, "--shard", "2", "--of", "2", "--root", str(tmp_path)])


@pytest.mark.parametrize("spec", [MLPSpec(), RidgeSpec(closed_form_loo=False), profiles.SMOKE.cnn,
                                  replace(profiles.PAPER.cnn, models_per_pass=3)], ids=lambda spec: spec.family)
def test_every_family_is_rebuilt_from_its_config(spec):
    assert spec_from_config(spec.config()) == spec


def test_a_conv_run_stored_before_paths_were_named_rebuilds_on_the_vmap_path():
    spec = replace(profiles.SMOKE.cnn, path="vmap")
    assert "path" not in spec.config()
    assert spec_from_config(spec.config()) == spec


@pytest.mark.parametrize("config, message", [
    ({"family": "gbm"}, "this harness trains"),
    ({**RidgeSpec().config(), "depth": 3}, r"fields \['depth'\]"),
    ({**profiles.SMOKE.cnn.config(), "recipe_values": {"epochs": -1}}, "a recipe changed"),
    ({**RidgeSpec().config(), "features": 0}, "cannot be rebuilt"),
])
def test_a_spec_config_this_harness_cannot_rebuild_is_refused(config, message):
    with pytest.raises(CannotRebuild, match=message):
        spec_from_config(config)


def test_merge_sweeps_the_temporaries_of_dead_writers_and_keeps_a_live_ones(tmp_path):
    run = Store(tmp_path).open(CONFIG, make_masks(), SCHEMA)
    folder = run.path / "chunks"
    folder.mkdir()
    host = socket.gethostname()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    abandoned = folder / f".tmp-0-4-{host}-{int(dead.stdout)}-0a1b2c3d.npz"
    live = folder / f".tmp-4-8-{host}-{os.getpid()}-0a1b2c3d.npz"
    elsewhere = folder / ".tmp-8-12-other-host-with-dashes-123-0a1b2c3d.npz"
    for file in (abandoned, live, elsewhere):
        file.write_bytes(b"PK partial")
    run.merge_chunk_files()
    assert sorted(f.name for f in folder.iterdir()) == sorted([live.name, elsewhere.name])
    day_ago = os.path.getmtime(elsewhere) - store_module.STALE_STAGING_SECONDS - 60
    os.utime(elsewhere, (day_ago, day_ago))
    run.merge_chunk_files()
    assert [f.name for f in folder.iterdir()] == [live.name]


def test_a_chunk_file_appears_whole_or_not_at_all(tmp_path, monkeypatch):
    run = Store(tmp_path).open(CONFIG, make_masks(), SCHEMA)

    def killed_mid_write(handle, **entries):
        handle.write(b"PK partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", killed_mid_write)
    with pytest.raises(KeyboardInterrupt):
        run.train_shard(fake_train, CHUNK, 0, 1, progress=False)
    assert list((run.path / "chunks").iterdir()) == []  # neither the file nor its temporary name
    assert list((run.path / "claims").iterdir()) == []  # the claim was let go
