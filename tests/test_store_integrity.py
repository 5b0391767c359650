"""The store keeps its promises (issue 15): damage is caught and named, `repair` restores the
uninterrupted bytes, a read-only store is read, a full disk raises OSError and leaves nothing,
abandoned staging folders are swept, run folders follow the umask."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from harness.store import STAGING_PREFIX, DamagedRun, Run, Store, main, repair
from tests.test_store import CONFIG, N_MODELS, REPO_ROOT, SCHEMA, fake_train, make_masks, reference_arrays

CHUNK = 3


def complete_run(root) -> Run:
    run = Store(root).open(CONFIG, make_masks(), SCHEMA)
    run.fill(fake_train, CHUNK, progress=False)
    return run


def overwrite_same_size(run):
    array = np.load(run.path / "margin.npy", mmap_mode="r+")
    array[4] = np.random.default_rng(1).normal(size=array.shape[1])
    array.flush()


def fewer_rows(run):
    np.save(run.path / "margin.npy", np.load(run.path / "margin.npy")[: N_MODELS // 2])


def wrong_dtype(run):
    np.save(run.path / "margin.npy", np.load(run.path / "margin.npy").astype(np.float64))


def nan_row_marked_done(run):
    array = np.load(run.path / "margin.npy", mmap_mode="r+")
    array[7] = np.nan
    array.flush()


def truncated(run):
    file = run.path / "margin.npy"
    os.truncate(file, file.stat().st_size // 2)


def zeroed_header(run):
    with open(run.path / "margin.npy", "r+b") as handle:
        handle.write(bytes(64))


DAMAGE = {
    "a same-size overwrite": (overwrite_same_size, "do not match their checksums"),
    "fewer rows": (fewer_rows, r"margin.npy holds float32 \(6, 20\)"),
    "a float64 copy": (wrong_dtype, "margin.npy holds float64"),
    "a NaN row marked done": (nan_row_marked_done, "do not match their checksums"),
    "a truncated file": (truncated, "margin.npy cannot be read"),
    "a zeroed header": (zeroed_header, "margin.npy cannot be read"),
}


def read(root) -> dict[str, np.ndarray]:
    run = Store(root).open(CONFIG, make_masks(), SCHEMA)
    run.fill(fake_train, CHUNK, progress=False)
    return {name: np.array(array) for name, array in run.arrays().items()}


@pytest.mark.parametrize("damage, message", DAMAGE.values(), ids=DAMAGE.keys())
def test_damage_is_named_and_repair_restores_the_uninterrupted_bytes(tmp_path, capsys, damage, message):
    expected = reference_arrays(tmp_path / "reference", CHUNK)
    run = complete_run(tmp_path / "store")
    damage(run)
    with pytest.raises(DamagedRun, match=f"{run.key}.*{message}.*harness.store --root .* repair {run.key}"):
        read(tmp_path / "store")

    assert main(["--root", str(tmp_path / "store"), "--verify"]) == 1
    assert f"{run.key}  DAMAGED" in capsys.readouterr().out

    repair(run.path)
    for name, array in read(tmp_path / "store").items():
        assert array.tobytes() == expected[name].tobytes(), name
    assert main(["--root", str(tmp_path / "store"), "--verify"]) == 0


def test_flags_set_on_a_never_trained_run_are_caught(tmp_path):
    expected = reference_arrays(tmp_path / "reference", CHUNK)
    run = Store(tmp_path / "store").open(CONFIG, make_masks(), SCHEMA)
    np.save(run.path / "done.npy", np.ones(N_MODELS, dtype=np.uint8))
    with pytest.raises(DamagedRun, match=f"{N_MODELS} of {N_MODELS} models marked done do not match"):
        read(tmp_path / "store")
    assert main(["--root", str(tmp_path / "store"), "repair", run.key]) == 0
    for name, array in read(tmp_path / "store").items():
        assert array.tobytes() == expected[name].tobytes(), name


def test_the_listing_marks_a_damaged_run_and_lists_the_others(tmp_path, capsys):
    complete_run(tmp_path)
    other = Store(tmp_path).open({**CONFIG, "seed": 1}, make_masks(), SCHEMA)
    truncated(other)
    assert main(["--root", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "2 run(s)" in out and f"{other.key}  DAMAGED: margin.npy cannot be read" in out
    assert "12/12" in out  # the healthy run is listed as usual


def test_a_run_whose_config_does_not_match_its_key_cannot_be_repaired(tmp_path):
    run = complete_run(tmp_path)
    (run.path / "config.json").write_text('{"name": "other"}')
    with pytest.raises(DamagedRun, match="do not hash.*delete"):
        repair(run.path)


READ_ONLY_READER = f"""
import numpy as np
from harness.store import Store
from tests.test_store import CONFIG, SCHEMA, fake_train, make_masks
import sys
run = Store(sys.argv[1]).open(CONFIG, make_masks(), SCHEMA)
assert run.fill(fake_train, {CHUNK}, progress=False) == 0
print(float(np.asarray(run.arrays()["margin"]).sum()))
"""


def test_a_complete_run_in_a_read_only_store_is_read(tmp_path):
    expected = reference_arrays(tmp_path / "reference", CHUNK)["margin"].sum()
    # Made outside pytest's 0700 tmp folder, so that an unprivileged user can reach it.
    shared = Path(tempfile.mkdtemp(prefix="memsuite-read-only-"))
    try:
        complete_run(shared / "store")
        before = sorted(path.relative_to(shared) for path in shared.rglob("*"))
        if os.geteuid() == 0:  # root ignores permissions: read as nobody, who cannot write there
            if shutil.which("setpriv") is None:
                pytest.skip("running as root without setpriv: cannot drop the right to write")
            shared.chmod(0o755)
            reader = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                     sys.executable, "-c", READ_ONLY_READER, str(shared / "store")],
                                    cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
                                    capture_output=True, text=True)
            assert reader.returncode == 0, reader.stderr
            assert float(reader.stdout) == pytest.approx(expected, rel=1e-6)
        else:
            for path in shared.rglob("*"):
                path.chmod(path.stat().st_mode & ~0o222)
            assert np.asarray(read(shared / "store")["margin"]).sum() == pytest.approx(expected, rel=1e-6)
        assert sorted(path.relative_to(shared) for path in shared.rglob("*")) == before  # nothing written
    finally:
        for path in [shared, *shared.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        shutil.rmtree(shared)


def test_a_full_disk_raises_an_oserror_naming_the_run_and_leaves_no_staging(tmp_path, monkeypatch):
    def no_space(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(os, "posix_fallocate", no_space)
    with pytest.raises(OSError, match="no space left on the device to create run [0-9a-f]{16}") as raised:
        Store(tmp_path).open(CONFIG, make_masks(), SCHEMA)
    assert raised.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []


FILL_A_SMALL_DISK = """
import errno, os, sys
import numpy as np
from harness.store import Store
root = sys.argv[1]
try:
    Store(root).open({"name": "too big"}, np.ones((64, 4096), bool), {"margin": ((4096,), "float64")})
except OSError as error:
    assert error.errno == errno.ENOSPC, error
    print("OSError:", error)
print("left:", sorted(os.listdir(root)))
"""


def test_a_full_tmpfs_raises_an_oserror_and_leaves_no_staging(tmp_path):
    """The same on a real 1 MiB tmpfs, where the machine lets us mount one (root, mount namespaces)."""
    mount = tmp_path / "small"
    mount.mkdir()
    script = (f"mount -t tmpfs -o size=1m tmpfs {mount} && "
              f"{sys.executable} -c '{FILL_A_SMALL_DISK}' {mount}")
    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip("needs root and unshare to mount a small tmpfs")
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size=1m tmpfs {mount}"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {probe.stderr.strip()}")
    result = subprocess.run(["unshare", "-m", "sh", "-c", script], cwd=REPO_ROOT, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert result.returncode == 0, result.stderr  # an exception, not SIGBUS (exit 135)
    assert "OSError: [Errno 28] no space left on the device to create run" in result.stdout
    assert "left: []" in result.stdout


def test_abandoned_staging_folders_are_swept_and_live_ones_kept(tmp_path):
    store = Store(tmp_path)
    dead = tmp_path / f"{STAGING_PREFIX}{'0' * 16}-{os.uname().nodename}-{2 ** 22 + 7}-abcd"
    alive = tmp_path / f"{STAGING_PREFIX}{'1' * 16}-{os.uname().nodename}-{os.getpid()}-abcd"
    for folder in (dead, alive):
        folder.mkdir()
        (folder / "margin.npy").write_bytes(bytes(100))
    assert store.stale_staging() == [dead]
    store.open(CONFIG, make_masks(), SCHEMA)
    assert not dead.exists() and alive.exists()


def test_run_folders_follow_the_umask(tmp_path):
    before = os.umask(0o002)
    try:
        run = Store(tmp_path).open(CONFIG, make_masks(), SCHEMA)
    finally:
        os.umask(before)
    assert run.path.stat().st_mode & 0o777 == 0o775
    assert (run.path / "margin.npy").stat().st_mode & 0o777 == 0o664
