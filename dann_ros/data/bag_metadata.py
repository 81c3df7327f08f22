"""A rosbag2 folder's metadata.yaml checked field by field before rosbags reads it.

rosbags trusts the types in metadata.yaml: a ``message_count: "3"`` or a ``files: abc`` surfaces
later as a TypeError or AttributeError far from the file. Checking the fields rosbags reads (and
the few it passes on) once, here, turns every such bag into one error naming the file and field.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

#: metadata.yaml larger than this is refused unread (a real one is a few kB per storage file).
MAX_METADATA_BYTES = 64 << 20

Kind = tuple[str, Callable[[Any], bool]]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


COUNT: Kind = ("a non-negative integer", lambda v: _is_int(v) and v >= 0)
TEXT: Kind = ("a string", lambda v: isinstance(v, str))
TEXT_OR_NULL: Kind = ("a string or null", lambda v: v is None or isinstance(v, str))
MAPPING_OR_NULL: Kind = ("a mapping or null", lambda v: v is None or isinstance(v, dict))
QOS: Kind = ("a string or a list", lambda v: isinstance(v, (str, list)))

# A dict is a mapping with these keys ("?key": optional); a one-element list, a sequence of that spec.
_TOPIC = {"topic_metadata": {"name": TEXT, "type": TEXT, "serialization_format": TEXT, "?offered_qos_profiles": QOS,
                             "?type_description_hash": TEXT},
          "message_count": COUNT}
_FILE = {"?path": TEXT, "?starting_time": {"nanoseconds_since_epoch": COUNT}, "?duration": {"nanoseconds": COUNT},
         "?message_count": COUNT}
SCHEMA = {
    "version": COUNT, "storage_identifier": TEXT, "relative_file_paths": [TEXT],
    "duration": {"nanoseconds": COUNT}, "starting_time": {"nanoseconds_since_epoch": COUNT},
    "message_count": COUNT, "topics_with_message_count": [_TOPIC],
    "?compression_format": TEXT_OR_NULL, "?compression_mode": TEXT, "?files": [_FILE],
    "?custom_data": MAPPING_OR_NULL, "?ros_distro": TEXT_OR_NULL,
}
ROOT_KEY = "rosbag2_bagfile_information"


class MetadataError(ValueError):
    """metadata.yaml is not rosbag2 metadata; the message names the file and the field."""


def check_metadata(path: Path) -> dict[str, Any]:
    """The parsed ``rosbag2_bagfile_information`` of ``path``, or a MetadataError naming file and field."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        size = path.stat().st_size
        if size > MAX_METADATA_BYTES:
            raise MetadataError(f"{path}: {size} bytes, more than the {MAX_METADATA_BYTES} a rosbag2 metadata.yaml "
                                "may have here")
        data = YAML(typ="safe").load(path.read_bytes())
    except (OSError, YAMLError, UnicodeDecodeError, RecursionError) as err:
        raise MetadataError(f"{path}: not readable as YAML: {type(err).__name__}: {err}") from None
    if not isinstance(data, dict):
        raise MetadataError(f"{path}: expected a mapping with key {ROOT_KEY}, got {type(data).__name__}")
    if ROOT_KEY not in data:
        raise MetadataError(f"{path}: missing field {ROOT_KEY} (keys: {sorted(map(str, data))})")
    info = data[ROOT_KEY]
    _check(path, ROOT_KEY, info, SCHEMA)
    return info


def _check(path: Path, where: str, value: Any, spec: Any) -> None:
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            raise _wrong(path, where, "a mapping", value)
        for key, sub in spec.items():
            name = key.lstrip("?")
            if name in value:
                _check(path, f"{where}.{name}", value[name], sub)
            elif not key.startswith("?"):
                raise MetadataError(f"{path}: field {where}.{name} is missing")
    elif isinstance(spec, list):
        if not isinstance(value, list):
            raise _wrong(path, where, "a list", value)
        for i, item in enumerate(value):
            _check(path, f"{where}[{i}]", item, spec[0])
    elif not spec[1](value):
        raise _wrong(path, where, spec[0], value)


def _wrong(path: Path, where: str, what: str, value: Any) -> MetadataError:
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return MetadataError(f"{path}: field {where} must be {what}, got {type(value).__name__} {shown}")
