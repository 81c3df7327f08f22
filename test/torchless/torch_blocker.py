"""A meta path finder that refuses torch and torchvision (ModuleNotFoundError, like a robot without them)."""

from __future__ import annotations

import importlib.abc
import sys

BLOCKED = ("torch", "torchvision")


class TorchBlocker(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".", 1)[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {fullname!r} (blocked: DANN_ROS_BLOCK_TORCH=1, the robot-side "
                                      "runtime must not need torch)", name=fullname)
        return None


def install() -> None:
    if any(isinstance(f, TorchBlocker) for f in sys.meta_path):
        return
    loaded = sorted(m for m in sys.modules if m.split(".", 1)[0] in BLOCKED)
    if loaded:
        raise RuntimeError(f"torch was imported before the blocker was installed: {loaded[:5]}")
    sys.meta_path.insert(0, TorchBlocker())


def blocked() -> bool:
    return any(isinstance(f, TorchBlocker) for f in sys.meta_path)
