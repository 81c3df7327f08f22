"""The detector's image-level discriminators: per location (pixel, optionally center-aware) vs per image (global)."""

import pytest
import torch

from dann_ros.data.preprocess import Preprocess
from dann_ros.model.adaptation.dann import DomainAdversarialLoss
from dann_ros.model.builders import build_domain_loss, build_model
from dann_ros.model.config import ModelConfig
from dann_ros.model.discriminator import GlobalDomainDiscriminator, PixelDomainDiscriminator


def _layout_domains(n: int = 32, c: int = 4, h: int = 8, w: int = 8, seed: int = 0):
    """Two domains whose every location has the same marginal (N(0, 1) per channel) but another layout:
    source maps are one value per image (flat surfaces), target maps are independent per location
    (texture). A linear probe on pooled features tells them apart (pooled variance differs); a 1x1
    discriminator, seeing one location at a time, cannot."""
    g = torch.Generator().manual_seed(seed)
    f_s = torch.randn(n, c, 1, 1, generator=g).expand(n, c, h, w).contiguous()
    f_t = torch.randn(n, c, h, w, generator=g)
    return f_s, f_t


def _fit(adv: DomainAdversarialLoss, steps: int = 150) -> float:
    """Mean discriminator accuracy over the last 20 of ``steps`` fresh batches (no memorising)."""
    torch.manual_seed(0)
    opt = torch.optim.Adam(adv.parameters(), lr=1e-2)
    acc = []
    for step in range(steps):
        opt.zero_grad()
        adv(*_layout_domains(seed=step)).backward()
        opt.step()
        acc.append(adv.domain_accuracy)
    return sum(acc[-20:]) / 20


def test_global_discriminator_sees_what_a_pixel_discriminator_cannot():
    pixel = _fit(DomainAdversarialLoss(PixelDomainDiscriminator(4, hidden=16)))
    glob = _fit(DomainAdversarialLoss(GlobalDomainDiscriminator(4, hidden=16, blocks=2)))
    assert pixel < 0.7  # per location the two domains are the same distribution
    assert glob > 0.95


def test_global_discriminator_gives_one_logit_per_image():
    d = GlobalDomainDiscriminator(12, hidden=8, blocks=3)
    assert d(torch.randn(5, 12, 24, 32)).shape == (5, 1)
    assert d(torch.randn(2, 12, 3, 3)).shape == (2, 1)  # maps smaller than 2^blocks still pool
    with pytest.raises(ValueError, match="block"):
        GlobalDomainDiscriminator(12, blocks=0)


@pytest.mark.parametrize("kind,cls", [("pixel", PixelDomainDiscriminator), ("global", GlobalDomainDiscriminator)])
def test_builder_picks_the_configured_detection_discriminator(kind, cls):
    cfg = ModelConfig(discriminator_hidden=16, detection_discriminator=kind)
    model = build_model(cfg, "detection", 3, Preprocess(64, 64, "rgb", (0.5,) * 3, (0.5,) * 3))
    adv = build_domain_loss(cfg, model)
    assert isinstance(adv.discriminator, cls)
    x = torch.rand(4, 3, 64, 64) * 255
    f, _ = model.forward_train(x)
    adv.coeff = 1.0
    loss = adv(f[:2], f[2:])
    loss.backward()  # the reversed gradient reaches the detector's features
    grad = model.backbone.body[0].weight.grad
    assert torch.count_nonzero(grad) > 0 and torch.isfinite(grad).all() and torch.isfinite(loss)
    p = adv.source_probability(f.detach())
    assert p.shape == (4,) and bool(((p >= 0) & (p <= 1)).all())


def test_unknown_detection_discriminator_is_refused():
    from dann_ros.typed_config import from_dict

    with pytest.raises(ValueError, match="detection_discriminator"):
        from_dict(ModelConfig, {"detection_discriminator": "patch"})


def _detector_and_outputs(cfg: ModelConfig, n: int = 4):
    torch.manual_seed(0)
    model = build_model(cfg, "detection", 3, Preprocess(64, 64, "rgb", (0.5,) * 3, (0.5,) * 3))
    f, out = model.forward_train(torch.rand(n, 3, 64, 64) * 255)
    half = n // 2
    return model, f, {k: v[:half] for k, v in out.items()}, {k: v[half:] for k, v in out.items()}


def test_center_aware_alignment_weights_locations_by_the_heatmap():
    """EPM's center-aware alignment: a location the detector scores as background adds (almost) nothing to
    the domain loss, in either domain; with a flat heatmap it is plain pixel alignment."""
    cfg = ModelConfig(discriminator_hidden=16)
    model, f, out_s, out_t = _detector_and_outputs(cfg)
    plain = build_domain_loss(cfg, model)
    aware = build_domain_loss(cfg, model, center_aware=True)
    aware.discriminator.load_state_dict(plain.discriminator.state_dict())
    flat_s = {**out_s, "heatmap": torch.zeros_like(out_s["heatmap"])}
    flat_t = {**out_t, "heatmap": torch.zeros_like(out_t["heatmap"])}
    assert torch.allclose(aware(f[:2], f[2:], flat_s, flat_t), plain(f[:2], f[2:], flat_s, flat_t), atol=1e-6)

    # one object cell per image: the weighted loss is the discriminator's loss at those cells alone
    peaked_s, peaked_t = ({**o, "heatmap": torch.full_like(o["heatmap"], -30.0)} for o in (out_s, out_t))
    peaked_s["heatmap"][:, 1, 3, 5] = 30.0
    peaked_t["heatmap"][:, 0, 7, 2] = 30.0
    d = plain.discriminator(torch.cat([f[:2], f[2:]])).float()
    w = peaked_s["heatmap"].shape[-1]
    at_s, at_t = d[:2, 3 * w + 5], d[2:, 7 * w + 2]
    expected = 0.5 * (torch.nn.functional.binary_cross_entropy_with_logits(at_s, torch.ones_like(at_s))
                      + torch.nn.functional.binary_cross_entropy_with_logits(at_t, torch.zeros_like(at_t)))
    assert torch.allclose(aware(f[:2], f[2:], peaked_s, peaked_t), expected, atol=1e-4)


def test_center_aware_needs_a_pixel_discriminator_and_a_detector():
    with pytest.raises(ValueError, match="center_aware"):
        build_domain_loss(ModelConfig(discriminator_hidden=16), 8, center_aware=True)
    cfg = ModelConfig(discriminator_hidden=16, detection_discriminator="global")
    model, *_ = _detector_and_outputs(cfg)
    with pytest.raises(ValueError, match="center_aware"):
        build_domain_loss(cfg, model, center_aware=True)
