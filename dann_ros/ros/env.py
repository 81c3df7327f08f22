"""Environments for ROS processes that must not meet anyone else's DDS traffic.

Tests, benchmarks and the demo run many ROS processes side by side on shared
machines. Each group gets ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` (Kilted
ignores ``ROS_LOCALHOST_ONLY``) and a ROS_DOMAIN_ID that no other cooperating
process on the machine holds: the id is claimed with an ``flock`` on a file in
one machine-wide folder and stays claimed until this process exits, so parallel
pytest-xdist workers, parallel pytest runs and benchmarks never share a domain. The
folder is fixed, not the temp dir: a process with its own TMPDIR (a test giving a
benchmark a private one) would otherwise lock ids nobody else looks at.
"""

from __future__ import annotations

import fcntl
import itertools
import os
from pathlib import Path

from dann_ros.paths import share_file

# Fast DDS maps a domain to UDP ports 7400 + 250 * id (+ offsets); ids up to 101 keep every
# port below the Linux ephemeral range (32768+). 0 is everyone's default: never hand it out.
# what isolated_ros_env() sets or clears: saved and restored around in-process ROS contexts
ROS_ENV_KEYS = ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_STATIC_PEERS", "FASTDDS_DEFAULT_PROFILES_FILE",
                "ROS_LOCALHOST_ONLY")
DOMAIN_IDS = range(1, 102)
# DDS domains are machine-wide, so are their locks: /tmp whatever TMPDIR says (sticky and world-writable,
# so every user's processes share it; a lock file is opened read-only, which flock allows)
_LOCK_DIR = Path("/tmp/dann_ros_domain_ids")
_held: dict[int, int] = {}  # domain id -> open fd holding its lock (released when the process exits)
_counter = itertools.count()

def fastdds_shm_profile() -> Path:
    """The Fast DDS profile with a 16 MB shared-memory segment (raw camera frames)."""
    return share_file("config", "fastdds_shm.xml")


def domain_lock_path(domain_id: int) -> Path:
    return _LOCK_DIR / f"{domain_id}.lock"


def _lock_dir() -> None:
    if not _LOCK_DIR.is_dir():
        _LOCK_DIR.mkdir(parents=True, exist_ok=True)
        try:
            os.chmod(_LOCK_DIR, 0o1777)  # the umask narrowed it; other users claim ids here too
        except PermissionError:  # created by another user in the meantime
            pass


def claim_domain_id() -> int:
    """A domain id that no other cooperating process on this machine holds; kept until exit."""
    _lock_dir()
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    worker_index = int("".join(c for c in worker if c.isdigit()) or 0)
    start = (os.getpid() * 7 + worker_index * 13 + next(_counter)) % len(DOMAIN_IDS)
    for k in range(len(DOMAIN_IDS)):
        candidate = DOMAIN_IDS[(start + k) % len(DOMAIN_IDS)]
        if candidate in _held:
            continue
        try:
            fd = os.open(domain_lock_path(candidate), os.O_CREAT | os.O_RDONLY, 0o666)
        except PermissionError:  # another user's file we may not read: theirs
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        _held[candidate] = fd
        return candidate
    raise RuntimeError(f"all ROS domain ids {DOMAIN_IDS.start}..{DOMAIN_IDS.stop - 1} are claimed by "
                       f"other processes (locks in {_LOCK_DIR})")


def release_domain_id(domain_id: int) -> None:
    fd = _held.pop(domain_id, None)
    if fd is not None:
        os.close(fd)


def isolated_ros_env(domain_id: int | None = None, fastdds_profile: bool | str | Path = False,
                     base: dict[str, str] | None = None) -> dict[str, str]:
    """A copy of the environment for a ROS process that only talks to its own group over loopback.

    ``domain_id=None`` claims a fresh id (see :func:`claim_domain_id`); pass the same id to every
    process of one group. ``fastdds_profile=True`` selects config/fastdds_shm.xml, a path selects
    that file; without it an inherited FASTDDS_DEFAULT_PROFILES_FILE is dropped, so every process
    of a group runs the same transports. LD_LIBRARY_PATH is kept: the ros-wheels bootstrapper's re-exec guard
    (_ROS_WHEELS_BOOTSTRAP_COMPLETE) is inherited, so a child without it could not load rclpy.
    """
    env = dict(os.environ if base is None else base)
    if domain_id is None:
        domain_id = claim_domain_id()
    if not 0 <= int(domain_id) <= 232:
        raise ValueError(f"ROS_DOMAIN_ID {domain_id} is outside 0..232")
    env["ROS_DOMAIN_ID"] = str(int(domain_id))
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env["ROS_STATIC_PEERS"] = ""
    env.pop("ROS_LOCALHOST_ONLY", None)  # deprecated; a leftover 1 would only add a warning
    if env.get("_ROS_WHEELS_BOOTSTRAP_COMPLETE") and not env.get("LD_LIBRARY_PATH"):
        env.pop("_ROS_WHEELS_BOOTSTRAP_COMPLETE")  # let the child bootstrap itself again
    if fastdds_profile:
        path = fastdds_shm_profile() if fastdds_profile is True else Path(fastdds_profile)
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(Path(path).resolve())
    else:
        env.pop("FASTDDS_DEFAULT_PROFILES_FILE", None)
    return env
