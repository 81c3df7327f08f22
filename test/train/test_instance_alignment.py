"""DA-Faster instance-level alignment through the one trainer on real tiny detection domains: its
parts are logged and weighted by name, its discriminator learns, and its state is checkpointed."""

from __future__ import annotations


import pytest
import torch

from dann_ros.model.adaptation.instance import InstanceAdversarialLoss
from dann_ros.train.checkpoint import load
from dann_ros.train.trainer import Trainer, train
from test.train.conftest import tiny_detection_config

INSTANCE = {"adaptation.adversary.instance.weight": 1.0, "adaptation.adversary.instance.consistency_weight": 1.0,
            "adaptation.adversary.instance.top_k": 4}


def test_instance_discriminator_learns_on_a_short_run(tiny_detection_domains, tmp_path):
    # lambda 0: no reversed gradient, so the instance discriminator alone shows it can tell the domains apart
    cfg = tiny_detection_config(tiny_detection_domains, tmp_path, **INSTANCE, **{
        "adaptation.adversary.lambda_max": 0.0, "train.steps": 60, "train.batch_size": 8,
        "optim.discriminator_lr_mult": 5.0})
    trainer = Trainer(cfg, resume=False, show_progress=False)
    assert isinstance(trainer.adversarial, InstanceAdversarialLoss)
    assert trainer.loss_weights["instance"] == trainer.loss_weights["consistency"] == 1.0
    inst_params = {id(p) for p in trainer.adversarial.instance_discriminator.parameters()}
    disc_group = trainer.optimizer.param_groups[2]["params"]  # the discriminators' lr group
    assert inst_params <= {id(p) for p in disc_group}
    trainer.step_module.train()
    parts: dict[str, list[float]] = {}
    for step in range(60):
        trainer._apply_schedules(step)
        for k, v in trainer.train_step(step).items():
            parts.setdefault(k, []).append(float(v.detach()))
    assert set(parts) == {"task", "domain", "instance", "consistency"}
    early, late = sum(parts["instance"][:10]) / 10, sum(parts["instance"][-10:]) / 10
    assert early > 0.6 and late < 0.9 * early  # starts near ln 2 and falls as it learns (0.68 -> 0.49 here)
    assert all(0.0 <= c <= 1.0 for c in parts["consistency"])


def test_run_with_instance_alignment_checkpoints_and_exports(tiny_detection_domains, tmp_path):
    from dann_ros.export.checkpoint_model import load_model

    cfg = tiny_detection_config(tiny_detection_domains, tmp_path, **INSTANCE)
    result = train(cfg, show_progress=False)
    assert result["method"] == "dann" and all("domain_accuracy" in h for h in result["history"])
    state = load(tmp_path / "last.pt")
    assert any(k.startswith("instance_discriminator.") for k in state["domain"])  # resumable
    module, info = load_model(tmp_path / "model.pt")  # the deployed monitor keeps the image-level one
    assert info.has_domain
    deployed = load(tmp_path / "model.pt")["domain"]  # the image-level discriminator's weights, no instance ones
    assert set(deployed) == set(module.discriminator.state_dict())
    for k, v in module.discriminator.state_dict().items():
        torch.testing.assert_close(v, deployed[k])
    resumed = Trainer(cfg, resume=True, show_progress=False)  # the instance discriminator comes back too
    torch.testing.assert_close(resumed.adversarial.instance_discriminator.state_dict(),
                               {k[len("instance_discriminator."):]: v for k, v in state["domain"].items()
                                if k.startswith("instance_discriminator.")})


@pytest.mark.parametrize("overrides, match", [
    ({"adaptation.adversary.instance.weight": 1.0, "adaptation.method": "none"}, "method dann"),
    ({"adaptation.adversary.instance.consistency_weight": 1.0}, "set adaptation\\.adversary\\.instance\\.weight too"),
    ({"adaptation.adversary.instance.top_k": 0}, "adaptation\\.adversary\\.instance\\.top_k"),
])
def test_instance_options_are_validated(tiny_detection_domains, tmp_path, overrides, match):
    with pytest.raises(ValueError, match=match):
        tiny_detection_config(tiny_detection_domains, tmp_path, **overrides)
