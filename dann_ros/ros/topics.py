"""Where each camera's outputs go: next to its input topic, in the input's namespace.

``image`` -> ``classification``, ``cam_left/image`` -> ``cam_left/classification``,
``/robot/front/image_raw`` -> ``/robot/front/classification``. Relative names resolve
against the node's namespace, so ``-r __ns:=/x`` and remapping work as usual. A compressed
input named ``.../compressed`` (image_transport's convention) drops that suffix first, so
``cam/image/compressed`` -> ``cam/classification``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CameraTopics:
    index: int
    input: str
    namespace: str  # '' (node namespace), 'cam_left', '/robot/front'

    def output(self, name: str) -> str:
        if not self.namespace:
            return name
        return f"{self.namespace.rstrip('/')}/{name}"

    @property
    def label(self) -> str:
        """Short name for logs and diagnostics."""
        return self.input


def camera_topics(inputs: tuple[str, ...] | list[str], compressed: bool = False) -> list[CameraTopics]:
    cameras = []
    seen: dict[str, str] = {}
    for i, topic in enumerate(inputs):
        topic = topic.strip()
        base = topic
        if compressed and base.endswith("/compressed"):
            base = base[: -len("/compressed")]
        namespace = base.rsplit("/", 1)[0] if "/" in base.lstrip("/") else ("/" if base.startswith("/") else "")
        key = namespace or "."
        if key in seen:
            raise ValueError(f"input topics {seen[key]!r} and {topic!r} would publish their outputs on the same "
                             f"topics (namespace {namespace or 'of the node'!r}); put each camera in its own "
                             "namespace, e.g. cam_left/image and cam_right/image")
        seen[key] = topic
        cameras.append(CameraTopics(i, topic, namespace))
    return cameras
