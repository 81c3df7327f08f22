"""Atomic file writes: the one way dann_ros replaces a file that something else may read.

Each write goes to a temporary file in the target's folder (same filesystem, so the rename is
atomic), is flushed and fsynced, then renamed over the target with ``os.replace``; on any error
the temporary file is removed and the old target is left as it was. A reader, or a rerun after
a crash, sees the old file or the new one, never half of one. A process killed mid-write can
leave its ``.<name>.<pid>.<random>.tmp`` behind, never a damaged target.

Standard library only (torch is imported by :func:`torch_save` alone), so every layer, the
torch-free robot side included, can use it.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


def _temp_path(path: Path, suffix: str) -> Path:
    """A new, empty file beside ``path``, created with the default permissions (umask), not mkstemp's 0600."""
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp{suffix}")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"{path}: no free temporary name beside it")


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (best effort: some filesystems refuse a directory fsync)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str = "") -> Iterator[Path]:
    """A temporary path beside ``path`` for libraries that write by file name (``onnx.save``); on a
    clean exit it is fsynced and renamed over ``path``, on an error removed. ``suffix`` ends its name
    for writers that look at it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_path(path, suffix)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


@contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb", encoding: str | None = None) -> Iterator[IO[Any]]:
    """An open temporary file (``"wb"`` or ``"w"``) that replaces ``path`` when the block ends cleanly."""
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_open writes a whole new file: mode 'wb' or 'w', not {mode!r}")
    with atomic_path(path) as tmp, open(tmp, mode, encoding=encoding if mode == "w" else None) as f:
        yield f  # closed (flushed) before atomic_path fsyncs and renames it


def write_bytes(path: str | os.PathLike[str], data: bytes | bytearray | memoryview) -> Path:
    with atomic_open(path, "wb") as f:
        f.write(data)
    return Path(path)


def write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    with atomic_open(path, "w", encoding=encoding) as f:
        f.write(text)
    return Path(path)


def write_json(path: str | os.PathLike[str], data: Any, **dumps: Any) -> Path:
    """``json.dumps(data, **dumps)`` written atomically (serialised first: an unserialisable value
    raises before anything is written)."""
    return write_text(path, json.dumps(data, **dumps) + "\n")


def copy_file(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
    """``src`` copied over ``dst`` atomically: ``dst`` is never seen half-copied."""
    with open(src, "rb") as fin, atomic_open(dst, "wb") as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)
    return Path(dst)


def torch_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save(obj)`` written atomically (torch is imported here only)."""
    import torch

    with atomic_open(path, "wb") as f:
        torch.save(obj, f)
    return Path(path)


__all__ = ["atomic_open", "atomic_path", "copy_file", "torch_save", "write_bytes", "write_json", "write_text"]
