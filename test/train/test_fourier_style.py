"""Fourier restyling of the renders: the target's lowest frequencies, the source's edges, drawn per
(seed, step, rank), off and out of the digest by default."""

from __future__ import annotations

import pytest
import torch

from dann_ros.train.config import FourierStyleConfig
from dann_ros.train.fourier_style import fourier_style, low_frequency_window
from dann_ros.train.streaming import step_generator
from dann_ros.train.trainer import Trainer
from test.train.conftest import tiny_config, tiny_detection_config

H, W = 48, 64


def _images(n: int, level: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return level + 30.0 * torch.rand(n, 3, H, W, generator=g)


def test_target_colour_and_source_detail():
    x_s = _images(4, 60.0, 0)
    x_t = _images(1, 150.0, 1) * torch.tensor([1.0, 0.8, 0.6]).view(1, 3, 1, 1)  # a tinted camera
    out = fourier_style(x_s, x_t, 1.0, 0.1, torch.Generator().manual_seed(0))
    # the mean colour is the zero frequency, inside the window: the target's
    assert torch.allclose(out.mean((2, 3)), x_t.mean((2, 3)).expand(4, 3), atol=1e-2)
    # what changed is low frequency only: nothing outside the window (one more frequency a side)
    change = torch.fft.fft2(out - x_s).abs()
    b = int(min(H, W) * 0.1)
    outside = ~low_frequency_window(H, W, (b + 1) / min(H, W))
    assert change[..., outside].max() < 1e-2 * change.max()
    assert torch.equal(x_s, _images(4, 60.0, 0))  # the input is not written


def test_window_is_the_spectrum_corners():
    window = low_frequency_window(8, 10, 0.25)  # b = 2
    assert window.sum() == 16
    for y, x in ((0, 0), (1, 1), (0, 9), (7, 0), (6, 8)):
        assert window[y, x]
    assert not window[2, 0] and not window[0, 2] and not window[4, 5]
    assert low_frequency_window(8, 10, 0.01).sum() == 4  # at least one frequency a side


def test_share_and_determinism():
    x_s, x_t = _images(64, 60.0, 0), _images(4, 150.0, 1)
    assert fourier_style(x_s, x_t, 0.0, 0.05, torch.Generator().manual_seed(0)) is x_s
    a = fourier_style(x_s, x_t, 0.5, 0.05, torch.Generator().manual_seed(1))
    b = fourier_style(x_s, x_t, 0.5, 0.05, torch.Generator().manual_seed(1))
    c = fourier_style(x_s, x_t, 0.5, 0.05, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    restyled = (a != x_s).flatten(1).any(1).float().mean()
    assert 0.3 < restyled < 0.7


@pytest.mark.parametrize("bad", [{"share": 1.5}, {"share": -0.1}, {"beta": 0.0}, {"beta": 0.6}])
def test_config_is_checked(bad):
    with pytest.raises(ValueError, match="fourier_style"):
        FourierStyleConfig(**bad)


def test_digest_and_target_frames(tiny_domains, tmp_path):
    plain = tiny_config(tiny_domains, tmp_path)
    assert plain.digest() == plain.replace(**{"adaptation.fourier_style.beta": 0.2}).digest()  # off: not hashed
    on = plain.replace(**{"adaptation.fourier_style.share": 1.0})
    assert on.digest() != plain.digest() != on.replace(**{"adaptation.fourier_style.beta": 0.2}).digest()
    with pytest.raises(ValueError, match="fourier_style.share"):
        plain.replace(**{"adaptation.method": "none", "adaptation.fourier_style.share": 1.0, "target.bags": []})


def test_trainer_restyles_the_steps_renders_even_without_an_adversary(tiny_detection_domains, tmp_path):
    """With adaptation.method none the trainer reads target frames when the restyling is on, and the step's
    source images are exactly fourier_style of that step's draws (stream 4); the boxes do not move."""
    over = {"adaptation.method": "none", "adaptation.fourier_style.share": 1.0,
            "adaptation.fourier_style.beta": 0.1}
    plain = Trainer(tiny_detection_config(tiny_detection_domains, tmp_path / "plain", **{"adaptation.method": "none"}),
                    resume=False, show_progress=False)
    styled = Trainer(tiny_detection_config(tiny_detection_domains, tmp_path / "styled", **over), resume=False,
                     show_progress=False)
    x, y, x_t = styled._batch(2)
    raw = styled.batches[2]["source"]["images"].float()
    ref = fourier_style(raw, x_t, 1.0, 0.1, step_generator(styled.cfg.seed, 2, 0, 4))
    assert torch.equal(ref, x) and not torch.equal(x, plain._batch(2)[0])
    assert torch.equal(y["heatmap"], plain._batch(2)[1]["heatmap"])
    losses = styled.train_step(2)
    assert set(losses) == {"task"} and torch.isfinite(losses["task"])
