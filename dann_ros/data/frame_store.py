"""Prepared frames on disk, read a few records at a time: training data larger than RAM.

A :class:`FrameStore` is a folder holding one raw file of fixed-size uint8 records (the
(C, H, W) arrays ``Preprocess.prepare`` returns), per-record CRC32s, small per-record columns
as ``.npy`` (stamps, labels, ...; loaded whole, a few bytes a record), ragged per-record data
(detection boxes) as raw files with offsets, and ``meta.json`` describing all of it with its
own checksum and every small file's CRC (checked on open). Nothing is pickled.

Records are read with positional reads (``os.preadv``) straight into the batch buffer: no
memory map, so the page cache the kernel keeps is not the process's RSS, and a store of any size
costs the same few megabytes to read from. Every record read is checked against its CRC.

A store is written into a hidden temporary folder and renamed into place when complete, so a
killed build leaves nothing that looks finished (and the next :func:`open_or_build` of that store
deletes the folder of a build whose process is gone). A store that fails any check (missing file,
wrong size, bad checksum, other key) is refused with :class:`FrameStoreDamaged`;
:func:`open_or_build` then deletes and rebuilds it. Before writing, the expected size is checked
against the free disk space (:class:`CacheTooBigError`).

:class:`MemoryStore` is the same interface over arrays in RAM: the fast path for small data.
"""

from __future__ import annotations

import errno
import glob
import hashlib
import json
import logging
import os
import shutil
import socket
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

log = logging.getLogger(__name__)

FORMAT = "dann_ros.frame_store"
VERSION = 1
_IMAGES = "images.u8"
_CRC = "crc32.npy"
_META = "meta.json"


class FrameStoreDamaged(RuntimeError):
    """A store on disk that does not pass its checks; the message names the folder and the fault."""


class CacheTooBigError(OSError):
    """The cache would not fit on its disk; the message says how much is needed and what is free."""


class Store(Protocol):
    """What a batch assembler needs: N fixed-shape uint8 records, small columns, ragged columns."""

    record_shape: tuple[int, ...]
    columns: Mapping[str, np.ndarray]
    meta: Mapping[str, Any]

    def __len__(self) -> int: ...

    def read(self, indices: np.ndarray, out: np.ndarray | None = None) -> np.ndarray: ...

    def ragged(self, name: str, index: int) -> np.ndarray: ...


# --------------------------------------------------------------------------- in RAM

@dataclass
class MemoryStore:
    """Records held in one array: the in-RAM fast path, same interface as :class:`FrameStore`."""

    images: np.ndarray  # (N, *record_shape) uint8
    columns: dict[str, np.ndarray]
    ragged_columns: dict[str, list[np.ndarray]]
    meta: dict[str, Any]

    @property
    def record_shape(self) -> tuple[int, ...]:
        return tuple(self.images.shape[1:])

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def read(self, indices: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        if out is None:
            return self.images[np.asarray(indices, np.int64)]
        np.take(self.images, np.asarray(indices, np.int64), axis=0, out=out)
        return out

    def ragged(self, name: str, index: int) -> np.ndarray:
        return self.ragged_columns[name][index]


# --------------------------------------------------------------------------- on disk

def _crc_of_file(path: Path) -> int:
    crc = 0
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            crc = zlib.crc32(chunk, crc)
    return crc


def _meta_checksum(meta: Mapping[str, Any]) -> str:
    body = {k: v for k, v in meta.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


class FrameStore:
    """A finished store folder, opened for reading (picklable: each process opens its own file)."""

    def __init__(self, path: str | os.PathLike[str], key_digest: str | None = None, verify: bool = False) -> None:
        self.path = Path(path)
        self.meta = self._read_meta(key_digest)
        m = self.meta
        self.record_shape = tuple(int(s) for s in m["record_shape"])
        self.record_bytes = int(np.prod(self.record_shape))
        self.count = int(m["count"])
        size = self._file_size(_IMAGES)
        if size != self.count * self.record_bytes:
            self._damaged(f"{_IMAGES} holds {size} bytes, expected {self.count} records x {self.record_bytes}")
        self.crc = self._load_npy(_CRC, m["crc_file"], (self.count,))
        self.columns = {name: self._load_npy(f"{name}.npy", spec, None) for name, spec in m["columns"].items()}
        for name, col in self.columns.items():
            if len(col) != self.count:
                self._damaged(f"column {name} has {len(col)} rows for {self.count} records")
        self._ragged: dict[str, tuple[np.ndarray, np.dtype, tuple[int, ...]]] = {}
        for name, spec in m["ragged"].items():
            offsets = self._load_npy(f"{name}.offsets.npy", spec["offsets"], (self.count + 1,))
            dtype, tail = np.dtype(spec["dtype"]), tuple(spec["tail"])
            row = int(np.prod(tail, dtype=np.int64)) * dtype.itemsize
            if self._file_size(f"{name}.raw") != int(offsets[-1]) * row:
                self._damaged(f"{name}.raw does not match its offsets")
            if "crc32" in spec and _crc_of_file(self.path / f"{name}.raw") != spec["crc32"]:  # small: boxes
                self._damaged(f"{name}.raw checksum mismatch")
            self._ragged[name] = (offsets, dtype, tail)
        self._fds: dict[str, int] = {}
        self._pid = os.getpid()
        if verify:
            self.verify()

    # -- checks
    def _damaged(self, why: str) -> None:
        raise FrameStoreDamaged(f"frame store {self.path}: {why}")

    def _read_meta(self, key_digest: str | None) -> dict[str, Any]:
        try:
            meta = json.loads((self.path / _META).read_text())
        except FileNotFoundError:
            self._damaged(f"no {_META} (not a finished store)")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            self._damaged(f"{_META} unreadable: {err}")
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            self._damaged(f"{_META} is not a {FORMAT} header")
        if meta.get("version") != VERSION:
            self._damaged(f"format version {meta.get('version')}, this dann_ros reads {VERSION}")
        if meta.get("checksum") != _meta_checksum(meta):
            self._damaged(f"{_META} checksum mismatch")
        if key_digest is not None and meta.get("key_digest") != key_digest:
            self._damaged("built from other inputs or preprocessing (key mismatch)")
        return meta

    def _file_size(self, name: str) -> int:
        try:
            return (self.path / name).stat().st_size
        except FileNotFoundError:
            self._damaged(f"{name} is missing")
            raise  # unreachable

    def _load_npy(self, name: str, spec: Mapping[str, Any], shape: tuple[int, ...] | None) -> np.ndarray:
        path = self.path / name
        try:
            if _crc_of_file(path) != spec["crc32"]:
                self._damaged(f"{name} checksum mismatch")
            arr = np.load(path, allow_pickle=False)
        except FrameStoreDamaged:
            raise
        except Exception as err:
            self._damaged(f"{name} unreadable: {type(err).__name__}: {err}")
        if shape is not None and arr.shape != shape:
            self._damaged(f"{name} has shape {arr.shape}, expected {shape}")
        return arr

    def verify(self) -> None:
        """Check every record against its CRC (reads the whole file once, in 64 MB pieces)."""
        chunk = max(1, (64 << 20) // max(self.record_bytes, 1))
        for start in range(0, self.count, chunk):
            self.read(np.arange(start, min(start + chunk, self.count)))

    # -- reading
    def __len__(self) -> int:
        return self.count

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_fds"] = {}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._pid = os.getpid()

    def _fd(self, name: str) -> int:
        if self._pid != os.getpid():  # forked (DataLoader worker): descriptors are per process
            self._fds, self._pid = {}, os.getpid()
        fd = self._fds.get(name)
        if fd is None:
            fd = self._fds[name] = os.open(self.path / name, os.O_RDONLY)
        return fd

    def close(self) -> None:
        if self._pid == os.getpid():
            for fd in self._fds.values():
                os.close(fd)
        self._fds = {}

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def read(self, indices: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Records ``indices`` as one (k, *record_shape) uint8 array, each checked against its CRC."""
        indices = np.asarray(indices, np.int64).reshape(-1)
        if out is None:
            out = np.empty((len(indices), *self.record_shape), np.uint8)
        if len(indices) and (indices.min() < 0 or indices.max() >= self.count):
            raise IndexError(f"frame store {self.path}: index out of range 0..{self.count - 1}")
        fd, size = self._fd(_IMAGES), self.record_bytes
        for k, i in enumerate(indices.tolist()):
            view = memoryview(out[k]).cast("B")
            got = os.preadv(fd, [view], i * size)
            if got != size or zlib.crc32(view) != int(self.crc[i]):
                why = f"short read ({got} of {size} bytes)" if got != size else "CRC mismatch"
                self.invalidate()
                self._damaged(f"record {i}: {why}; the store is marked for rebuilding")
        return out

    def ragged(self, name: str, index: int) -> np.ndarray:
        """Record ``index``'s rows of ragged column ``name`` (e.g. its boxes)."""
        offsets, dtype, tail = self._ragged[name]
        lo, hi = int(offsets[index]), int(offsets[index + 1])
        row = int(np.prod(tail, dtype=np.int64)) * dtype.itemsize
        out = np.empty((hi - lo, *tail), dtype)
        if hi > lo:
            got = os.preadv(self._fd(f"{name}.raw"), [memoryview(out).cast("B")], lo * row)
            if got != (hi - lo) * row:
                self._damaged(f"{name}.raw: short read at record {index}")
        return out

    def invalidate(self) -> None:
        """Make the next :func:`open_or_build` rebuild this store (best effort)."""
        try:
            (self.path / _META).unlink()
        except OSError:
            pass

    def load(self) -> MemoryStore:
        """The whole store in RAM (for small data: no reads per batch)."""
        images = self.read(np.arange(self.count))
        ragged = {name: [self.ragged(name, i) for i in range(self.count)] for name in self._ragged}
        return MemoryStore(images, dict(self.columns), ragged, dict(self.meta))


# --------------------------------------------------------------------------- writing

def check_disk_space(folder: str | os.PathLike[str], need_bytes: int, what: str) -> None:
    """Refuse to start writing ``need_bytes`` into ``folder`` when its disk has not that much free."""
    probe = Path(folder).resolve()
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    margin = max(64 << 20, need_bytes // 50)
    if need_bytes + margin > free:
        raise CacheTooBigError(
            errno.ENOSPC,
            f"the frame cache for {what} needs about {_size(need_bytes)} but {probe} has {_size(free)} free; "
            "point cache_dir at a larger disk, or take fewer frames (stride, start_s/end_s, max_frames) "
            "or a smaller network input")


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return ""


@dataclass
class Progress:
    """One report of a long build: frames/s, ETA (None while the total is unknown), skips."""

    what: str
    done: int
    total: int | None
    skipped: int
    elapsed_s: float
    reasons: tuple[str, ...] = ()  # a few examples of why frames were skipped

    @property
    def frames_per_s(self) -> float:
        return self.done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        if not self.total or self.frames_per_s <= 0:
            return None
        return max(0.0, (self.total - self.done) / self.frames_per_s)

    def line(self) -> str:
        eta = "?" if self.eta_s is None else f"{self.eta_s:.0f} s"
        total = "?" if not self.total else str(self.total)
        why = f" (e.g. {'; '.join(self.reasons)})" if self.skipped and self.reasons else ""
        return (f"{self.what}: {self.done}/{total} frames, {self.frames_per_s:.0f} frames/s, ETA {eta}, "
                f"skipped {self.skipped}{why}")


ProgressFn = Callable[[Progress], None]


def log_progress(report: Progress) -> None:
    log.info("%s", report.line())


class StoreWriter:
    """Appends records to a hidden temporary folder; :meth:`finish` renames it into place."""

    def __init__(self, final: Path, record_shape: tuple[int, ...], key: Mapping[str, Any], key_digest: str,
                 expected: int | None, what: str, progress: ProgressFn | None = None,
                 progress_every_s: float = 5.0) -> None:
        self.final, self.what = final, what
        self.record_shape = tuple(int(s) for s in record_shape)
        self.record_bytes = int(np.prod(self.record_shape))
        self.key, self.key_digest, self.expected = dict(key), key_digest, expected
        final.parent.mkdir(parents=True, exist_ok=True)
        if expected:
            check_disk_space(final.parent, expected * self.record_bytes, what)
        self.tmp = final.with_name(f".{final.name}.{os.getpid()}.{socket.gethostname()}.tmp")
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir()
        self._images = (self.tmp / _IMAGES).open("wb", buffering=1 << 22)
        self._crc: list[int] = []
        self._columns: dict[str, list[Any]] = {}
        self._ragged: dict[str, tuple[Any, list[int], np.dtype, tuple[int, ...]]] = {}
        self.skipped = 0
        self.reasons: list[str] = []  # the caller's examples of skip reasons, shown in progress reports
        self.notes: dict[str, Any] = {}
        self._progress, self._every = progress, progress_every_s
        self._t0 = self._last = time.perf_counter()

    def __len__(self) -> int:
        return len(self._crc)

    def append(self, record: np.ndarray, columns: Mapping[str, Any] = {},
               ragged: Mapping[str, np.ndarray] = {}) -> None:
        if record.dtype != np.uint8 or tuple(record.shape) != self.record_shape:
            raise ValueError(f"{self.what}: record {len(self)} is {record.dtype} {tuple(record.shape)}, "
                             f"the store holds uint8 {self.record_shape}")
        data = memoryview(np.ascontiguousarray(record)).cast("B")
        self._write(self._images, data)
        self._crc.append(zlib.crc32(data))
        if len(self._crc) == 1:
            self._columns = {name: [] for name in columns}
        if set(columns) != set(self._columns):
            raise ValueError(f"{self.what}: record {len(self) - 1} has columns {sorted(columns)}, "
                             f"earlier records {sorted(self._columns)}")
        for name, value in columns.items():
            self._columns[name].append(value)
        for name, rows in ragged.items():
            self._append_ragged(name, np.asarray(rows))
        self._tick()

    def _append_ragged(self, name: str, rows: np.ndarray) -> None:
        entry = self._ragged.get(name)
        if entry is None:
            if len(self._crc) != 1:
                raise ValueError(f"{self.what}: ragged column {name} must be given from the first record on")
            entry = self._ragged[name] = ((self.tmp / f"{name}.raw").open("wb", buffering=1 << 20), [0],
                                          rows.dtype, tuple(rows.shape[1:]))
        f, offsets, dtype, tail = entry
        if rows.dtype != dtype or tuple(rows.shape[1:]) != tail:
            raise ValueError(f"{self.what}: ragged column {name} got {rows.dtype} {rows.shape}, expected "
                             f"{dtype} (k, {', '.join(map(str, tail))})")
        if len(offsets) != len(self._crc):
            raise ValueError(f"{self.what}: ragged column {name} missing for an earlier record")
        self._write(f, memoryview(np.ascontiguousarray(rows)).cast("B"))
        offsets.append(offsets[-1] + len(rows))

    def skip(self) -> None:
        """Count an input that could not be used (the reason goes into the caller's own statistics)."""
        self.skipped += 1
        self._tick()

    def _write(self, f: Any, data: memoryview) -> None:
        try:
            f.write(data)
        except OSError as err:
            self._out_of_space(err)
            raise

    def _out_of_space(self, err: OSError) -> None:
        if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            written = len(self._crc) * self.record_bytes
            self.abort()
            raise CacheTooBigError(err.errno, f"the frame cache for {self.what} ran out of disk space in "
                                   f"{self.final.parent} after {len(self._crc)} frames ({_size(written)}): "
                                   f"{err.strerror}; point cache_dir at a larger disk or take fewer frames") from err

    def _tick(self) -> None:
        now = time.perf_counter()
        if self._progress is not None and now - self._last >= self._every:
            self._last = now
            self._progress(self.report())

    def report(self) -> Progress:
        return Progress(self.what, len(self._crc), self.expected, self.skipped, time.perf_counter() - self._t0,
                        tuple(self.reasons[:3]))

    def abort(self) -> None:
        for f in [self._images, *(e[0] for e in self._ragged.values())]:
            try:
                f.close()
            except OSError:
                pass
        shutil.rmtree(self.tmp, ignore_errors=True)

    def finish(self) -> FrameStore:
        """Write the index files and header, then move the folder into place atomically."""
        try:
            for f in [self._images, *(e[0] for e in self._ragged.values())]:
                f.flush()
                os.fsync(f.fileno())
                f.close()
            meta: dict[str, Any] = {
                "format": FORMAT, "version": VERSION, "what": self.what, "key": self.key,
                "key_digest": self.key_digest, "record_shape": list(self.record_shape), "count": len(self._crc),
                "skipped": self.skipped, "notes": self.notes, "columns": {}, "ragged": {},
                "build_seconds": round(time.perf_counter() - self._t0, 2),
            }
            meta["crc_file"] = self._save(_CRC, np.asarray(self._crc, np.uint32))
            for name, values in self._columns.items():
                meta["columns"][name] = self._save(f"{name}.npy", np.asarray(values))
            for name, (_, offsets, dtype, tail) in self._ragged.items():
                meta["ragged"][name] = {"dtype": dtype.str, "tail": list(tail),
                                        "offsets": self._save(f"{name}.offsets.npy", np.asarray(offsets, np.int64)),
                                        "crc32": _crc_of_file(self.tmp / f"{name}.raw")}
            meta["checksum"] = _meta_checksum(meta)
            header = self.tmp / _META
            header.write_text(json.dumps(meta, indent=1, sort_keys=True))
            with header.open("rb") as f:
                os.fsync(f.fileno())
        except OSError as err:
            self._out_of_space(err)
            self.abort()
            raise
        except BaseException:
            self.abort()
            raise
        try:
            os.rename(self.tmp, self.final)
        except OSError:  # another process finished the same store first: use its copy
            shutil.rmtree(self.tmp, ignore_errors=True)
        if self._progress is not None:
            self._progress(self.report())
        return FrameStore(self.final, self.key_digest)

    def _save(self, name: str, array: np.ndarray) -> dict[str, Any]:
        if array.dtype.kind == "O":
            raise TypeError(f"{self.what}: column {name} is not a plain array ({array.dtype})")
        path = self.tmp / name
        with path.open("wb") as f:
            np.save(f, array, allow_pickle=False)
        return {"crc32": _crc_of_file(path), "dtype": array.dtype.str, "shape": list(array.shape)}

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, exc_type: Any, *exc: object) -> None:
        if exc_type is not None:
            self.abort()


# --------------------------------------------------------------------------- cache

def key_digest(key: Mapping[str, Any]) -> str:
    """The cache identity of everything a store was built from (inputs, selection, preprocessing)."""
    return hashlib.sha256(json.dumps({"format": FORMAT, "version": VERSION, **key}, sort_keys=True,
                                     default=str).encode()).hexdigest()


def open_or_build(cache_dir: str | os.PathLike[str], name: str, key: Mapping[str, Any],
                  build: Callable[[Callable[..., StoreWriter]], FrameStore]) -> FrameStore:
    """The store for ``key`` under ``cache_dir``: opened if it is there and passes its checks,
    otherwise (missing or damaged: never trusted) built by ``build(make_writer)`` where
    ``make_writer(record_shape, expected=None, what=..., progress=...)`` starts the writer."""
    digest = key_digest(key)
    folder = Path(cache_dir) / f"{name}-{digest[:20]}.frames"
    _remove_stale_builds(folder)
    if folder.exists():
        try:
            return FrameStore(folder, digest)
        except FrameStoreDamaged as err:
            log.warning("rebuilding the frame cache: %s", err)
            shutil.rmtree(folder, ignore_errors=True)

    def make_writer(record_shape: tuple[int, ...], expected: int | None = None, what: str = name,
                    progress: ProgressFn | None = log_progress) -> StoreWriter:
        return StoreWriter(folder, record_shape, key, digest, expected, what, progress)

    return build(make_writer)


def _remove_stale_builds(folder: Path) -> None:
    """Delete the temporary folders of builds of ``folder`` on this machine whose process is gone
    (killed: SIGKILL, the out-of-memory killer, a power cut), so a failed build leaves nothing behind
    for long. (A build on another machine sharing the folder is left alone.)"""
    for tmp in folder.parent.glob(f".{glob.escape(folder.name)}.*.tmp"):
        pid, _, host = tmp.name[len(folder.name) + 2:-len(".tmp")].partition(".")
        if pid.isdigit() and host == socket.gethostname() and not _alive(int(pid)):
            log.info("removing %s, left by a build that did not finish", tmp)
            shutil.rmtree(tmp, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


@dataclass
class Subset:
    """Records ``indices`` of another store (a train/validation split, the labelled frames of a bag),
    same interface. ``own_columns`` / ``own_ragged`` add per-record data of the subset itself (a
    label file's classes and boxes, matched onto a bag's frames) to the store's own."""

    store: Any  # FrameStore | MemoryStore | Subset
    indices: np.ndarray
    own_columns: dict[str, np.ndarray] = field(default_factory=dict)  # one row per record of the subset
    own_ragged: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.indices = np.asarray(self.indices, np.int64)
        for name, rows in (*self.own_columns.items(), *self.own_ragged.items()):
            if len(rows) != len(self.indices):
                raise ValueError(f"column {name}: {len(rows)} rows for a subset of {len(self.indices)} records")
        self.columns = {**{k: v[self.indices] for k, v in self.store.columns.items()}, **self.own_columns}
        self.meta = self.store.meta
        self.record_shape = self.store.record_shape

    def __len__(self) -> int:
        return len(self.indices)

    def read(self, indices: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        return self.store.read(self.indices[np.asarray(indices, np.int64)], out)

    def ragged(self, name: str, index: int) -> np.ndarray:
        if name in self.own_ragged:
            return self.own_ragged[name][index]
        return self.store.ragged(name, int(self.indices[index]))


# --------------------------------------------------------------------------- evaluation batches

DEFAULT_EVAL_MEMORY_MB = 512  # train.eval_memory_mb's default and the evaluation commands'
# activations of a network that cannot be measured (ONNX Runtime, TensorRT) per byte of its float input:
# the demo's detector at 384 x 512 measured 58x summed over its layers (model/inference.frame_bytes)
RUNTIME_ACTIVATION_FACTOR = 64


def frames_per_batch(frame_bytes: int, budget_mb: float, most: int) -> int:
    """Frames one evaluation batch may hold: what ``budget_mb`` pays for at ``frame_bytes`` a frame (its
    input and the network's activations), at least 1 and at most ``most``. A fixed count of frames is
    bounded in bytes only at a small input: 128 frames of 384 x 512 ran a detector's evaluation into
    16 GB (issue 22)."""
    if budget_mb <= 0 or most < 1:
        raise ValueError(f"an evaluation batch needs a positive memory budget and size, got {budget_mb} MB, {most}")
    return max(1, min(int(most), int(budget_mb * 2**20) // max(int(frame_bytes), 1)))


def runtime_frame_bytes(record_shape: tuple[int, ...]) -> int:
    """A conservative cost of one frame where the network is a runtime's graph: the uint8 record, its
    float32 copy and :data:`RUNTIME_ACTIVATION_FACTOR` times that copy in activations."""
    pixels = int(np.prod(record_shape))
    return pixels + 4 * pixels * (1 + RUNTIME_ACTIVATION_FACTOR)
