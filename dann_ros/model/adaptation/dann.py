"""DANN: a discriminator behind a gradient reversal layer (Ganin et al., JMLR 2016).

Minimising this loss trains the discriminator to tell source (label 1) from
target (label 0), while the reversed gradient trains the feature extractor to
make them indistinguishable: the total objective is L_task - lambda L_domain
for the extractor. Works on pooled features (N, F) with ``DomainDiscriminator``
and on feature maps with ``PixelDomainDiscriminator`` (one decision per location).

``center_aware`` (a detector's per-location discriminator): each location's decision is weighted
by how much the detector itself believes an object is centred there (the detached heatmap,
max over classes, normalised to mean 1 per domain), the center-aware alignment of EPM (Hsu et
al., "Every Pixel Matters", ECCV 2020) for anchor-free detectors. Why: most of a detection map
is background, where the real camera's one scene and the renders' random textures need not
match for the heads to work; the objects, and what the detector takes for objects, do.

``adversary``: how the extractor plays. ``reversal`` (Ganin's GRL, the default): the extractor
ascends the discriminator's own loss, -lambda dL_domain/df. When the discriminator separates the
domains with confidence (a detector's image-level one does from the first steps: one fixed real
scene against randomised renders), that gradient vanishes, sigmoid(d) - y -> 0, and once lambda
is large enough to break through it overshoots (the domains swap sides and the task features go
with them: on the demo, source-val mAP 18% -> 2.5% in 50 steps). ``confusion`` (Tzeng et al.,
ICCV 2015): the discriminator still learns L_domain, the extractor minimises lambda BCE(d, 1/2),
the cross-entropy against "cannot tell": its gradient sigmoid(d) - 1/2 is largest when the
discriminator is sure, and zero, not reversed, once it cannot tell.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dann_ros.model.grl import GradientReverseLayer


def objectness_weights(heatmap: torch.Tensor) -> torch.Tensor:
    """(N, K, h, w) heatmap logits -> (N, h * w) detached weights, max class probability per location,
    scaled to mean 1 over the batch (the domain's share of the loss stays that of uniform weights)."""
    with torch.no_grad():
        w = torch.sigmoid(heatmap.detach().float()).amax(dim=1).flatten(1)
        return w / w.mean().clamp(min=1e-6)


ADVERSARIES = ("reversal", "confusion")


def _two_domain_bce(d: torch.Tensor, n_source: int, source_label: float, target_label: float,
                    weight: torch.Tensor | None) -> torch.Tensor:
    """0.5 (BCE(d_source, source_label) + BCE(d_target, target_label)), each domain averaged on its own;
    ``weight`` (optional) per sample (N,) or per decision (the shape of ``d``)."""
    if weight is not None and weight.dim() == 1:
        weight = weight.view(-1, *[1] * (d.dim() - 1))
    per = [F.binary_cross_entropy_with_logits(d[part], torch.full_like(d[part], label),
                                              weight=None if weight is None else weight[part])
           for part, label in ((slice(0, n_source), source_label), (slice(n_source, None), target_label))]
    return 0.5 * (per[0] + per[1])


class DomainAdversarialLoss(nn.Module):
    def __init__(self, discriminator: nn.Module, center_aware: bool = False, adversary: str = "reversal") -> None:
        super().__init__()
        if adversary not in ADVERSARIES:
            raise ValueError(f"adaptation.adversary {adversary!r} is not one of {', '.join(ADVERSARIES)}")
        self.grl = GradientReverseLayer(0.0)
        self.discriminator = discriminator
        self.center_aware = center_aware
        self.adversary = adversary
        self.last_accuracy = torch.tensor(float("nan"))

    @property
    def domain_accuracy(self) -> float:
        """Discriminator accuracy on the last batch (source and target weighted equally)."""
        return float(self.last_accuracy)

    @property
    def coeff(self) -> float:
        return self.grl.coeff

    @coeff.setter
    def coeff(self, value: float) -> None:
        self.grl.coeff = value

    def forward(self, f_s: torch.Tensor, f_t: torch.Tensor, logits_s=None, logits_t=None,
                targets=None) -> torch.Tensor:
        """``logits_*``: the task outputs (a detector's are dicts), ``targets`` the source's task targets,
        unused by DANN: one signature for all adversarial losses (CDAN conditions on the logits, the
        instance-level loss reads object centres from the targets)."""
        features = torch.cat([f_s, f_t], dim=0)
        confusion = self.adversary == "confusion"
        # confusion: the discriminator learns from detached features, the extractor from the second pass below
        d = self.discriminator(features.detach() if confusion else self.grl(features)).float()
        weight = None
        if self.center_aware:
            if not isinstance(logits_s, dict) or not isinstance(logits_t, dict):
                raise ValueError("center-aware alignment weights locations by a detector's heatmap: detection only")
            weight = torch.cat([objectness_weights(logits_s["heatmap"]), objectness_weights(logits_t["heatmap"])])
            if weight.shape != d.shape:
                raise ValueError(f"center-aware alignment needs one decision per heatmap location: the "
                                 f"discriminator gave {tuple(d.shape)}, the heatmap {tuple(weight.shape)}")
        loss = self._bce(d, f_s.shape[0], weight)
        if confusion:
            loss = loss + self.coeff * self._confusion(features, f_s.shape[0], weight)
        return loss

    def _confusion(self, features: torch.Tensor, n_source: int, weight: torch.Tensor | None) -> torch.Tensor:
        """BCE(d, 1/2) through a frozen copy of the discriminator (its weights get no gradient, its BatchNorm
        statistics are not updated twice), minus its value: it adds the extractor's gradient and nothing
        to the logged domain loss."""
        frozen = {k: v.detach() for k, v in self.discriminator.named_parameters()}
        frozen.update({k: v.clone() for k, v in self.discriminator.named_buffers()})
        d = torch.func.functional_call(self.discriminator, frozen, (features,)).float()
        conf = _two_domain_bce(d, n_source, 0.5, 0.5, weight)
        return conf - conf.detach()

    def _bce(self, d: torch.Tensor, n_source: int, weight: torch.Tensor | None = None) -> torch.Tensor:
        """0.5 (BCE(source, 1) + BCE(target, 0)); ``weight`` per sample (CDAN+E) or per decision (center-aware),
        mean 1 per domain."""
        with torch.no_grad():  # a tensor: reading it on every step would stall a GPU
            self.last_accuracy = ((d[:n_source] > 0).float().mean() + (d[n_source:] <= 0).float().mean()) / 2.0
        return _two_domain_bce(d, n_source, 1.0, 0.0, weight)

    @torch.no_grad()
    def source_probability(self, features: torch.Tensor) -> torch.Tensor:
        """P(source | feature): 1 looks like the training renders, 0 like the real camera."""
        logits = self.discriminator(features).float()
        if logits.dim() > 1:
            logits = logits.mean(dim=1)
        return torch.sigmoid(logits.squeeze(-1) if logits.dim() > 1 else logits)
