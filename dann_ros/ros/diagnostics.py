"""Per-camera health figures for /diagnostics, and the domain-shift monitor.

Two monitors may be in a model. ``feature_shift`` (the post-hoc monitor fitted at export on
the frozen features of the adaptation-target frames, model/feature_monitor.py) is already a
shift score per frame: ~0 on frames like the adaptation target, -> 1 beyond; when the model
has it, it drives the camera's score and level (reference 0). Otherwise the GRL
discriminator's ``domain`` output does, as below; with both, the discriminator's score is
reported as a second value. Why: a discriminator fooled at equilibrium (the demo detector's
reads 0.5000 on every frame) says little about new shift.

Domain-shift score (GRL discriminator): the exported model's monitor output ``domain`` is the
DANN discriminator's P(frame looks like the synthetic source). Training drives the target
(real) frames it was adapted on towards ``reference`` (about 0.5: the discriminator cannot
tell). The score is the mean over the camera's last ``window`` frames of
``|domain - reference| / max(reference, 1 - reference)``: 0 = frames sit where the adapted
target sat, 1 = the discriminator is certain of a domain on every frame, i.e. the camera sees
something the adaptation did not cover (new site, lighting, a dirty lens, a different camera).
The mean of absolute deviations is used (not the deviation of the mean) so frames drifting to
opposite sides do not cancel. WARN and ERROR levels are ``domain_shift_warn`` / ``_error``.
Models exported with neither output report 'no monitor'. A NaN score (the model put out a
non-finite monitor value) is a WARN of its own: it would compare below every threshold and
read OK while the monitor says nothing.

Besides the scores a camera warns when no frame arrived for ``input_timeout`` seconds (a
dead driver or cable reads "no input" instead of a quiet OK), and the node's own status is an
ERROR while one inference call has run longer than ``inference_timeout`` (a stuck worker:
frames arriving meanwhile overwrite each other and count as drops).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

OK, WARN, ERROR, STALE = 0, 1, 2, 3  # diagnostic_msgs/DiagnosticStatus levels (bytes in the message)


class DomainShiftMonitor:
    def __init__(self, window: int, reference: float = 0.5) -> None:
        self.reference = reference
        self._scores: deque[float] = deque(maxlen=window)
        self._norm = max(reference, 1.0 - reference)
        self._lock = threading.Lock()

    def add(self, domain_score: float) -> None:
        with self._lock:
            self._scores.append(float(domain_score))

    def _values(self) -> np.ndarray:
        with self._lock:
            return np.array(self._scores, dtype=np.float64)

    def __len__(self) -> int:
        return len(self._scores)

    def nonfinite(self) -> int:
        """Frames of the window whose score was NaN or infinite."""
        return int((~np.isfinite(self._values())).sum())

    def shift(self) -> float | None:
        s = self._values()
        return float(np.mean(np.abs(s - self.reference)) / self._norm) if s.size else None

    def mean_domain_score(self) -> float | None:
        s = self._values()
        return float(s.mean()) if s.size else None


FEATURE_SHIFT, GRL = "feature_shift", "grl_discriminator"  # names of the monitors, as diagnostics show them


def monitor_kind(info) -> str | None:
    """Which monitor sets a model's domain-shift score (``info``: its ModelInfo); None: neither output."""
    if info.has_feature_monitor:
        return FEATURE_SHIFT
    return GRL if info.has_domain else None


class CameraMonitor:
    """A camera's domain-shift monitors: ``primary`` sets the score and level, ``grl`` is the
    discriminator's kept beside the feature monitor (None when it is the primary or absent)."""

    def __init__(self, kind: str, window: int, grl_reference: float, has_domain: bool) -> None:
        self.kind = kind
        self.primary = DomainShiftMonitor(window, 0.0 if kind == FEATURE_SHIFT else grl_reference)
        self.grl = DomainShiftMonitor(window, grl_reference) if kind == FEATURE_SHIFT and has_domain else None

    @classmethod
    def for_model(cls, info, window: int, grl_reference: float) -> CameraMonitor | None:
        """The monitor a model supports (``info``: its ModelInfo); None without either output."""
        kind = monitor_kind(info)
        return cls(kind, window, grl_reference, info.has_domain) if kind is not None else None

    def add(self, domain_score: float | None, shift_score: float | None) -> None:
        """One frame's outputs (a result's ``domain_score`` and ``shift_score``)."""
        if self.kind == FEATURE_SHIFT:
            if shift_score is not None:
                self.primary.add(shift_score)
            if self.grl is not None and domain_score is not None:
                self.grl.add(domain_score)
        elif domain_score is not None:
            self.primary.add(domain_score)

    def shift(self) -> float | None:
        return self.primary.shift()

    def grl_monitor(self) -> DomainShiftMonitor | None:
        return self.primary if self.kind == GRL else self.grl

    def __len__(self) -> int:
        return len(self.primary)

    def nonfinite(self) -> int:
        return self.primary.nonfinite()

    def values(self, warn: float, error: float) -> list[tuple[str, str]]:
        values = [("domain monitor", self.kind), ("domain shift", _fmt(self.shift(), digits=3)),
                  ("domain shift frames", str(len(self))),
                  ("domain shift thresholds", f"warn {warn:g}, error {error:g}")]
        grl = self.grl_monitor()
        if self.kind == FEATURE_SHIFT:
            values.append(("grl domain shift", "no discriminator" if grl is None else _fmt(grl.shift(), digits=3)))
        if grl is not None:
            values.append(("domain score mean", _fmt(grl.mean_domain_score(), digits=3)))
        return values


@dataclass
class Snapshot:
    """Counts since the last report plus running totals, taken atomically."""
    received: int = 0
    published: int = 0
    dropped: int = 0
    decode_errors: int = 0
    inference_errors: int = 0
    total_received: int = 0
    total_published: int = 0
    total_dropped: int = 0
    total_decode_errors: int = 0
    total_inference_errors: int = 0
    qos_incompatible: int = 0
    total_overlays: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    ages_ms: list[float] = field(default_factory=list)
    last_error: str = ""


class CameraStats:
    """Thread-safe counters: callbacks, the worker and the diagnostics timer all touch them."""

    def __init__(self, latency_window: int = 512) -> None:
        self._lock = threading.Lock()
        self._now = Snapshot()
        self._totals = Snapshot()
        self._lat: deque[float] = deque(maxlen=latency_window)
        self._age: deque[float] = deque(maxlen=latency_window)
        self._last_received: float | None = None  # time.monotonic() of the newest frame

    def received(self, dropped: bool) -> None:
        with self._lock:
            self._now.received += 1
            self._now.dropped += dropped
            self._last_received = time.monotonic()

    def last_received(self) -> float | None:
        with self._lock:
            return self._last_received

    def published(self, latency_ms: float, age_ms: float | None) -> None:
        with self._lock:
            self._now.published += 1
            self._lat.append(latency_ms)
            if age_ms is not None:
                self._age.append(age_ms)

    def overlay(self) -> None:
        with self._lock:
            self._totals.total_overlays += 1

    def decode_error(self, reason: str) -> None:
        with self._lock:
            self._now.decode_errors += 1
            self._now.last_error = reason

    def inference_error(self, reason: str) -> None:
        with self._lock:
            self._now.inference_errors += 1
            self._now.last_error = reason

    def qos_incompatible(self, count: int = 1) -> None:
        with self._lock:
            self._totals.qos_incompatible += count

    def snapshot(self) -> Snapshot:
        """The period's counts (then reset) with running totals and the recent latency window."""
        with self._lock:
            now, t = self._now, self._totals
            t.total_received += now.received
            t.total_published += now.published
            t.total_dropped += now.dropped
            t.total_decode_errors += now.decode_errors
            t.total_inference_errors += now.inference_errors
            if now.last_error:
                t.last_error = now.last_error
            snap = Snapshot(now.received, now.published, now.dropped, now.decode_errors, now.inference_errors,
                            t.total_received, t.total_published, t.total_dropped, t.total_decode_errors,
                            t.total_inference_errors, t.qos_incompatible, t.total_overlays, list(self._lat),
                            list(self._age), t.last_error)
            self._now = Snapshot()
        return snap


def percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def _fmt(value: float | None, unit: str = "", digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}{unit}"


def shift_level(shift: float | None, warn: float, error: float) -> int:
    """The level a domain-shift score puts a camera at: OK, WARN at or above ``warn``, ERROR at or above
    ``error`` (the node's diagnostics and eval-bag's report both ask this). NaN is OK here; camera_status
    reports it as a problem of its own."""
    if shift is None or not shift >= warn:
        return OK
    return ERROR if shift >= error else WARN


def camera_status(snap: Snapshot, period_s: float, monitor: CameraMonitor | None,
                  warn: float, error: float, silent_s: float | None = None,
                  input_timeout: float = 0.0) -> tuple[int, str, list[tuple[str, str]]]:
    """(level, message, key/values) for one camera over the last ``period_s`` seconds.

    ``silent_s``: seconds since its last frame (or since activation); at or above ``input_timeout``
    (> 0) the camera warns.
    """
    shift = monitor.shift() if monitor is not None else None
    values = [
        ("input rate (Hz)", _fmt(snap.received / period_s)),
        ("output rate (Hz)", _fmt(snap.published / period_s)),
        ("latency p50 (ms)", _fmt(percentile(snap.latencies_ms, 50))),
        ("latency p99 (ms)", _fmt(percentile(snap.latencies_ms, 99))),
        ("stamp age p50 (ms)", _fmt(percentile(snap.ages_ms, 50))),
        ("frames received", str(snap.total_received)),
        ("frames published", str(snap.total_published)),
        ("drops", str(snap.total_dropped)),
        ("decode errors", str(snap.total_decode_errors)),
        ("inference errors", str(snap.total_inference_errors)),
        ("qos incompatible events", str(snap.qos_incompatible)),
        ("overlays published", str(snap.total_overlays)),
        ("last error", snap.last_error or "none"),
        ("seconds since last frame", _fmt(silent_s, digits=1)),
    ]
    if monitor is None:
        values += [("domain monitor", "no monitor"), ("domain shift", "no monitor")]
    else:
        values += monitor.values(warn, error)
    level, problems = shift_level(shift, warn, error), []
    if level != OK:
        problems.append(f"domain shift {shift:.2f} >= {error if level == ERROR else warn:g} ({monitor.kind})")
    if shift is not None and math.isnan(shift):
        level = max(level, WARN)
        problems.append(f"domain shift score is NaN ({monitor.kind}: the model's output was not finite on "
                        f"{monitor.nonfinite()} of the last {len(monitor)} frames)")
    if input_timeout > 0 and silent_s is not None and silent_s >= input_timeout:
        level = max(level, WARN)
        problems.append(f"no frame for {silent_s:.1f} s (input_timeout {input_timeout:g} s)")
    if snap.decode_errors:
        level = max(level, WARN)
        problems.append(f"{snap.decode_errors} undecodable frames")
    if snap.inference_errors:
        level = max(level, ERROR)
        problems.append(f"{snap.inference_errors} inference errors")
    if snap.qos_incompatible and not snap.total_received:
        level = max(level, WARN)
        problems.append("incompatible QoS publisher")
    if problems:
        message = "; ".join(problems)
    elif snap.received == 0:
        message = "no input frames"
    else:
        message = "ok"
    return level, message, values


def to_status(name: str, hardware_id: str, level: int, message: str, values: list[tuple[str, str]]):
    from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

    return DiagnosticStatus(level=bytes([level]), name=name, message=message, hardware_id=hardware_id,
                            values=[KeyValue(key=k, value=v) for k, v in values])
