"""Result store: ensembles of models trained on masked subsets, kept on disk and resumable.

A *run* is an ensemble of K models (the datamodels / LiRA pattern). Model ``k`` is named by
its row index and trained on the points ``i`` with ``masks[k, i]`` true. Its outputs live in
memory-mapped ``.npy`` arrays with one row per model, plus a completion flag per model, so an
interrupted job resumes where it stopped and several processes share the work.

A run lives in ``root / key`` with

    key = sha256(canonical_json(config) + masks.tobytes() + repr(masks.shape))[:16]

and holds ``config.json``, ``schema.json``, ``masks.npy``, one ``<name>.npy`` of shape
``(K, *shape)`` per schema entry (zeros, NaN for floating dtypes), ``checksums.npy`` (uint32,
one per model) and ``done.npy`` (uint8, one flag per model). A row counts as done only once its
flag is set, and flags are written after the rows and their checksums, so a process killed at
any moment never leaves a half-written row marked done.

Integrity: a row's checksum is the CRC-32 of its bytes in every schema array (names sorted),
chained; ``zlib.crc32`` reads about 2.9 GB/s here, so every read of a run checks every row.
Opening a run checks each file's shape and dtype against the schema and the key against the
config and masks. Damage raises :class:`DamagedRun`, naming the run, the models and the fix:
``python -m harness.store repair KEY`` marks the damaged models missing (rebuilding a file
that cannot be read), and the next training call retrains exactly their chunks.

Shared and read-only stores: reading a complete run takes no lock and writes nothing. Files
follow the umask. Every file of a new run is allocated before it is written, so a full disk
raises ``OSError`` naming the run (never SIGBUS from a memory map) and leaves no staging folder.

Training goes in fixed chunks of rows ``[c * chunk_size, (c + 1) * chunk_size)``: a resumed
run trains exactly the batches an uninterrupted one would, so results are bit-identical.
Chunks may train ``workers`` at a time (threads); each is written as soon as it and every
chunk before it are done.
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import json
import os
import re
import shutil
import socket
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
from filelock import FileLock
from tqdm import tqdm

DEFAULT_STORE_ENV = "MEMSUITE_STORE"

KEY_LENGTH = 16
RESERVED_NAMES = ("masks", "done", "checksums")  # file names the run itself uses
STAGING_PREFIX = ".tmp-"
STALE_STAGING_SECONDS = 24 * 3600  # a staging folder another host left this long ago is abandoned
ARRAY_NAME = re.compile(r"[A-Za-z0-9_]+")
STORABLE_KINDS = "biufc"  # bool, signed and unsigned int, float, complex: fixed-size, memmappable

Schema = dict[str, tuple[tuple[int, ...], str]]


def default_root() -> Path:
    """``$MEMSUITE_STORE``, else ``$XDG_CACHE_HOME/memsuite``, else ``~/.cache/memsuite``."""
    if os.environ.get(DEFAULT_STORE_ENV):
        return Path(os.environ[DEFAULT_STORE_ENV]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "memsuite"


def _canonical_json(config: dict) -> str:
    if not isinstance(config, dict):
        raise ValueError(f"config must be a dict, got {type(config).__name__}")
    try:
        return json.dumps(config, sort_keys=True, separators=(",", ":"))
    except TypeError as error:
        raise ValueError(f"config must be JSON-serializable (str, numbers, bools, None, lists, dicts): {error}") from None


def _checked_masks(masks) -> np.ndarray:
    masks = np.asarray(masks)
    if masks.ndim != 2 or masks.dtype != bool:
        raise ValueError(f"masks must be a 2-D bool array (models x points), got shape {masks.shape} "
                         f"and dtype {masks.dtype}; convert 0/1 masks with .astype(bool)")
    if masks.shape[0] < 1 or masks.shape[1] < 1:
        raise ValueError(f"masks must hold at least one model and one point, got shape {masks.shape}")
    return np.ascontiguousarray(masks)


def _checked_schema(schema) -> Schema:
    """Normalise ``{name: (shape, dtype)}`` to tuples of ints and canonical dtype names."""
    if not isinstance(schema, dict) or not schema:
        raise ValueError("schema must be a non-empty dict {name: (shape, dtype)}")
    normalised = {}
    for name, entry in schema.items():
        if not isinstance(name, str) or not ARRAY_NAME.fullmatch(name) or name in RESERVED_NAMES:
            raise ValueError(f"schema name {name!r} must be letters, digits and underscores, "
                             f"and not one of {RESERVED_NAMES}")
        try:
            shape, dtype_name = entry
            shape = tuple(int(size) for size in shape)
        except (TypeError, ValueError):
            raise ValueError(f"schema[{name!r}] must be (shape tuple, dtype string), got {entry!r}") from None
        if any(size < 0 for size in shape):
            raise ValueError(f"schema[{name!r}] has a negative size in shape {shape}")
        if not isinstance(dtype_name, str):
            raise ValueError(f"schema[{name!r}] dtype must be a numpy dtype string such as 'float32', got {dtype_name!r}")
        try:
            dtype = np.dtype(dtype_name)
        except TypeError:
            raise ValueError(f"schema[{name!r}] dtype {dtype_name!r} is not a numpy dtype string") from None
        if dtype.kind not in STORABLE_KINDS:
            raise ValueError(f"schema[{name!r}] dtype {dtype_name!r} cannot be stored: use a bool, int, "
                             f"uint, float or complex dtype")
        normalised[name] = (shape, dtype.name)
    return normalised


def run_key(config: dict, masks: np.ndarray) -> str:
    """The run's address: a hash of its config and training masks (schema not included)."""
    masks = _checked_masks(masks)
    digest = hashlib.sha256()
    digest.update(_canonical_json(config).encode())
    digest.update(masks.tobytes())
    digest.update(repr(masks.shape).encode())
    return digest.hexdigest()[:KEY_LENGTH]


class DamagedRun(RuntimeError):
    """A run's files do not hold what its schema and checksums say; the message names the fix."""

    def __init__(self, path: Path, problem: str, repairable: bool = True):
        self.path, self.problem = path, problem
        self.repairable = repairable
        fix = (f"run `python -m harness.store --root {path.parent} repair {path.name}` to mark the damaged "
               f"models missing (the next training call retrains exactly those), or delete {path}"
               if repairable else f"delete {path} to train the run afresh")
        super().__init__(f"run {path.name} ({path}) is damaged: {problem}; {fix}")


def _load(path: Path, run_path: Path, repairable: bool = True) -> np.ndarray:
    """``np.load`` as a memory map, its failures (missing, truncated, a broken header) as DamagedRun."""
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        if isinstance(error, PermissionError):
            raise
        raise DamagedRun(run_path, f"{path.name} cannot be read ({error})", repairable) from None


def _per_model_files(schema: Schema) -> Schema:
    """Every file with one row per model: the schema's arrays, the checksums and the flags."""
    return {**schema, "checksums": ((), "uint32"), "done": ((), "uint8")}


def _row_checksums(arrays: dict[str, np.ndarray], rows: np.ndarray) -> np.ndarray:
    """CRC-32 of each row's bytes in every array, names sorted (module docstring)."""
    sums = np.zeros(len(rows), dtype=np.uint32)
    for j, row in enumerate(rows):
        crc = 0
        for name in sorted(arrays):
            crc = zlib.crc32(np.ascontiguousarray(arrays[name][row]), crc)
        sums[j] = crc
    return sums


class Run:
    """An existing run directory. Create runs with :meth:`Store.open`.

    Opening checks what is cheap to check (every file readable, with the schema's shape and
    dtype; the key against config and masks) and raises :class:`DamagedRun` otherwise.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.key = self.path.name
        if not (self.path / "done.npy").is_file():
            raise ValueError(f"{self.path} is not a run directory (no done.npy)")
        try:
            self.config = json.loads((self.path / "config.json").read_text())
            self.schema = {name: (tuple(shape), dtype) for name, (shape, dtype)
                           in json.loads((self.path / "schema.json").read_text()).items()}
        except (OSError, ValueError, TypeError) as error:
            if isinstance(error, PermissionError):
                raise
            raise DamagedRun(self.path, f"config.json or schema.json cannot be read ({error})",
                             repairable=False) from None
        self.masks = _load(self.path / "masks.npy", self.path, repairable=False)
        if len(self.key) == KEY_LENGTH and run_key(self.config, self.masks) != self.key:
            raise DamagedRun(self.path, "config.json and masks.npy do not hash to the run's key", repairable=False)
        for name, (shape, dtype) in _per_model_files(self.schema).items():
            array = _load(self.path / f"{name}.npy", self.path)
            if array.shape != (self.n_models, *shape) or array.dtype != np.dtype(dtype):
                raise DamagedRun(self.path, f"{name}.npy holds {array.dtype} {array.shape}, the schema says "
                                            f"{dtype} {(self.n_models, *shape)}")

    def __repr__(self) -> str:
        return f"Run({self.key}, {self.n_models - len(self.missing())}/{self.n_models} models done)"

    @property
    def n_models(self) -> int:
        return self.masks.shape[0]

    def missing(self) -> np.ndarray:
        """Sorted row indices of the models not yet complete."""
        # Mapped afresh each call: other processes may have set flags since.
        return np.flatnonzero(np.load(self.path / "done.npy", mmap_mode="r") == 0)

    def missing_chunks(self, chunk_size: int) -> list[np.ndarray]:
        """The rows of every fixed chunk ``[c * chunk_size, (c + 1) * chunk_size)`` that holds a
        missing model (module docstring)."""
        chunks = np.unique(self.missing() // chunk_size)
        return [np.arange(c * chunk_size, min((c + 1) * chunk_size, self.n_models)) for c in chunks]

    def write(self, rows, outputs: dict[str, np.ndarray]) -> None:
        """Store ``outputs[name][j]`` as row ``rows[j]`` of every array, then mark the rows done."""
        rows = np.asarray(rows)
        if rows.ndim != 1 or rows.dtype.kind not in "iu":
            raise ValueError(f"rows must be a 1-D integer array, got shape {rows.shape} and dtype {rows.dtype}")
        if len(rows) and (rows.min() < 0 or rows.max() >= self.n_models):
            raise ValueError(f"rows must lie in [0, {self.n_models}), got {rows.min()} .. {rows.max()}")
        if len(np.unique(rows)) != len(rows):
            raise ValueError("rows must not repeat")
        if set(outputs) != set(self.schema):
            raise ValueError(f"outputs must have exactly the schema's arrays {sorted(self.schema)}, "
                             f"got {sorted(outputs)}")
        values = {}
        for name, (shape, dtype) in self.schema.items():
            value = np.asarray(outputs[name])
            if value.shape != (len(rows), *shape):
                raise ValueError(f"outputs[{name!r}] must have shape {(len(rows), *shape)} "
                                 f"(rows x schema shape), got {value.shape}")
            values[name] = value.astype(dtype, copy=False)
        # Rows, then checksums, then flags: a process killed in between leaves these rows not done.
        for name, value in values.items():
            array = np.load(self.path / f"{name}.npy", mmap_mode="r+")
            array[rows] = value
            array.flush()
        checksums = np.load(self.path / "checksums.npy", mmap_mode="r+")
        checksums[rows] = _row_checksums(values, np.arange(len(rows)))
        checksums.flush()
        done = np.load(self.path / "done.npy", mmap_mode="r+")
        done[rows] = 1
        done.flush()

    def fill(self, train_rows: Callable[[np.ndarray], dict[str, np.ndarray]], chunk_size: int,
             progress: bool = True, desc: str = "", workers: int = 1) -> int:
        """Train every fixed chunk of rows that holds a missing model; return how many models were trained.

        ``train_rows(rows)`` gets all rows of one chunk and returns ``{name: array of shape
        (len(rows), *shape)}``; ``workers`` calls run at once, on threads. The run's file lock
        makes concurrent callers take turns; one that finds the work already done returns 0.
        """
        for name, value in (("chunk_size", chunk_size), ("workers", workers)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not len(self.missing()):
            return 0  # no lock taken: a complete run in a read-only store is read as it is
        with FileLock(self.path / ".lock"):
            chunk_rows = self.missing_chunks(chunk_size)
            total = sum(len(rows) for rows in chunk_rows)
            with tqdm(total=total, desc=desc or self.key, unit="model", disable=not progress) as bar, \
                    closing(_in_order(train_rows, chunk_rows, workers)) as results:
                for rows, arrays in zip(chunk_rows, results):
                    self.write(rows, arrays)
                    bar.update(len(rows))
        return total

    def arrays(self) -> dict[str, np.ndarray]:
        """Read-only memory maps of every schema array, checksums checked; the run must be complete."""
        missing = len(self.missing())
        if missing:
            raise RuntimeError(f"run {self.key} ({self.path}) is incomplete: {missing} of "
                               f"{self.n_models} models missing; call fill() first")
        arrays = {name: np.load(self.path / f"{name}.npy", mmap_mode="r") for name in self.schema}
        damaged = self.damaged_rows(arrays)
        if len(damaged):
            shown = ", ".join(map(str, damaged[:10])) + (" ..." if len(damaged) > 10 else "")
            raise DamagedRun(self.path, f"{len(damaged)} of {self.n_models} models marked done do not match "
                                        f"their checksums (rows {shown})")
        return arrays

    def damaged_rows(self, arrays: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """Sorted rows marked done whose bytes do not match their checksums."""
        if arrays is None:
            arrays = {name: np.load(self.path / f"{name}.npy", mmap_mode="r") for name in self.schema}
        done = np.flatnonzero(np.load(self.path / "done.npy", mmap_mode="r") != 0)
        stored = np.load(self.path / "checksums.npy", mmap_mode="r")[done]
        return done[_row_checksums(arrays, done) != stored]


def _in_order(call: Callable, items: Iterable, workers: int) -> Iterator:
    """``call(item)`` for each item, yielded in order, ``workers`` calls at a time on threads
    (in this thread when 1, so Ctrl-C stops the call at once). Closed early (an error, Ctrl-C),
    it drops the calls not yet started; those running finish and are discarded."""
    if workers == 1:
        yield from map(call, items)
        return
    with ThreadPoolExecutor(workers) as pool:
        pending = [pool.submit(call, item) for item in items]
        try:
            for future in pending:
                yield future.result()
        finally:
            for future in pending:
                future.cancel()


class Store:
    """A directory of runs, one sub-directory per run key."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root).expanduser() if root is not None else default_root()

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    def open(self, config: dict, masks: np.ndarray, schema: Schema) -> Run:
        """The run for ``config`` and ``masks``, created (empty) if it does not exist yet."""
        masks = _checked_masks(masks)
        schema = _checked_schema(schema)
        key = run_key(config, masks)
        path = self.root / key
        if not path.exists():
            self._create(path, config, masks, schema)
        run = Run(path)
        if _canonical_json(run.config) != _canonical_json(config) or not np.array_equal(run.masks, masks):
            raise ValueError(f"{path} holds a different config or masks than requested (hash collision "
                             f"or a corrupted store): delete that directory to start the run afresh")
        if run.schema != schema:
            raise ValueError(f"run {key} was created with schema {run.schema}, asked for {schema}: "
                             f"change the config to start a new run, or delete {path}")
        return run

    def _create(self, path: Path, config: dict, masks: np.ndarray, schema: Schema) -> None:
        """Build the run under a staging name and rename it into place, so it appears whole or not at all."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.sweep_staging()
        # Named by host and process, so a later sweep can tell an abandoned folder from one in use;
        # os.mkdir applies the umask (tempfile.mkdtemp would make it 0700).
        staging = self.root / f"{STAGING_PREFIX}{path.name}-{socket.gethostname()}-{os.getpid()}-{os.urandom(4).hex()}"
        try:
            os.mkdir(staging, 0o777)
            (staging / "config.json").write_text(json.dumps(config, sort_keys=True, indent=1))
            (staging / "schema.json").write_text(
                json.dumps({name: [list(shape), dtype] for name, (shape, dtype) in schema.items()}, indent=1))
            np.save(staging / "masks.npy", masks)
            for name, (shape, dtype) in _per_model_files(schema).items():
                _allocate(staging / f"{name}.npy", dtype, (masks.shape[0], *shape))
            os.rename(staging, path)
        except OSError as error:
            if (path / "done.npy").is_file():
                pass  # another process renamed its copy into place first: keep theirs
            elif error.errno == errno.ENOSPC:
                raise OSError(errno.ENOSPC, f"no space left on the device to create run {path.name} in "
                                            f"{self.root}: free some, or point the store elsewhere "
                                            f"(--store or ${DEFAULT_STORE_ENV})") from error
            else:
                raise
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)

    def stale_staging(self) -> list[Path]:
        """Staging folders whose creator is gone: a dead process on this host, or another host's
        folder older than ``STALE_STAGING_SECONDS``."""
        if not self.root.is_dir():
            return []
        return [path for path in sorted(self.root.glob(f"{STAGING_PREFIX}*")) if path.is_dir() and _abandoned(path)]

    def sweep_staging(self) -> list[Path]:
        """Delete :meth:`stale_staging`'s folders; return them."""
        stale = self.stale_staging()
        for path in stale:
            shutil.rmtree(path, ignore_errors=True)
        return stale

    def run_paths(self) -> list[Path]:
        """Every run directory in the store, sorted by key, damaged or not."""
        if not self.root.is_dir():
            return []
        return [path for path in sorted(self.root.iterdir())
                if len(path.name) == KEY_LENGTH and (path / "done.npy").is_file()]

    def runs(self) -> list[Run]:
        """Every run in the store, sorted by key (DamagedRun if one is damaged)."""
        return [Run(path) for path in self.run_paths()]


def _abandoned(staging: Path) -> bool:
    try:
        head, pid, _ = staging.name.rsplit("-", 2)
        host = head[len(STAGING_PREFIX) + KEY_LENGTH + 1:]
        if host == socket.gethostname():
            os.kill(int(pid), 0)  # raises ProcessLookupError once the creator is gone
            return False
    except ProcessLookupError:
        return True
    except (ValueError, PermissionError):
        pass  # not our naming, or a live process of another user: judge by age
    return time.time() - staging.stat().st_mtime > STALE_STAGING_SECONDS


def _allocate(file: Path, dtype: str, shape: tuple[int, ...]) -> None:
    """A ``.npy`` file of ``shape``, NaN for floats and zeros otherwise, with every block
    allocated before anything is written: a full disk raises ENOSPC here instead of killing
    the process with SIGBUS when a memory map touches a block the disk cannot give."""
    array = np.lib.format.open_memmap(file, mode="w+", dtype=dtype, shape=shape)
    with open(file, "r+b") as handle:
        try:
            os.posix_fallocate(handle.fileno(), 0, os.fstat(handle.fileno()).st_size)
        except OSError as error:
            if error.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise  # the file system allocates on write only: nothing more to do there
    if np.dtype(dtype).kind in "fc":
        array[...] = np.nan  # unwritten floats stand out
    array.flush()
    del array


def repair(path: str | os.PathLike) -> str:
    """Mark the damaged models of the run at ``path`` missing, rebuilding (NaN, all models
    missing) any per-model file that cannot be read or has the wrong shape or dtype; return
    what was done. The next training call retrains exactly the chunks that hold those models."""
    path = Path(path)
    with FileLock(path / ".lock"):
        try:
            run = Run(path)
        except DamagedRun as damage:
            if not damage.repairable:
                raise
            return f"rebuilt {', '.join(_rebuild_unreadable(path))}: all models will be retrained"
        damaged = run.damaged_rows()
        done = np.load(path / "done.npy", mmap_mode="r+")
        done[damaged] = 0
        done.flush()
        return f"{len(damaged)} of {run.n_models} models marked missing"


def _rebuild_unreadable(path: Path) -> list[str]:
    """Rebuild every per-model file that cannot be read as the schema says; mark all models missing."""
    schema = {name: (tuple(shape), dtype) for name, (shape, dtype) in json.loads((path / "schema.json").read_text()).items()}
    n_models = _load(path / "masks.npy", path, repairable=False).shape[0]
    rebuilt = []
    for name, (shape, dtype) in _per_model_files(schema).items():
        try:
            array = _load(path / f"{name}.npy", path)
            readable = array.shape == (n_models, *shape) and array.dtype == np.dtype(dtype)
            del array
        except DamagedRun:
            readable = False
        if not readable:
            _allocate(path / f"{name}.npy", dtype, (n_models, *shape))
            rebuilt.append(f"{name}.npy")
    _allocate(path / "done.npy", "uint8", (n_models,))
    return rebuilt


def _size_on_disk(path: Path) -> str:
    size = float(sum(file.stat().st_blocks * 512 for file in path.iterdir() if file.is_file()))
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.store",
                                     description="List the runs in a result store, or repair a damaged one.")
    parser.add_argument("--root", help=f"store directory (default: ${DEFAULT_STORE_ENV} or ~/.cache/memsuite)")
    parser.add_argument("--verify", action="store_true", help="check every model's checksum (reads every array)")
    commands = parser.add_subparsers(dest="command", metavar="{repair}")
    repair_parser = commands.add_parser("repair", help="mark a run's damaged models missing, to be retrained")
    repair_parser.add_argument("key", help="the run's key (its folder name)")
    args = parser.parse_args(argv)
    store = Store(args.root)
    if args.command == "repair":
        path = store.root / args.key
        if not (path / "done.npy").is_file():
            parser.error(f"{path} is not a run directory")
        print(f"{args.key}: {repair(path)}")
        return 0
    paths = store.run_paths()
    print(f"{store.root}: {len(paths)} run(s)")
    damaged = 0
    for path in paths:
        try:
            run = Run(path)
            bad_rows = run.damaged_rows() if args.verify else []
            if len(bad_rows):
                raise DamagedRun(path, f"{len(bad_rows)} model(s) do not match their checksums")
        except DamagedRun as damage:
            damaged += 1
            print(f"{path.name}  DAMAGED: {damage.problem}")
            continue
        # Show the config's identifying fields when they are plain values.
        label = " ".join(f"{field}={run.config[field]}" for field in ("name", "dataset", "model", "estimator")
                         if isinstance(run.config.get(field), (str, int, float)))
        done = run.n_models - len(run.missing())
        print(f"{run.key}  {done:>6}/{run.n_models:<6} {_size_on_disk(run.path):>10}  {label}")
    stale = store.stale_staging()
    if stale:
        print(f"{len(stale)} abandoned staging folder(s), swept when the next run is created: "
              + " ".join(path.name for path in stale))
    if damaged:
        print(f"{damaged} damaged run(s): `python -m harness.store repair KEY` marks their damaged models "
              f"missing, or delete them")
    return 1 if damaged else 0


if __name__ == "__main__":
    raise SystemExit(main())
