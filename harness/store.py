"""Result store: ensembles of models trained on masked subsets, kept on disk and resumable.

A *run* is an ensemble of K models (the datamodels / LiRA pattern). Model ``k`` is named by
its row index and trained on the points ``i`` with ``masks[k, i]`` true. Its outputs live in
memory-mapped ``.npy`` arrays with one row per model, plus a completion flag per model, so an
interrupted job resumes where it stopped.

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
run trains exactly the batches an uninterrupted one would, so on a CPU results are bit-identical
(same seeds, masks, trainer path and thread count). On CUDA a resume is equal in distribution,
not bit for bit: cuDNN's timed choice of algorithm, atomic adds and bf16 autocast differ between
processes (the tolerance is not measured yet).
A chunk is named ``<first row>-<stop row>``. Whoever trains a chunk first claims it:

- a claim is the file ``claims/<chunk>``, created with ``O_EXCL`` (so one creator wins) and
  holding the claimer's host and pid; the claimer touches it every ``CLAIM_REFRESH_SECONDS``
  while it trains and deletes it once the chunk is stored. After taking a claim the claimer
  looks again whether the chunk is still missing, since its previous holder may have stored it
  and let go in between.
- a claim can be taken over when its process is gone (same host, dead pid) or it has not been
  touched for ``CLAIM_STALE_SECONDS`` (another host, or a pid since reused); the takeover
  deletes it under the run's lock (``.lock``), so two processes never both take it over.

:meth:`Run.fill` (one machine) claims missing chunks one at a time, ``workers`` training at
once on threads, and writes each into the arrays as soon as it is done, holding the run's lock
for the write only. Processes filling the same run therefore train disjoint chunks side by
side; once none is left to claim, each waits for the others' chunks and returns when the run
is complete (a claim whose holder dies is taken over).

Shards (several hosts, a scheduler without Ray: ``python -m harness.worker``):
:meth:`Run.train_shard` trains the missing chunks ``c`` with ``c % shards == shard`` that have
no chunk file yet, claiming them as above, and saves each as ``chunks/<chunk>.npz`` (a
temporary name, fsync, then ``os.replace``, so the file appears whole or not at all). It never
writes the memory-mapped arrays, so hosts never write one memory-mapped file together. The
file holds the run's key, the rows, every schema array (``array_<name>``) and the rows'
checksums. :meth:`Run.merge_chunk_files` (``python -m harness.store merge KEY``, and every
``fill``) checks each file (readable, this run's key, the chunk's rows, the schema's shapes and
dtypes, the checksums), writes it as :meth:`Run.write` does (rows, checksums, then flags)
under the run's lock and deletes it; a file that fails a check is left in place and named in a
:class:`ChunkFileError`.
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
import sys
import threading
import time
import zipfile
import zlib
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Callable

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
CLAIMS_FOLDER, CHUNK_FILES_FOLDER = "claims", "chunks"
CHUNK_ARRAY_PREFIX = "array_"  # schema arrays in a chunk file; its other entries are key, rows, checksums
# A claim is touched every CLAIM_REFRESH_SECONDS while its chunk trains; one left untouched for
# CLAIM_STALE_SECONDS (a host that died, a pid since reused) is taken over.
CLAIM_REFRESH_SECONDS = 30.0
CLAIM_STALE_SECONDS = 600.0
# Waiting for other processes' chunks: the first look comes soon, later ones at most this far apart.
POLL_FIRST_SECONDS, POLL_MAX_SECONDS = 0.02, 1.0

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


class ChunkFileError(ValueError):
    """A chunk file (module docstring) that cannot be imported into its run; the message says why."""

    def __init__(self, file: Path, problem: str):
        self.file, self.problem = file, problem
        super().__init__(f"chunk file {file} {problem}: it was not imported; delete it, and the next "
                         f"`python -m harness.worker` run of its shard (or a training call) trains the chunk again")


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
        rows, values = self._checked_outputs(rows, outputs)
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

    def _checked_outputs(self, rows, outputs: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """``rows`` and ``outputs`` as :meth:`write` stores them (the schema's dtypes), or a ValueError."""
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
        return rows, values

    def fill(self, train_rows: Callable[[np.ndarray], dict[str, np.ndarray]], chunk_size: int,
             progress: bool = True, desc: str = "", workers: int = 1) -> int:
        """Train every fixed chunk of rows that holds a missing model; return how many models this call trained.

        ``train_rows(rows)`` gets all rows of one chunk and returns ``{name: array of shape
        (len(rows), *shape)}``; ``workers`` calls run at once, on threads. Chunks are claimed one
        at a time (module docstring), so processes filling the same run train disjoint chunks
        side by side; chunk files that shards left are imported. Returns once the run is complete.
        """
        _check_positive(chunk_size=chunk_size, workers=workers)
        if not len(self.missing()):
            return 0  # no lock taken: a complete run in a read-only store is read as it is
        trained = 0
        pause = POLL_FIRST_SECONDS
        with _Claims(self) as claims, \
                tqdm(total=self.n_models, desc=desc or self.key, unit="model", disable=not progress) as bar:
            def store(rows, arrays):
                with FileLock(self.path / ".lock"):
                    self.write(rows, arrays)
                claims.release(rows)
                bar.update(self.n_models - len(self.missing()) - bar.n)

            while True:
                self.merge_chunk_files()
                just_trained = self._train_claimed_chunks(
                    train_rows, workers, lambda: self._next_chunk(chunk_size, claims), store)
                trained += just_trained
                missing = len(self.missing())
                bar.update(self.n_models - missing - bar.n)
                if not missing:
                    return trained
                # Every missing chunk is claimed by another process: look again soon, then less often.
                pause = POLL_FIRST_SECONDS if just_trained else min(2 * pause, POLL_MAX_SECONDS)
                time.sleep(pause)

    def train_shard(self, train_rows: Callable[[np.ndarray], dict[str, np.ndarray]], chunk_size: int,
                    shard: int, shards: int, workers: int = 1, progress: bool = True, desc: str = "") -> int:
        """Train shard ``shard`` of ``shards``: the missing chunks ``c`` with ``c % shards == shard``
        that have no chunk file yet and that no live process has claimed; save each as a chunk
        file (module docstring), never touching the run's arrays. Returns the models trained."""
        _check_positive(chunk_size=chunk_size, workers=workers, shards=shards)
        if isinstance(shard, bool) or not isinstance(shard, (int, np.integer)) or not 0 <= shard < shards:
            raise ValueError(f"shard must be an integer in [0, {shards}), got {shard!r}")
        with _Claims(self) as claims, \
                tqdm(total=len(self.shard_chunks(chunk_size, shard, shards)), desc=desc or f"{self.key} shard {shard}",
                     unit="chunk", disable=not progress) as bar:
            def save(rows, arrays):
                self._save_chunk_file(rows, arrays)
                claims.release(rows)
                bar.update(1)

            return self._train_claimed_chunks(
                train_rows, workers, lambda: self._next_chunk(chunk_size, claims, shard, shards), save)

    def shard_chunks(self, chunk_size: int, shard: int, shards: int) -> list[np.ndarray]:
        """The rows of shard ``shard``'s chunks that are missing and have no chunk file yet."""
        return [rows for rows in self.missing_chunks(chunk_size)
                if (rows[0] // chunk_size) % shards == shard and not self._chunk_file(rows).exists()]

    def chunk_files(self) -> list[Path]:
        """The finished chunk files waiting to be merged (module docstring)."""
        folder = self.path / CHUNK_FILES_FOLDER
        if not folder.is_dir():
            return []
        return sorted(file for file in folder.glob("*.npz") if not file.name.startswith(STAGING_PREFIX))

    def merge_chunk_files(self) -> int:
        """Import every finished chunk file into the run (rows, checksums, then flags, under the
        run's lock) and delete it; return the models imported. Files that fail a check stay in
        place and are named in one :class:`ChunkFileError`, raised after the others are imported."""
        imported, refused = 0, []
        self._sweep_abandoned_chunk_temporaries()
        for file in self.chunk_files():
            try:
                with FileLock(self.path / ".lock"):
                    if not file.exists():
                        continue  # another process imported it meanwhile
                    rows, values = self._read_chunk_file(file)
                    self.write(rows, values)
                    file.unlink()
                imported += len(rows)
            except ChunkFileError as error:
                refused.append(error)
        if len(refused) == 1:
            raise refused[0]
        if refused:
            problems = "; ".join(f"{error.file.name} {error.problem}" for error in refused)
            raise ChunkFileError(refused[0].file.parent, f"holds {len(refused)} bad chunk files ({problems})")
        return imported

    def _sweep_abandoned_chunk_temporaries(self) -> None:
        """Delete the half-written chunk files (``.tmp-<chunk>-<host>-<pid>-<random>.npz``) of
        writers that are gone: a dead pid on this host, or older than ``STALE_STAGING_SECONDS``
        from another host (a killed writer never reaches its ``finally``)."""
        folder = self.path / CHUNK_FILES_FOLDER
        for temporary in folder.glob(f"{STAGING_PREFIX}*.npz") if folder.is_dir() else []:
            writer, _, pid = temporary.stem.rpartition("-")[0].rpartition("-")  # drop the random suffix
            host = writer[len(STAGING_PREFIX):].split("-", 2)[-1]               # drop "<first>-<stop>"
            gone = _process_gone(host, int(pid) if pid.isdigit() else None)
            try:
                if gone or (gone is None and time.time() - temporary.stat().st_mtime > STALE_STAGING_SECONDS):
                    temporary.unlink()
            except FileNotFoundError:
                pass  # another merge swept it meanwhile

    def _chunk_file(self, rows: np.ndarray) -> Path:
        return self.path / CHUNK_FILES_FOLDER / f"{_chunk_name(rows)}.npz"

    def _save_chunk_file(self, rows: np.ndarray, outputs: dict[str, np.ndarray]) -> Path:
        rows, values = self._checked_outputs(rows, outputs)
        file = self._chunk_file(rows)
        file.parent.mkdir(exist_ok=True)
        temporary = file.with_name(f"{STAGING_PREFIX}{file.stem}-{socket.gethostname()}-{os.getpid()}-"
                                   f"{os.urandom(4).hex()}.npz")
        try:
            with open(temporary, "wb") as handle:
                np.savez(handle, key=np.array(self.key), rows=rows.astype(np.int64),
                         checksums=_row_checksums(values, np.arange(len(rows))),
                         **{CHUNK_ARRAY_PREFIX + name: value for name, value in values.items()})
                handle.flush()
                os.fsync(handle.fileno())  # whole on disk before it has its name, for hosts reading it later
            os.replace(temporary, file)
        finally:
            temporary.unlink(missing_ok=True)
        return file

    def _read_chunk_file(self, file: Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The rows and arrays of a chunk file, each check a :class:`ChunkFileError` naming what is wrong."""
        try:
            with np.load(file, allow_pickle=False) as contents:
                entries = {name: contents[name] for name in contents.files}
        except PermissionError:
            raise
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as error:
            raise ChunkFileError(file, f"cannot be read ({error})") from None
        expected = {"key", "rows", "checksums", *(CHUNK_ARRAY_PREFIX + name for name in self.schema)}
        if set(entries) != expected:
            raise ChunkFileError(file, f"holds {sorted(entries)}, a chunk file of this run holds {sorted(expected)}")
        key = entries["key"]
        if key.shape != () or key.dtype.kind != "U" or str(key) != self.key:
            raise ChunkFileError(file, f"belongs to run {key}, not to run {self.key}")
        rows = entries["rows"]
        if (rows.ndim != 1 or rows.dtype.kind not in "iu" or not len(rows) or rows[0] < 0
                or rows[-1] >= self.n_models or not np.array_equal(rows, np.arange(rows[0], rows[0] + len(rows)))
                or file.stem != _chunk_name(rows)):
            raise ChunkFileError(file, f"holds rows {rows.tolist()[:10]}, not the chunk {file.stem} of rows "
                                       f"in [0, {self.n_models})")
        values = {}
        for name, (shape, dtype) in self.schema.items():
            value = entries[CHUNK_ARRAY_PREFIX + name]
            if value.shape != (len(rows), *shape) or value.dtype != np.dtype(dtype):
                raise ChunkFileError(file, f"holds {name} as {value.dtype} {value.shape}, the schema says "
                                           f"{dtype} {(len(rows), *shape)}")
            values[name] = value
        checksums = entries["checksums"]
        if checksums.shape != rows.shape or not np.array_equal(checksums, _row_checksums(values, np.arange(len(rows)))):
            raise ChunkFileError(file, "is damaged: its arrays do not match their checksums")
        return rows, values

    def _next_chunk(self, chunk_size: int, claims: "_Claims", shard: int = 0, shards: int = 1) -> np.ndarray | None:
        """Claim the first missing chunk (of the shard) that has no chunk file and no live claim;
        None when there is none now."""
        for rows in self.missing_chunks(chunk_size):
            if (rows[0] // chunk_size) % shards != shard or claims.holds(rows) or self._chunk_file(rows).exists():
                continue
            if not claims.take(rows):
                continue
            # Its previous holder may have stored it and let go between our look and our claim.
            done = np.load(self.path / "done.npy", mmap_mode="r")[rows]
            if done.all() or self._chunk_file(rows).exists():
                claims.release(rows)
                continue
            return rows
        return None

    @staticmethod
    def _train_claimed_chunks(train_rows: Callable, workers: int, next_chunk: Callable[[], np.ndarray | None],
                              deliver: Callable[[np.ndarray, dict], None]) -> int:
        """Train the chunks ``next_chunk()`` claims until it has none, ``workers`` at once on threads
        (in this thread when 1, so Ctrl-C stops the call at once); ``deliver`` each as it finishes.
        Returns the models trained. When a call fails, no new chunk starts; the running ones are
        delivered as they finish, then the error is raised."""
        trained = 0
        if workers == 1:
            while (rows := next_chunk()) is not None:
                deliver(rows, train_rows(rows))
                trained += len(rows)
            return trained
        failure = None
        with ThreadPoolExecutor(workers) as pool:
            running = {}
            while True:
                while failure is None and len(running) < workers and (rows := next_chunk()) is not None:
                    running[pool.submit(train_rows, rows)] = rows
                if not running:
                    break
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    rows = running.pop(future)
                    try:
                        arrays = future.result()
                    except Exception as error:
                        failure = failure or error
                        continue
                    deliver(rows, arrays)
                    trained += len(rows)
        if failure is not None:
            raise failure
        return trained

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


def _check_positive(**values) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _chunk_name(rows: np.ndarray) -> str:
    return f"{int(rows[0])}-{int(rows[-1]) + 1}"


class _Claims:
    """This process's claims on chunks of one run (module docstring): taken one at a time, touched
    by a background thread while held, released when stored or when the block ends."""

    def __init__(self, run: Run):
        self.run = run
        self.folder = run.path / CLAIMS_FOLDER
        self.held: set[str] = set()
        self._guard = threading.Lock()  # the heartbeat reads `held` while the trainer changes it
        self._stop = threading.Event()
        self._heartbeat = threading.Thread(target=self._touch_held, name=f"claims {run.key}", daemon=True)

    def __enter__(self) -> "_Claims":
        self._heartbeat.start()
        return self

    def __exit__(self, *exception) -> None:
        self._stop.set()
        self._heartbeat.join()
        for name in list(self.held):
            self._release(name)

    def holds(self, rows: np.ndarray) -> bool:
        return _chunk_name(rows) in self.held

    def take(self, rows: np.ndarray) -> bool:
        """Claim the chunk, taking over a claim whose holder is gone; False when a live process holds it."""
        name = _chunk_name(rows)
        self.folder.mkdir(exist_ok=True)
        for _ in range(2):
            try:
                descriptor = os.open(self.folder / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                if self._take_over(self.folder / name):
                    continue
                return False
            with os.fdopen(descriptor, "w") as handle:
                json.dump({"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}, handle)
            with self._guard:
                self.held.add(name)
            return True
        return False  # taken over, then claimed by another process first

    def release(self, rows: np.ndarray) -> None:
        self._release(_chunk_name(rows))

    def _release(self, name: str) -> None:
        with self._guard:
            self.held.discard(name)
        (self.folder / name).unlink(missing_ok=True)

    def _take_over(self, claim: Path) -> bool:
        """Delete ``claim`` if its holder is gone; the check is repeated under the run's lock so
        that of two processes finding it abandoned, only one deletes it (the other would delete
        the first one's fresh claim)."""
        if not _claim_abandoned(claim):
            return False
        with FileLock(self.run.path / ".lock"):
            if not _claim_abandoned(claim):
                return False
            claim.unlink(missing_ok=True)
            return True

    def _touch_held(self) -> None:
        while not self._stop.wait(CLAIM_REFRESH_SECONDS):
            with self._guard:
                names = list(self.held)
            for name in names:
                try:
                    os.utime(self.folder / name)
                except FileNotFoundError:
                    pass  # released meanwhile


def _claim_abandoned(claim: Path) -> bool:
    """Whether a claim's holder is gone: a dead process on this host, or untouched for
    ``CLAIM_STALE_SECONDS``. A claim deleted meanwhile counts as abandoned (free to take)."""
    try:
        touched = claim.stat().st_mtime
        holder = json.loads(claim.read_text() or "{}")
    except FileNotFoundError:
        return True
    except ValueError:
        holder = {}  # still being written, or not ours: judge by age
    if not isinstance(holder, dict):
        holder = {}
    return _process_gone(holder.get("host"), holder.get("pid")) is True or \
        time.time() - touched > CLAIM_STALE_SECONDS


def _process_gone(host, pid) -> bool | None:
    """Whether process ``pid`` of ``host`` has ended: known only on this host (None elsewhere,
    for a pid that is not an int, or for a live process of another user)."""
    if host != socket.gethostname() or isinstance(pid, bool) or not isinstance(pid, int):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):
        return None
    return False


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
    """Whether a staging folder's creator is gone (its name carries host and pid; see
    ``Store._create``), judged by age where that cannot be known."""
    head, _, pid = staging.name.rpartition("-")[0].rpartition("-")  # drop the random suffix
    host = head[len(STAGING_PREFIX) + KEY_LENGTH + 1:]
    gone = _process_gone(host, int(pid) if pid.isdigit() else None)
    if gone is not None:
        return gone
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


def _merge(run: Run) -> int:
    """``merge``: import the run's chunk files; say how far the run got and which files were refused."""
    done_before = run.n_models - len(run.missing())
    try:
        run.merge_chunk_files()
        refused = None
    except ChunkFileError as error:
        refused = error
    done = run.n_models - len(run.missing())
    print(f"{run.key}: {done - done_before} model(s) newly done from chunk files; {done}/{run.n_models} done")
    if refused is not None:
        print(f"error: {refused}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.store",
                                     description="List the runs in a result store, repair a damaged one, "
                                                 "or merge the chunk files its shards wrote.")
    parser.add_argument("--root", help=f"store directory (default: ${DEFAULT_STORE_ENV} or ~/.cache/memsuite)")
    parser.add_argument("--verify", action="store_true", help="check every model's checksum (reads every array)")
    commands = parser.add_subparsers(dest="command", metavar="{repair,merge}")
    repair_parser = commands.add_parser("repair", help="mark a run's damaged models missing, to be retrained")
    repair_parser.add_argument("key", help="the run's key (its folder name)")
    merge_parser = commands.add_parser("merge", help="import the chunk files that `python -m harness.worker` "
                                                     "shards wrote into the run, and delete them")
    merge_parser.add_argument("key", help="the run's key (its folder name)")
    args = parser.parse_args(argv)
    store = Store(args.root)
    if args.command in ("repair", "merge"):
        path = store.root / args.key
        if not (path / "done.npy").is_file():
            parser.error(f"{path} is not a run directory")
        if args.command == "repair":
            print(f"{args.key}: {repair(path)}")
            return 0
        return _merge(Run(path))
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
        pending = len(run.chunk_files())
        waiting = f"  ({pending} chunk file(s) to merge: `merge {run.key}`)" if pending else ""
        print(f"{run.key}  {done:>6}/{run.n_models:<6} {_size_on_disk(run.path):>10}  {label}{waiting}")
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
