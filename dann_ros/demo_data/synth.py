"""The demo's simulator: synthetic digit scenes written in Isaac Sim's BasicWriter layout.

Stands in for an Isaac Sim Replicator run so the whole pipeline can be shown
without a GPU renderer: ``dann-ros synth`` renders digits from TrueType fonts
with randomised appearance (font, size, slant, rotation, stroke weight, mild
elastic warp, colours, textured and cluttered backgrounds, blur, noise) and
writes exactly what the BasicWriter writes, so the trainer reads the same files
either way (see :mod:`dann_ros.data.replicator`). ``SynthConfig.randomisation``
(``--randomise``) adds what Replicator users randomise on top: texture panels and
fine surface detail, man-made edges, unlabelled distractors at any depth, object
textures, exposure / white balance / directional and spot light, motion blur,
photon noise, response curve and JPEG compression.

Boxes are tight around the *visible* glyph pixels, like Replicator's
``bounding_box_2d_tight``, and written as it writes them: inclusive pixel indices
(``x_max`` is the last ink column, up to ``width - 1``); ``occlusionRatio`` is the
fraction of a glyph's mask hidden by digits drawn after it; fully hidden digits are
omitted.
Output depends only on the config (seed included) and the installed fonts,
not on the number of workers: every frame has its own random stream.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import hashlib
import io
import json
import logging
import math
import multiprocessing as mp
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from dann_ros.atomic_io import write_json
from dann_ros.data.replicator import BBOX_DTYPE, BBOX_PREFIX, LABELS_PREFIX

log = logging.getLogger(__name__)

DIGITS = "0123456789"
BASE_FONT_SIZE = 64  # glyphs are rendered once at this size and resampled per instance
BOX_ALPHA = 0.25  # a pixel counts as glyph for the tight box when at least this much covered
#: Written into synth_config.json; 2: boxes in inclusive pixel indices, as BasicWriter writes them.
SYNTH_FORMAT = 2
# synth_config.json's "generator": the module's name before it moved to demo_data, kept so renders stay identical
GENERATOR = "dann_ros.data.synth"
_TEXTURE_SIZE = 256
_N_TEXTURES = 12


@dataclass(frozen=True)
class Randomisation:
    """Replicator-style domain randomisation layered on top of the base scene.

    Why: DANN aligns the real target with the source, which works best when the
    real frames fall inside what the source covers; Isaac Sim users get there by
    randomising materials, lights, distractors and the camera (Tobin et al. 2017,
    Tremblay et al. 2018). Every draw comes from its own random stream per frame, so
    turning this on leaves the base scene (digits, positions, classes) unchanged.
    Probabilities are per frame (per digit for ``object_texture``).
    """

    # materials
    background_collage: float = 0.6  # chance of 1-3 coloured texture panels (walls, floor, posters)
    fine_texture: float = 0.5  # chance a texture is tiled 2-8 times: fine detail (gravel, brick, foliage)
    structure: tuple[int, int] = (0, 8)  # long edges and large outlines (poles, kerbs, window frames) per frame
    surface_detail: tuple[float, float] = (0.0, 40.0)  # grey-level amplitude of fine grain over the background
    object_texture: float = 0.35  # chance a digit is painted with a two-colour texture instead of one colour
    # distractors: unlabelled shapes at any depth (polygons, ellipses, blocks, letters that look like no digit)
    distractors: tuple[int, int] = (0, 6)
    distractor_scale: tuple[float, float] = (0.3, 1.2)  # size, relative to the largest digit height
    # lighting
    brightness: tuple[float, float] = (0.6, 1.3)  # exposure gain
    colour_cast: float = 0.15  # white balance: per-channel gain within 1 +- this
    light_falloff: float = 0.5  # directional or spot light: gain falls by up to this across the frame
    gamma: tuple[float, float] = (0.8, 1.25)  # sensor response curve
    # camera
    motion_blur_p: float = 0.3
    motion_blur: tuple[float, float] = (2.0, 7.0)  # streak length in pixels
    shot_noise: tuple[float, float] = (0.0, 0.8)  # photon noise: std = this * sqrt(pixel value)
    jpeg_p: float = 0.3
    jpeg_quality: tuple[int, int] = (30, 90)

    def __post_init__(self) -> None:
        for name in ("background_collage", "fine_texture", "object_texture", "colour_cast", "light_falloff",
                     "motion_blur_p", "jpeg_p"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"randomisation.{name} must be within 0..1, got {getattr(self, name)}")
        for name, low in (("distractors", 0), ("structure", 0), ("surface_detail", 0.0),
                          ("distractor_scale", 0.05), ("brightness", 0.05), ("gamma", 0.1),
                          ("motion_blur", 0.0), ("shot_noise", 0.0), ("jpeg_quality", 1)):
            a, b = getattr(self, name)
            if a < low or b < a:
                raise ValueError(f"randomisation.{name} must be (min, max) with {low} <= min <= max, got {(a, b)}")
        if self.jpeg_quality[1] > 100:
            raise ValueError(f"randomisation.jpeg_quality must be within 1..100, got {self.jpeg_quality}")


@dataclass(frozen=True)
class SynthConfig:
    n_frames: int = 1000
    width: int = 64
    height: int = 64
    digits_per_image: tuple[int, int] = (1, 1)
    seed: int = 0
    # Height of a digit's glyph in pixels; None: 0.45-0.8 of the short image side for
    # single-digit scenes, 0.18-0.4 for several digits.
    digit_height: tuple[float, float] | None = None
    rotation_deg: float = 15.0  # uniform in +-this
    shear: float = 0.3  # slant, uniform in +-this (x shift per unit height)
    aspect_jitter: float = 0.15  # width scaled by 1 +- this
    stroke: tuple[int, int] = (-2, 4)  # extra stroke pixels at BASE_FONT_SIZE; negative erodes (thinner)
    elastic: float = 0.04  # max smooth displacement, as a fraction of the digit height
    centre_jitter: float = 0.12  # single-digit scenes: centre offset, fraction of the image side
    max_overlap: float = 0.3  # several digits: max fraction of a digit's box covered by earlier ones
    min_contrast: float = 0.25  # luminance difference (0..1) between a digit and the background under it
    clutter: int = 4  # up to this many random lines / blobs on the background
    illumination: float = 0.25  # uneven lighting: gain ramp of up to +-this across the image (half the frames)
    blur_sigma: tuple[float, float] = (0.0, 1.2)
    noise_std: tuple[float, float] = (0.0, 8.0)
    camera: str | None = None  # write into this subfolder (one render product), like Replicator
    frame_prefix: str = ""  # frame names are <prefix><index padded to frame_padding>
    frame_padding: int = 4
    font_dirs: tuple[str, ...] = ()  # extra folders searched for .ttf/.otf
    randomisation: Randomisation | None = None  # Replicator-style domain randomisation; None: the base scene only

    def __post_init__(self) -> None:
        if self.n_frames < 1:
            raise ValueError(f"n_frames must be >= 1, got {self.n_frames}")
        if self.width < 16 or self.height < 16:
            raise ValueError(f"image size {self.width}x{self.height} is too small (minimum 16x16)")
        lo, hi = self.digits_per_image
        if lo < 0 or hi < lo or hi < 1:
            raise ValueError(f"digits_per_image must be (min, max) with 0 <= min <= max, max >= 1; got {(lo, hi)}")
        if self.digit_height is not None:
            a, b = self.digit_height
            if not 4 <= a <= b <= min(self.width, self.height):
                raise ValueError(f"digit_height {self.digit_height} must satisfy 4 <= min <= max <= "
                                 f"{min(self.width, self.height)} (the short image side)")
        if self.stroke[0] > self.stroke[1]:
            raise ValueError(f"stroke range {self.stroke} is reversed")
        for name in ("blur_sigma", "noise_std"):
            a, b = getattr(self, name)
            if a < 0 or b < a:
                raise ValueError(f"{name} must be (min, max) with 0 <= min <= max, got {(a, b)}")
        if not 0 <= self.max_overlap <= 1 or not 0 <= self.min_contrast <= 1:
            raise ValueError("max_overlap and min_contrast must be within 0..1")
        if self.camera is not None and (not self.camera or "/" in self.camera or self.camera.startswith(".")):
            raise ValueError(f"camera must be a plain folder name, got {self.camera!r}")
        if "/" in self.frame_prefix:
            raise ValueError(f"frame_prefix must not contain '/', got {self.frame_prefix!r}")
        if self.randomisation is not None and not isinstance(self.randomisation, Randomisation):
            raise ValueError(f"randomisation must be a Randomisation or None, got {type(self.randomisation).__name__}")

    @property
    def height_range(self) -> tuple[float, float]:
        if self.digit_height is not None:
            return self.digit_height
        side = min(self.width, self.height)
        lo, hi = (0.45, 0.8) if self.digits_per_image[1] == 1 else (0.18, 0.4)
        return max(6.0, lo * side), max(6.0, hi * side)

    def frame_name(self, index: int) -> str:
        return f"{self.frame_prefix}{index:0{self.frame_padding}d}"


# --------------------------------------------------------------------------- fonts

def font_search_dirs(extra: tuple[str, ...] = ()) -> list[Path]:
    import matplotlib

    return [Path(matplotlib.get_data_path()) / "fonts" / "ttf", Path("/usr/share/fonts"), *map(Path, extra)]


def _render_glyph(font: ImageFont.FreeTypeFont, char: str, stroke: int = 0) -> np.ndarray:
    left, top, right, bottom = font.getbbox(char, stroke_width=stroke)
    pad = 2
    image = Image.new("L", (max(1, right - left + 2 * pad), max(1, bottom - top + 2 * pad)), 0)
    ImageDraw.Draw(image).text((pad - left, pad - top), char, font=font, fill=255,
                               stroke_width=stroke, stroke_fill=255)
    return np.asarray(image)


def _shape_vector(mask: np.ndarray) -> np.ndarray | None:
    """Glyph normalised for comparison: tight crop, fit in 20x20 within 24x24, blurred, unit norm."""
    ys, xs = np.nonzero(mask > 64)
    if len(ys) == 0:
        return None
    m = mask[ys.min():ys.max() + 1, xs.min():xs.max() + 1].astype(np.float32)
    s = 20.0 / max(m.shape)
    m = cv2.resize(m, (max(1, round(m.shape[1] * s)), max(1, round(m.shape[0] * s))), interpolation=cv2.INTER_AREA)
    canvas = np.zeros((24, 24), np.float32)
    y, x = (24 - m.shape[0]) // 2, (24 - m.shape[1]) // 2
    canvas[y:y + m.shape[0], x:x + m.shape[1]] = m
    canvas = cv2.GaussianBlur(canvas, (0, 0), 1.5).ravel()
    canvas -= canvas.mean()
    return canvas / (np.linalg.norm(canvas) + 1e-6)


def _reference_digits() -> np.ndarray:
    """Shape vectors of DejaVu Sans / Serif / Mono digits (shipped with matplotlib), (3, 10, D)."""
    base = font_search_dirs()[0]
    refs = []
    for name in ("DejaVuSans.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf"):
        font = ImageFont.truetype(str(base / name), 48)
        refs.append([_shape_vector(_render_glyph(font, d)) for d in DIGITS])
    return np.array(refs)


@lru_cache(maxsize=8)
def find_digit_fonts(extra_dirs: tuple[str, ...] = ()) -> tuple[Path, ...]:
    """Fonts whose digits render as recognisable digits, deduplicated, in a stable order.

    Checked by rendering, because symbol and math-extension fonts (cmsy10,
    cmex10, STIXSize*, LastResort) map the digit code points to other shapes or
    to nothing: each font's digits are matched against DejaVu's, and a font
    must get at least 7 of the 10 right (italics lose a few to the slant).
    """
    paths = []
    for folder in font_search_dirs(extra_dirs):
        for ext in ("ttf", "otf", "TTF", "OTF"):
            paths.extend(glob.glob(str(folder / "**" / f"*.{ext}"), recursive=True))
    refs = _reference_digits()
    candidates = []
    for path in set(paths):
        try:
            font = ImageFont.truetype(path, 48)
            masks = [_render_glyph(font, d) for d in DIGITS]
        except (OSError, ValueError):
            continue
        vectors = [_shape_vector(m) for m in masks]
        if any(v is None for v in vectors):
            continue
        sims = np.einsum("kd,fcd->kfc", np.array(vectors), refs).max(axis=1)
        if int(np.sum(sims.argmax(axis=1) == np.arange(10))) < 7:
            continue
        digest = hashlib.sha1(b"".join(m.tobytes() + bytes(str(m.shape), "ascii") for m in masks)).hexdigest()
        candidates.append((Path(path).name.lower(), digest, path))
    # ordered by file name and rendering, never by install path: the same fonts give the same renders
    # wherever the venv lives (a font installed twice, matplotlib's and the system's, is kept once)
    seen: set[str] = set()
    names: set[str] = set()
    fonts = []
    for name, digest, path in sorted(candidates):
        if digest in seen or name in names:
            continue
        seen.add(digest)
        names.add(name)
        fonts.append(Path(path))
    if not fonts:
        raise RuntimeError(f"no usable digit fonts found under {[str(d) for d in font_search_dirs(extra_dirs)]}")
    return tuple(fonts)


# --------------------------------------------------------------------------- assets per process

class _Assets:
    """Fonts and procedural textures; glyph masks are rendered lazily and cached."""

    def __init__(self, font_paths: tuple[Path, ...], seed: int):
        self.font_paths = font_paths
        self._fonts: dict[int, ImageFont.FreeTypeFont] = {}
        self._glyphs: dict[tuple[int, str, int], np.ndarray] = {}
        self.textures = _make_textures(np.random.default_rng([seed, 1]))

    def glyph(self, font_index: int, char: str, stroke: int) -> np.ndarray:
        """Float32 coverage mask (0..1) of ``char``, cropped tight to its ink."""
        key = (font_index, char, stroke)
        mask = self._glyphs.get(key)
        if mask is None:
            font = self._fonts.get(font_index)
            if font is None:
                font = self._fonts[font_index] = ImageFont.truetype(str(self.font_paths[font_index]), BASE_FONT_SIZE)
            raw = _render_glyph(font, char, max(0, stroke)).astype(np.float32) / 255.0
            if stroke < 0:
                thin = cv2.erode(np.pad(raw, 1), np.ones((3, 3), np.uint8), iterations=-stroke)[1:-1, 1:-1]
                if (thin > 0.5).sum() >= 0.35 * (raw > 0.5).sum():  # do not erode hairline fonts away
                    raw = thin
            ys, xs = np.nonzero(raw > 0.02)
            mask = np.ascontiguousarray(raw[ys.min():ys.max() + 1, xs.min():xs.max() + 1])
            self._glyphs[key] = mask
        return mask


def _make_textures(rng: np.random.Generator) -> list[np.ndarray]:
    """Grey procedural textures in 0..1: fractal noise, wood/stripes, blobs, paper grain."""
    n = _TEXTURE_SIZE
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32) / n
    out = []
    for i in range(_N_TEXTURES):
        kind = i % 4
        if kind == 0:  # fractal value noise
            tex = np.zeros((n, n), np.float32)
            for octave in range(5):
                cells = 2 ** (octave + 2)
                layer = rng.random((cells, cells), dtype=np.float32)
                tex += cv2.resize(layer, (n, n), interpolation=cv2.INTER_CUBIC) / (1.7 ** octave)
        elif kind == 1:  # wood grain / stripes with turbulence
            turb = cv2.resize(rng.random((8, 8), dtype=np.float32), (n, n), interpolation=cv2.INTER_CUBIC)
            angle, freq = rng.uniform(0, math.pi), rng.uniform(4, 20)
            tex = np.sin(2 * math.pi * freq * (xx * math.cos(angle) + yy * math.sin(angle)) + 4 * turb)
        elif kind == 2:  # soft blobs
            tex = np.zeros((n, n), np.float32)
            for _ in range(int(rng.integers(10, 40))):
                centre = tuple(int(v) for v in rng.integers(0, n, 2))
                cv2.circle(tex, centre, int(rng.integers(4, 40)), float(rng.uniform(0.2, 1.0)), -1)
            tex = cv2.GaussianBlur(tex, (0, 0), float(rng.uniform(2, 8)))
        else:  # paper / concrete grain
            tex = cv2.GaussianBlur(rng.random((n, n), dtype=np.float32), (0, 0), float(rng.uniform(0.6, 2.0)))
            tex += 0.5 * cv2.resize(rng.random((6, 6), dtype=np.float32), (n, n), interpolation=cv2.INTER_CUBIC)
        tex = tex.astype(np.float32)
        tex -= tex.min()
        tex /= max(float(tex.max()), 1e-6)
        out.append(tex)
    return out


# --------------------------------------------------------------------------- scene rendering

_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


@dataclass
class Scene:
    rgb: np.ndarray  # (H, W, 3) uint8
    boxes: np.ndarray  # BBOX_DTYPE rows, draw order, inclusive pixel indices (as BasicWriter writes them)
    classes: list[str]  # one per row
    visible: list[np.ndarray]  # per row, (H, W) float32 visible coverage (for tests and debugging)


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    """Uniform hue and value, saturation skewed low: paints, paper and ink are rarely neon."""
    hue, sat, val = rng.random() * 6.0, rng.random() ** 1.7, rng.random()
    i = int(hue) % 6
    f = hue - int(hue)
    p, q, t = val * (1 - sat), val * (1 - sat * f), val * (1 - sat * (1 - f))
    rgb = ((val, t, p), (q, val, p), (p, val, t), (p, q, val), (t, p, val), (val, p, q))[i]
    return np.array(rgb, np.float32) * 255


def _background(rng: np.random.Generator, cfg: SynthConfig, assets: _Assets) -> np.ndarray:
    h, w = cfg.height, cfg.width
    c1 = _random_colour(rng)
    kind = rng.random()
    if kind < 0.2:
        img = np.broadcast_to(c1, (h, w, 3)).astype(np.float32)
    else:
        c2 = np.clip(c1 + rng.normal(0, 60, 3), 0, 255).astype(np.float32)
        if kind < 0.45:  # linear gradient
            angle = rng.uniform(0, 2 * math.pi)
            t = (np.arange(w, dtype=np.float32)[None, :] * math.cos(angle)
                 + np.arange(h, dtype=np.float32)[:, None] * math.sin(angle))
            t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
        else:  # random window of a procedural texture, rescaled and flipped
            tex = assets.textures[int(rng.integers(len(assets.textures)))]
            n = tex.shape[0]
            scale = rng.uniform(0.25, 1.0)
            cw = max(8, int(n * scale))
            ch = max(8, min(n, int(cw * h / w)))
            y0, x0 = int(rng.integers(0, n - ch + 1)), int(rng.integers(0, n - cw + 1))
            t = tex[y0:y0 + ch, x0:x0 + cw]
            if rng.random() < 0.5:
                t = t.T if t.shape[0] == t.shape[1] else t[::-1]
            t = cv2.resize(np.ascontiguousarray(t), (w, h), interpolation=cv2.INTER_LINEAR)
        img = c1 + t[:, :, None] * (c2 - c1)
    img = np.ascontiguousarray(img, dtype=np.float32)
    for _ in range(int(rng.integers(0, cfg.clutter + 1))):
        colour = tuple(float(v) for v in np.clip(img.mean((0, 1)) + rng.normal(0, 45, 3), 0, 255))
        thickness = int(rng.integers(1, max(2, min(h, w) // 16)))
        p1 = (int(rng.integers(-w // 4, w + w // 4)), int(rng.integers(-h // 4, h + h // 4)))
        if rng.random() < 0.5:
            p2 = (int(rng.integers(-w // 4, w + w // 4)), int(rng.integers(-h // 4, h + h // 4)))
            cv2.line(img, p1, p2, colour, thickness, cv2.LINE_AA)
        else:
            axes = (int(rng.integers(2, max(3, w // 3))), int(rng.integers(2, max(3, h // 3))))
            cv2.ellipse(img, p1, axes, float(rng.uniform(0, 180)), 0, 360, colour,
                        -1 if rng.random() < 0.6 else thickness, cv2.LINE_AA)
    return img


def _digit_patch(rng: np.random.Generator, cfg: SynthConfig, assets: _Assets, char: str) -> np.ndarray:
    """Coverage mask of one randomised digit (float32 0..1), trimmed to its ink plus 1 px."""
    font_index = int(rng.integers(len(assets.font_paths)))
    stroke = int(rng.integers(cfg.stroke[0], cfg.stroke[1] + 1))
    glyph = assets.glyph(font_index, char, stroke)
    lo, hi = cfg.height_range
    target_h = rng.uniform(lo, hi)
    gh, gw = glyph.shape
    s = target_h / gh
    sx = s * (1 + rng.uniform(-cfg.aspect_jitter, cfg.aspect_jitter))
    # Resample first with area averaging (no aliasing of thin strokes), then rotate/slant near scale 1.
    small = cv2.resize(glyph, (max(1, round(gw * sx)), max(1, round(gh * s))), interpolation=cv2.INTER_AREA
                       if s < 1 else cv2.INTER_LINEAR)
    sh, sw = small.shape
    theta = math.radians(rng.uniform(-cfg.rotation_deg, cfg.rotation_deg))
    shear = rng.uniform(-cfg.shear, cfg.shear)
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]], np.float32)
    lin = rot @ np.array([[1, -shear], [0, 1]], np.float32)
    corners = np.array([[-sw / 2, -sh / 2], [sw / 2, -sh / 2], [-sw / 2, sh / 2], [sw / 2, sh / 2]], np.float32)
    ext = np.abs(corners @ lin.T).max(axis=0)
    margin = 2 + int(math.ceil(cfg.elastic * target_h))
    out_w, out_h = int(math.ceil(2 * ext[0])) + 2 * margin, int(math.ceil(2 * ext[1])) + 2 * margin
    affine = np.hstack([lin, (np.array([out_w / 2, out_h / 2], np.float32) - lin @ np.array([sw / 2, sh / 2],
                                                                                            np.float32))[:, None]])
    patch = cv2.warpAffine(small, affine, (out_w, out_h), flags=cv2.INTER_LINEAR, borderValue=0)
    if cfg.elastic > 0 and rng.random() < 0.7:  # smooth hand-drawn wobble
        amp = rng.uniform(0, cfg.elastic) * target_h
        grid = rng.normal(0, 1, (2, 3, 3)).astype(np.float32) * amp
        dx = cv2.resize(grid[0], (out_w, out_h), interpolation=cv2.INTER_CUBIC)
        dy = cv2.resize(grid[1], (out_w, out_h), interpolation=cv2.INTER_CUBIC)
        yy, xx = np.mgrid[0:out_h, 0:out_w].astype(np.float32)
        patch = cv2.remap(patch, xx + dx, yy + dy, cv2.INTER_LINEAR, borderValue=0)
    ys, xs = np.nonzero(patch > 0.02)
    if len(ys) == 0:
        return patch[:1, :1]
    return np.clip(patch[max(0, ys.min() - 1):ys.max() + 2, max(0, xs.min() - 1):xs.max() + 2], 0, 1)


def _place(rng: np.random.Generator, cfg: SynthConfig, ph: int, pw: int, single: bool,
           placed: list[tuple[int, int, int, int]]) -> tuple[int, int] | None:
    w, h = cfg.width, cfg.height
    if single:
        cx = w / 2 + rng.uniform(-cfg.centre_jitter, cfg.centre_jitter) * w
        cy = h / 2 + rng.uniform(-cfg.centre_jitter, cfg.centre_jitter) * h
        x0 = int(np.clip(round(cx - pw / 2), 0, w - pw))
        y0 = int(np.clip(round(cy - ph / 2), 0, h - ph))
        return y0, x0
    for _ in range(20):
        x0, y0 = int(rng.integers(0, w - pw + 1)), int(rng.integers(0, h - ph + 1))
        ok = True
        for (py0, px0, py1, px1) in placed:
            iw = min(px1, x0 + pw) - max(px0, x0)
            ih = min(py1, y0 + ph) - max(py0, y0)
            if iw > 0 and ih > 0 and iw * ih > cfg.max_overlap * pw * ph:
                ok = False
                break
        if ok:
            return y0, x0
    return None


def _pick_colour(rng: np.random.Generator, bg_luma: float, min_contrast: float) -> np.ndarray:
    for _ in range(12):
        colour = _random_colour(rng)
        if abs(float(colour @ _LUMA) / 255 - bg_luma) >= min_contrast:
            return colour
    # fall back to a dark or light tint, whichever stands out more
    base = rng.uniform(0, 50, 3) if bg_luma > 0.5 else rng.uniform(205, 255, 3)
    return base.astype(np.float32)


def _ramp(rng: np.random.Generator, h: int, w: int, amp: float) -> np.ndarray:
    """Random linear ramp over an h x w area, within +-amp (uneven light or ink)."""
    ax, ay = rng.uniform(-amp, amp, 2)
    return (np.linspace(-0.5 * ax, 0.5 * ax, w, dtype=np.float32)[None, :]
            + np.linspace(-0.5 * ay, 0.5 * ay, h, dtype=np.float32)[:, None])


# --------------------------------------------------------------------------- domain randomisation

# Letters and signs that no digit font draws like a digit (no O/o, I/l, S, B, Z, G, b, g, q, T, J, A, U).
_DISTRACTOR_CHARS = "CEFHKMNPRVWXYacefhkmnrtvwxy#&@%"


def _texture_window(rng: np.random.Generator, assets: _Assets, h: int, w: int, fine: float = 0.0) -> np.ndarray:
    """A random window of a random procedural texture, resized to h x w (float32 0..1); with chance
    ``fine`` the texture is tiled 2-8 times first, so its detail is finer than the base scene's."""
    tex = assets.textures[int(rng.integers(len(assets.textures)))]
    if fine > 0 and rng.random() < fine:
        reps = int(rng.integers(2, 9))  # shrink one tile, then repeat it: cost ~ h * w, not reps^2 textures
        tile = cv2.resize(tex[::int(rng.choice([1, -1]))], (-(-w // reps), -(-h // reps)),
                          interpolation=cv2.INTER_AREA)
        return np.ascontiguousarray(np.tile(tile, (reps, reps))[:h, :w])
    n = tex.shape[0]
    cw = max(8, int(n * rng.uniform(0.2, 1.0)))
    ch = max(8, min(n, int(cw * h / max(w, 1))))
    y0, x0 = int(rng.integers(0, n - ch + 1)), int(rng.integers(0, n - cw + 1))
    return cv2.resize(np.ascontiguousarray(tex[y0:y0 + ch, x0:x0 + cw]), (w, h), interpolation=cv2.INTER_LINEAR)


def _collage(drng: np.random.Generator, img: np.ndarray, assets: _Assets, fine: float) -> None:
    """Paint 1-3 coloured texture panels (quadrilaterals reaching past the frame) over the background."""
    h, w = img.shape[:2]
    for _ in range(int(drng.integers(1, 4))):
        c1 = _random_colour(drng)
        c2 = np.clip(c1 + drng.normal(0, 80, 3), 0, 255).astype(np.float32)
        panel = c1 + _texture_window(drng, assets, h, w, fine)[:, :, None] * (c2 - c1)
        corners = np.stack([drng.uniform(-0.3 * w, 1.3 * w, 4), drng.uniform(-0.3 * h, 1.3 * h, 4)], axis=1)
        hull = cv2.convexHull(corners.astype(np.int32))
        mask = np.zeros((h, w), np.float32)
        cv2.fillConvexPoly(mask, hull, 1.0, cv2.LINE_AA)
        if drng.random() < 0.5:
            mask = cv2.GaussianBlur(mask, (0, 0), float(drng.uniform(0.5, 3.0)))
        img += mask[:, :, None] * (panel - img)


def _structure(drng: np.random.Generator, img: np.ndarray, n: int, min_size: float) -> None:
    """Long straight edges and outlines larger than any digit: the man-made clutter of real scenes."""
    h, w = img.shape[:2]
    mean = img.mean((0, 1))
    for _ in range(n):
        colour = tuple(float(v) for v in np.clip(mean + drng.normal(0, 70, 3), 0, 255))
        thickness = int(drng.integers(1, 4))
        if drng.random() < 0.6:  # an edge across the frame
            side = drng.random() < 0.5
            p1 = (int(drng.integers(0, w)), 0) if side else (0, int(drng.integers(0, h)))
            p2 = (int(drng.integers(0, w)), h - 1) if side else (w - 1, int(drng.integers(0, h)))
            cv2.line(img, p1, p2, colour, thickness, cv2.LINE_AA)
        else:  # an outline at least twice a digit's size (a window, a sign, a kerb)
            bw, bh = (int(drng.uniform(2, 5) * min_size) for _ in range(2))
            x0, y0 = int(drng.integers(-bw // 2, w)), int(drng.integers(-bh // 2, h))
            cv2.rectangle(img, (x0, y0), (x0 + bw, y0 + bh), colour, thickness, cv2.LINE_AA)


def _distractor_mask(drng: np.random.Generator, cfg: SynthConfig, assets: _Assets) -> np.ndarray:
    """Coverage mask (float32 0..1) of one unlabelled shape: polygon, ellipse, block or non-digit letter."""
    r = cfg.randomisation
    size = max(4, int(round(drng.uniform(*r.distractor_scale) * cfg.height_range[1])))
    size = min(size, cfg.height, cfg.width)
    kind = int(drng.integers(4))
    if kind == 3:  # a letter from the same fonts as the digits: text-like clutter that must not fire
        glyph = assets.glyph(int(drng.integers(len(assets.font_paths))),
                             _DISTRACTOR_CHARS[int(drng.integers(len(_DISTRACTOR_CHARS)))], 0)
        s = size / max(glyph.shape)
        return np.clip(cv2.resize(glyph, (max(1, round(glyph.shape[1] * s)), max(1, round(glyph.shape[0] * s))),
                                  interpolation=cv2.INTER_AREA), 0, 1)
    hh, ww = max(3, int(size * drng.uniform(0.5, 1.0))), max(3, int(size * drng.uniform(0.5, 1.0)))
    mask = np.zeros((hh, ww), np.float32)
    if kind == 0:  # filled polygon
        n = int(drng.integers(3, 8))
        pts = np.stack([drng.uniform(0, ww - 1, n), drng.uniform(0, hh - 1, n)], axis=1).astype(np.int32)
        cv2.fillConvexPoly(mask, cv2.convexHull(pts), 1.0, cv2.LINE_AA)
    elif kind == 1:  # filled ellipse (no rings: a ring is a 0)
        cv2.ellipse(mask, (ww // 2, hh // 2), (max(1, ww // 2 - 1), max(1, hh // 2 - 1)), 0, 0, 360, 1.0, -1,
                    cv2.LINE_AA)
    else:  # rotated block, at most 2:1 (a thin bar is a 1)
        long_side = min(hh, ww) * drng.uniform(0.6, 1.0)
        rect = ((ww / 2, hh / 2), (long_side, long_side * drng.uniform(0.5, 1.0)), float(drng.uniform(0, 180)))
        cv2.fillConvexPoly(mask, cv2.boxPoints(rect).astype(np.int32), 1.0, cv2.LINE_AA)
    return mask


def _paint(rng: np.random.Generator, colour: np.ndarray, h: int, w: int, assets: _Assets,
           textured: bool) -> np.ndarray:
    """Fill colour of an object: one colour, or a texture between it and a related colour."""
    if not textured:
        return colour
    other = np.clip(colour * rng.uniform(0.6, 1.4) + rng.normal(0, 25, 3), 0, 255).astype(np.float32)
    return colour + _texture_window(rng, assets, h, w)[:, :, None] * (other - colour)


def _composite_distractor(drng: np.random.Generator, cfg: SynthConfig, assets: _Assets, img: np.ndarray,
                          placed: list[tuple[int, int, int, int]]) -> np.ndarray | None:
    """Draw one distractor; returns its full-frame coverage (it hides the digits under it), or None."""
    mask = _distractor_mask(drng, cfg, assets)
    ph, pw = mask.shape
    h, w = cfg.height, cfg.width
    for _ in range(10):  # it may cover part of a digit below it, never most of one
        y0, x0 = int(drng.integers(0, h - ph + 1)), int(drng.integers(0, w - pw + 1))
        if all(max(0, min(px1, x0 + pw) - max(px0, x0)) * max(0, min(py1, y0 + ph) - max(py0, y0))
               <= 0.35 * (py1 - py0) * (px1 - px0) for (py0, px0, py1, px1) in placed):
            break
    else:
        return None
    region = img[y0:y0 + ph, x0:x0 + pw]
    colour = _random_colour(drng)
    fg = _paint(drng, colour, ph, pw, assets, drng.random() < cfg.randomisation.object_texture)
    a = mask[:, :, None] * drng.uniform(0.7, 1.0)
    region *= 1 - a
    region += a * fg
    full = np.zeros((h, w), np.float32)
    full[y0:y0 + ph, x0:x0 + pw] = a[:, :, 0]
    return full


def _light(drng: np.random.Generator, img: np.ndarray, r: Randomisation) -> np.ndarray:
    """Exposure, white balance and a directional or spot light, multiplied into scene radiance."""
    h, w = img.shape[:2]
    falloff = drng.uniform(0, r.light_falloff)
    if drng.random() < 0.5:  # directional: a linear ramp
        angle = drng.uniform(0, 2 * math.pi)
        t = (np.arange(w, dtype=np.float32)[None, :] * math.cos(angle)
             + np.arange(h, dtype=np.float32)[:, None] * math.sin(angle))
        t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
    else:  # spot: Gaussian pool of light
        cy, cx = drng.uniform(-0.2, 1.2) * h, drng.uniform(-0.2, 1.2) * w
        sigma = drng.uniform(0.3, 1.0) * max(h, w)
        yy = (np.arange(h, dtype=np.float32)[:, None] - cy) ** 2
        xx = (np.arange(w, dtype=np.float32)[None, :] - cx) ** 2
        t = 1 - np.exp(-(yy + xx) / (2 * sigma * sigma))
    gain = (1 - falloff * t) * drng.uniform(*r.brightness)
    channels = 1 + drng.uniform(-r.colour_cast, r.colour_cast, 3).astype(np.float32)
    return img * (gain[:, :, None] * channels).astype(np.float32)


def _motion_blur(drng: np.random.Generator, img: np.ndarray, length: float) -> np.ndarray:
    k = max(3, int(math.ceil(length)) | 1)
    kernel = np.zeros((k, k), np.float32)
    angle = drng.uniform(0, math.pi)
    c = (k - 1) / 2
    dx, dy = math.cos(angle) * length / 2, math.sin(angle) * length / 2
    cv2.line(kernel, (round(c - dx), round(c - dy)), (round(c + dx), round(c + dy)), 1.0, 1, cv2.LINE_AA)
    return cv2.filter2D(img, -1, kernel / max(float(kernel.sum()), 1e-6), borderType=cv2.BORDER_REFLECT)


def _camera_out(drng: np.random.Generator, img: np.ndarray, r: Randomisation) -> np.ndarray:
    """Photon noise, response curve and compression on the float image (0..255); returns uint8 RGB."""
    k = drng.uniform(*r.shot_noise)
    if k > 0:
        img += drng.standard_normal(img.shape, dtype=np.float32) * np.sqrt(np.maximum(img, 0)) * np.float32(k)
    np.clip(img, 0, 255, out=img)
    gamma = drng.uniform(*r.gamma)
    img = 255.0 * (img * np.float32(1 / 255)) ** np.float32(gamma)
    rgb = (img + 0.5).astype(np.uint8)
    if drng.random() < r.jpeg_p:
        quality = int(drng.integers(r.jpeg_quality[0], r.jpeg_quality[1] + 1))
        ok, buf = cv2.imencode(".jpg", rgb, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if ok:
            rgb = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    return rgb


# --------------------------------------------------------------------------- the scene

def _luma_under(region: np.ndarray, ink: np.ndarray) -> float:
    """Mean luminance (0..1) of the background under a glyph's ink (the whole patch if it has none)."""
    return float((region[ink] if ink.any() else region.reshape(-1, 3)).mean(axis=0) @ _LUMA) / 255


def _blend(region: np.ndarray, alpha: np.ndarray, colour: np.ndarray) -> None:
    region *= 1 - alpha
    region += alpha * colour


def render_scene(rng: np.random.Generator, cfg: SynthConfig, assets: _Assets) -> Scene:
    """One scene from ``rng``; with ``cfg.randomisation`` its draws come from a stream spawned from ``rng``,
    so the digits, their places and classes are the same with randomisation on or off."""
    h, w = cfg.height, cfg.width
    dr = cfg.randomisation
    drng = rng.spawn(1)[0] if dr is not None else None
    img = _background(rng, cfg, assets)
    # with randomisation the base scene is composited alongside: digit colours are chosen against it
    # (as without randomisation, so the base stream draws the same numbers), then checked against the
    # randomised image and redrawn from the randomisation stream where they would vanish
    base = img.copy() if dr is not None else img
    if dr is not None:
        if drng.random() < dr.background_collage:
            _collage(drng, img, assets, dr.fine_texture)
        _structure(drng, img, int(drng.integers(dr.structure[0], dr.structure[1] + 1)), cfg.height_range[1])
        amp = drng.uniform(*dr.surface_detail)
        if amp > 0:  # asphalt, foliage, fabric: detail at the pixel scale that real frames are full of
            grain = _texture_window(drng, assets, h, w, fine=1.0)
            img += (grain - grain.mean())[:, :, None] * np.float32(2 * amp)
    single = cfg.digits_per_image[1] == 1
    n_digits = int(rng.integers(cfg.digits_per_image[0], cfg.digits_per_image[1] + 1))
    # distractors go in at a random depth: before digit k (k = n_digits: on top of all)
    depth = (np.sort(drng.integers(0, n_digits + 1, int(drng.integers(dr.distractors[0], dr.distractors[1] + 1))))
             if dr is not None else np.zeros(0, np.int64))
    placed: list[tuple[int, int, int, int]] = []
    alphas: list[np.ndarray] = []
    chars: list[str | None] = []  # None: a distractor (hides what is below, has no box)

    def distractors_at(k: int) -> None:
        for _ in range(int(np.sum(depth == k))):
            full = _composite_distractor(drng, cfg, assets, img, placed)
            if full is not None:
                alphas.append(full)
                chars.append(None)

    for k in range(n_digits):
        distractors_at(k)
        char = DIGITS[int(rng.integers(10))]
        patch = _digit_patch(rng, cfg, assets, char)
        ph, pw = patch.shape
        if ph > h or pw > w:  # rotation/slant pushed it past the frame: shrink rather than drop it
            fit = min(h / ph, w / pw)
            pw, ph = max(1, min(w, int(pw * fit))), max(1, min(h, int(ph * fit)))
            patch = cv2.resize(patch, (pw, ph), interpolation=cv2.INTER_AREA)
        pos = _place(rng, cfg, ph, pw, single, placed)
        if pos is None:
            continue
        y0, x0 = pos
        ink = patch > 0.25
        colour = _pick_colour(rng, _luma_under(base[y0:y0 + ph, x0:x0 + pw], ink), cfg.min_contrast)
        shade = 1 + _ramp(rng, ph, pw, 0.2) if rng.random() < 0.4 else None  # uneven ink / light on the digit
        a = patch[:, :, None]
        if dr is not None:
            _blend(base[y0:y0 + ph, x0:x0 + pw], a, colour if shade is None else colour * shade[:, :, None])
            luma = _luma_under(img[y0:y0 + ph, x0:x0 + pw], ink)
            if abs(float(colour @ _LUMA) / 255 - luma) < cfg.min_contrast:
                colour = _pick_colour(drng, luma, cfg.min_contrast)
            if drng.random() < dr.object_texture:
                colour = _paint(drng, colour, ph, pw, assets, True)
        _blend(img[y0:y0 + ph, x0:x0 + pw], a, colour if shade is None else colour * shade[:, :, None])
        full = np.zeros((h, w), np.float32)
        full[y0:y0 + ph, x0:x0 + pw] = patch
        alphas.append(full)
        chars.append(char)
        placed.append((y0, x0, y0 + ph, x0 + pw))
    distractors_at(n_digits)

    # post-processing: light, defocus and motion, sensor noise, response curve, compression
    if dr is not None:
        img = _light(drng, img, dr)
    if rng.random() < 0.5 and cfg.illumination > 0:
        img *= (1 + _ramp(rng, h, w, cfg.illumination))[:, :, None]
    sigma = rng.uniform(*cfg.blur_sigma)
    if sigma > 0.3:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    if dr is not None and drng.random() < dr.motion_blur_p:
        img = _motion_blur(drng, img, drng.uniform(*dr.motion_blur))
    noise = rng.uniform(*cfg.noise_std)
    if noise > 0:
        img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(noise)
    if dr is not None:
        rgb = _camera_out(drng, img, dr)
    else:
        img += 0.5
        rgb = np.clip(img, 0, 255, out=img).astype(np.uint8)

    rows, classes, visible_masks = [], [], []
    hidden = np.zeros((h, w), np.float32)  # coverage by digits drawn later, composited back to front
    for alpha, char in zip(reversed(alphas), reversed(chars)):
        visible = alpha * (1 - hidden)
        hidden = hidden + alpha * (1 - hidden)
        if char is None:
            continue
        total = float(alpha.sum())
        ys, xs = np.nonzero(visible >= BOX_ALPHA)
        if len(ys) == 0 or total <= 0:
            continue  # fully hidden: Replicator omits it from the tight boxes
        occlusion = 1.0 - float(visible.sum()) / total
        # inclusive pixel indices, as BasicWriter writes them (the reader turns them into corners)
        rows.append((int(char), xs.min(), ys.min(), xs.max(), ys.max(), max(0.0, occlusion)))
        classes.append(char)
        visible_masks.append(visible)
    rows.reverse(), classes.reverse(), visible_masks.reverse()
    return Scene(rgb, np.array(rows, dtype=BBOX_DTYPE), classes, visible_masks)


# --------------------------------------------------------------------------- writing

def encode_frame(name: str, scene: Scene) -> list[tuple[str, bytes]]:
    """The four BasicWriter files of one frame as (file name, bytes)."""
    ok, png = cv2.imencode(".png", cv2.cvtColor(scene.rgb, cv2.COLOR_RGB2BGRA))
    if not ok:
        raise RuntimeError(f"PNG encoding failed for frame {name}")
    npy = io.BytesIO()
    np.lib.format.write_array(npy, scene.boxes, allow_pickle=False)
    labels = {str(int(sid)): {"class": cls} for sid, cls in sorted(zip(scene.boxes["semanticId"], scene.classes))}
    prims = [f"/World/Digits/digit_{i:02d}_{cls}" for i, cls in enumerate(scene.classes)]
    return [
        (f"rgb_{name}.png", png.tobytes()),
        (f"{BBOX_PREFIX}{name}.npy", npy.getvalue()),
        (f"{LABELS_PREFIX}{name}.json", json.dumps(labels).encode()),
        (f"{BBOX_PREFIX}prim_paths_{name}.json", json.dumps(prims).encode()),
    ]


def _write_files(folder: Path, files: list[tuple[str, bytes]]) -> None:
    for fname, data in files:
        with open(folder / fname, "wb") as f:
            f.write(data)


_ASSETS: _Assets | None = None
_CFG: SynthConfig | None = None


def _init_worker(font_paths: tuple[Path, ...], cfg: SynthConfig) -> None:
    global _ASSETS, _CFG
    cv2.setNumThreads(1)
    _ASSETS, _CFG = _Assets(font_paths, cfg.seed), cfg


def _render_range(args: tuple[Path, int, int]) -> int:
    folder, start, stop = args
    assert _ASSETS is not None and _CFG is not None
    # File creation costs as much as rendering on small frames; it runs in threads (the GIL is
    # released during I/O) so the next frame renders meanwhile.
    with ThreadPoolExecutor(2) as io_pool:
        pending: list[Future] = []
        for index in range(start, stop):
            rng = np.random.default_rng([_CFG.seed, 0, index])
            files = encode_frame(_CFG.frame_name(index), render_scene(rng, _CFG, _ASSETS))
            pending.append(io_pool.submit(_write_files, folder, files))
            if len(pending) >= 64:
                for fut in pending[:32]:
                    fut.result()
                del pending[:32]
        for fut in pending:
            fut.result()
    return stop - start


_OUTPUT_GLOBS = ("rgb_*.png", f"{BBOX_PREFIX}*.npy", f"{BBOX_PREFIX}*.json")


def render_dataset(out_dir: str | Path, cfg: SynthConfig, workers: int = 1, overwrite: bool = False,
                   progress: bool = False) -> Path:
    """Render ``cfg.n_frames`` scenes into ``out_dir`` (or ``out_dir/cfg.camera``); returns that folder.

    ``workers`` only changes the speed, never the images. Existing frames in
    the folder are an error unless ``overwrite``, which deletes them first so
    no stale frames remain.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    folder = Path(out_dir) / cfg.camera if cfg.camera else Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    old = [p for pattern in _OUTPUT_GLOBS for p in folder.glob(pattern)]
    if old:
        if not overwrite:
            raise FileExistsError(f"{folder} already holds {len(old)} Replicator files; "
                                  "choose an empty folder or pass overwrite")
        for p in old:
            p.unlink()
    fonts = find_digit_fonts(tuple(cfg.font_dirs))
    meta = {"generator": GENERATOR, "format": SYNTH_FORMAT, "config": dataclasses.asdict(cfg),
            "fonts": [str(p) for p in fonts]}
    stamp = Path(out_dir) / "synth_config.json"
    stamp.unlink(missing_ok=True)  # written last: its presence says the set is complete (the demo reuses it)

    chunk = max(1, min(256, cfg.n_frames // (workers * 4) or 1))
    jobs = [(folder, s, min(s + chunk, cfg.n_frames)) for s in range(0, cfg.n_frames, chunk)]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.n_frames, unit="frame", desc="synth")
    t0 = time.perf_counter()
    if workers == 1:
        _init_worker(fonts, cfg)
        for job in jobs:
            done = _render_range(job)
            if bar:
                bar.update(done)
    else:
        with mp.get_context("spawn").Pool(workers, initializer=_init_worker, initargs=(fonts, cfg)) as pool:
            for done in pool.imap_unordered(_render_range, jobs):
                if bar:
                    bar.update(done)
    if bar:
        bar.close()
    write_json(stamp, meta, indent=1)  # atomic: a stamp is whole or absent
    log.info("rendered %d frames into %s in %.1f s", cfg.n_frames, folder, time.perf_counter() - t0)
    return folder


# --------------------------------------------------------------------------- CLI

def add_synth_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("synth", help="render synthetic digit scenes in Isaac Sim BasicWriter layout",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--frames", type=int, default=1000, help="number of frames (default 1000)")
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--height", type=int, default=64)
    p.add_argument("--digits-per-image", type=int, nargs=2, metavar=("MIN", "MAX"), default=(1, 1))
    p.add_argument("--digit-height", type=float, nargs=2, metavar=("MIN", "MAX"), default=None,
                   help="glyph height range in pixels (default: from the image size)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1, help="processes (output does not depend on it)")
    p.add_argument("--camera", default=None, help="write into this render-product subfolder")
    p.add_argument("--overwrite", action="store_true", help="replace frames already in the folder")
    p.add_argument("--randomise", action="store_true",
                   help="Replicator-style domain randomisation (textures, lights, distractors, camera), defaults")
    p.set_defaults(func=run_synth)
    return p


def run_synth(args: argparse.Namespace) -> int:
    cfg = SynthConfig(n_frames=args.frames, width=args.width, height=args.height,
                      digits_per_image=tuple(args.digits_per_image), seed=args.seed,
                      digit_height=tuple(args.digit_height) if args.digit_height else None, camera=args.camera,
                      randomisation=Randomisation() if args.randomise else None)
    t0 = time.perf_counter()
    folder = render_dataset(args.out, cfg, workers=args.workers, overwrite=args.overwrite, progress=True)
    dt = time.perf_counter() - t0
    print(f"wrote {cfg.n_frames} frames to {folder} ({cfg.n_frames / dt:.0f} frames/s)")
    return 0
