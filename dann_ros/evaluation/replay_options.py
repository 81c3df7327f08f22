"""What a replay is asked to do (ReplayOptions) and what it keeps per camera (ReplayCamera): shared by replay.py,
replay_ros.py and the replay report, which would otherwise import each other."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dann_ros.data.tasks import TASK_SPECS, task_spec
from dann_ros.evaluation.tasks import OutputOptions


@dataclass
class ReplayCamera:
    bag_topic: str
    msgtype: str
    input_topic: str  # where frames are published
    output_topic: str  # where the node's output (the task's message type) arrives
    label_info_topic: str
    output_msgtype: str = TASK_SPECS["classification"].output_msgtype
    published: list[tuple[int, int, int, int]] = field(default_factory=list)  # (index, stamp_ns, mono_ns, wall_ns)
    received: list[tuple[int, int, bytes]] = field(default_factory=list)  # (mono_ns, wall_ns, raw)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def compressed(self) -> bool:
        return self.msgtype.endswith("CompressedImage")


@dataclass
class ReplayOptions:
    bag: Path
    topics: tuple[str, ...] = ()
    rate: float = 1.0
    model: Path | None = None
    backend: str = "auto"
    input_topics: tuple[str, ...] = ()
    output_topics: tuple[str, ...] = ()
    labels: Any = None  # path, None = <bag>.labels.json if present, False = none
    out: Path | None = None
    qos_reliability: str = "best_effort"
    start_timeout: float = 60.0
    grace: float = 2.0
    max_duration: float | None = None
    dds_profile: str = "auto"  # auto | none | a path
    record_bag: bool = True
    overwrite: bool = False
    node_parameters: dict = field(default_factory=dict)
    task: str = "auto"  # classification | detection; auto: from --model's metadata, else classification
    output: OutputOptions = field(default_factory=OutputOptions.node_defaults)  # what the node publishes

    def __post_init__(self) -> None:
        self.bag = Path(self.bag)
        if self.rate <= 0:
            raise ValueError(f"--rate must be positive, got {self.rate}")
        if self.task != "auto":
            task_spec(self.task)
