"""Networks: backbones (feature extractors), task heads, and the adversarial losses."""
