"""Reader fuzz (issue 22): damaged bags and Replicator files, cut and overwritten at many points.

Every case ends in an error of dann_ros's own (BagError, ReplicatorFormatError) that names the
damaged file, or in frames that are skipped and counted (a bag read that stops early says so in
``DecodeStats.read_errors``); never in another exception type, and `dann-ros eval-bag` never
prints a traceback. Small real inputs: bags written with rosbags (two MCAP chunks), a Replicator
folder rendered by dann_ros.demo_data.synth. Run with ``-s`` for the case counts.
"""

from __future__ import annotations

import copy
import json
import shutil
import struct
import zlib
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from ruamel.yaml import YAML

from dann_ros.data.bags import BagError, DecodeStats, bag_info, iter_frames
from dann_ros.data.images import encode_compressed, rgb8_to_image_fields
from dann_ros.data.replicator import CropSpec, ReplicatorFormatError, frame_labels, iter_crops, scan
from dann_ros.demo_data.synth import SynthConfig, render_dataset
from test.data.test_bags import STORAGES, T0, TS, compressed_msg, image_msg, write_bag

BIG, SMALL, STRINGS = 8, 8, 3  # 256x256 rgb8 frames (~6 per 1 MiB MCAP chunk), small JPEGs, a non-image topic
TOTAL = BIG + SMALL
COUNTS: Counter = Counter()  # (group, outcome) -> cases


@pytest.fixture(scope="module", autouse=True)
def total_cases():
    yield
    crashes = sum(v for (_, outcome), v in COUNTS.items() if outcome == "crash")
    print(f"\n[reader fuzz] total: {sum(COUNTS.values())} cases, {crashes} ending in another exception")


def report(group: str, outcomes: Counter) -> None:
    COUNTS.update({(group, k): v for k, v in outcomes.items()})
    print(f"\n[reader fuzz] {group}: {sum(outcomes.values())} cases, {dict(sorted(outcomes.items()))}")


@pytest.fixture(scope="module")
def bags(tmp_path_factory) -> dict[str, Path]:
    """One bag per storage: two camera topics (rgb8, JPEG) and a std_msgs/String topic, interleaved."""
    rng = np.random.default_rng(0)
    messages = []
    for i in range(BIG):
        image = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
        fields = rgb8_to_image_fields(image, "rgb8")
        messages.append(("/cam/raw", T0 + 10 * i, image_msg(T0 + 10 * i, "rgb8", *fields[:2], fields[3], fields[4])))
        small = np.full((24, 32, 3), 20 * i, np.uint8)
        messages.append(("/cam/jpeg", T0 + 10 * i + 1, compressed_msg(T0 + 10 * i + 1, "jpeg",
                                                                     encode_compressed(small, "jpeg"))))
        if i < STRINGS:
            messages.append(("/chatter", T0 + 10 * i + 2,
                             TS.types["std_msgs/msg/String"](data=f"hello {i}")))
    root = tmp_path_factory.mktemp("fuzz_bags")
    return {storage: write_bag(root / storage, storage, messages) for storage in STORAGES}


def storage_file(bag: Path) -> Path:
    (file,) = [p for p in bag.iterdir() if p.suffix in (".mcap", ".db3")]
    return file


def read_bag(path: Path) -> tuple[str, str]:
    """(outcome, problem): outcome is error / partial / whole; problem is "" when the case is fine."""
    try:
        info = bag_info(path)
        stats = DecodeStats()
        frames = list(iter_frames(path, stats=stats))
    except BagError as err:  # TopicNotFoundError too
        return "error", "" if str(path) in str(err) else f"error not naming {path}: {err}"
    except Exception as err:  # noqa: BLE001 - the point of the fuzz
        return "crash", f"{type(err).__name__}: {err}"
    if len(frames) > TOTAL or {f.topic for f in frames} - {"/cam/raw", "/cam/jpeg"}:
        return "wrong", f"read more than was written: {len(frames)} frames, topics {sorted(info.image_topics)}"
    if len(frames) == TOTAL and stats.ok:
        return "whole", ""
    # what the bag's index declares (metadata.yaml, the MCAP summary, the db3 rows; a truncated MCAP has
    # none): a reader that delivers fewer frames must say why
    expected = sum(n for _, n in info.image_topics.values()) or TOTAL
    if len(frames) + stats.skipped < expected and not stats.read_errors:
        return "partial", f"{expected - len(frames)} frames lost without a read error: {stats.summary()}"
    return "partial", ""


def cut_points(size: int) -> list[int]:
    fixed = [0, 1, 4, 8, 9, 13, 16, 24, 32, 64, 100, 128, 256, 512, 1024, 2048, 4096, 8192]
    return sorted({c for c in fixed + [size * k // 48 for k in range(1, 48)] +
                   [size - d for d in (1, 2, 8, 16, 64, 512, 4096)] if 0 <= c < size})


def run_cases(cases, group: str) -> None:
    outcomes, problems = Counter(), []
    for label, path in cases:
        outcome, problem = read_bag(path)
        outcomes[outcome] += 1
        if problem:
            problems.append(f"{label}: {problem}")
    report(group, outcomes)
    assert not problems, f"{len(problems)} of {sum(outcomes.values())} cases:\n" + "\n".join(problems[:15])


def damaged_copies(bags: dict[str, Path], work: Path, damage):
    """(label, path) per case: ``damage(data)`` yields (label, new bytes) for each storage file, read
    both as the bag folder (metadata.yaml beside it) and as the bare storage file."""
    for storage, bag in bags.items():
        original = storage_file(bag)
        data = original.read_bytes()
        folder = work / f"{storage}_bag"
        shutil.copytree(bag, folder)
        inner, bare = storage_file(folder), work / f"bare{original.suffix}"
        for label, damaged in damage(data):
            for target, form in ((inner, "folder"), (bare, "bare")):
                for stale in target.parent.glob(f"{target.name}-*"):  # sqlite's -journal/-wal of an earlier case
                    stale.unlink()
                target.write_bytes(damaged)
                yield f"{storage} {form} {label}", folder if form == "folder" else bare
            inner.write_bytes(data)


def test_truncated_bags_end_in_a_named_error_or_counted_frames(bags, tmp_path):
    def cuts(data):
        for cut in cut_points(len(data)):
            yield f"cut at {cut}/{len(data)}", data[:cut]

    run_cases(damaged_copies(bags, tmp_path, cuts), "truncated .mcap/.db3 (folder and bare file)")


def test_overwritten_bytes_end_in_a_named_error_or_counted_frames(bags, tmp_path):
    rng = np.random.default_rng(22)

    def overwrite(data):
        for k in range(24):  # a third each in the headers, the summary/footer (MCAP) or last pages, anywhere
            low, high = [(0, 4096), (len(data) - 4096, len(data) - 16), (0, len(data) - 16)][k % 3]
            at = int(rng.integers(low, high))
            junk = bytes(rng.integers(0, 256, 16, dtype=np.uint8)) if k % 2 else b"\xff" * 16
            yield f"16 bytes at {at}", data[:at] + junk + data[at + 16:]

    run_cases(damaged_copies(bags, tmp_path, overwrite), "overwritten bytes in .mcap/.db3")


BAD_VALUES = ("abc", [1], None, -1)  # a string, a list, null, a negative number: every field gets each


def _field_paths(node, prefix=()):
    if prefix:
        yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _field_paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _field_paths(v, prefix + (i,))


def test_metadata_of_every_wrong_type_ends_in_a_named_error(bags, tmp_path):
    yaml = YAML(typ="safe")

    def cases():
        for storage, bag in bags.items():
            folder = tmp_path / storage
            shutil.copytree(bag, folder)
            text = (bag / "metadata.yaml").read_text()
            meta = yaml.load(text)
            for path in _field_paths(meta):
                for value in BAD_VALUES:
                    tree = copy.deepcopy(meta)
                    node = tree
                    for key in path[:-1]:
                        node = node[key]
                    node[path[-1]] = value
                    (folder / "metadata.yaml").write_text(json.dumps(tree))  # JSON is YAML (and fast to write)
                    yield f"{storage} {'.'.join(map(str, path))} = {value!r}", folder
            for k in (0, 10, len(text) // 2, len(text) - 5):  # cut short
                (folder / "metadata.yaml").write_text(text[:k])
                yield f"{storage} metadata.yaml cut at {k}", folder

    run_cases(cases(), "metadata.yaml fields of the wrong type, or cut short")


# --------------------------------------------------------------------------- Replicator
@pytest.fixture(scope="module")
def renders(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fuzz_renders")
    render_dataset(root, SynthConfig(n_frames=3, width=64, height=48, digits_per_image=(1, 3), seed=4))
    (root / "synth_config.json").unlink()
    return root


def read_replicator(root: Path, damaged: Path, intact: dict[str, np.ndarray]) -> tuple[str, str]:
    """error (naming ``damaged``), skipped (its frame counted as unreadable) or whole (every image as
    ``intact`` holds it: a cut-off image decoded with grey rows would be a silent loss)."""
    try:
        frames = scan(root)
        crops = iter_crops(frames, CropSpec(min_size=1, max_occlusion=1.0))
        n = sum(1 for _ in crops)
        unreadable, altered = [], []
        for frame in frames:  # the detection and whole-frame readers load every frame
            try:
                if not np.array_equal(frame.load_rgb(), intact[frame.name]):
                    altered.append(frame.rgb_path.name)
            except ReplicatorFormatError as err:
                unreadable.append(str(err))
    except ReplicatorFormatError as err:
        return "error", "" if str(damaged) in str(err) else f"error not naming {damaged}: {err}"
    except Exception as err:  # noqa: BLE001
        return "crash", f"{type(err).__name__}: {err}"
    if altered:
        return "altered", f"decoded without an error but with other pixels: {altered}"
    if unreadable:
        named = all(str(damaged) in u for u in unreadable)
        counted = crops.stats.bad_frames == len(unreadable) == 1
        return "skipped", "" if named and counted else f"skipped {unreadable}, bad_frames {crops.stats.bad_frames}"
    return "whole", "" if n else "no crops"


def _png_declaring(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + \
        chunk(b"IEND", b"")


def _npy_declaring(shape: tuple[int, ...], descr) -> bytes:
    header = repr({"descr": descr, "fortran_order": False, "shape": shape}).encode()
    header += b" " * (63 - (len(header) + 10) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header


JPEG_OF: dict[int, bytes] = {}  # the JPEG version of frame 0001, set by replicator_damage


def replicator_damage(root: Path):
    """(label, file, bytes) per case; the file is put back after each."""
    name = "0001"
    rgb, npy = root / f"rgb_{name}.png", root / f"bounding_box_2d_tight_{name}.npy"
    labels = root / f"bounding_box_2d_tight_labels_{name}.json"
    for file in (rgb, npy, labels):
        data = file.read_bytes()
        step = max(1, len(data) // 60)
        for cut in sorted(set(range(0, len(data), step)) | {len(data) - 1, len(data) - 2}):
            yield f"{file.name} cut at {cut}/{len(data)}", file, data[:cut]
    bbox = np.load(npy)
    jpeg = JPEG_OF[0] = cv2.imencode(".jpg", cv2.imread(str(rgb)))[1].tobytes()
    for cut in range(0, len(jpeg), max(1, len(jpeg) // 40)):  # Replicator also writes rgb_<frame>.jpg
        yield f"rgb_{name}.jpg cut at {cut}/{len(jpeg)}", root / f"rgb_{name}.jpg", jpeg[:cut]
    crafted = {
        rgb: [("PNG declaring 30000x30000", _png_declaring(30000, 30000)), ("PNG of zeros", b"\x00" * 4096),
              ("a JSON file named .png", b'{"a": 1}')],
        npy: [("npy declaring 10^12 boxes", _npy_declaring((10**12,), bbox.dtype.descr) + b"\x00" * 48),
              ("npy declaring 10^8 boxes", _npy_declaring((10**8,), bbox.dtype.descr) + b"\x00" * 48),
              ("npy declaring a negative shape", _npy_declaring((-5,), bbox.dtype.descr)),
              ("npy of float32", _npy_bytes(np.zeros(3, np.float32))),
              ("npy holding objects", _npy_declaring((1,), "|O") + b"\x80\x04N."),
              ("npy with a wrong magic", b"\x93NUMPX" + npy.read_bytes()[6:])],
        labels: [("labels nested 100000 deep", b"[" * 100_000 + b"]" * 100_000), ("labels a list", b"[1, 2]"),
                 ("labels class a number", b'{"%d": {"class": 7}}' % int(bbox["semanticId"][0])),
                 ("labels not UTF-8", b'{"\xff\xfe": 1}'), ("labels empty", b"")],
    }
    for file, items in crafted.items():
        for label, data in items:
            yield f"{file.name}: {label}", file, data


def _npy_bytes(array: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def test_damaged_replicator_files_end_in_a_named_error_or_a_counted_frame(renders, tmp_path):
    root = tmp_path / "renders"
    shutil.copytree(renders, root)
    intact = {f.name: f.load_rgb() for f in scan(root)}
    outcomes, problems = Counter(), []
    for label, file, data in replicator_damage(root):
        original = file.read_bytes() if file.exists() else None
        expected = intact
        if file.suffix == ".jpg":  # the frame's render is a JPEG for these cases: lossy, so its own decode
            (root / "rgb_0001.png").rename(root / "rgb_0001.png.bak")
            file.write_bytes(JPEG_OF[0])
            expected = {**intact, "0001": cv2.cvtColor(cv2.imread(str(file)), cv2.COLOR_BGR2RGB)}
        file.write_bytes(data)
        outcome, problem = read_replicator(root, file, expected)
        outcomes[outcome] += 1
        if problem:
            problems.append(f"{label}: {problem}")
        if original is None:
            file.unlink()
            (root / "rgb_0001.png.bak").rename(root / "rgb_0001.png")
        else:
            file.write_bytes(original)
    report("Replicator annotator files cut or crafted", outcomes)
    assert not problems, f"{len(problems)} of {sum(outcomes.values())} cases:\n" + "\n".join(problems[:15])


def test_cut_frame_label_file_is_an_error_naming_it(renders, tmp_path):
    labels = tmp_path / "frames.json"
    text = json.dumps({"0000": "3", "0001": "5", "0002": "7"})
    outcomes, problems = Counter(), []
    for cut in range(len(text)):
        labels.write_text(text[:cut])
        try:
            frame_labels(renders, labels)
            outcomes["whole"] += 1
        except ReplicatorFormatError as err:
            outcomes["error"] += 1
            if str(labels) not in str(err):
                problems.append(f"cut at {cut}: {err}")
        except Exception as err:  # noqa: BLE001
            outcomes["crash"] += 1
            problems.append(f"cut at {cut}: {type(err).__name__}: {err}")
    report("whole-frame label file cut short", outcomes)
    assert not problems, "\n".join(problems[:15])


# --------------------------------------------------------------------------- the CLI
def test_eval_bag_on_damaged_bags_prints_no_traceback(bags, tiny_onnx, tmp_path, capsys):
    from dann_ros.cli import main

    mcap, db3 = storage_file(bags["mcap"]), storage_file(bags["sqlite3"])
    cases = {}
    for name, bag, cut in (("mcap_cut", bags["mcap"], 0.85), ("db3_cut", bags["sqlite3"], 0.5),
                           ("bare_mcap_cut", mcap, 0.3), ("bare_db3_head", db3, 0.001)):
        target = tmp_path / name / bag.name if bag.is_dir() else tmp_path / f"{name}{bag.suffix}"
        if bag.is_dir():
            shutil.copytree(bag, target)
            file = storage_file(target)
        else:
            file = shutil.copy(bag, target)
        data = Path(file).read_bytes()
        Path(file).write_bytes(data[:int(len(data) * cut)])
        cases[name] = target
    bad_meta = tmp_path / "bad_meta" / "bag"
    shutil.copytree(bags["mcap"], bad_meta)
    yaml = YAML(typ="safe")
    meta = yaml.load((bad_meta / "metadata.yaml").read_text())
    meta["rosbag2_bagfile_information"]["message_count"] = "nineteen"
    with (bad_meta / "metadata.yaml").open("w") as f:
        yaml.dump(meta, f)
    cases["bad_metadata"] = bad_meta
    codes, errors = {}, {}
    for name, bag in cases.items():
        rc = main(["eval-bag", "--model", str(tiny_onnx), "--bag", str(bag), "--no-labels", "--no-result-bag",
                   "--out", str(tmp_path / f"{name}.eval")])
        out = capsys.readouterr()
        codes[name], errors[name] = rc, out.err
        assert "Traceback" not in out.out + out.err, (name, out.err)
        if rc == 2:
            assert "dann-ros eval-bag: error:" in out.err and str(bag) in out.err, (name, out.err)
        else:
            assert rc == 0 and "partly evaluated" in out.out, (name, out.out)
    assert codes["bad_metadata"] == 2 and codes["mcap_cut"] == 0, errors  # a cut recording gives what it holds
    report("dann-ros eval-bag on damaged bags", Counter("error" if c else "partial" for c in codes.values()))
