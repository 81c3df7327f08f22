"""adaptation.adversary: confusion, the non-saturating alternative to the gradient reversal layer."""

import pytest
import torch
import torch.nn.functional as F

from dann_ros.model.adaptation.dann import DomainAdversarialLoss
from dann_ros.model.builders import build_domain_loss
from dann_ros.model.config import ModelConfig
from dann_ros.model.discriminator import DomainDiscriminator, GlobalDomainDiscriminator


def _pair(seed: int = 0):
    torch.manual_seed(seed)
    disc = GlobalDomainDiscriminator(4, hidden=8, blocks=2)
    twin = GlobalDomainDiscriminator(4, hidden=8, blocks=2)
    twin.load_state_dict(disc.state_dict())
    return disc, twin


def test_extractor_gets_lambda_times_the_confusion_gradient_and_the_discriminator_its_own_loss():
    disc, twin = _pair()
    adv = DomainAdversarialLoss(disc, adversary="confusion")
    adv.coeff = 0.7
    f = torch.randn(6, 4, 8, 8, requires_grad=True)
    loss = adv(f[:3], f[3:])
    loss.backward()

    ref = DomainAdversarialLoss(twin)  # reversal with lambda 0: the plain discriminator loss and its gradients
    ref.coeff = 0.0
    plain = ref(f.detach()[:3], f.detach()[3:])
    plain.backward()
    assert torch.allclose(loss, plain)  # the logged domain loss is the discriminator's
    for (name, p), q in zip(disc.named_parameters(), twin.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-6), name  # no gradient from the confusion term
    assert disc.body[1].num_batches_tracked.item() == 1  # BatchNorm statistics updated once

    x = f.detach().clone().requires_grad_(True)
    d = twin(x).float()
    half = torch.full_like(d, 0.5)
    conf = 0.5 * (F.binary_cross_entropy_with_logits(d[:3], half[:3])
                  + F.binary_cross_entropy_with_logits(d[3:], half[3:]))
    (g,) = torch.autograd.grad(0.7 * conf, x)
    assert torch.allclose(f.grad, g, atol=1e-6)


def test_confusion_gradient_does_not_vanish_against_a_confident_discriminator():
    """Against a discriminator that is sure (|logit| 12), the reversed gradient is ~e^-12 of the
    confusion gradient: why the GRL could not move a detector's features (model/adaptation/dann.py)."""
    lin = torch.nn.Linear(2, 1)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[6.0, 0.0]]))
        lin.bias.zero_()
    f_s, f_t = torch.tensor([[2.0, 0.0]]), torch.tensor([[-2.0, 0.0]])
    grads = {}
    for adversary in ("reversal", "confusion"):
        adv = DomainAdversarialLoss(lin, adversary=adversary)
        adv.coeff = 1.0
        s = f_s.clone().requires_grad_(True)
        adv(s, f_t).backward()
        grads[adversary] = s.grad.abs().sum().item()
    assert grads["reversal"] < 1e-3 < 0.5 < grads["confusion"]


def test_confusion_gradient_is_zero_when_the_discriminator_cannot_tell():
    adv = DomainAdversarialLoss(DomainDiscriminator(3, hidden=4), adversary="confusion")
    for p in adv.discriminator.parameters():
        torch.nn.init.zeros_(p)  # logit 0 everywhere: p = 1/2
    adv.coeff = 1.0
    f = torch.randn(4, 3, requires_grad=True)
    adv(f[:2], f[2:]).backward()
    assert torch.count_nonzero(f.grad) == 0


def test_adversary_is_validated():
    with pytest.raises(ValueError, match="adversary"):
        DomainAdversarialLoss(torch.nn.Linear(2, 1), adversary="wasserstein")
    with pytest.raises(ValueError, match="adversary"):
        build_domain_loss(ModelConfig(discriminator_hidden=4), 8, method="cdan", num_classes=3, adversary="confusion")
