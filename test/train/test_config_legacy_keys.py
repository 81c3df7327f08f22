"""adaptation's keys nested by concern: configs written with the earlier flat keys still load, read at
their new place with one deprecation warning, and keep the digest their runs were made under."""

from __future__ import annotations

import re
import warnings

import pytest
import yaml

from dann_ros.train.config import TrainConfig, load_train_config
from dann_ros.typed_config import ConfigError, DeprecatedKeyWarning, from_dict

BASE = {"source": {"replicator": "renders"}, "target": {"bags": ["real.bag"]}}

# (flat adaptation as written before the nesting, the same settings nested, the digest the flat config has:
# the cdan case, whose keys all existed before, is what the last landed code (1594d4b) gave, so a resumed run
# or the demo's skip check still matches it; the other two use options that came with the nesting's round
# (objective, center_aware), which no landed code could read: their digests pin today's)
CASES = {
    "classification": (
        {"method": "dann", "lambda_max": 0.5, "lambda_gamma": 1.0, "lambda_horizon": 1000, "weight": 2.0,
         "adversary": "confusion", "entropy_weight": 0.1, "mcc_weight": 1.0, "mcc_temperature": 2.0,
         "pseudo_label_weight": 1.0, "pseudo_label_threshold": 0.9, "pseudo_label_start": 0.4,
         "pseudo_label_ema": 0.98, "pseudo_label_mask": 0.5, "pseudo_label_mask_block": 16,
         "pseudo_label_camera": True},
        {"method": "dann",
         "adversary": {"lambda_max": 0.5, "lambda_gamma": 1.0, "lambda_horizon": 1000, "weight": 2.0,
                       "objective": "confusion"},
         "target_losses": {"entropy_weight": 0.1, "mcc_weight": 1.0, "mcc_temperature": 2.0},
         "self_training": {"weight": 1.0, "threshold": 0.9, "start": 0.4, "ema": 0.98, "mask": 0.5,
                           "mask_block": 16, "camera": True}},
        {}, "0d64fd81a489d3b0"),
    "detection": (
        {"method": "dann", "center_aware": True, "instance_weight": 1.0, "consistency_weight": 0.5,
         "instance_top_k": 4},
        {"method": "dann", "adversary": {"center_aware": True,
                                         "instance": {"weight": 1.0, "consistency_weight": 0.5, "top_k": 4}}},
        {"task": "detection", "selection": "stability"}, "fb0f33337b079592"),
    "cdan": (
        {"method": "cdan", "entropy_conditioning": True},
        {"method": "cdan", "adversary": {"entropy_conditioning": True}},
        {}, "10439760baf32261"),
}


def _write(path, adaptation: dict, extra: dict):
    path.write_text(yaml.safe_dump({**BASE, **extra, "adaptation": adaptation}))
    return path


@pytest.mark.parametrize("case", CASES)
def test_flat_yaml_loads_with_one_warning_and_equals_the_nested_one(tmp_path, case):
    flat, nested, extra, old_digest = CASES[case]
    old_file, new_file = _write(tmp_path / "old.yaml", flat, extra), _write(tmp_path / "new.yaml", nested, extra)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        new = load_train_config(new_file)
    assert not [w for w in caught if issubclass(w.category, DeprecatedKeyWarning)]
    with pytest.warns(DeprecatedKeyWarning) as record:
        old = load_train_config(old_file)
    assert len(record) == 1  # one warning for all the keys
    message = str(record[0].message)
    assert str(old_file) in message
    moved = dict(re.findall(r"(adaptation\.\w+) -> (adaptation\.[\w.]+)", message))
    assert set(moved) == {f"adaptation.{k}" for k in flat if k != "method"}
    for key, place in moved.items():  # each new place holds the old key's value
        node = old
        for part in place.split("."):
            node = getattr(node, part)
        assert node == flat[key.removeprefix("adaptation.")], key
    assert old == new
    assert old.digest() == new.digest() == old_digest


def test_old_and_new_key_together_are_refused_naming_both(tmp_path):
    path = _write(tmp_path / "both.yaml", {"mcc_weight": 1.0, "target_losses": {"mcc_weight": 2.0}}, {})
    with pytest.raises(ConfigError) as err, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecatedKeyWarning)
        load_train_config(path)
    assert "adaptation.mcc_weight" in str(err.value) and "adaptation.target_losses.mcc_weight" in str(err.value)
    assert str(path) in str(err.value)
    with pytest.raises(ConfigError, match=r"adaptation\.adversary.*adaptation\.adversary\.objective"):
        from_dict(TrainConfig, BASE).replace(
            **{"adaptation.adversary": "reversal", "adaptation.adversary.objective": "confusion"})


def test_replace_reads_an_old_dotted_key_at_its_new_place():
    cfg = from_dict(TrainConfig, BASE)
    with pytest.warns(DeprecatedKeyWarning, match=r"adaptation\.pseudo_label_weight -> adaptation\.self_training"):
        old = cfg.replace(**{"adaptation.pseudo_label_weight": 1.0, "adaptation.adversary": "confusion"})
    assert old == cfg.replace(**{"adaptation.self_training.weight": 1.0, "adaptation.adversary.objective": "confusion"})
    assert old.adaptation.self_training.weight == 1.0 and old.adaptation.adversary.objective == "confusion"


@pytest.mark.parametrize("adaptation, key", [
    ({"self_training": {"threshold": 1.5}}, "adaptation.self_training.threshold"),
    ({"target_losses": {"mcc_temperature": 0.0}}, "adaptation.target_losses.mcc_temperature"),
    ({"adversary": {"entropy_conditioning": True}}, "adaptation.adversary.entropy_conditioning"),
    ({"adversary": {"instance": {"top_k": 0}}}, "adaptation.adversary.instance.top_k"),
    ({"adversary": {"objective": "wasserstein"}}, "adaptation.adversary.objective"),
    ({"self_training": {"wieght": 1.0}}, "adaptation.self_training.wieght"),
])
def test_validation_names_the_full_dotted_key(adaptation, key):
    with pytest.raises(ConfigError, match=re.escape(key)):
        from_dict(TrainConfig, {**BASE, "adaptation": adaptation})


def test_detection_alignment_options_at_their_defaults_leave_the_digest_as_before():
    """model.detection_discriminator, adaptation.adversary.center_aware and .objective came with this
    round: at their defaults a config's digest is the one the code before them gave (1594d4b), so runs and
    demo outputs made before resume instead of retraining."""
    adaptation = {"method": "cdan", "adversary": {"entropy_conditioning": True}}
    cfg = from_dict(TrainConfig, {**BASE, "adaptation": adaptation})
    assert cfg.digest() == "10439760baf32261"
    assert cfg.replace(**{"model.detection_discriminator": "global"}).digest() != cfg.digest()


def test_class_balanced_thresholds_are_in_the_digest_and_off_leave_it_as_before():
    """adaptation.self_training.class_portion shapes the weights, so a run with it never resumes or reuses one
    without it; off (its floor then shapes nothing) the digest is the one the code before it gave (the
    detection case above)."""
    flat, nested, extra, old_digest = CASES["detection"]
    cfg = from_dict(TrainConfig, {**BASE, **extra, "adaptation": nested})
    assert cfg.replace(**{"adaptation.self_training.threshold_floor": 0.2}).digest() == old_digest
    balanced = cfg.replace(**{"adaptation.self_training.class_portion": 0.5})
    assert balanced.digest() != cfg.digest()
    assert balanced.replace(**{"adaptation.self_training.threshold_floor": 0.2}).digest() != balanced.digest()
