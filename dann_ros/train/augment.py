"""Source augmentation: what a real camera does to a render (opt-in ``augment.camera``) and
how real objects vary in shape and pose where renders do not (opt-in ``augment.geometric``).

Renders are clean where cameras are not: a real frame has another exposure and
contrast, a tone curve, defocus or motion blur, and sensor noise. Drawing those
per source image widens the source distribution towards the camera's, before
any alignment. Works on the float 0..255 batch the step already holds (no
per-image Python, no PIL), with a generator seeded by (seed, step, rank), so a
resumed run draws the same augmentations.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from dann_ros.train.config import AugmentConfig


def _gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, radius: int = 3) -> torch.Tensor:
    """Per-image separable gaussian blur (7 taps, replicated border; sigma 0: identity), as
    weighted sums of shifted copies: a grouped convolution with one kernel per image is far slower."""
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    s = sigma.clamp_min(1e-3).to(x.dtype)[:, None]
    k = torch.exp(-t[None] ** 2 / (2 * s ** 2))
    k = (k / k.sum(1, keepdim=True)).view(-1, 1, 1, 1, 2 * radius + 1)  # (N, 1, 1, 1, taps)
    for dim in (3, 2):  # width, then height
        pad = [0, 0, 0, 0]
        pad[0 if dim == 3 else 2] = pad[1 if dim == 3 else 3] = radius
        padded = F.pad(x, tuple(pad), mode="replicate")
        size = x.shape[dim]
        x = sum(k[..., i] * padded.narrow(dim, i, size) for i in range(2 * radius + 1))
    return x


def camera_augment(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """(N, C, H, W) float 0..255 -> the same batch as seen through a random camera, 0..255."""
    n = x.shape[0]

    def u(lo: float, hi: float) -> torch.Tensor:
        return (torch.rand(n, generator=generator) * (hi - lo) + lo).to(x.device, x.dtype).view(n, 1, 1, 1)

    mean = x.mean((1, 2, 3), keepdim=True)
    x = (x - mean) * u(1 - cfg.contrast, 1 + cfg.contrast) + mean + u(-cfg.brightness, cfg.brightness)
    x = 255.0 * (x.clamp(0, 255) / 255.0).pow(torch.exp(u(-cfg.gamma, cfg.gamma)))
    if cfg.blur_sigma > 0:
        blurred = (torch.rand(n, generator=generator) < 0.5).to(x.device)
        sigma = torch.rand(n, generator=generator).to(x.device) * cfg.blur_sigma * blurred
        x = _gaussian_blur(x, sigma)
    if cfg.noise_std > 0:
        noise = torch.randn(x.shape, generator=generator).to(x.device, x.dtype)
        x = x + noise * u(0, cfg.noise_std)
    return x.clamp(0, 255)


def geometric_augment(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """(N, C, H, W) -> each image under its own random rotation, zoom, shear and shift (border pixels
    repeated). Font renders are upright, even and centred; handwriting and real poses are not."""
    n = x.shape[0]

    def u(limit: float) -> torch.Tensor:
        return (torch.rand(n, generator=generator) * 2 - 1) * limit

    angle, zoom, shear = u(math.radians(cfg.rotation)), 1 + u(cfg.scale), u(cfg.shear)
    cos, sin = torch.cos(angle), torch.sin(angle)
    # output -> input sampling grid: rotation @ shear / zoom, then the shift (normalised coordinates)
    theta = torch.stack([torch.stack([cos, cos * shear - sin, u(2 * cfg.translate)], 1),
                         torch.stack([sin, sin * shear + cos, u(2 * cfg.translate)], 1)], 1)
    theta[:, :, :2] /= zoom.view(n, 1, 1)
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    nhwc = x.is_contiguous(memory_format=torch.channels_last)  # keep the step's layout
    return out.contiguous(memory_format=torch.channels_last if nhwc else torch.contiguous_format)


def camera_view(cfg: AugmentConfig) -> Callable[[torch.Tensor, torch.Generator | None], torch.Tensor]:
    """:func:`camera_augment` as a view (self-training's strong view of the target). Each call seeds its
    camera from ``generator`` (the trainer's, per (seed, step, rank); None: torch's global one)."""

    def view(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        seed = int(torch.randint(0, 2 ** 31, (), generator=generator))
        return camera_augment(x, cfg, torch.Generator().manual_seed(seed))

    return view
