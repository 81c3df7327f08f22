"""The training YAML, validated once into dataclasses (see ``config/train_demo.yaml``)."""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from dann_ros.typed_config import ConfigError, DeprecatedKeyWarning, from_dict, load_yaml, to_dict
from dann_ros.data.frame_store import DEFAULT_EVAL_MEMORY_MB
from dann_ros.data.preprocess import Preprocess
from dann_ros.data.tasks import task_spec
from dann_ros.model.config import ModelConfig


@dataclass(frozen=True)
class AugmentConfig:
    camera: bool = False
    contrast: float = 0.4  # gain drawn from [1 - c, 1 + c] around the image mean
    brightness: float = 40.0  # offset drawn from +-this (0..255 pixels)
    gamma: float = 0.4  # tone curve exponent exp(U(-g, g))
    blur_sigma: float = 1.2  # gaussian blur sigma drawn from [0, this] (half the images)
    noise_std: float = 10.0  # gaussian sensor noise std drawn from [0, this]
    geometric: bool = False  # random affine warp of source images (detection: boxes move too, train/box_augment.py)
    rotation: float = 15.0  # degrees, drawn from +-this
    scale: float = 0.15  # zoom drawn from [1 - s, 1 + s] (detection: > 1 crops, < 1 expands onto `fill`)
    shear: float = 0.3  # horizontal shear factor drawn from +-this (slant, as handwriting has)
    translate: float = 0.1  # shift drawn from +-this share of the image size
    # detection only (geometric): mirror an image (p 0.5) when all its boxes are of these mirror-safe
    # classes; empty: never (digits and text are not mirror-safe)
    flip_classes: tuple[str, ...] = ()
    mosaic: float = 0.0  # share of source images made a 2x2 mosaic of four half-size images (0: off)
    fill: float = 114.0  # grey (0..255) where the warped image leaves the frame
    # a box cut by the frame edge is clipped, and dropped when the clipped part keeps less than
    # min_visible of its area or its shorter side falls under min_box_side network-input pixels
    min_visible: float = 0.3
    min_box_side: float = 2.0

    def __post_init__(self) -> None:
        if min(self.contrast, self.brightness, self.gamma, self.blur_sigma, self.noise_std) < 0:
            raise ValueError("augment: contrast, brightness, gamma, blur_sigma and noise_std must be >= 0")
        if self.contrast >= 1:
            raise ValueError("augment.contrast must be < 1 (a gain of 1 - contrast must stay positive)")
        if min(self.rotation, self.scale, self.shear, self.translate) < 0 or self.scale >= 1:
            raise ValueError("augment: rotation, shear and translate must be >= 0 and scale in [0, 1)")
        if not 0.0 <= self.mosaic <= 1.0 or not 0.0 <= self.min_visible <= 1.0 or self.min_box_side < 0:
            raise ValueError("augment: mosaic and min_visible must be in [0, 1] and min_box_side >= 0")
        if not 0.0 <= self.fill <= 255.0:
            raise ValueError("augment.fill must be a grey level in [0, 255]")
        if (self.flip_classes or self.mosaic) and not self.geometric:
            raise ValueError("augment.flip_classes and augment.mosaic are part of the box-aware warp: "
                             "set augment.geometric")


@dataclass(frozen=True)
class CropConfig:
    """Object crops for classification; detection keeps whole frames and only uses ``max_occlusion``
    (boxes more hidden than that are dropped from the targets)."""

    margin: float = 0.15
    square: bool = True
    min_size: int = 8
    max_occlusion: float = 0.6


@dataclass(frozen=True)
class SourceConfig:
    """Labelled data: Replicator output (crops or frame labels), or a labelled bag."""

    replicator: Path | None = None  # detection: whole frames with their bounding_box_2d_tight boxes
    frame_labels: Path | None = None  # whole-frame classification labels for Replicator frames
    crop: CropConfig = field(default_factory=CropConfig)
    bag: Path | None = None  # alternative: a bag with its label sidecar (e.g. train-on-target)
    labels: Path | None = None
    topics: tuple[str, ...] = ()
    val_fraction: float = 0.1

    def __post_init__(self) -> None:
        if (self.replicator is None) == (self.bag is None):
            raise ValueError("set exactly one of source.replicator or source.bag")
        if self.bag is not None and self.labels is None:
            raise ValueError("source.labels is required with source.bag")
        if not 0.0 < self.val_fraction < 0.9:
            raise ValueError("source.val_fraction must be in (0, 0.9)")


@dataclass(frozen=True)
class TargetConfig:
    """Unlabelled real camera frames from bags: used for adaptation and label-free selection."""

    bags: tuple[Path, ...] = ()
    topics: tuple[str, ...] = ()
    stride: int = 1
    start_s: float | None = None
    end_s: float | None = None
    max_frames: int | None = None  # over all bags together, a seeded subset (also what evaluation scores)
    weights: tuple[float, ...] = ()  # one per bag: how often each bag is drawn (default: by its size,
    #                                  random sampling; equally per bag, epoch sampling)

    def __post_init__(self) -> None:
        if self.weights and len(self.weights) != len(self.bags):
            raise ValueError(f"target.weights: {len(self.weights)} weights for {len(self.bags)} bags; give one per bag")
        if not all(w > 0 for w in self.weights):
            raise ValueError("target.weights must be positive (leave a bag out of target.bags to drop it)")
        if self.stride < 1 or (self.max_frames is not None and self.max_frames < 1):
            raise ValueError("target.stride and target.max_frames must be positive")


@dataclass(frozen=True)
class EvalTargetConfig:
    """Labelled real frames for reporting only: never used for training or checkpoint selection."""

    bag: Path
    labels: Path
    topics: tuple[str, ...] = ()


@dataclass(frozen=True)
class InstanceAlignmentConfig:
    """Detection, dann: DA-Faster's instance-level alignment at object centres and its image/instance
    consistency term (model/adaptation/instance.py)."""

    weight: float = 0.0  # 0 = off
    consistency_weight: float = 0.0
    top_k: int = 8  # instances of both domains: the strongest predicted peaks per image

    def __post_init__(self) -> None:
        if self.weight < 0 or self.consistency_weight < 0 or self.top_k < 1:
            raise ValueError("adaptation.adversary.instance.weight and consistency_weight must be >= 0, "
                             "adaptation.adversary.instance.top_k >= 1")
        if self.consistency_weight and not self.weight:
            raise ValueError("adaptation.adversary.instance.consistency_weight pairs image- and instance-level "
                             "discriminators: set adaptation.adversary.instance.weight too")


@dataclass(frozen=True)
class AdversaryConfig:
    """The domain discriminator and how the extractor plays against it (dann, cdan)."""

    lambda_max: float = 1.0
    lambda_gamma: float = 10.0
    lambda_horizon: int | None = None  # steps for p to reach 1 (None: train.steps); tllib digits: gamma 1, 1000
    weight: float = 1.0  # multiplies L_domain; lambda in the GRL already ramps 0 -> lambda_max
    # reversal (the gradient reversal layer: the extractor ascends L_domain) or confusion (it descends
    # BCE(d, 1/2): no vanishing gradient against a confident discriminator, no overshoot; model/adaptation/dann.py)
    objective: Literal["reversal", "confusion"] = "reversal"
    # detection, dann, pixel discriminator: weight each location's domain decision by the detector's own
    # heatmap (EPM's center-aware alignment: objects, not background, are aligned; model/adaptation/dann.py)
    center_aware: bool = False
    entropy_conditioning: bool = False  # cdan only: CDAN+E, confident samples weigh more
    instance: InstanceAlignmentConfig = field(default_factory=InstanceAlignmentConfig)

    def __post_init__(self) -> None:
        if self.weight < 0:
            raise ValueError("adaptation.adversary.weight must be >= 0")


@dataclass(frozen=True)
class TargetLossesConfig:
    """Opt-in regularisers on the unlabelled target, added to any method; 0 = off."""

    entropy_weight: float = 0.0  # target entropy minimisation (model/adaptation/entropy.py)
    mcc_weight: float = 0.0  # minimum class confusion on target (model/adaptation/mcc.py)
    mcc_temperature: float = 2.5

    def __post_init__(self) -> None:
        if min(self.entropy_weight, self.mcc_weight) < 0:
            raise ValueError("adaptation.target_losses.entropy_weight and mcc_weight must be >= 0")
        if self.mcc_temperature <= 0:
            raise ValueError("adaptation.target_losses.mcc_temperature must be positive")


@dataclass(frozen=True)
class SelfTrainingConfig:
    """Self-training on a mean teacher's confident target labels (model/adaptation/pseudo_label.py)."""

    weight: float = 0.0  # 0 = off
    threshold: float | None = None  # None: the task's default, 0.95 (softmax) or 0.5 (CenterNet peak)
    start: float = 0.5  # share of train.steps after which it is on (after adaptation)
    ema: float = 0.99  # the teacher's weight average decay per step
    mask: float = 0.0  # MIC: also learn the labels with this share of the target hidden; 0 = off
    mask_block: int = 8  # side of a hidden block, network-input pixels
    camera: bool = False  # that view also passes through augment's camera model (a strong view)
    # detection: a teacher passing more than this many pseudo-boxes per source object (per frame, over the
    # evaluation's steps) is feeding on its own mistakes: warned, and those evaluations are not picked; 0 = off
    max_box_ratio: float = 3.0
    # detection: class-balanced thresholds (CBST): each class's threshold moves from `threshold` so that the teacher
    # labels this share of the step's source objects of that class per target batch; 0 = one threshold for all
    class_portion: float = 0.0
    threshold_floor: float = 0.3  # class_portion's lowest threshold

    def __post_init__(self) -> None:
        if self.weight < 0:
            raise ValueError("adaptation.self_training.weight must be >= 0")
        if self.class_portion < 0 or (self.class_portion > 0 and self.threshold is not None
                                      and not 0.0 < self.threshold_floor <= self.threshold):
            raise ValueError("adaptation.self_training.class_portion must be >= 0 and threshold_floor in "
                             "(0, threshold]")
        t = self.threshold
        if (t is not None and not 0.0 < t <= 1.0) or not 0.0 <= self.start <= 1.0:
            raise ValueError("adaptation.self_training.threshold must be in (0, 1] and "
                             "adaptation.self_training.start in [0, 1]")
        if not 0.0 <= self.ema < 1.0:
            raise ValueError("adaptation.self_training.ema must be in [0, 1)")
        if self.max_box_ratio < 0:
            raise ValueError("adaptation.self_training.max_box_ratio must be >= 0 (0 = off)")
        if not 0.0 <= self.mask < 1.0 or self.mask_block < 1:
            raise ValueError("adaptation.self_training.mask must be in [0, 1) and "
                             "adaptation.self_training.mask_block >= 1")


@dataclass(frozen=True)
class TargetPatchesConfig:
    """Detection: small patches of the unlabelled target frames pasted into source images, away from their
    boxes, so the real scene's clutter is learnt as background (train/target_patches.py)."""

    share: float = 0.0  # share of source images that get patches; 0 = off
    patches: int = 3  # patches tried per such image (one overlapping a source box is not pasted)
    min_side: int = 6  # smallest patch side, network-input pixels (sides drawn from [min_side, max_side])
    max_side: int = 20  # largest side: keep it under a typical object's, so a patch rarely holds a whole real object
    # > 0: no patch is cut where the detector scores an object at least this high on the target frame (its
    # heatmap, one no-grad pass of the step's target batch); 0 = off
    avoid_score: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.share <= 1.0 or self.patches < 1 or not 1 <= self.min_side <= self.max_side:
            raise ValueError("adaptation.target_patches: share in [0, 1], patches >= 1 and "
                             "1 <= min_side <= max_side")
        if not 0.0 <= self.avoid_score < 1.0:
            raise ValueError("adaptation.target_patches.avoid_score must be in [0, 1) (0 = off)")


@dataclass(frozen=True)
class FourierStyleConfig:
    """Source images given a target frame's lowest spatial frequencies: colour, lighting, haze
    (Fourier Domain Adaptation; train/fourier_style.py)."""

    share: float = 0.0  # share of source images restyled per step; 0 = off
    beta: float = 0.05  # the window's side as a share of the shorter image side (at least one frequency)

    def __post_init__(self) -> None:
        if not 0.0 <= self.share <= 1.0 or not 0.0 < self.beta <= 0.5:
            raise ValueError("adaptation.fourier_style: share in [0, 1] and beta in (0, 0.5]")


# settings added after runs were made, as dotted paths into what the digest hashes (the adaptation in its flat
# form), each left out while at the value that reproduces the runs before it, so they keep their digest and
# still resume. Applied in order: a key added inside a section goes before the section.
DIGEST_ADDED = (
    ("train.sampling", "random"), ("target.weights", []),
    ("augment.flip_classes", []), ("augment.mosaic", 0.0), ("augment.fill", 114.0), ("augment.min_visible", 0.3),
    ("augment.min_box_side", 2.0),
    ("model.detection_discriminator", "pixel"), ("adaptation.center_aware", False),
    ("adaptation.adversary", "reversal"),
    ("adaptation.target_patches.avoid_score", 0.0),
    ("adaptation.target_patches", {k: v for k, v in to_dict(TargetPatchesConfig()).items() if k != "avoid_score"}),
    ("adaptation.fourier_style", to_dict(FourierStyleConfig())),
    ("adaptation.pseudo_label_class_portion", 0.0),
    ("adaptation.pseudo_label_threshold_floor", SelfTrainingConfig.threshold_floor),
)


def _drop_added(data: dict) -> None:
    """``data`` (a digest's dict) without the DIGEST_ADDED settings at their old values."""
    for dotted, old in DIGEST_ADDED:
        *parents, leaf = dotted.split(".")
        node = data
        for p in parents:
            node = node[p]
        if node[leaf] == old:
            node.pop(leaf)


# the flat keys of AdaptationConfig before it was nested by concern -> their dotted place under adaptation
LEGACY_ADAPTATION_KEYS = {
    "lambda_max": "adversary.lambda_max", "lambda_gamma": "adversary.lambda_gamma",
    "lambda_horizon": "adversary.lambda_horizon", "weight": "adversary.weight", "adversary": "adversary.objective",
    "center_aware": "adversary.center_aware", "entropy_conditioning": "adversary.entropy_conditioning",
    "instance_weight": "adversary.instance.weight", "consistency_weight": "adversary.instance.consistency_weight",
    "instance_top_k": "adversary.instance.top_k",
    "entropy_weight": "target_losses.entropy_weight", "mcc_weight": "target_losses.mcc_weight",
    "mcc_temperature": "target_losses.mcc_temperature",
    **{f"pseudo_label_{k}": f"self_training.{k}"
       for k in ("weight", "threshold", "start", "ema", "mask", "mask_block", "camera")},
}


def _is_legacy(data: dict, key: str) -> bool:
    # the old `adversary` held the objective's name; the new one is a mapping
    return key in data and not (key == "adversary" and isinstance(data[key], dict))


@dataclass(frozen=True)
class AdaptationConfig:
    """``method``: the adversarial alignment (dann, cdan) or none, configured under ``adversary``. The target
    regularisers (``target_losses``) and self-training are opt-in extras added to any method. Configs and
    checkpoints with the earlier flat keys (``pseudo_label_weight`` directly under ``adaptation``) still load:
    each is read at its new place, with one warning naming them all."""

    method: Literal["dann", "cdan", "none"] = "dann"
    adversary: AdversaryConfig = field(default_factory=AdversaryConfig)
    target_losses: TargetLossesConfig = field(default_factory=TargetLossesConfig)
    self_training: SelfTrainingConfig = field(default_factory=SelfTrainingConfig)
    target_patches: TargetPatchesConfig = field(default_factory=TargetPatchesConfig)
    fourier_style: FourierStyleConfig = field(default_factory=FourierStyleConfig)

    def __post_init__(self) -> None:
        inst = self.adversary.instance
        if (inst.weight or inst.consistency_weight) and self.method != "dann":
            raise ValueError("adaptation.adversary.instance.weight/consistency_weight extend image-level "
                             "alignment: adaptation.method dann")
        if self.adversary.entropy_conditioning and self.method != "cdan":
            raise ValueError("adaptation.adversary.entropy_conditioning is a cdan option (CDAN+E)")

    @classmethod
    def upgrade_keys(cls, data: dict, key: str) -> dict:
        """Old flat keys (``adaptation.pseudo_label_weight``) moved to their nested place, with one
        deprecation warning naming each; a config giving an old key and its new one is refused."""
        old = [k for k in LEGACY_ADAPTATION_KEYS if _is_legacy(data, k)]
        if not old:
            return data
        out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items() if k not in old}
        for name in old:
            dotted = LEGACY_ADAPTATION_KEYS[name]
            *groups, leaf = dotted.split(".")
            node = out
            for g in groups:
                child = node.get(g) or {}
                if not isinstance(child, dict):
                    raise ConfigError(f"{key}.{g}: expected a mapping, got {child!r}")
                node[g] = node = dict(child)
            if leaf in node:
                raise ConfigError(f"{key}.{name} and {key}.{dotted} are the same setting (the first is its "
                                  f"deprecated name): give only {key}.{dotted}")
            node[leaf] = data[name]
        moves = ", ".join(f"{key}.{n} -> {key}.{LEGACY_ADAPTATION_KEYS[n]}" for n in old)
        warnings.warn(f"deprecated flat adaptation keys, read at their new place (rename them): {moves}",
                      DeprecatedKeyWarning, stacklevel=2)
        return out

    def legacy_flat(self) -> dict:
        """The flat form the adaptation had before it was nested: what the training digest hashes, so
        runs made before keep their digest."""
        nested = to_dict(self)
        flat = {"method": nested["method"]}
        for name, dotted in LEGACY_ADAPTATION_KEYS.items():
            node = nested
            for part in dotted.split("."):
                node = node[part]
            flat[name] = node
        return flat

    @property
    def uses_target(self) -> bool:
        """Whether training reads target frames; false exactly under the overrides of NO_TARGET_READS."""
        t = self.target_losses
        return (self.method != "none" or t.entropy_weight > 0 or t.mcc_weight > 0 or self.self_training.weight > 0
                or self.target_patches.share > 0 or self.fourier_style.share > 0)


# TrainConfig.replace overrides that turn off everything that reads target frames (a baseline's adaptation)
NO_TARGET_READS = {"adaptation.method": "none", "adaptation.target_losses.entropy_weight": 0.0,
                   "adaptation.target_losses.mcc_weight": 0.0, "adaptation.self_training.weight": 0.0,
                   "adaptation.target_patches.share": 0.0, "adaptation.fourier_style.share": 0.0}


@dataclass(frozen=True)
class OptimConfig:
    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_schedule: Literal["dann", "constant"] = "dann"
    lr_alpha: float = 10.0
    lr_beta: float = 0.75
    lr_horizon: int | None = None  # steps for p to reach 1 (None: train.steps); tllib digits: alpha 1, 1000
    nesterov: bool = True
    backbone_lr_mult: float = 1.0  # 0.1 for a pretrained backbone
    discriminator_lr_mult: float = 1.0  # > 1 lets the discriminator keep up with the extractor
    grad_clip: float | None = 10.0

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ValueError("optim.lr must be positive")


@dataclass(frozen=True)
class LoopConfig:
    steps: int = 3000
    batch_size: int = 128  # per domain and per process
    eval_every: int = 250
    checkpoint_every: int = 250
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = True  # bf16 autocast on CUDA, and on CPUs with native bf16 (AMX / AVX512-BF16); else fp32
    channels_last: bool = True  # NHWC convolutions: faster oneDNN kernels on CPU, tensor cores on GPU
    threads: int | None = None
    eval_frames: int = 2000  # target frames scored for label-free selection at each evaluation
    # where the prepared frames live: auto = in RAM up to ram_limit_mb of frames, else streamed from the
    # on-disk frame cache by `workers` DataLoader processes (bounded memory whatever the data size)
    data: Literal["auto", "ram", "stream"] = "auto"
    ram_limit_mb: int = 2048
    workers: int | None = None  # stream: batch-assembling processes (None: min(4, CPUs - 1); 0: in-process)
    # memory one evaluation batch may take (input + activations): evaluation, box stability, IM/SND and the
    # proxy A-distance read as many frames a batch as it holds, so a large input takes fewer
    eval_memory_mb: int = DEFAULT_EVAL_MEMORY_MB
    # random: each batch drawn uniformly with replacement (the demo recipe's); epoch: every record once
    # per epoch in a per-epoch shuffle, DistributedDataParallel ranks reading disjoint records
    sampling: Literal["random", "epoch"] = "random"

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 2 or self.eval_every < 1 or self.checkpoint_every < 1:
            raise ValueError("train.steps, batch_size (>= 2), eval_every and checkpoint_every must be positive")
        if (self.workers is not None and self.workers < 0) or self.ram_limit_mb < 0:
            raise ValueError("train.workers and train.ram_limit_mb must be >= 0")
        if self.eval_memory_mb < 1:
            raise ValueError(f"train.eval_memory_mb must be >= 1 (MB), got {self.eval_memory_mb}")


@dataclass(frozen=True)
class TrainConfig:
    source: SourceConfig
    output_dir: Path = Path("runs/train")
    task: str = "classification"  # a key of dann_ros.data.tasks.TASK_SPECS
    seed: int = 0
    classes: tuple[str, ...] = ()  # empty: sorted class names found in the source
    target: TargetConfig = field(default_factory=TargetConfig)
    eval_target: EvalTargetConfig | None = None
    preprocess: Preprocess = field(default_factory=Preprocess)
    model: ModelConfig = field(default_factory=ModelConfig)
    adaptation: AdaptationConfig = field(default_factory=AdaptationConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: LoopConfig = field(default_factory=LoopConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)  # source images only
    # label-free on target.bags: im / snd (classification), stability (detection: box stability under
    # feature dropout); source_val: the source-val metric; last: the final checkpoint
    selection: Literal["im", "snd", "stability", "source_val", "last"] = "im"
    cache_dir: Path = Path(".cache/dann_ros")

    def __post_init__(self) -> None:
        a = self.adaptation
        if a.uses_target and not self.target.bags:
            what = (f"adaptation.method {a.method}" if a.method != "none" else
                    "adaptation.target_losses.entropy_weight/mcc_weight, adaptation.self_training.weight, "
                    "adaptation.target_patches.share and adaptation.fourier_style.share")
            raise ValueError(f"{what} needs target.bags")
        spec = task_spec(self.task)  # unknown task: an error naming the supported ones
        if not spec.class_scores_per_image and (a.method == "cdan" or a.target_losses.entropy_weight
                                                or a.target_losses.mcc_weight):
            raise ValueError("adaptation.method cdan, adaptation.target_losses.entropy_weight and mcc_weight work "
                             "on one class distribution per image: classification only")
        if not spec.has_boxes and a.target_patches.share > 0:
            raise ValueError("adaptation.target_patches pastes target clutter away from the source boxes: "
                             "detection only")
        if not spec.has_boxes and a.self_training.class_portion:
            raise ValueError("adaptation.self_training.class_portion (class-balanced thresholds) is for detection: "
                             "it balances the teacher's boxes per class")
        if not spec.has_boxes and (self.augment.flip_classes or self.augment.mosaic):
            raise ValueError("augment.flip_classes and augment.mosaic move boxes: detection only")
        if self.classes and set(self.augment.flip_classes) - set(self.classes):
            raise ValueError(f"augment.flip_classes: {sorted(set(self.augment.flip_classes) - set(self.classes))} "
                             f"are not among the classes {list(self.classes)}")
        if self.selection in ("im", "snd", "stability") and not self.target.bags:
            raise ValueError(f"selection {self.selection} scores target frames: set target.bags or use source_val")
        if not spec.class_scores_per_image and self.selection in ("im", "snd"):
            raise ValueError(f"selection {self.selection} scores class probabilities (classification only); "
                             f"{self.task} selects by stability (box stability on target.bags), source_val "
                             f"(source-val {spec.metric_title}) or last")
        if not spec.has_boxes and self.selection == "stability":
            raise ValueError(f"selection stability scores detection boxes (detection only); {self.task} selects "
                             "by im, snd, source_val or last")
        if not spec.class_scores_per_image and self.source.frame_labels is not None:
            raise ValueError(f"source.frame_labels are whole-frame class labels; {self.task} reads the "
                             "Replicator boxes (remove source.frame_labels)")

    def digest(self) -> str:
        """Hash of everything that shapes the weights (not where they are written)."""
        data = to_dict(self)
        data.pop("output_dir")
        data.pop("cache_dir")
        # nesting the keys changed no setting; the sections added since are hashed beside the flat ones (an off
        # restyling shapes nothing, whatever its beta)
        a = self.adaptation
        st = a.self_training
        data["adaptation"] = {**a.legacy_flat(), "target_patches": to_dict(a.target_patches),
                              "fourier_style": to_dict(a.fourier_style if a.fourier_style.share else
                                                       FourierStyleConfig()),
                              "pseudo_label_class_portion": st.class_portion,  # its floor shapes nothing without it
                              "pseudo_label_threshold_floor": st.threshold_floor if st.class_portion else
                              SelfTrainingConfig.threshold_floor}
        for where in ("data", "ram_limit_mb", "workers"):  # same batches in RAM or streamed: a run may switch
            data["train"].pop(where)
        data["train"].pop("eval_memory_mb")  # how evaluation batches, not what it computes
        _drop_added(data)
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

    def replace(self, **changes) -> TrainConfig:
        data = to_dict(self)
        changes = _upgrade_dotted(changes)
        for dotted, value in changes.items():
            node = data
            *parents, leaf = dotted.split(".")
            for p in parents:
                node = node.setdefault(p, {})
            node[leaf] = to_dict(value)
        return from_dict(TrainConfig, data)


def _upgrade_dotted(changes: dict) -> dict:
    """Overrides naming an old flat adaptation key (``adaptation.mcc_weight``) go to its new place."""
    old = [k for k in changes if k.startswith("adaptation.") and k.removeprefix("adaptation.") in LEGACY_ADAPTATION_KEYS
           and not (k == "adaptation.adversary" and isinstance(changes[k], dict))]
    if not old:
        return changes
    moved = {f"adaptation.{LEGACY_ADAPTATION_KEYS[k.removeprefix('adaptation.')]}": k for k in old}
    both = sorted(set(moved) & set(changes))
    if both:
        raise ConfigError(f"{moved[both[0]]} and {both[0]} are the same setting (the first is its deprecated "
                          f"name): give only {both[0]}")
    warnings.warn("deprecated flat adaptation keys, read at their new place (rename them): "
                  + ", ".join(f"{k} -> {n}" for n, k in moved.items()), DeprecatedKeyWarning, stacklevel=3)
    return {(f"adaptation.{LEGACY_ADAPTATION_KEYS[k.removeprefix('adaptation.')]}" if k in old else k): v
            for k, v in changes.items()}


def load_train_config(path: str | Path) -> TrainConfig:
    return load_yaml(TrainConfig, path)
