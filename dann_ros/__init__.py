"""dann_ros: domain-adversarial training from Isaac Sim renders to real robot cameras."""

__version__ = "0.1.0"
