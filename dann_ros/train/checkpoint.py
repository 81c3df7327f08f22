"""Checkpoints: written atomically, read without unpickling code.

Everything inside is tensors and plain Python data, so ``torch.load(...,
weights_only=True)`` can read it: a checkpoint from somewhere else cannot run
code on this machine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from dann_ros.atomic_io import torch_save

FORMAT = "dann_ros.checkpoint/1"


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt, or of another format; names the file."""


def save_atomic(obj: dict[str, Any], path: str | Path) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over ``path``:
    a kill at any moment leaves either the old or the new checkpoint, never half of one."""
    torch_save(obj, path)


def load(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt zip, truncated file, foreign pickle
        raise CheckpointError(f"{path}: not a readable dann_ros checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise CheckpointError(f"{path}: field 'format' is {found!r}, expected {FORMAT!r}")
    return data


def model_state(model, discriminator, *, task: str, classes, preprocess, model_config, digest: str,
                step: int, train_config: dict | None = None) -> dict[str, Any]:
    """The deployable checkpoint: weights, classes, preprocessing, and the monitor's discriminator."""
    import json

    from dann_ros import __version__
    from dann_ros.typed_config import to_dict

    def cpu(module):
        return {k: v.detach().cpu() for k, v in module.state_dict().items()}

    return {
        "format": FORMAT, "kind": "model", "task": task, "version": __version__, "digest": digest,
        "step": step, "classes": list(classes), "preprocess": preprocess.to_json(),
        "model_config": json.dumps(to_dict(model_config)), "train_config": json.dumps(train_config or {}),
        "model": cpu(model), "domain": cpu(discriminator) if discriminator is not None else None,
    }
