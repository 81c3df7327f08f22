"""DA-Faster R-CNN's instance-level alignment and consistency term (Chen et al., CVPR 2018), for CenterNet.

Image-level alignment (DANN with a per-location discriminator) matches whole feature maps;
most of a map is background, so objects can stay apart between the domains. DA-Faster adds
an instance-level discriminator on the features of the objects themselves, behind its own
gradient reversal layer, and a consistency term that asks both discriminators to agree
about the domain of an image: L_cst = mean over instances |mean_uv p_img(u, v) - p_ins|.

A one-stage detector has no RoI pooling: an object's feature is the neck's feature vector
at its centre cell, which is exactly what CenterNet's heads read to predict that object.
The instances of both domains are the ``top_k`` peaks of the detector's own (detached)
heatmap per image (3x3 peak picking, as the decode does): DA-Faster's proposals, which it
samples by the same rule on both domains. The rule must be the same: source ground-truth
centres against target peaks (mostly background while the detector is weak on target) let
the instance discriminator learn "object vs background" instead of "source vs target" (on
identical source and target images it separated them to a loss of 0.002; now it stays at
ln 2). The source labels therefore play no part here.

As in the reference implementation (krumo/Domain-Adaptive-Faster-RCNN-PyTorch), the
consistency term runs the features through both discriminators again without reversal:
its gradient makes the extractor and the discriminators agree, it is not adversarial.
The loss returns its parts by name (``domain`` = image level, ``instance``, ``consistency``)
so the trainer weights and logs each; either extra is off when its weight is 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dann_ros.model.adaptation.dann import DomainAdversarialLoss
from dann_ros.model.grl import GradientReverseLayer


def gather_centres(features: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """(N, C, h, w) map, (N, M) flat cell indices y * w + x -> (N, M, C) feature vectors."""
    n, c = features.shape[:2]
    flat = features.reshape(n, c, -1)
    return torch.gather(flat, 2, indices.unsqueeze(1).expand(-1, c, -1)).transpose(1, 2)


def peak_indices(heatmap: torch.Tensor, k: int) -> torch.Tensor:
    """(N, K, h, w) logits -> (N, k) flat cells of the k strongest local maxima over all classes."""
    with torch.no_grad():
        best = heatmap.detach().float().amax(dim=1, keepdim=True)
        peaks = F.max_pool2d(best, 3, stride=1, padding=1)
        score = torch.where(peaks == best, best, torch.full_like(best, float("-inf"))).flatten(1)
        return torch.topk(score, min(k, score.shape[1]), dim=1).indices


def _domain_bce(logits: torch.Tensor, label: float) -> torch.Tensor:
    """Mean BCE against ``label``; 0 (still in the graph) when there are no instances."""
    if logits.numel() == 0:
        return logits.sum()
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, label))


class InstanceAdversarialLoss(DomainAdversarialLoss):
    """Image-level DANN (``discriminator``: per location, as DomainAdversarialLoss) plus an
    ``instance_discriminator`` ((K, C) features -> (K, 1) logits) behind its own GRL, and the
    image/instance consistency term when ``consistency`` is set. Setting ``coeff`` sets both GRLs
    (one lambda schedule, as DA-Faster uses one weight for all its adversarial terms)."""

    def __init__(self, discriminator: nn.Module, instance_discriminator: nn.Module, top_k: int = 8,
                 consistency: bool = True) -> None:
        super().__init__(discriminator)
        if top_k < 1:
            raise ValueError("instance top_k must be >= 1")
        self.instance_grl = GradientReverseLayer(0.0)
        self.instance_discriminator = instance_discriminator
        self.top_k = top_k
        self.consistency = consistency
        self.last_instance_accuracy = torch.tensor(float("nan"))

    @DomainAdversarialLoss.coeff.setter
    def coeff(self, value: float) -> None:
        self.grl.coeff = value
        self.instance_grl.coeff = value

    def instances(self, f_s: torch.Tensor, f_t: torch.Tensor, logits_s: dict,
                  logits_t: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(source instance features (K_s, C), their image index, target ones (K_t, C), their image index):
        each image's ``top_k`` predicted peaks, the same rule on both domains."""
        out: list[torch.Tensor] = []
        for f, logits in ((f_s, logits_s), (f_t, logits_t)):
            idx = peak_indices(logits["heatmap"], self.top_k)
            out += [gather_centres(f, idx).flatten(0, 1),
                    torch.arange(f.shape[0], device=f.device).repeat_interleave(idx.shape[1])]
        return out[0], out[1], out[2], out[3]

    def forward(self, f_s: torch.Tensor, f_t: torch.Tensor, logits_s=None, logits_t=None,
                targets: dict | None = None) -> dict[str, torch.Tensor]:
        if not isinstance(logits_s, dict) or not isinstance(logits_t, dict):
            raise ValueError("instance alignment needs both domains' predicted heatmaps: detection only")
        n = f_s.shape[0]
        features = torch.cat([f_s, f_t], dim=0)
        losses = {"domain": self._bce(self.discriminator(self.grl(features)).float(), n)}

        src, src_img, tgt, tgt_img = self.instances(f_s, f_t, logits_s, logits_t)
        inst = torch.cat([src, tgt], dim=0)
        d = self.instance_discriminator(self.instance_grl(inst)).float().reshape(-1)
        d_s, d_t = d[:len(src)], d[len(src):]
        losses["instance"] = 0.5 * (_domain_bce(d_s, 1.0) + _domain_bce(d_t, 0.0))
        with torch.no_grad():
            acc_s = (d_s > 0).float().mean() if len(d_s) else torch.tensor(float("nan"), device=d.device)
            self.last_instance_accuracy = (acc_s + (d_t <= 0).float().mean()) / 2.0

        if self.consistency:
            p_img = torch.sigmoid(self.discriminator(features).float().reshape(features.shape[0], -1)).mean(1)
            p_ins = torch.sigmoid(self.instance_discriminator(inst).float().reshape(-1))
            image_of = torch.cat([src_img, tgt_img + n])
            losses["consistency"] = (p_img[image_of] - p_ins).abs().mean()
        return losses

    @property
    def instance_accuracy(self) -> float:
        """Instance discriminator accuracy on the last batch (source and target weighted equally)."""
        return float(self.last_instance_accuracy)
