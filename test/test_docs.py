"""The documentation cannot drift from the code: docs/configuration.md is what scripts/config_docs.py
writes from the dataclasses, and README.md and docs/*.md name only links, `dann-ros` commands and
options, make targets, repository paths, modules and configuration keys that exist."""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import re
import sys
import typing
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
SPAN = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"(?<!!)\[[^\]\n]*\]\(([^)\s]+)\)")
FILE_EXT = re.compile(r"\.(pt|onnx|npz|engine|plan|json|yaml|yml|html|py|db3|mcap|xml|txt|sh|avi|png|bag|md)$")


def _load_generator():
    spec = importlib.util.spec_from_file_location("config_docs", ROOT / "scripts" / "config_docs.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("config_docs", module)
    spec.loader.exec_module(module)
    return module


config_docs = _load_generator()


def _prose(text: str) -> str:
    return FENCE.sub("", text)


def _code(text: str) -> list[str]:
    """Inline code spans and the lines of fenced blocks."""
    lines = [line for block in FENCE.findall(text) for line in block.splitlines()]
    return lines + SPAN.findall(_prose(text))


def _anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in _prose(page.read_text()).splitlines():
        m = re.match(r"#{1,6}\s+(.*)", line)
        if m:
            base = config_docs.slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    return out


def _rel(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


# -- the generated page ------------------------------------------------------------------------

def test_configuration_page_is_current():
    page = ROOT / "docs" / "configuration.md"
    assert page.read_text() == config_docs.render(), \
        f"docs/configuration.md is stale: run `{config_docs.COMMAND}` and commit the result"


def _leaf_keys(cls: type, prefix: str = "") -> set[str]:
    keys = set()
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        keys.add(key)
        for tp in (hints[f.name], *typing.get_args(hints[f.name])):
            if dataclasses.is_dataclass(tp):
                keys |= _leaf_keys(tp, f"{key}.")
    return keys


def test_the_page_lists_every_key_and_parameter():
    from dann_ros.ros.params import PARAMETERS
    from dann_ros.train.config import TrainConfig

    rows = set(re.findall(r"^\| `([\w.]+)` \|", config_docs.render(), re.M))
    assert _leaf_keys(TrainConfig) | set(PARAMETERS) == rows


def test_field_comments_are_read_above_beside_and_continued(tmp_path):
    (tmp_path / "doc_probe.py").write_text(
        "from dataclasses import dataclass\n\n\n"
        "@dataclass\n"
        "class Probe:\n"
        '    """Doc."""\n\n'
        "    plain: int = 1\n"
        "    beside: int = 2  # said beside\n"
        "    wrapped: tuple = ()  # first half,\n"
        "    #                      second half\n"
        "    # said above, line one;\n"
        "    # line two\n"
        "    above: str = '#not a comment'\n"
        "    # a note after a blank line is still above the next field\n"
        "    last: float = 0.5  # and beside\n")
    sys.path.insert(0, str(tmp_path))
    try:
        from doc_probe import Probe
    finally:
        sys.path.remove(str(tmp_path))
    assert config_docs.field_comments(Probe) == {
        "plain": "", "beside": "said beside", "wrapped": "first half, second half",
        "above": "said above, line one; line two",
        "last": "a note after a blank line is still above the next field and beside"}


def test_check_mode_fails_on_a_stale_page(tmp_path, monkeypatch, capsys):
    stale = tmp_path / "configuration.md"
    stale.write_text(config_docs.render().replace("| `train.steps` |", "| `train.stepz` |"))
    monkeypatch.setattr(config_docs, "OUT", stale)
    assert config_docs.main(["--check"]) == 1
    assert "is stale; run: .venv/bin/python scripts/config_docs.py" in capsys.readouterr().err
    assert config_docs.main([]) == 0 and config_docs.main(["--check"]) == 0


# -- links -------------------------------------------------------------------------------------

def link_errors(page: Path) -> list[str]:
    broken = []
    for target in LINK.findall(_prose(page.read_text())):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target}: no heading #{anchor} in {dest.name}")
    return broken


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_relative_links_resolve(page):
    assert not link_errors(page), f"{_rel(page)}: " + "; ".join(link_errors(page))


def test_the_link_check_sees_a_missing_file_and_heading(tmp_path):
    (tmp_path / "other.md").write_text("# Other\n\n## Two words\n\n```\n# not a heading\n```\n")
    page = tmp_path / "page.md"
    page.write_text("[a](other.md#two-words) [b](other.md#not-a-heading) [c](gone.md) [d](#here) "
                    "[e](https://example.org/x)\n\n## Here\n")
    assert link_errors(page) == ["other.md#not-a-heading: no heading #not-a-heading in other.md",
                                 "gone.md: no such file"]


# -- commands, targets, paths, modules, keys ----------------------------------------------------

def _subcommands() -> dict[str, set[str]]:
    from dann_ros.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {name: {o for a in p._actions for o in a.option_strings} for name, p in sub.choices.items()}


def documented_command_errors(text: str, commands: dict[str, set[str]]) -> list[str]:
    errors = []
    for code in _code(text):
        for m in re.finditer(r"dann-ros\s+([a-z][\w-]*)((?:(?!dann-ros).)*)", code):
            name, rest = m.groups()
            if name not in commands:
                errors.append(f"`dann-ros {name}`: no such subcommand")
                continue
            errors += [f"`dann-ros {name} {opt}`: no such option" for opt in re.findall(r"(?<!\S)(--[\w-]+)", rest)
                       if opt not in commands[name]]
    return errors


def test_the_command_check_sees_a_wrong_subcommand_and_option():
    commands = {"train": {"--config", "--seed"}}
    assert documented_command_errors("`dann-ros train --config x --sed 1` and\n```\ndann-ros trian\n```\n",
                                     commands) == ["`dann-ros trian`: no such subcommand",
                                                   "`dann-ros train --sed`: no such option"]


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_documented_commands_exist(page):
    assert not documented_command_errors(page.read_text(), _subcommands())


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_documented_make_targets_exist(page):
    targets = set(re.findall(r"^([a-z][\w-]*):", (ROOT / "Makefile").read_text(), re.M))
    used = {t for code in _code(page.read_text()) for t in re.findall(r"(?<![\w-])make ([a-z][\w-]*)", code)}
    assert used <= targets, f"{_rel(page)}: make targets that do not exist: {sorted(used - targets)}"


PATH = re.compile(r"(?<![\w./-])((?:dann_ros|config|scripts|benchmarks|test|launch|docs|msg|\.ci)/[\w./<>*-]*)")
IN_PACKAGE = re.compile(r"(?<![\w./-])((?:data|demo_data|model|train|export|runtime|ros|evaluation)/[\w./]*(?:\.py|/))")
MODULE = re.compile(r"(?<![\w./-])(dann_ros(?:\.\w+)+)(?![\w/])")


def _module_errors(dotted: str) -> list[str]:
    parts = dotted.split(".")
    for n in range(len(parts), 0, -1):
        base = ROOT.joinpath(*parts[:n])
        source = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
        if source.is_file():
            break
    else:
        return [f"{dotted}: no such module"]
    rest = parts[n:]
    if not rest:
        return []
    name = rest[0]
    if re.search(rf"^\s*(def|class)\s+{name}\b|^{name}\s*[:=]|^\s*from \S+ import .*\b{name}\b",
                 source.read_text(), re.M):
        return []
    return [f"{dotted}: {source.relative_to(ROOT).as_posix()} defines no {name!r}"]


def path_errors(text: str) -> list[str]:
    errors = []
    for path in set(PATH.findall(text)):
        path = path.rstrip(".")
        if "<" in path or "*" in path:
            continue
        if not (ROOT / path).exists():
            errors.append(f"{path}: no such file")
    for path in set(IN_PACKAGE.findall(text)):  # a layer-relative path: dann_ros/<layer>/...
        if not (ROOT / "dann_ros" / path).exists():
            errors.append(f"{path}: no such file under dann_ros/")
    for dotted in set(MODULE.findall(text)):
        if not FILE_EXT.search(dotted):
            errors += _module_errors(dotted)
    return sorted(errors)


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_documented_paths_and_modules_exist(page):
    assert not path_errors(page.read_text()), f"{_rel(page)}: " + "; ".join(path_errors(page.read_text()))


def test_the_path_check_sees_missing_files_and_names():
    text = ("`dann_ros/train/config.py`, scripts/gone.sh, `dann_ros.train.config.TrainConfig`, "
            "`dann_ros.train.config.Gone`, dann_ros.gone, `dann_ros.launch.py`, test/<stage>/x.py, "
            "train/step.py, train/gone.py, model/adaptation/")
    assert path_errors(text) == ["dann_ros.gone: dann_ros/__init__.py defines no 'gone'",
                                 "dann_ros.train.config.Gone: dann_ros/train/config.py defines no 'Gone'",
                                 "scripts/gone.sh: no such file", "train/gone.py: no such file under dann_ros/"]


def _config_key_errors(text: str) -> list[str]:
    from dann_ros.train.config import TrainConfig

    keys = _leaf_keys(TrainConfig)
    sections = {k for k in keys if "." not in k and any(o.startswith(f"{k}.") for o in keys)}
    errors = []
    for span in SPAN.findall(_prose(text)):
        token = re.split(r"[\s:=,(]", span.strip(), maxsplit=1)[0]
        if "." not in token or token.split(".")[0] not in sections or FILE_EXT.search(token) \
                or re.search(r"[<*]", token):
            continue
        if token not in keys:
            errors.append(f"`{span}`: {token} is not a key of the training YAML")
    return errors


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_documented_config_keys_exist(page):
    assert not _config_key_errors(page.read_text()), _rel(page)


def test_the_key_check_sees_a_key_that_does_not_exist():
    assert _config_key_errors("`adaptation.target_losses.mcc_weight: 1.0`, `model.pt`, `adaptation.mcc_wieght`") == \
        ["`adaptation.mcc_wieght`: adaptation.mcc_wieght is not a key of the training YAML"]


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_documented_node_parameters_exist(page):
    from dann_ros.ros.params import PARAMETERS

    used = {p for code in _code(page.read_text()) for p in re.findall(r"-p (\w+):=", code)}
    assert used <= set(PARAMETERS), f"{_rel(page)}: unknown node parameters {sorted(used - set(PARAMETERS))}"


def test_node_page_lists_every_launch_argument():
    launch = (ROOT / "launch" / "dann_ros.launch.py").read_text()
    declared = set(re.findall(r'DeclareLaunchArgument\(\s*"(\w+)"', launch))
    listed = set(re.findall(r"^\| `(\w+)` \|", (ROOT / "docs" / "node.md").read_text(), re.M))
    assert declared and declared <= listed, f"docs/node.md lacks launch arguments {sorted(declared - listed)}"
    for page in PAGES:
        for code in _code(page.read_text()):
            if "dann_ros.launch.py" in code:
                used = set(re.findall(r"(\w+):=", code))
                assert used <= declared, f"{_rel(page)}: unknown launch arguments {sorted(used - declared)}"


def test_readme_stays_a_users_page():
    text = (ROOT / "README.md").read_text()
    assert "make demo" in text and "make test" in text  # the two commands (CI's .ci/run calls make test)
    assert len(text.splitlines()) <= 200, "README.md is the user's page: measurements go to docs/results.md"
    assert not re.search(r"\b[0-9a-f]{7,40}\b", _prose(text)), "README.md: no commit hashes"
