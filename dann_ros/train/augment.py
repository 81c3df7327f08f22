"""Source augmentation that mimics a real camera (opt-in ``augment.camera``).

Renders are clean where cameras are not: a real frame has another exposure and
contrast, a tone curve, defocus or motion blur, and sensor noise. Drawing those
per source image widens the source distribution towards the camera's, before
any alignment. Works on the float 0..255 batch the step already holds (no
per-image Python, no PIL), with a generator seeded by (seed, step, rank), so a
resumed run draws the same augmentations.
"""

from __future__ import annotations

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
