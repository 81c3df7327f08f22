"""The demo simulator writes exactly the BasicWriter layout, deterministically, with tight boxes."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from dann_ros.demo_data import synth
from dann_ros.data.replicator import BBOX_DTYPE
from dann_ros.demo_data.synth import (BOX_ALPHA, Randomisation, SynthConfig, add_synth_parser, find_digit_fonts,
                                 render_dataset, render_scene)

DIGITS = set("0123456789")


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_writes_exact_basicwriter_layout_and_dtypes(tmp_path):
    folder = render_dataset(tmp_path, SynthConfig(n_frames=3, seed=1))
    assert folder == tmp_path
    names = {p.name for p in tmp_path.iterdir()}
    expected = {"synth_config.json"}
    for i in range(3):
        expected |= {f"rgb_{i:04d}.png", f"bounding_box_2d_tight_{i:04d}.npy",
                     f"bounding_box_2d_tight_labels_{i:04d}.json", f"bounding_box_2d_tight_prim_paths_{i:04d}.json"}
    assert names == expected
    for i in range(3):
        rgba = cv2.imread(str(tmp_path / f"rgb_{i:04d}.png"), cv2.IMREAD_UNCHANGED)
        assert rgba.dtype == np.uint8 and rgba.shape == (64, 64, 4)
        assert (rgba[:, :, 3] == 255).all()
        boxes = np.load(tmp_path / f"bounding_box_2d_tight_{i:04d}.npy", allow_pickle=False)
        assert boxes.dtype == BBOX_DTYPE
        assert boxes.dtype.names == ("semanticId", "x_min", "y_min", "x_max", "y_max", "occlusionRatio")
        assert len(boxes) == 1  # single-digit scenes by default
        labels = json.loads((tmp_path / f"bounding_box_2d_tight_labels_{i:04d}.json").read_text())
        for row in boxes:
            assert labels[str(int(row["semanticId"]))]["class"] == str(int(row["semanticId"]))
            assert 0 <= row["x_min"] < row["x_max"] <= 63 and 0 <= row["y_min"] < row["y_max"] <= 63  # inclusive
        prims = json.loads((tmp_path / f"bounding_box_2d_tight_prim_paths_{i:04d}.json").read_text())
        assert len(prims) == len(boxes) and all(p.startswith("/World/") for p in prims)


def test_deterministic_per_seed_and_independent_of_workers(tmp_path):
    cfg = SynthConfig(n_frames=6, width=96, height=72, digits_per_image=(1, 3), seed=7)
    a = _files(render_dataset(tmp_path / "a", cfg))
    b = _files(render_dataset(tmp_path / "b", cfg, workers=2))
    c = _files(render_dataset(tmp_path / "c", SynthConfig(n_frames=6, width=96, height=72,
                                                          digits_per_image=(1, 3), seed=8)))
    a.pop("synth_config.json"), b.pop("synth_config.json"), c.pop("synth_config.json")
    assert a == b
    assert a["rgb_0000.png"] != c["rgb_0000.png"]


def test_camera_subfolder_and_refuses_to_mix_with_old_frames(tmp_path):
    cfg = SynthConfig(n_frames=2, camera="front")
    assert render_dataset(tmp_path, cfg) == tmp_path / "front"
    assert (tmp_path / "front" / "rgb_0001.png").is_file()
    with pytest.raises(FileExistsError, match="front"):
        render_dataset(tmp_path, cfg)
    render_dataset(tmp_path, SynthConfig(n_frames=1, camera="front"), overwrite=True)
    assert not (tmp_path / "front" / "rgb_0001.png").exists()


def test_an_interrupted_render_leaves_no_completion_stamp(tmp_path, monkeypatch):
    """The demo reuses a set whose synth_config.json matches: a render cut off must not look complete."""
    render_dataset(tmp_path, SynthConfig(n_frames=2))
    assert (tmp_path / "synth_config.json").is_file()

    def interrupted(job):
        raise KeyboardInterrupt

    monkeypatch.setattr(synth, "_render_range", interrupted)
    with pytest.raises(KeyboardInterrupt):
        render_dataset(tmp_path, SynthConfig(n_frames=3), overwrite=True)
    assert not (tmp_path / "synth_config.json").exists()


@pytest.fixture(scope="module")
def assets():
    return synth._Assets(find_digit_fonts(), seed=0)


def test_boxes_are_tight_around_visible_glyph_pixels(assets, monkeypatch):
    grey = 128.0

    def flat(rng, cfg, assets):
        return np.full((cfg.height, cfg.width, 3), grey, np.float32)

    monkeypatch.setattr(synth, "_background", flat)
    cfg = SynthConfig(width=120, height=96, digits_per_image=(1, 4), blur_sigma=(0, 0), noise_std=(0, 0),
                      illumination=0.0)
    n_boxes = 0
    for i in range(20):
        scene = render_scene(np.random.default_rng([0, 0, i]), cfg, assets)
        diff = np.abs(scene.rgb.astype(int) - int(grey)).max(axis=2)
        outside = np.ones(diff.shape, bool)
        for row, vis in zip(scene.boxes, scene.visible):
            x0, y0, x1, y1 = (int(row[k]) for k in ("x_min", "y_min", "x_max", "y_max"))
            n_boxes += 1
            ink = vis >= BOX_ALPHA
            # the box is exactly the extent of the visible ink, in inclusive pixel indices as BasicWriter writes ...
            ys, xs = np.nonzero(ink)
            assert (xs.min(), ys.min(), xs.max(), ys.max()) == (x0, y0, x1, y1)
            # ... and each of its four edges touches pixels that differ from the background
            for edge in (diff[y0, x0:x1 + 1], diff[y1, x0:x1 + 1], diff[y0:y1 + 1, x0], diff[y0:y1 + 1, x1]):
                assert edge.max() >= 8
            outside[y0:y1 + 1, x0:x1 + 1] = False
        # away from the boxes the image is background, apart from faint anti-aliased fringes
        assert np.mean(diff[outside] <= 1) > 0.95
        assert diff[outside].max() <= BOX_ALPHA * 255 + 2
    assert n_boxes >= 30


def test_occlusion_ratio_counts_pixels_hidden_by_later_digits(assets):
    cfg = SynthConfig(width=48, height=48, digits_per_image=(5, 5), digit_height=(30, 40), max_overlap=1.0)
    ratios = []
    for i in range(10):
        scene = render_scene(np.random.default_rng([3, 0, i]), cfg, assets)
        occ = scene.boxes["occlusionRatio"]
        assert ((occ >= 0) & (occ < 1)).all()
        assert occ[-1] == 0.0  # nothing is drawn on top of the last digit
        assert len(scene.classes) == len(scene.boxes) <= 5  # fully hidden digits are dropped
        ratios.extend(occ.tolist())
    assert max(ratios) > 0.3


def test_single_digit_near_centre_and_sized_to_image(assets):
    cfg = SynthConfig()
    for i in range(20):
        row = render_scene(np.random.default_rng([0, 0, i]), cfg, assets).boxes[0]
        cx, cy = (row["x_min"] + row["x_max"]) / 2, (row["y_min"] + row["y_max"]) / 2
        assert abs(cx - 32) < 14 and abs(cy - 32) < 14
        assert 20 <= row["y_max"] - row["y_min"] + 1 <= 64


def test_fonts_are_checked_by_rendering():
    names = {p.name for p in find_digit_fonts()}
    assert {"DejaVuSans.ttf", "DejaVuSerif.ttf", "cmr10.ttf", "STIXGeneral.ttf"} <= names
    # symbol / math-extension fonts map digits to other shapes or to nothing
    assert not names & {"cmsy10.ttf", "cmex10.ttf", "LastResortHE-Regular.ttf", "STIXSizOneSymReg.ttf",
                         "DejaVuSansDisplay.ttf"}
    assert len(names) == len(find_digit_fonts())  # no duplicates


@pytest.mark.parametrize("kwargs", [
    {"digits_per_image": (2, 1)}, {"width": 8}, {"n_frames": 0}, {"digit_height": (10, 100)},
    {"camera": "a/b"}, {"blur_sigma": (1.0, 0.5)}, {"randomisation": {"brightness": (0.5, 1.0)}},
])
def test_config_rejects_bad_values(kwargs):
    with pytest.raises(ValueError):
        SynthConfig(**kwargs)


def test_cli_subcommand(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_synth_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["synth", "--out", str(tmp_path), "--frames", "3", "--width", "80", "--height", "60",
                              "--digits-per-image", "1", "2", "--seed", "4", "--camera", "cam0"])
    assert args.func(args) == 0
    assert len(list((tmp_path / "cam0").glob("rgb_*.png"))) == 3
    meta = json.loads((tmp_path / "synth_config.json").read_text())
    assert meta["config"]["seed"] == 4 and meta["config"]["digits_per_image"] == [1, 2]


# --------------------------------------------------------------------------- domain randomisation

DET = dict(width=160, height=120, digits_per_image=(1, 4), digit_height=(12.0, 32.0), max_overlap=0.0)  # the demo's


@pytest.mark.parametrize("kwargs", [
    {"brightness": (1.2, 0.5)}, {"distractors": (-1, 2)}, {"jpeg_quality": (50, 101)}, {"colour_cast": 1.5},
    {"motion_blur_p": -0.1}, {"gamma": (0.0, 1.0)},
])
def test_randomisation_rejects_bad_values(kwargs):
    with pytest.raises(ValueError, match="randomisation"):
        Randomisation(**kwargs)


def test_randomisation_is_seeded_and_independent_of_workers(tmp_path):
    cfg = SynthConfig(n_frames=6, seed=7, randomisation=Randomisation(), **DET)
    a = _files(render_dataset(tmp_path / "a", cfg))
    b = _files(render_dataset(tmp_path / "b", cfg, workers=2))
    c = _files(render_dataset(tmp_path / "c", SynthConfig(n_frames=6, seed=8, randomisation=Randomisation(), **DET)))
    meta = json.loads(a.pop("synth_config.json"))
    assert meta["config"]["randomisation"]["brightness"] == [0.6, 1.3]
    b.pop("synth_config.json"), c.pop("synth_config.json")
    assert a == b
    assert all(a[f"rgb_{i:04d}.png"] != c[f"rgb_{i:04d}.png"] for i in range(6))


def test_randomisation_keeps_the_base_scene_and_boxes_stay_tight(assets):
    """Same seed on and off: the same digits in the same places; distractors can only hide ink, so a
    box on shrinks inside the box off, and it is still exactly the visible ink."""
    off, on = SynthConfig(**DET), SynthConfig(randomisation=Randomisation(distractors=(4, 8)), **DET)
    n_boxes, hidden = 0, 0
    for i in range(25):
        a = render_scene(np.random.default_rng([0, 0, i]), off, assets)
        b = render_scene(np.random.default_rng([0, 0, i]), on, assets)
        assert not np.array_equal(a.rgb, b.rgb)
        assert b.classes == a.classes  # nothing fully hidden: a distractor covers at most part of a digit
        for ra, rb, vis in zip(a.boxes, b.boxes, b.visible):
            assert ra["x_min"] <= rb["x_min"] <= rb["x_max"] <= ra["x_max"]
            assert ra["y_min"] <= rb["y_min"] <= rb["y_max"] <= ra["y_max"]
            ys, xs = np.nonzero(vis >= BOX_ALPHA)
            assert (xs.min(), ys.min(), xs.max(), ys.max()) == tuple(int(rb[k]) for k in ("x_min", "y_min", "x_max",
                                                                                        "y_max"))
            assert rb["occlusionRatio"] >= ra["occlusionRatio"]
            hidden += rb["occlusionRatio"] > ra["occlusionRatio"] + 0.01
            n_boxes += 1
    assert n_boxes >= 40 and hidden >= 3  # some digits are partly behind a distractor


def test_distractors_draw_outside_the_boxes(assets, monkeypatch):
    grey = 128.0
    monkeypatch.setattr(synth, "_background", lambda rng, cfg, assets: np.full((cfg.height, cfg.width, 3), grey,
                                                                                np.float32))
    plain = dict(blur_sigma=(0, 0), noise_std=(0, 0), illumination=0.0, **DET)
    only = Randomisation(background_collage=0.0, object_texture=0.0, distractors=(3, 3), brightness=(1, 1),
                         colour_cast=0.0, light_falloff=0.0, gamma=(1, 1), motion_blur_p=0.0, shot_noise=(0, 0),
                         jpeg_p=0.0)
    changed = []
    for cfg in (SynthConfig(**plain), SynthConfig(randomisation=only, **plain)):
        outside = []
        for i in range(10):
            scene = render_scene(np.random.default_rng([1, 0, i]), cfg, assets)
            mask = np.ones(scene.rgb.shape[:2], bool)
            for row in scene.boxes:
                mask[row["y_min"]:row["y_max"] + 1, row["x_min"]:row["x_max"] + 1] = False
            diff = np.abs(scene.rgb.astype(int) - int(grey)).max(axis=2)
            outside.append(np.mean(diff[mask] > 20))
        changed.append(np.mean(outside))
    assert changed[0] < 0.001 and changed[1] > 0.005  # the base scene draws nothing outside its boxes


def _frame_stats(rgb: np.ndarray) -> np.ndarray:
    """Mean luminance, contrast, colour cast (R-B), log sharpness, noise (high-pass energy) of one frame."""
    f = rgb.astype(np.float32)
    luma = f @ np.array([0.299, 0.587, 0.114], np.float32)
    lap = cv2.Laplacian(luma, cv2.CV_32F)
    return np.array([luma.mean(), luma.std(), (f[..., 0] - f[..., 2]).mean(), np.log(lap.var() + 1.0),
                     np.abs(luma - cv2.GaussianBlur(luma, (0, 0), 1.0)).mean()])


def test_randomisation_varies_the_images_more(assets):
    """Across frames, contrast, sharpness and noise spread wider with randomisation on, and frames hold
    more structure (the base scene already draws its background colour and brightness uniformly, so
    those spreads are not expected to grow: they must not shrink much either)."""
    stats = []
    for cfg in (SynthConfig(**DET), SynthConfig(randomisation=Randomisation(), **DET)):
        stats.append(np.array([_frame_stats(render_scene(np.random.default_rng([2, 0, i]), cfg, assets).rgb)
                               for i in range(60)]))
    off, on = (s.std(axis=0) for s in stats)
    assert (on[[1, 3, 4]] > 1.15 * off[[1, 3, 4]]).all(), (off, on)  # contrast, sharpness, noise
    assert (on[[0, 2]] > 0.7 * off[[0, 2]]).all(), (off, on)  # brightness, colour cast
    assert stats[1][:, 1].mean() > 1.3 * stats[0][:, 1].mean()  # more structure within a frame


def test_cli_randomise_flag(tmp_path):
    parser = argparse.ArgumentParser()
    add_synth_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["synth", "--out", str(tmp_path), "--frames", "2", "--randomise"])
    assert args.func(args) == 0
    meta = json.loads((tmp_path / "synth_config.json").read_text())
    assert meta["config"]["randomisation"] == json.loads(json.dumps(dataclasses.asdict(Randomisation())))


def test_font_order_does_not_depend_on_where_fonts_are_installed(tmp_path):
    """Renders pick fonts by index: the list must be the same whether a venv lives under /tmp or /work."""
    import shutil

    fonts = find_digit_fonts()
    copy = tmp_path / "aaa_first_in_path_order"
    copy.mkdir()
    for f in fonts[-3:]:  # the same files again, under a path that sorts before every other
        shutil.copy(f, copy / f.name)
    again = find_digit_fonts((str(copy),))
    assert [f.name for f in again] == [f.name for f in fonts]
