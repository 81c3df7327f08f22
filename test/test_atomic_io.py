"""dann_ros.atomic_io: a write that fails (or is killed) midway leaves the old file whole and no temp file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dann_ros import atomic_io

OLD = b"the old, complete file\n"


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def plain_mode(folder: Path) -> int:
    probe = folder / "plain"
    probe.write_bytes(b"")
    mode = probe.stat().st_mode & 0o777
    probe.unlink()
    return mode


def test_every_writer_writes_whole_files_with_the_usual_permissions(tmp_path):
    import torch

    out = tmp_path / "sub" / "dir"  # missing folders are made
    atomic_io.write_bytes(out / "a.bin", b"\x00\x01")
    atomic_io.write_text(out / "a.txt", "héllo")
    atomic_io.write_json(out / "a.json", {"x": [1, 2]}, indent=1)
    atomic_io.torch_save({"w": torch.arange(3)}, out / "a.pt")
    atomic_io.copy_file(out / "a.pt", out / "b.pt")
    with atomic_io.atomic_open(out / "a.npz", "wb") as f:
        np.savez(f, x=np.arange(4))
    with atomic_io.atomic_path(out / "c.npy", suffix=".npy") as tmp:
        assert tmp.parent == out and tmp.name.endswith(".npy") and tmp.exists()
        np.save(tmp, np.arange(5))
    assert (out / "a.bin").read_bytes() == b"\x00\x01" and (out / "a.txt").read_text("utf-8") == "héllo"
    assert json.loads((out / "a.json").read_text()) == {"x": [1, 2]}
    assert torch.load(out / "b.pt", weights_only=True)["w"].tolist() == [0, 1, 2]
    assert np.load(out / "a.npz")["x"].tolist() == [0, 1, 2, 3] and np.load(out / "c.npy").tolist() == list(range(5))
    assert leftovers(out) == []
    mode = plain_mode(out)  # mkstemp's 0600 would hide a report or model from the other users of a machine
    assert {p.name: p.stat().st_mode & 0o777 for p in out.iterdir()} == {p.name: mode for p in out.iterdir()}


class Boom(Exception):
    pass


def failing_writes(path: Path):
    """Writes that fail after part of the new content is already on disk (or before any of it)."""

    def half_then_raise():
        with atomic_io.atomic_open(path, "wb") as f:
            f.write(b"new content, half of it")
            f.flush()
            raise Boom

    def unpicklable():
        atomic_io.torch_save({"fn": lambda x: x}, path)  # torch.save fails part way through its zip

    def not_json():
        atomic_io.write_json(path, {"nan": float("nan")}, allow_nan=False)

    def missing_source():
        atomic_io.copy_file(path.with_name("nowhere.pt"), path)

    def library_by_name():
        with atomic_io.atomic_path(path) as tmp:
            tmp.write_bytes(b"partial")
            raise Boom

    return {"half_then_raise": (half_then_raise, Boom), "torch_save": (unpicklable, Exception),
            "json": (not_json, ValueError), "copy": (missing_source, FileNotFoundError),
            "atomic_path": (library_by_name, Boom)}


@pytest.mark.parametrize("case", sorted(failing_writes(Path("x"))))
def test_a_write_that_fails_midway_keeps_the_old_file_and_leaves_no_temp(tmp_path, case):
    target = tmp_path / "model.pt"
    target.write_bytes(OLD)
    write, error = failing_writes(target)[case]
    with pytest.raises(error):
        write()
    assert target.read_bytes() == OLD
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


def test_a_process_killed_midway_leaves_the_old_file(tmp_path):
    """kill -9 cannot be cleaned up after: the target is still the old file, the temp is a dot file beside it."""
    target = tmp_path / "metrics.json"
    target.write_bytes(OLD)
    code = ("import os, sys; from dann_ros import atomic_io\n"
            "with atomic_io.atomic_open(sys.argv[1], 'wb') as f:\n"
            "    f.write(b'{\"half\": '); f.flush(); os._exit(9)\n")
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-c", code, str(target)], cwd=root,
                          env={**os.environ, "PYTHONPATH": str(root)}, timeout=60)
    assert proc.returncode == 9
    assert target.read_bytes() == OLD
    (temp,) = leftovers(tmp_path)
    assert temp.startswith(".metrics.json.") and temp.endswith(".tmp")


def test_atomic_open_refuses_append_and_read_modes(tmp_path):
    for mode in ("ab", "r", "r+b"):
        with pytest.raises(ValueError, match="mode"):
            with atomic_io.atomic_open(tmp_path / "f", mode):
                pass
    assert list(tmp_path.iterdir()) == []


def test_atomic_io_imports_nothing_heavy():
    """Every layer uses it, the torch-free robot side too."""
    code = "import sys, dann_ros.atomic_io; print(sorted(m for m in ('torch', 'numpy', 'cv2') if m in sys.modules))"
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, env={**os.environ, "PYTHONPATH": str(root)},
                         capture_output=True, text=True, timeout=60, check=True).stdout
    assert out.strip() == "[]"


def test_the_report_writer_keeps_the_old_report_when_encoding_fails_midway(tmp_path):
    """One of the hand-written copies this replaced left its .tmp behind on any error."""
    from dann_ros.evaluation.html import write_atomic

    target = tmp_path / "report.html"
    target.write_bytes(OLD)
    with pytest.raises(UnicodeEncodeError):
        write_atomic(target, "<p>fine</p>" * 1000 + "\ud800")  # a lone surrogate: not UTF-8, found part way
    assert target.read_bytes() == OLD and leftovers(tmp_path) == []
