"""What the training device can do fast: the device itself, native bf16, NHWC convolutions."""

from __future__ import annotations

import torch


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device is cuda but no CUDA device is available")
    return torch.device(name)


def native_bf16(device: torch.device) -> bool:
    """bf16 autocast pays off only where the hardware multiplies bf16 natively: CUDA, or a CPU with
    AMX or AVX512-BF16 (oneDNN uses them). Elsewhere it is emulated and slower than fp32."""
    if device.type == "cuda":
        return True
    if device.type != "cpu":
        return False
    try:  # private but stable helpers of torch.cpu (torch >= 2.3)
        return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())
    except AttributeError:
        return False
