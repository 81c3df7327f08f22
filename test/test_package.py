"""Packaging checks: package.xml, setup.py, requirements pins, the vision_msgs interface package.

Static checks parse the files (no install needed); checks of the installed result skip when
dann_ros / vision_msgs are not installed in the running interpreter's environment.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VISION_MSGS = ROOT / "msg" / "vision_msgs"

REQUIRED_EXEC_DEPENDS = {
    "rclpy", "sensor_msgs", "std_msgs", "vision_msgs", "diagnostic_msgs",
    "python3-numpy", "python3-opencv", "python3-yaml",
}
CONSOLE_SCRIPTS = {"dann-ros": "dann_ros.cli:main", "dann_node": "dann_ros.ros.node:main"}

# RIHS01 type hashes of vision_msgs 4.x as generated upstream (rosidl_generator_c
# *__description.c of ros-perception/vision_msgs, ROS 2 Iron and later). Equal hashes mean
# equal names, field names and field types, i.e. the same type on the wire and in discovery.
UPSTREAM_TYPE_HASHES = {
    "BoundingBox2D": "008eacbb0cf8f26e83795547bed013eec3675485ef386ec056d80eaaf1c1ce2f",
    "BoundingBox3D": "bbb73a65c163d7f9bb29009c7bde9f7faa576bd2d23299c4511d19230dab4698",
    "Classification": "f74db28d0eaef3afb78f48bf2161cd709a1383a0309d3454383b25be11345143",
    "Detection2D": "0d12b69df5c593b3455b7346fac8205437a7d4bcb09b9e0e0b2dde787ded38ea",
    "Detection2DArray": "214274120007f4a683866481336b70310268cfa107aebe9d594a6acf75bda968",
    "Detection3D": "ddd703be132ab0b69d33121f1bb034132bfbb3b0ac5f9fb1516005ba1c8a265b",
    "Detection3DArray": "793f5eab9595ac1c0da07873cc859db42eae51f0ee76056db8562515d830e018",
    "LabelInfo": "3d37df4015cdf660cc851c51897f2acd957e1ca6205ba0a99aebffb9406b0783",
    "ObjectHypothesis": "51da43cec11c01957a64d1e05a24acd18aae7745ec30b74348ad5f6d634f7f90",
    "ObjectHypothesisWithPose": "41c12344c0396c48b81df12467c192d99b2a0eb1463c5c37194e4223251c80bc",
    "Point2D": "eab0e83f44ab4de92ceaf76dd7d0e7638f2bdd1d16ffbe16c7a136c48e407247",
    "Pose2D": "b0b5d1d7b4c20dd4fcde3ed1d4b289a919290572007d67a97043814db25d3648",
    "VisionClass": "1e4a11f0fed50b5623cb8ff26ca0e37952a48a9c074d16f804b44e9164c2037a",
    "VisionInfo": "95d3116a17484ad91c9a2686e1d54890bbfc3ff6c6a2de137738c4950d45d284",
    # No upstream hash at hand for these two; their fields (header + boxes[]) match the
    # upstream generated structs, and the values are what rosidl computes for them.
    "BoundingBox2DArray": "2464e82838009386d371b523211c21c91d74d313fcdd6788223c531d621cf691",
    "BoundingBox3DArray": "a81938db9576b10c2eecd7c5a5da3eac496efd00221b25ed051dfbc81fb56da6",
}
VISION_MSG_TYPES = sorted(UPSTREAM_TYPE_HASHES)


# --- package.xml --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def package_xml() -> ET.Element:
    return ET.parse(ROOT / "package.xml").getroot()


def _texts(root: ET.Element, tag: str) -> set[str]:
    return {(e.text or "").strip() for e in root.findall(tag)}


def test_package_xml_identity(package_xml):
    assert package_xml.get("format") == "3"
    assert package_xml.findtext("name") == "dann_ros"
    assert package_xml.findtext("version") == "0.1.0"
    assert package_xml.findtext("license") == "Apache-2.0"
    assert (package_xml.findtext("description") or "").strip()
    maintainer = package_xml.find("maintainer")
    assert maintainer is not None and maintainer.get("email") and (maintainer.text or "").strip()
    assert package_xml.findtext("export/build_type") == "ament_python"


def test_package_xml_dependencies(package_xml):
    exec_depends = _texts(package_xml, "exec_depend") | _texts(package_xml, "depend")
    missing = REQUIRED_EXEC_DEPENDS - exec_depends
    assert not missing, f"package.xml lacks exec_depend {sorted(missing)}"
    assert "python3-pytest" in _texts(package_xml, "test_depend")


# --- setup.py / setup.cfg -----------------------------------------------------------------

@pytest.fixture(scope="module")
def setup_kwargs() -> dict:
    """Keyword arguments of the setup() call in setup.py, for the literal ones."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setup":
            kwargs = {}
            for kw in node.keywords:
                try:
                    kwargs[kw.arg] = ast.literal_eval(kw.value)
                except ValueError:
                    kwargs[kw.arg] = ast.unparse(kw.value)
            return kwargs
    raise AssertionError("setup.py has no setup(...) call")


def test_setup_py_metadata(setup_kwargs, package_xml):
    import dann_ros

    assert setup_kwargs["version"] == package_xml.findtext("version") == dann_ros.__version__
    assert "find_packages(exclude=['test*'])" in setup_kwargs["packages"]


def test_setup_py_entry_points_exist(setup_kwargs):
    scripts = dict(s.replace(" ", "").split("=", 1) for s in setup_kwargs["entry_points"]["console_scripts"])
    assert scripts == CONSOLE_SCRIPTS
    for target in scripts.values():
        module, func = target.split(":")
        source = ROOT.joinpath(*module.split(".")).with_suffix(".py")
        assert source.is_file(), f"entry point {target}: {source.relative_to(ROOT)} does not exist"
        tree = ast.parse(source.read_text())
        names = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
        assert func in names, f"entry point {target}: no top-level def {func}() in {source.name}"


def test_setup_py_data_files(setup_kwargs):
    data_files = setup_kwargs["data_files"]
    assert "('share/ament_index/resource_index/packages', ['resource/' + PACKAGE])" in data_files
    for what in ("['package.xml']", "files('launch/*.py')", "files('config/*')"):
        assert what in data_files
    assert (ROOT / "resource" / "dann_ros").is_file()


def test_torch_never_unpinned(setup_kwargs):
    assert not any(r.startswith("torch") for r in setup_kwargs["install_requires"])
    lines = [ln.split("#")[0].strip() for ln in (ROOT / "requirements.txt").read_text().splitlines()]
    torch_lines = sorted(ln for ln in lines if re.match(r"torch(vision)?\b", ln))
    assert torch_lines == ["torch==2.14.1", "torchvision==0.29.1"]


def test_setup_cfg_ament_script_dir():
    import configparser

    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(ROOT / "setup.cfg")
    assert cfg["develop"]["script_dir"] == "$base/lib/dann_ros"
    assert cfg["install"]["install_scripts"] == "$base/lib/dann_ros"
    assert cfg["tool:pytest"]["testpaths"].strip() == "test"


def test_python_sources_compile():
    """Linters-lite: every project .py file is valid Python for this interpreter."""
    bad = []
    for path in sorted([*ROOT.glob("dann_ros/**/*.py"), *ROOT.glob("test/**/*.py"),
                        *ROOT.glob("benchmarks/*.py"), *ROOT.glob("launch/*.py"), ROOT / "setup.py"]):
        try:
            compile(path.read_text(), str(path), "exec")
        except SyntaxError as e:
            bad.append(f"{path.relative_to(ROOT)}:{e.lineno}: {e.msg}")
    assert not bad, "\n".join(bad)


# --- the installed package ----------------------------------------------------------------

def _installed_dist():
    try:
        dist = importlib.metadata.distribution("dann_ros")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("dann_ros is not installed in this environment")
    return dist


def test_installed_console_scripts():
    dist = _installed_dist()
    eps = {ep.name: ep.value for ep in dist.entry_points if ep.group == "console_scripts"}
    assert eps == CONSOLE_SCRIPTS
    bindir = Path(sys.prefix) / "bin"
    if not (bindir / "dann-ros").exists():
        pytest.skip(f"dann_ros is installed elsewhere than {sys.prefix}")
    for name in CONSOLE_SCRIPTS:
        assert os.access(bindir / name, os.X_OK), f"{bindir / name} missing (pip install -e . put it elsewhere?)"


def test_installed_ament_resources():
    _installed_dist()
    prefix = Path(sys.prefix)
    if not (prefix / "bin" / "dann-ros").exists():
        pytest.skip(f"dann_ros is installed elsewhere than {sys.prefix}")
    assert (prefix / "share/ament_index/resource_index/packages/dann_ros").exists()
    assert (prefix / "share/dann_ros/package.xml").exists()


# --- vision_msgs ----------------------------------------------------------------------------

def test_vision_msgs_sources_complete():
    msgs = sorted(p.stem for p in (VISION_MSGS / "msg").glob("*.msg"))
    assert msgs == VISION_MSG_TYPES
    cmake = (VISION_MSGS / "CMakeLists.txt").read_text()
    for name in msgs:
        assert f"msg/{name}.msg" in cmake
    pkg = ET.parse(VISION_MSGS / "package.xml").getroot()
    assert pkg.findtext("name") == "vision_msgs"
    assert pkg.findtext("member_of_group") == "rosidl_interface_packages"
    license_text = (VISION_MSGS / "LICENSE").read_text()
    assert "ros-perception/vision_msgs" in license_text and "Apache License" in license_text


@pytest.fixture(scope="module")
def vision_msgs_share() -> Path:
    pytest.importorskip("vision_msgs.msg", reason="vision_msgs not installed (run make setup)")
    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p] + [sys.prefix]
    for prefix in prefixes:
        share = Path(prefix) / "share" / "vision_msgs"
        if (share / "msg" / "Detection2D.json").is_file():
            return share
    pytest.skip("vision_msgs type description files (share/vision_msgs/msg/*.json) not found")


@pytest.mark.parametrize("name", VISION_MSG_TYPES)
def test_vision_msgs_type_hash_matches_upstream(vision_msgs_share, name):
    desc = json.loads((vision_msgs_share / "msg" / f"{name}.json").read_text())
    hashes = {h["type_name"]: h["hash_string"] for h in desc["type_hashes"]}
    assert hashes[f"vision_msgs/msg/{name}"] == "RIHS01_" + UPSTREAM_TYPE_HASHES[name]


def test_vision_msgs_serialize_roundtrip():
    msg_mod = pytest.importorskip("vision_msgs.msg", reason="vision_msgs not installed (run make setup)")
    from rclpy.serialization import deserialize_message, serialize_message

    for name in VISION_MSG_TYPES:
        cls = getattr(msg_mod, name)
        assert deserialize_message(serialize_message(cls()), cls) == cls()

    hyp = msg_mod.ObjectHypothesisWithPose()
    hyp.hypothesis.class_id, hyp.hypothesis.score = "person", 0.75
    det = msg_mod.Detection2D(id="7", results=[hyp])
    det.bbox.center.position.x, det.bbox.center.theta, det.bbox.size_x, det.bbox.size_y = 10.5, 0.0, 4.0, 8.0
    arr = msg_mod.Detection2DArray(detections=[det])
    arr.header.frame_id = "camera"
    back = deserialize_message(serialize_message(arr), msg_mod.Detection2DArray)
    assert back == arr
    assert back.detections[0].results[0].hypothesis.class_id == "person"
