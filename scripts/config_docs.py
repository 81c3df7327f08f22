#!/usr/bin/env python3
"""Write docs/configuration.md from the configuration dataclasses and the node's parameter table.

Generated, so the page cannot drift from the code: test/test_docs.py fails while the file
differs from what this script writes. Types and defaults come from the dataclasses, the
descriptions from the comments beside (or directly above) each field and from the class
docstrings; the node's parameters from dann_ros.ros.params.PARAMETERS.

    .venv/bin/python scripts/config_docs.py           # rewrite docs/configuration.md
    .venv/bin/python scripts/config_docs.py --check   # exit 1 when it is stale
    .venv/bin/python scripts/config_docs.py --stdout  # print it
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import io
import re
import sys
import textwrap
import tokenize
import types
import typing
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(ROOT))

from dann_ros.ros.params import PARAMETERS  # noqa: E402
from dann_ros.train.config import TrainConfig  # noqa: E402

OUT = ROOT / "docs" / "configuration.md"
COMMAND = ".venv/bin/python scripts/config_docs.py"

# Prose for sections whose class has no docstring, keyed by the section's dotted path. A key that
# no longer names a section is an error (render() raises), so these cannot outlive their section.
NOTES = {
    "preprocess": "Input size, resize policy, channel order and normalisation, defined once "
                  "(`dann_ros/data/preprocess.py`). Normalisation is a layer inside the network, and the "
                  "whole record is written into the exported ONNX file's metadata: the Predictor, the node "
                  "and the evaluators read it back from the model, so it is never configured twice.",
    "model": "The feature extractor (`backbone`: a small CNN or any torchvision classification model by name, "
             "see [architecture.md](architecture.md#adding-a-backbone)), the detection neck, the bottleneck "
             "and head, and the domain discriminator.",
    "optim": "Optimiser and learning-rate schedule. `lr_schedule: dann` anneals as "
             "`lr / (1 + lr_alpha p)^lr_beta` with `p = step / lr_horizon`.",
    "train": "The training loop: length, batches, evaluation and checkpoint periods, device and precision, "
             "and where the prepared frames live (in RAM or streamed from the on-disk frame store).",
    "augment": "Source-image augmentation (never applied to target frames): `camera` is a camera model "
               "(contrast, brightness, gamma, blur, noise); `geometric` a random affine warp.",
}


def slug(heading: str) -> str:
    """GitHub's anchor for a heading (test/test_docs.py checks links with the same rule)."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|")


def prose(text: str) -> str:
    """Comment text as a table cell: ``<camera>`` would be read as an HTML tag."""
    return cell(text).replace("<", "&lt;")


def field_comments(cls: type) -> dict[str, str]:
    """Field name -> its comment: the lines directly above it, the one beside it, and that one's
    aligned continuation lines (``#`` followed by two or more spaces)."""
    source = textwrap.dedent(inspect.getsource(cls))
    lines = source.splitlines()
    comments: dict[int, str] = {}
    code_lines: set[int] = set()
    skip = (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
            tokenize.ENDMARKER)
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string
        elif tok.type not in skip:
            code_lines.update(range(tok.start[0], tok.end[0] + 1))

    def text(line: int) -> str:
        return comments[line].lstrip("#").strip()

    def comment_only(line: int) -> bool:
        return line in comments and line not in code_lines

    node = ast.parse(source).body[0]
    fields = [s for s in node.body if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)]
    out: dict[str, str] = {}
    claimed: set[int] = set()
    for stmt in fields:
        above: list[str] = []
        line = stmt.lineno - 1
        while line >= 1 and comment_only(line) and line not in claimed and lines[line - 1].strip():
            above.insert(0, text(line))
            line -= 1
        beside = [text(n) for n in range(stmt.lineno, stmt.end_lineno + 1) if n in comments and n in code_lines]
        if beside:
            line = stmt.end_lineno + 1
            while comment_only(line) and re.match(r"#\s{2,}", comments[line]):
                beside.append(text(line))
                claimed.add(line)
                line += 1
        out[stmt.target.id] = " ".join(above + beside)
    return out


def class_doc(cls: type) -> str:
    doc = cls.__doc__ or ""
    if doc.startswith(f"{cls.__name__}("):  # the dataclass-generated signature is no documentation
        return ""
    return " ".join(inspect.cleandoc(doc).split()).replace("``", "`")


def type_name(tp: Any, sections: dict[type, str]) -> str:
    origin = get_origin(tp)
    if tp is Any:
        return "any"
    if origin is Literal:
        return "one of " + ", ".join(f"`{fmt(v)}`" for v in get_args(tp))
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        name = " or ".join(type_name(a, sections) for a in args)
        return f"{name} or `null`" if len(args) < len(get_args(tp)) else name
    if origin in (tuple, list):
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            return f"list of {len(args)}: " + ", ".join(type_name(a, sections) for a in args)
        return f"list of {type_name(args[0], sections) if args else 'any'}"
    if dataclasses.is_dataclass(tp):
        section = sections[tp]
        return f"mapping, see [`{section}`](#{slug(section)})"
    names = {bool: "bool", int: "int", float: "float", str: "string", Path: "path"}
    return names.get(tp, getattr(tp, "__name__", str(tp)))


def fmt(value: Any) -> str:
    """A value as it would be written in YAML."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(fmt(v) for v in value) + "]"
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, str):
        return value if value else '""'
    return repr(value)


def default_of(f: dataclasses.Field, sections: dict[type, str]) -> str:
    if f.default is not dataclasses.MISSING:
        return f"`{fmt(f.default)}`"
    if f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
        if dataclasses.is_dataclass(value):
            return "its defaults"
        return f"`{fmt(value)}`"
    return "required"


def walk(cls: type, path: str, found: list[tuple[str, type]]) -> None:
    """Every dataclass below ``cls`` with its dotted path, depth first in field order."""
    found.append((path, cls))
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        for tp in (hints[f.name], *get_args(hints[f.name])):
            if dataclasses.is_dataclass(tp) and tp not in {c for _, c in found}:
                walk(tp, f"{path}.{f.name}" if path else f.name, found)


def section(path: str, cls: type, sections: dict[type, str]) -> list[str]:
    module = sys.modules[cls.__module__].__file__
    rel = Path(module).resolve().relative_to(ROOT).as_posix()
    title = path or "top level"
    out = [f"### {title}", "", f"`{cls.__name__}` in [{rel}](../{rel}).", ""]
    doc = class_doc(cls) or NOTES.get(path, "")
    if doc:
        out += [doc, ""]
    hints = typing.get_type_hints(cls)
    comments = field_comments(cls)
    out += ["| key | type | default | description |", "|---|---|---|---|"]
    for f in dataclasses.fields(cls):
        key = f"{path}.{f.name}" if path else f.name
        out.append(f"| `{key}` | {cell(type_name(hints[f.name], sections))} | {cell(default_of(f, sections))} | "
                   f"{prose(comments.get(f.name, ''))} |")
    return out + [""]


def node_type(default: Any) -> str:
    if isinstance(default, list):
        return f"list of {node_type(default[0]) if default else 'string'}"
    return {bool: "bool", int: "int", float: "float", str: "string"}[type(default)]


def render() -> str:
    found: list[tuple[str, type]] = []
    walk(TrainConfig, "", found)
    sections = {cls: path or "top level" for path, cls in found}
    stale = sorted(set(NOTES) - {p for p, _ in found})
    if stale:
        raise SystemExit(f"scripts/config_docs.py: NOTES names sections that no longer exist: {stale}")
    out = [
        "# Configuration reference",
        "",
        "<!-- Generated by scripts/config_docs.py from the dataclasses; do not edit by hand. -->",
        "Generated from the code; do not edit by hand. After adding or changing a configuration key or a node",
        "parameter, regenerate it with one command (`test/test_docs.py` fails while this page is stale):",
        "",
        "```bash",
        COMMAND,
        "```",
        "",
        "- [Training YAML](#training-yaml)",
        *(f"  - [{p or 'top level'}](#{slug(p or 'top level')})" for p, _ in found),
        "- [Node parameters](#node-parameters)",
        "",
        "## Training YAML",
        "",
        "What `dann-ros train --config` (and `dann-ros demo`) reads; examples: "
        "[config/train_demo.yaml](../config/train_demo.yaml) (classification) and "
        "[config/train_detection_demo.yaml](../config/train_detection_demo.yaml) (detection). "
        "The YAML is validated once into frozen dataclasses: an unknown key, a value of the wrong type or "
        "out of range is an error naming the key (`train.steps`). Paths are relative to the directory the "
        "command runs in. `dann-ros train` overrides `seed`, `output_dir`, `adaptation.method` and "
        "`train.steps` with `--seed`, `--output-dir`, `--adaptation` and `--steps`. "
        "What the options do, and what they measured: [training.md](training.md), [results.md](results.md).",
        "",
    ]
    for path, cls in found:
        out += section(path, cls, sections)
    out += [
        "## Node parameters",
        "",
        "ROS parameters of `dann_node` ([dann_ros/ros/params.py](../dann_ros/ros/params.py)), read at every "
        "*configure* transition (with `autostart`, at start): a change applies at the next configure. "
        "[config/dann_ros.yaml](../config/dann_ros.yaml) is the default parameters file, with a longer "
        "comment on each; topics, QoS and diagnostics: [node.md](node.md).",
        "",
        "| parameter | type | default | description |",
        "|---|---|---|---|",
    ]
    for name, (default, description) in PARAMETERS.items():
        out.append(f"| `{name}` | {node_type(default)} | `{cell(fmt(default))}` | {prose(description)} |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="exit 1 when docs/configuration.md is stale")
    mode.add_argument("--stdout", action="store_true", help="print the page instead of writing it")
    args = parser.parse_args(argv)
    text = render()
    shown = OUT.relative_to(ROOT) if OUT.is_relative_to(ROOT) else OUT
    if args.stdout:
        sys.stdout.write(text)
        return 0
    if args.check:
        current = OUT.read_text() if OUT.exists() else ""
        if current != text:
            print(f"{shown} is stale; run: {COMMAND}", file=sys.stderr)
            return 1
        return 0
    tmp = OUT.with_name(f".{OUT.name}.tmp")
    tmp.write_text(text)
    tmp.replace(OUT)
    print(f"wrote {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
