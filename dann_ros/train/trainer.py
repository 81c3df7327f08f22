"""The one training loop: source-only and DANN differ only in whether the domain loss is added.

Per step: equal source and target batches go through the extractor together
(shared BatchNorm statistics, as in tllib), the task loss is computed on the
source half, and the domain loss on both halves behind the gradient reversal
layer. Everything random is derived from (seed, step, rank), and the global
RNG state is checkpointed, so a killed run resumes to the same weights.

Classification and detection share all of it: the task model encodes its
targets and owns its loss; only evaluation (accuracy vs. mAP) and the data
loaders differ.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dann_ros import __version__
from dann_ros.config import to_dict

from dann_ros.evaluation.detection_metrics import evaluate_detections
from dann_ros.model.builders import build_domain_loss, build_model
from dann_ros.model.schedules import dann_lambda, dann_lr_factor
from dann_ros.train import checkpoint, metrics
from dann_ros.train.config import TrainConfig
from dann_ros.train.datasets import (LabelledBoxes, LabelledImages, load_detection_bag, load_detection_source,
                                     load_labelled_bag, load_source, load_target, split_validation)
from dann_ros.train.distributed import Dist, init_distributed, shutdown
from dann_ros.train.step import StepModule

log = logging.getLogger(__name__)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class Data:
    classes: tuple[str, ...]
    source: LabelledImages | LabelledBoxes  # LabelledBoxes for detection
    source_val: LabelledImages | LabelledBoxes
    target: np.ndarray | None
    eval_target: LabelledImages | LabelledBoxes | None


def load_data(cfg: TrainConfig) -> Data:
    cache = cfg.cache_dir
    detection = cfg.task == "detection"
    load = load_detection_source if detection else load_source
    source, classes = load(cfg.source, cfg.preprocess, cfg.classes, cache)
    train, val = split_validation(source, cfg.source.val_fraction, cfg.seed)
    target = load_target(cfg.target, cfg.preprocess, cache, cfg.seed) if cfg.target.bags else None
    eval_target = None
    if cfg.eval_target is not None:
        e = cfg.eval_target
        load_bag = load_detection_bag if detection else load_labelled_bag
        eval_target = load_bag(e.bag, e.labels, e.topics, cfg.preprocess, classes, cache)
    return Data(classes, train, val, target, eval_target)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device is cuda but no CUDA device is available")
    return torch.device(name)


@dataclass
class Evaluation:
    """One evaluation; None fields (the other task's metrics) stay out of metrics.json."""

    step: int
    source_val_accuracy: float | None = None
    target_accuracy: float | None = None
    source_val_map50: float | None = None  # detection: mAP@0.5 and mAP@[.5:.95]
    source_val_map: float | None = None
    target_map50: float | None = None
    target_map: float | None = None
    im: float | None = None
    snd: float | None = None
    domain_accuracy: float | None = None
    extra: dict = field(default_factory=dict)


# metrics.json keys per task: what "source_val" selection maximises, and what the oracle does
SOURCE_VAL_KEY = {"classification": "source_val_accuracy", "detection": "source_val_map50"}
TARGET_KEY = {"classification": "target_accuracy", "detection": "target_map50"}


@torch.no_grad()
def predict(model: nn.Module, images: np.ndarray | torch.Tensor, device: torch.device,
            batch_size: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """(softmax probabilities, features) for uint8 (N, C, H, W) images, in eval mode."""
    was = model.training
    model.eval()
    probs, feats = [], []
    data = torch.as_tensor(images)
    for i in range(0, len(data), batch_size):
        x = data[i:i + batch_size].to(device).float()
        f, logits = model.forward_train(x)
        probs.append(torch.softmax(logits.float(), 1).cpu())
        feats.append(f.float().cpu())
    model.train(was)
    if not probs:
        return torch.empty(0), torch.empty(0)
    return torch.cat(probs), torch.cat(feats)


@torch.no_grad()
def pooled_features(model: nn.Module, images: np.ndarray | torch.Tensor, device: torch.device,
                    batch_size: int = 512) -> torch.Tensor:
    """The domain features per image, a feature map averaged over locations (proxy A-distance input)."""
    was = model.training
    model.eval()
    feats = []
    data = torch.as_tensor(images)
    for i in range(0, len(data), batch_size):
        f, _ = model.forward_train(data[i:i + batch_size].to(device).float())
        feats.append((f.mean((2, 3)) if f.dim() == 4 else f).float().cpu())
    model.train(was)
    return torch.cat(feats) if feats else torch.empty(0)


@torch.no_grad()
def detection_report(model: nn.Module, data: LabelledBoxes, device: torch.device, classes: tuple[str, ...],
                     batch_size: int = 128):
    """COCO-style mAP of the detector on prepared frames, in network-input pixels."""
    was = model.training
    model.eval()
    boxes, scores, ids = [], [], []
    images = torch.as_tensor(data.images)
    for i in range(0, len(images), batch_size):
        b, s, c = model(images[i:i + batch_size].to(device).float())
        boxes += list(b.float().cpu().numpy())
        scores += list(s.float().cpu().numpy())
        ids += list(c.cpu().numpy())
    model.train(was)
    return evaluate_detections(boxes, scores, ids, data.boxes, data.classes, len(classes), class_names=classes)


class Trainer:
    def __init__(self, cfg: TrainConfig, resume: bool = True, show_progress: bool = True) -> None:
        self.cfg = cfg
        self.device = pick_device(cfg.train.device)
        self.dist: Dist = init_distributed(self.device.type)
        if self.dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        self.out = Path(cfg.output_dir)
        self.show_progress = show_progress and self.dist.is_main
        torch.manual_seed(cfg.seed)
        self.data = load_data(cfg)
        self.model = build_model(cfg.model, cfg.task, len(self.data.classes), cfg.preprocess).to(self.device)
        self.adversarial = None
        if cfg.adaptation.method == "dann":
            self.adversarial = build_domain_loss(cfg.model, self.model).to(self.device)
        self.step_module: nn.Module = StepModule(self.model, self.adversarial)
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.step_module = nn.parallel.DistributedDataParallel(self.step_module, device_ids=ids)
        self.optimizer = self._make_optimizer()
        self.step = 0
        self.history: list[dict] = []
        # uint8 frames are small (20k digit crops: 47 MB): on a GPU they live there, so a step
        # costs no host-to-device copy
        on = self.device if self.device.type == "cuda" else torch.device("cpu")
        self.detection = cfg.task == "detection"
        self.source_images = torch.from_numpy(self.data.source.images).to(on)
        # detection targets are encoded per batch from the boxes (model.encode_targets)
        self.source_labels = None if self.detection else torch.from_numpy(self.data.source.labels).to(on)
        self.target_images = torch.from_numpy(self.data.target).to(on) if self.data.target is not None else None
        self.eval_target_subset = self._target_subset()
        self.train_seconds = 0.0
        self._domain_acc: list[torch.Tensor] = []  # discriminator accuracy on the training batches since the last eval
        if resume:
            self._try_resume()
        elif (self.out / "last.pt").exists() and self.dist.is_main:
            shutil.rmtree(self.out / "checkpoints", ignore_errors=True)
            (self.out / "last.pt").unlink()

    # ----------------------------------------------------------------- set-up
    def _make_optimizer(self) -> torch.optim.Optimizer:
        o = self.cfg.optim
        backbone = list(self.model.backbone.parameters())
        disc = list(self.adversarial.parameters()) if self.adversarial is not None else []
        ids = {id(p) for p in backbone + disc}
        rest = [p for p in self.step_module.parameters() if id(p) not in ids]
        groups = [{"params": backbone, "lr_mult": o.backbone_lr_mult}, {"params": rest, "lr_mult": 1.0},
                  {"params": disc, "lr_mult": o.discriminator_lr_mult}]
        for g in groups:
            g["lr"] = o.lr * g["lr_mult"]
        if o.optimizer == "sgd":
            return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay, nesterov=True)
        return torch.optim.Adam(groups, lr=o.lr, weight_decay=o.weight_decay)

    def _target_subset(self) -> torch.Tensor | None:
        if self.target_images is None:
            return None
        n = min(len(self.target_images), self.cfg.train.eval_frames)
        pick = np.sort(np.random.default_rng(self.cfg.seed).choice(len(self.target_images), n, replace=False))
        return self.target_images[torch.from_numpy(pick).to(self.target_images.device)]

    def _try_resume(self) -> None:
        path = self.out / "last.pt"
        if not path.exists():
            return
        state = checkpoint.load(path)
        if state.get("digest") != self.cfg.digest():
            raise RuntimeError(f"{path}: holds a run with a different configuration; "
                               "use another output_dir or --restart to start over")
        self.model.load_state_dict(state["model"])
        if self.adversarial is not None:
            self.adversarial.load_state_dict(state["domain"])
        self.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        if self.device.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"])
        self.step = int(state["step"])
        self.history = json.loads(state["history"])
        self.train_seconds = float(state.get("train_seconds", 0.0))
        self._domain_acc = list(state.get("domain_acc_since_eval", torch.empty(0)).to(self.device))
        log.info("resumed %s at step %d", path, self.step)

    # ------------------------------------------------------------- schedules
    def progress(self, step: int) -> float:
        return step / self.cfg.train.steps

    def _apply_schedules(self, step: int) -> tuple[float, float]:
        p = self.progress(step)
        a, o = self.cfg.adaptation, self.cfg.optim
        lam = dann_lambda(p, a.lambda_gamma, a.lambda_max) if a.method == "dann" else 0.0
        if self.adversarial is not None:
            self.adversarial.coeff = lam
        factor = dann_lr_factor(p, o.lr_alpha, o.lr_beta) if o.lr_schedule == "dann" else 1.0
        for g in self.optimizer.param_groups:
            g["lr"] = o.lr * g["lr_mult"] * factor
        return lam, o.lr * factor

    def _batch(self, step: int):
        """Indices are a pure function of (seed, step, rank): resuming replays the same batches.

        Returns source images, their targets (class ids, or a detector's encoded maps) and target images."""
        b = self.cfg.train.batch_size
        g = torch.Generator().manual_seed(((self.cfg.seed * 1_000_003 + step) * 131 + self.dist.rank) & (2**62 - 1))
        picked = torch.randint(len(self.data.source), (b,), generator=g)
        idx = picked.to(self.source_images.device)
        x_s = self.source_images[idx].to(self.device, non_blocking=True).float()
        if self.detection:
            src = self.data.source
            y_s = self.model.encode_targets([src.boxes[i] for i in picked.tolist()],
                                            [src.classes[i] for i in picked.tolist()])
        else:
            y_s = self.source_labels[idx].to(self.device, non_blocking=True)
        x_t = None
        if self.adversarial is not None:
            idx_t = torch.randint(len(self.target_images), (b,), generator=g).to(self.target_images.device)
            x_t = self.target_images[idx_t].to(self.device, non_blocking=True).float()
        return x_s, y_s, x_t

    # ------------------------------------------------------------------ loop
    def run(self, stop_after: int | None = None) -> dict | None:
        """Train to ``train.steps`` (or stop after ``stop_after`` steps, as a kill would)."""
        from torch.utils.tensorboard import SummaryWriter
        from tqdm import tqdm

        cfg = self.cfg
        writer = SummaryWriter(str(self.out / "tensorboard")) if self.dist.is_main else None
        bar = tqdm(total=cfg.train.steps, initial=self.step, disable=not self.show_progress,
                   desc=f"{cfg.adaptation.method}", dynamic_ncols=True)
        autocast = self.device.type == "cuda" and cfg.train.amp
        self.step_module.train()
        started, steps_done = time.perf_counter(), 0
        try:
            while self.step < cfg.train.steps:
                if stop_after is not None and steps_done >= stop_after:
                    return None
                lam, lr = self._apply_schedules(self.step)
                x_s, y_s, x_t = self._batch(self.step)
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=autocast):
                    task_loss, domain_loss = self.step_module(x_s, y_s, x_t)
                loss = task_loss + cfg.adaptation.weight * domain_loss
                if self._check_finite(self.step + 1) and not torch.isfinite(loss):
                    raise TrainingDiverged(
                        f"loss became {float(loss.detach())} at step {self.step} (task {float(task_loss.detach()):.4g}, "
                        f"domain {float(domain_loss.detach()):.4g}); the last good checkpoint is {self.out / 'last.pt'}. "
                        "Lower optim.lr or adaptation.lambda_max.")
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.optim.grad_clip:
                    nn.utils.clip_grad_norm_(self.step_module.parameters(), cfg.optim.grad_clip)
                self.optimizer.step()
                self.step += 1
                steps_done += 1
                if self.adversarial is not None:
                    self._domain_acc.append(self.adversarial.last_accuracy)
                bar.update(1)
                if writer is not None and (self.step % 10 == 0 or self.step == cfg.train.steps):
                    writer.add_scalar("train/task_loss", float(task_loss.detach()), self.step)
                    writer.add_scalar("train/lambda", lam, self.step)
                    writer.add_scalar("train/lr", lr, self.step)
                    if self.adversarial is not None:
                        writer.add_scalar("train/domain_loss", float(domain_loss.detach()), self.step)
                        writer.add_scalar("train/discriminator_accuracy", self.adversarial.domain_accuracy, self.step)
                    bar.set_postfix(task=f"{float(task_loss.detach()):.3f}", dom=f"{float(domain_loss.detach()):.3f}")
                last = self.step == cfg.train.steps
                if self.step % cfg.train.eval_every == 0 or last:
                    self.train_seconds += time.perf_counter() - started
                    if self.dist.is_main:
                        self._evaluate_and_save(writer)
                    self.dist.barrier()
                    started = time.perf_counter()
                elif self.step % cfg.train.checkpoint_every == 0:
                    self.train_seconds += time.perf_counter() - started
                    if self.dist.is_main:
                        self._save_state()
                    self.dist.barrier()
                    started = time.perf_counter()
        finally:
            bar.close()
            if writer is not None:
                writer.close()
        result = self._finish() if self.dist.is_main else None
        self.dist.barrier()
        shutdown(self.dist)
        return result

    def _check_finite(self, next_step: int) -> bool:
        """Every step on CPU; on a GPU (where reading the loss stalls the stream) every 10th step
        and before every save, so no NaN weights are ever checkpointed."""
        t = self.cfg.train
        return (self.device.type == "cpu" or next_step % 10 == 0 or next_step % t.eval_every == 0
                or next_step % t.checkpoint_every == 0 or next_step == t.steps)

    # ------------------------------------------------------------ evaluation
    def evaluate(self) -> Evaluation:
        if self.detection:
            return self._evaluate_detection()
        d = self.data
        probs_v, feats_v = predict(self.model, d.source_val.images, self.device)
        ev = Evaluation(self.step, metrics.accuracy(probs_v.argmax(1).numpy(), d.source_val.labels))
        if self.eval_target_subset is not None:
            probs_t, feats_t = predict(self.model, self.eval_target_subset, self.device)
            ev.im = metrics.information_maximization(probs_t)
            ev.snd = metrics.soft_neighborhood_density(probs_t)
        if d.eval_target is not None:
            probs_e, _ = predict(self.model, d.eval_target.images, self.device)
            ev.target_accuracy = metrics.accuracy(probs_e.argmax(1).numpy(), d.eval_target.labels)
        return ev

    def _evaluate_detection(self) -> Evaluation:
        d = self.data
        val = detection_report(self.model, d.source_val, self.device, d.classes)
        ev = Evaluation(self.step, source_val_map50=val.map50, source_val_map=val.map)
        if d.eval_target is not None:
            target = detection_report(self.model, d.eval_target, self.device, d.classes)
            ev.target_map50, ev.target_map = target.map50, target.map
        return ev

    def _evaluate_and_save(self, writer) -> None:
        ev = self.evaluate()
        if self._domain_acc:
            ev.domain_accuracy = float(torch.stack(self._domain_acc).mean())
            self._domain_acc.clear()
        record = {k: v for k, v in ev.__dict__.items() if k != "extra" and v is not None}
        self.history.append(record)
        if writer is not None:
            for k, v in record.items():
                if k != "step":
                    writer.add_scalar(f"eval/{k}", v, self.step)
        checkpoint.save_atomic(self.model_checkpoint(), self.out / "checkpoints" / f"step_{self.step:06d}.pt")
        self._save_state()
        log.info("step %d: %s", self.step, record)

    def _save_state(self) -> None:
        state = {
            "format": checkpoint.FORMAT, "kind": "train_state", "digest": self.cfg.digest(),
            "config": json.dumps(to_dict(self.cfg)), "step": self.step,
            "model": self.model.state_dict(),
            "domain": self.adversarial.state_dict() if self.adversarial is not None else None,
            "optimizer": self.optimizer.state_dict(), "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state() if self.device.type == "cuda" else None,
            "history": json.dumps(self.history), "train_seconds": self.train_seconds,
            "domain_acc_since_eval": (torch.stack(self._domain_acc).cpu() if self._domain_acc else torch.empty(0)),
        }
        checkpoint.save_atomic(state, self.out / "last.pt")

    def model_checkpoint(self) -> dict:
        disc = self.adversarial.discriminator if self.adversarial is not None else None
        return checkpoint.model_state(self.model, disc, task=self.cfg.task, classes=self.data.classes,
                                      preprocess=self.cfg.preprocess, model_config=self.cfg.model,
                                      digest=self.cfg.digest(), step=self.step, train_config=to_dict(self.cfg))

    def _finish(self) -> dict:
        cfg = self.cfg
        crit = cfg.selection
        hist = self.history
        if crit == "last":
            chosen = hist[-1]
        else:
            key = SOURCE_VAL_KEY[cfg.task] if crit == "source_val" else crit
            chosen = max(hist, key=lambda h: _finite(h.get(key)))
        ckpt = self.out / "checkpoints" / f"step_{chosen['step']:06d}.pt"
        shutil.copyfile(ckpt, self.out / "model.pt")
        target_key = TARGET_KEY[cfg.task]
        labelled = [h for h in hist if h.get(target_key) is not None]
        oracle = max(labelled, key=lambda h: _finite(h[target_key])) if labelled else None
        pad = self._proxy_a_distance(ckpt)
        images = cfg.train.batch_size * cfg.train.steps * self.dist.world_size
        result = {
            "task": cfg.task, "method": cfg.adaptation.method, "seed": cfg.seed, "classes": list(self.data.classes),
            "selection": crit, "selected": chosen, "oracle": oracle, "last": hist[-1],
            "proxy_a_distance": pad, "train_seconds": round(self.train_seconds, 2),
            "source_images_per_second": round(images / max(self.train_seconds, 1e-9), 1),
            "n_source": int(len(self.data.source)), "n_target": int(len(self.target_images))
            if self.target_images is not None else 0,
            "n_eval_target": int(len(self.data.eval_target)) if self.data.eval_target else 0,
            "history": hist, "config_digest": cfg.digest(), "version": __version__,
        }
        (self.out / "metrics.json").write_text(json.dumps(result, indent=2))
        return result

    def _proxy_a_distance(self, ckpt: Path) -> float | None:
        if self.eval_target_subset is None:
            return None
        state = checkpoint.load(ckpt)
        current = {k: v.clone() for k, v in self.model.state_dict().items()}
        self.model.load_state_dict(state["model"])
        f_s = pooled_features(self.model, self.data.source_val.images, self.device)
        f_t = pooled_features(self.model, self.eval_target_subset, self.device)
        self.model.load_state_dict(current)
        return metrics.proxy_a_distance(f_s.numpy(), f_t.numpy(), self.cfg.seed)


def _finite(value: float | None) -> float:
    """Selection key: a missing or NaN metric (e.g. mAP without ground truth) never wins."""
    return -math.inf if value is None or math.isnan(value) else value


def train(cfg: TrainConfig, resume: bool = True, show_progress: bool = True) -> dict | None:
    return Trainer(cfg, resume=resume, show_progress=show_progress).run()
