"""Source images in the target camera's low frequencies: Fourier Domain Adaptation (Yang and Soatto,
CVPR 2020), opt-in ``adaptation.fourier_style``.

For each picked source image x_s and a random target frame x_t of the step, per channel:

    F_s = FFT2(x_s), F_t = FFT2(x_t)
    |F_s| <- |F_t| inside the low-frequency window (b = max(1, int(beta * min(H, W))) frequencies a side)
    x_s' = clamp(Re IFFT2(|F_s| exp(i arg F_s)), 0, 255)

The window is the reference implementation's: the b x b corners of the unshifted spectrum, frequencies
0..b-1 and -b..-1 on each axis.

The phase, and with it the edges and the shapes the labels describe, stays the source's; the lowest
frequencies (overall colour, illumination gradients, the camera's tint and haze) become the real
camera's. Why: renders are saturated and evenly lit, the robot's camera is not; that shift is global
and label-free, so no box moves. On the demo's real scenes it is the one change on top of the
target patches that moved the dev mAP (docs/results.md).

Shapes: (N, C, H, W) source and (M, C, H, W) target images, 0..255 floats; returns (N, C, H, W).
"""

from __future__ import annotations

import torch


def low_frequency_window(h: int, w: int, beta: float, device: torch.device | None = None) -> torch.Tensor:
    """(h, w) bool: the unshifted spectrum's four b x b corners, its lowest frequencies."""
    b = min(max(1, int(min(h, w) * beta)), h // 2, w // 2)
    rows = torch.zeros(h, dtype=torch.bool, device=device)
    cols = torch.zeros(w, dtype=torch.bool, device=device)
    rows[:b] = True
    rows[h - b:] = True
    cols[:b] = True
    cols[w - b:] = True
    return rows[:, None] & cols[None, :]


def fourier_style(x_s: torch.Tensor, x_t: torch.Tensor, share: float, beta: float,
                  generator: torch.Generator) -> torch.Tensor:
    """A ``share`` of the source images with the low-frequency amplitude of a random target frame each."""
    if share <= 0 or len(x_t) == 0:
        return x_s
    n, _, h, w = x_s.shape
    which = torch.randint(0, len(x_t), (n,), generator=generator)
    picked = (torch.rand(n, generator=generator) < share).nonzero().flatten()
    if len(picked) == 0:
        return x_s
    src = torch.fft.fft2(x_s[picked.to(x_s.device)].float())
    tgt = torch.fft.fft2(x_t[which[picked].to(x_t.device)].float())
    amplitude = torch.where(low_frequency_window(h, w, beta, x_s.device), tgt.abs(), src.abs())
    styled = torch.fft.ifft2(torch.polar(amplitude, src.angle())).real.clamp(0.0, 255.0)
    out = x_s.clone()
    out[picked.to(x_s.device)] = styled.to(out.dtype)
    return out


__all__ = ["fourier_style", "low_frequency_window"]
