"""dann_ros.cuda: device buffers and a dedicated stream through cuda-python (GPU machines; skips elsewhere)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from dann_ros import cuda


@pytest.fixture
def gpu():
    reason = cuda.why_no_gpu()
    if reason is not None:
        pytest.skip(f"no CUDA GPU through cuda-python here ({reason})")
    return cuda.gpu_info()


def test_no_gpu_is_reported_not_raised():
    reason = cuda.why_no_gpu()
    assert cuda.cuda_available() == (reason is None)
    assert (cuda.device_count() > 0) == (reason is None)
    if reason is not None:
        with pytest.raises(cuda.CudaUnavailable, match="no CUDA GPU usable here"):
            cuda.gpu_info()


def test_gpu_info_fields(gpu):
    assert gpu.name and gpu.sm_count > 0 and gpu.total_memory_mb > 512
    assert re.fullmatch(r"\d+\.\d", gpu.compute_capability), gpu.compute_capability
    assert int(gpu.compute_capability.split(".")[0]) >= 5  # what CUDA 12 still supports


def test_buffer_round_trip_on_a_dedicated_stream(gpu):
    stream = cuda.Stream()
    assert stream.handle != 0  # not the legacy default stream
    data = np.random.default_rng(0).standard_normal((4, 3, 64, 64)).astype(np.float32)
    buffer = cuda.DeviceBuffer()
    try:
        buffer.upload(data, stream)
        back = np.empty_like(data)
        buffer.download(back, stream)
        stream.synchronize()
        np.testing.assert_array_equal(back, data)
        first = buffer.ptr
        buffer.upload(data[:1], stream)  # smaller: the allocation is kept
        assert buffer.ptr == first
        with pytest.raises(ValueError, match="does not fit"):
            buffer.download(np.empty(data.size * 2, np.float32), stream)
    finally:
        buffer.close()
        stream.close()
