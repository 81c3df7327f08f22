"""Where the package's data files (config/, launch/, msg/) are: source tree or installed share/."""

from __future__ import annotations

import sys
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[1]


def share_file(*parts: str) -> Path:
    """A file of the package's data (config/, launch/): the source tree's copy, else the installed one."""
    source = PACKAGE_ROOT.joinpath(*parts)
    if source.exists():
        return source
    installed = Path(sys.prefix, "share", "dann_ros", *parts)
    if installed.exists():
        return installed
    try:  # a colcon/ament install
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory("dann_ros"), *parts)
    except Exception:
        return source  # let the caller's open() name the missing path
