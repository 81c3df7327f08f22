"""The package reads data -> model -> train -> export -> runtime -> ros -> evaluation: no module
imports from a folder later in that chain (checked on the source, imports inside functions too)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ORDER = ("data", "model", "train", "export", "runtime", "ros", "evaluation")
# Known imports up the chain: none left (issue 10 moved detection mAP to model/, load_model to
# export/checkpoint_model.py). Nothing may be added here.
KNOWN: set[tuple[str, str]] = set()


def imports_up_the_chain(root: Path = ROOT) -> set[tuple[str, str]]:
    found = set()
    for file in (root / "dann_ros").rglob("*.py"):
        layer = file.relative_to(root / "dann_ros").parts[0]
        if layer not in ORDER:
            continue
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules = [node.module]
            elif isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            else:
                continue
            for module in modules:
                parts = module.split(".")
                if parts[0] == "dann_ros" and len(parts) > 1 and parts[1] in ORDER and \
                        ORDER.index(parts[1]) > ORDER.index(layer):
                    found.add((file.relative_to(root).as_posix(), module))
    return found


def test_no_import_up_the_chain():
    assert imports_up_the_chain() <= KNOWN


def test_the_check_sees_an_import_up_the_chain(tmp_path):
    fake = tmp_path / "dann_ros" / "data"
    fake.mkdir(parents=True)
    (fake / "x.py").write_text("import dann_ros.data.images\n\n\ndef f():\n"
                               "    from dann_ros.ros.topics import camera_topics\n")
    assert imports_up_the_chain(tmp_path) == {("dann_ros/data/x.py", "dann_ros.ros.topics")}
