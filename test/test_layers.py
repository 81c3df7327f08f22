"""The package reads base -> data -> demo_data -> model -> train -> export -> runtime -> ros -> evaluation -> app,
and its import graph has no circle.

Checked on the source (AST) of every module, top-level ones included: imports at module level, inside
functions and under ``if TYPE_CHECKING``, ``importlib.import_module("...")`` with a literal name, and the
module strings registries keep (``"dann_ros.train.tasks.detection:DetectionTraining"``). A module that
imports by a computed name must keep the names it may import as such strings, or the check fails: an
import it cannot see is an edge it cannot check."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "dann_ros"
# base: imported by every layer, imports no layer; app: the entry points over all layers, imported by none.
BASE = ("__init__", "atomic_io", "cuda", "paths", "typed_config")
APP = ("cli", "demo")
ORDER = ("base", "data", "demo_data", "model", "train", "export", "runtime", "ros", "evaluation", "app")
# Circles through a task registry, left to the registry's rework (issue 23: an entry module imports its
# interface from the package that looks it up; the fix moves the interface into a module of its own).
# Nothing may be added here; test_known_circles_are_still_there makes the list shrink as they go.
KNOWN_CIRCLES: set[frozenset[str]] = set()  # evaluation/tasks' circle went with its interface moving to base.py
MODULE_STRING = re.compile(r"^[A-Za-z_]\w*(\.\w+)+(:\w+)?$")


def modules(root: Path = ROOT, package: str = PACKAGE) -> dict[str, Path]:
    """Dotted name -> file, for every .py file under ``root/package``."""
    found = {}
    for file in sorted((root / package).rglob("*.py")):
        parts = file.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = file
    return found


def layer_of(module: str, package: str = PACKAGE) -> str | None:
    parts = module.split(".")
    if len(parts) == 1 or (len(parts) == 2 and parts[1] in BASE):
        return "base"
    if len(parts) == 2 and parts[1] in APP:
        return "app"
    return parts[1] if parts[1] in ORDER else None


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """The module a dotted name refers to: itself, or its longest prefix that is a module (``a.b.Name``)."""
    parts = name.split(".")
    while parts:
        if ".".join(parts) in known:
            return ".".join(parts)
        parts.pop()
    return None


def _is_import_module(call: ast.Call) -> bool:
    f = call.func
    return (isinstance(f, ast.Attribute) and f.attr == "import_module") or \
        (isinstance(f, ast.Name) and f.id in ("import_module", "__import__"))


def imports_of(module: str, file: Path, known: dict[str, Path], package: str = PACKAGE) -> tuple[set[str], list[str]]:
    """(modules of ``package`` this one imports, by any of the ways above; computed imports it cannot see)."""
    tree = ast.parse(file.read_text(encoding="utf-8"), str(file))
    is_package = file.name == "__init__.py"
    edges: set[str] = set()
    strings: set[str] = set()
    dynamic: list[str] = []
    entry_loaders = _entry_loader_lines(tree)
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package this module is in
                anchor = module.split(".")
                anchor = anchor[:len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from pkg import sub`` imports the submodule pkg.sub where there is one
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        elif isinstance(node, ast.Call) and _is_import_module(node) and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                names = [arg.value]
            elif node.lineno not in entry_loaders:
                dynamic.append(f"{file}:{node.lineno}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and MODULE_STRING.match(node.value):
            if node.value.split(".")[0] == package:
                strings.add(node.value)
        for name in names:
            if name.split(".")[0] == package and (target := _resolve(name, known)):
                edges.add(target)
    # a module string is an import where it says "module:attr" (a registry entry), or names a module in a
    # module-level table or beside a computed import_module; other strings (metadata keys, a subprocess's
    # ``-m``) are not imports
    visible = False
    for s in strings:
        target = _resolve(s.split(":")[0], known)
        if target and (":" in s or (target == s and (dynamic or _in_a_table(tree, s)))):
            edges.add(target)
            visible = True
    return edges - {module}, dynamic if dynamic and not visible else []


def _in_a_table(tree: ast.Module, s: str) -> bool:
    """``s`` sits in a module-level dict, list or tuple: a registry."""
    for stmt in tree.body:
        if isinstance(stmt, (ast.Assign, ast.AnnAssign)) and isinstance(stmt.value, (ast.Dict, ast.List, ast.Tuple)):
            if any(isinstance(n, ast.Constant) and n.value == s for n in ast.walk(stmt.value)):
                return True
    return False


def _entry_loader_lines(tree: ast.Module) -> set[int]:
    """Lines of the import_module calls in functions that split a ``"module:attr"`` entry: a registry's lookup,
    whose entries are edges of the modules that write them."""
    lines = set()
    for f in ast.walk(tree):
        if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)) and any(
                isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr in ("split", "partition")
                and n.args and isinstance(n.args[0], ast.Constant) and n.args[0].value == ":" for n in ast.walk(f)):
            lines |= {n.lineno for n in ast.walk(f) if isinstance(n, ast.Call) and _is_import_module(n)}
    return lines


def import_graph(root: Path = ROOT, package: str = PACKAGE) -> tuple[dict[str, set[str]], list[str]]:
    """(module -> the package's modules it imports, computed imports the check cannot see)."""
    known = modules(root, package)
    graph, unseen = {}, []
    for module, file in known.items():
        graph[module], dynamic = imports_of(module, file, known, package)
        unseen += dynamic
    return graph, unseen


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component of more than one module (Tarjan), each as a closed path."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:  # recursive: the package's graph is a few hundred nodes deep at most
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(_path_through(sorted(component), graph))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _path_through(component: list[str], graph: dict[str, set[str]]) -> list[str]:
    """One circle inside a strongly connected component, for the message: a -> b -> ... -> a."""
    members = set(component)
    start = component[0]
    path, seen = [start], {start}
    while True:
        nxt = sorted(w for w in graph[path[-1]] if w in members)
        back = [w for w in nxt if w in seen]
        if back:
            return path[path.index(back[0]):] + [back[0]]
        path.append(nxt[0])
        seen.add(nxt[0])


def imports_up_the_chain(graph: dict[str, set[str]], package: str = PACKAGE) -> set[tuple[str, str]]:
    found = set()
    for module, targets in graph.items():
        here = layer_of(module, package)
        for target in targets:
            there = layer_of(target, package)
            if here and there and ORDER.index(there) > ORDER.index(here):
                found.add((module, target))
    return found


def test_every_module_has_a_layer():
    assert [m for m in modules() if layer_of(m) is None] == [], \
        f"place new top-level modules in BASE or APP, or folders in ORDER ({__file__})"


def test_every_import_is_visible():
    assert import_graph()[1] == [], "import_module with a computed name whose candidates are no module strings"


def test_no_import_circle():
    graph = import_graph()[0]
    assert [" -> ".join(c) for c in circles(graph)
            if not any(_component(c[0], graph) <= known for known in KNOWN_CIRCLES)] == []


def test_known_circles_are_still_there():
    graph = import_graph()[0]
    components = [_component(c[0], graph) for c in circles(graph)]
    gone = [sorted(known) for known in KNOWN_CIRCLES if not any(c <= known for c in components)]
    assert gone == [], "a known circle is gone: remove it from KNOWN_CIRCLES"


def _component(module: str, graph: dict[str, set[str]]) -> set[str]:
    """The modules on some circle through ``module``: reachable from it and reaching it."""
    def reach(start: str, edges: dict[str, set[str]]) -> set[str]:
        seen, todo = {start}, [start]
        while todo:
            for w in edges.get(todo.pop(), ()):
                if w not in seen:
                    seen.add(w)
                    todo.append(w)
        return seen
    reverse: dict[str, set[str]] = {}
    for v, ws in graph.items():
        for w in ws:
            reverse.setdefault(w, set()).add(v)
    return reach(module, graph) & reach(module, reverse)


def test_no_import_up_the_chain():
    assert imports_up_the_chain(import_graph()[0]) == set()


def test_the_graph_sees_every_kind_of_import():
    """Spot checks on the real package (the fake packages below check registry strings)."""
    graph = import_graph()[0]
    assert "dann_ros.evaluation.replay_options" in graph["dann_ros.evaluation.replay_ros"]  # if TYPE_CHECKING
    assert "dann_ros.train.trainer" in graph["dann_ros.cli"]  # inside a function
    assert "dann_ros.evaluation.html" in graph["dann_ros.evaluation.tasks.base"]  # from package import submodule
    assert layer_of("dann_ros.atomic_io") == "base" and layer_of("dann_ros.demo") == "app"
    assert layer_of("dann_ros.demo_data.synth") == "demo_data"  # above data: no reader imports the demo's makers


def _fake_package(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / "dann_ros" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for folder in {p.parent for p in (root / "dann_ros").rglob("*.py")}:
        (folder / "__init__.py").touch()


def test_the_check_fails_on_a_planted_circle(tmp_path):
    _fake_package(tmp_path, {
        "data/a.py": "import dann_ros.data.b\n",
        "data/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from dann_ros.data.c import C\n",
        "data/c.py": "def f():\n    from dann_ros.data import a\n",  # inside a function, `from pkg import mod`
        "data/d.py": "import dann_ros.data.a\n",  # imports into the circle, is not part of it
    })
    graph, unseen = import_graph(tmp_path)
    assert unseen == []
    assert circles(graph) == [["dann_ros.data.a", "dann_ros.data.b", "dann_ros.data.c", "dann_ros.data.a"]]


def test_the_check_sees_a_circle_through_a_registry_string(tmp_path):
    _fake_package(tmp_path, {
        "train/tasks/__init__.py": 'import importlib\n_TASKS = {"x": "dann_ros.train.tasks.x:X"}\n\n\n'
                                   'def get(n):\n    m, c = _TASKS[n].split(":")\n'
                                   '    return getattr(importlib.import_module(m), c)\n',
        "train/tasks/x.py": "from dann_ros.train.tasks import get\n",
        "train/y.py": 'import importlib\nM = importlib.import_module("dann_ros.train.z")\n',
        "train/z.py": "import dann_ros.train.y\n",
        "train/hidden.py": "import importlib\n\n\ndef f(n):\n    return importlib.import_module(n)\n",
    })
    graph, unseen = import_graph(tmp_path)
    assert sorted(circles(graph)) == [["dann_ros.train.tasks", "dann_ros.train.tasks.x", "dann_ros.train.tasks"],
                                      ["dann_ros.train.y", "dann_ros.train.z", "dann_ros.train.y"]]
    assert len(unseen) == 1 and unseen[0].endswith("hidden.py:5")


def test_the_check_sees_an_import_up_the_chain(tmp_path):
    _fake_package(tmp_path, {
        "data/x.py": "import dann_ros.data.images\nimport dann_ros.paths\n\n\ndef f():\n"
                     "    from dann_ros.ros.topics import camera_topics\n",
        "data/images.py": "", "ros/topics.py": "", "paths.py": "from dann_ros import cli\n", "cli.py": "",
    })
    assert imports_up_the_chain(import_graph(tmp_path)[0]) == {("dann_ros.data.x", "dann_ros.ros.topics"),
                                                              ("dann_ros.paths", "dann_ros.cli")}
