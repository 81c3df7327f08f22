import pytest
import torch

from dann_ros.data.preprocess import Preprocess
from dann_ros.model.adaptation.dann import DomainAdversarialLoss
from dann_ros.model.backbones import build_backbone
from dann_ros.model.builders import build_classifier, build_domain_loss
from dann_ros.model.config import ModelConfig
from dann_ros.model.discriminator import PixelDomainDiscriminator


@pytest.mark.parametrize("backbone,size,channels", [("small_cnn", 28, "rgb"), ("lenet", 32, "grey"),
                                                    ("resnet18", 64, "rgb"), ("mobilenet_v3_small", 64, "rgb")])
def test_classifier_shapes(backbone, size, channels):
    mean = (0.5,) if channels == "grey" else (0.5, 0.5, 0.5)
    pre = Preprocess(size, size, channels, mean, mean)
    model = build_classifier(ModelConfig(backbone=backbone, bottleneck_dim=32), 7, pre)
    f, logits = model.forward_train(torch.rand(3, *pre.input_shape) * 255)
    assert f.shape == (3, 32) and logits.shape == (3, 7)


def test_unknown_backbone_names_the_key():
    with pytest.raises(ValueError, match="model.backbone"):
        build_backbone("no_such_net", 3)


def test_normalisation_is_inside_the_network():
    pre = Preprocess(mean=(0.2, 0.3, 0.4), std=(0.1, 0.2, 0.3))
    model = build_classifier(ModelConfig(), 10, pre)
    x = torch.full((1, 3, 28, 28), 255.0)
    y = model.normalize(x)
    assert torch.allclose(y[0, :, 0, 0], torch.tensor([(1 - 0.2) / 0.1, (1 - 0.3) / 0.2, (1 - 0.4) / 0.3]))


def test_discriminator_learns_separable_domains():
    torch.manual_seed(0)
    adv = build_domain_loss(ModelConfig(discriminator_hidden=16), 8)
    opt = torch.optim.SGD(adv.parameters(), lr=0.1)
    f_s, f_t = torch.randn(32, 8) + 2, torch.randn(32, 8) - 2
    for _ in range(30):
        opt.zero_grad()
        adv(f_s, f_t).backward()
        opt.step()
    assert adv.domain_accuracy > 0.95
    adv.eval()
    assert adv.source_probability(f_s).mean() > 0.8 > 0.2 > adv.source_probability(f_t).mean()


def test_grl_sign_on_features():
    adv = DomainAdversarialLoss(torch.nn.Linear(4, 1))
    f_s = torch.randn(6, 4, requires_grad=True)
    f_t = torch.randn(6, 4)
    adv.coeff = 0.0
    adv(f_s, f_t).backward()
    assert torch.count_nonzero(f_s.grad) == 0  # lambda 0: the extractor is untouched
    f_s.grad = None
    adv.coeff = 1.0
    loss = adv(f_s, f_t)
    (g_rev,) = torch.autograd.grad(loss, f_s)
    adv.coeff = -1.0  # un-reversed: the plain gradient of L_domain
    (g_plain,) = torch.autograd.grad(adv(f_s, f_t), f_s)
    assert torch.allclose(g_rev, -g_plain, atol=1e-6)


def test_pixel_discriminator_scores_every_location():
    d = PixelDomainDiscriminator(12, hidden=16)
    assert d(torch.randn(2, 12, 5, 7)).shape == (2, 35)
