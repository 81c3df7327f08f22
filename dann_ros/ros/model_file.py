"""The identity of the model file the node loaded: what /diagnostics says, what activate checks.

/diagnostics goes to every subscriber on the robot's network, so it names the model by file
name and SHA-256, never by its path (which tells where the robot keeps its files). Activate
checks the file is still the one configure loaded: a model replaced or deleted on disk while
the node was inactive would otherwise run on silently, and the operator believes the new one
runs; the clear answer is to fail activate and say so (cleanup + configure loads the new one).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path


def _stat_key(path: Path) -> tuple[int, int, int]:
    st = os.stat(path)
    return st.st_ino, st.st_size, st.st_mtime_ns


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class ModelFile:
    path: Path
    sha256: str
    stat: tuple[int, int, int]  # (inode, size, mtime): the hash is only read again when it changed

    @classmethod
    def of(cls, path: str | Path) -> ModelFile:
        path = Path(path)
        stat = _stat_key(path)
        return cls(path, sha256_of(path), stat)

    @property
    def name(self) -> str:
        return self.path.name

    def changed(self) -> str | None:
        """Why the file on disk is no longer the one loaded (naming only its file name), or None."""
        try:
            stat = _stat_key(self.path)
        except FileNotFoundError:
            return f"model file {self.name} is gone since configure"
        except OSError as exc:
            return f"model file {self.name} cannot be read ({exc.strerror})"
        if stat == self.stat:
            return None
        try:
            sha = sha256_of(self.path)
        except OSError as exc:
            return f"model file {self.name} cannot be read ({exc.strerror})"
        if sha != self.sha256:
            return f"model file {self.name} changed since configure (sha256 {self.sha256[:12]} -> {sha[:12]})"
        return None
