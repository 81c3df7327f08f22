"""The node's topic names are written once, in dann_ros/ros/names.py: the node, eval-bag's result bag,
replay, the benchmarks and the tests take them from there (checked on the source)."""

from __future__ import annotations

import ast
from pathlib import Path

from dann_ros.ros import names

ROOT = Path(__file__).resolve().parents[2]
NAMES = {names.LABEL_INFO, names.OVERLAY, names.DIAGNOSTICS}


def literal_uses(root: Path = ROOT) -> list[str]:
    """``file:line`` of every string constant (f-string parts included) that is one of the names or ends
    in ``/<name>``, outside names.py."""
    found = []
    for folder in ("dann_ros", "test", "benchmarks", "scripts", "launch"):
        for file in sorted((root / folder).rglob("*.py")):
            if file == root / "dann_ros" / "ros" / "names.py":
                continue
            for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and \
                        any(node.value == n or node.value.endswith("/" + n.lstrip("/")) for n in NAMES):
                    found.append(f"{file.relative_to(root)}:{node.lineno}")
    return found


def test_topic_names_are_written_once():
    assert literal_uses() == []


def test_the_check_sees_a_literal(tmp_path):
    (tmp_path / "dann_ros").mkdir()
    source = 'a = "/diagnostics"\nb = f"{ns}/label_info"\nc = "overlays published"\n'
    (tmp_path / "dann_ros" / "x.py").write_text(source)
    assert literal_uses(tmp_path) == ["dann_ros/x.py:1", "dann_ros/x.py:2"]
