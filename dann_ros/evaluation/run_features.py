"""What a training run's model.pt sees: its pooled features on (a sample of) the run's source and
target data, the t-SNE of them, its confusion on the labelled eval target, and a detector's features at the
labelled objects (for ``dann-ros report``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from dann_ros.data.tasks import task_spec
from dann_ros.evaluation.scores import classification_scores


class RunError(ValueError):
    """A run folder that is missing what the report needs; names the folder and file."""


@dataclass
class Features:
    source: np.ndarray  # (n_s, F)
    target: np.ndarray  # (n_t, F)
    target_from: str
    confusion: Any | None  # ClassificationScores on the labelled eval target
    classes: tuple[str, ...]
    # a detector with a labelled eval target: features at the objects' centre cells
    # (inference.pooled_and_object_features), the source's boxes against the eval target's
    source_objects: np.ndarray | None = None  # (m_s, F)
    target_objects: np.ndarray | None = None  # (m_t, F)


def run_features(run: Any, points: int, seed: int) -> Features:
    """Features of model.pt on (a sample of) the run's source and target data."""
    import torch

    from dann_ros.typed_config import from_dict, warnings_from
    from dann_ros.data.frame_store import Subset
    from dann_ros.export.checkpoint_model import load_model
    from dann_ros.model.inference import pooled_and_object_features, pooled_features, predict
    from dann_ros.train import checkpoint
    from dann_ros.train.config import TrainConfig
    from dann_ros.train.data import load_train_data
    from dann_ros.train.streaming import eval_batches

    model_file = run.path / "model.pt"
    if not model_file.exists():
        raise RunError(f"{model_file} not found (the run has not finished)")
    raw = checkpoint.load(model_file)
    cfg_text = raw.get("train_config") or "{}"
    if not json.loads(cfg_text):
        raise RunError(f"{model_file} carries no training config, so its data cannot be found")
    with warnings_from(model_file):  # a config stored with since renamed keys: read, and say which
        cfg = from_dict(TrainConfig, json.loads(cfg_text))
    deployed, info = load_model(model_file)
    data = load_train_data(cfg.replace(**{"train.data": "stream"}))  # reads only the sampled records
    rng = np.random.default_rng(seed)

    def sample(stores) -> list:
        """``points`` records of the stores taken together (all of them when fewer), as views."""
        sizes = [len(s) for s in stores]
        total = sum(sizes)
        pick = np.arange(total) if total <= points else np.sort(rng.choice(total, points, replace=False))
        starts = np.concatenate([[0], np.cumsum(sizes)])
        return [Subset(s, pick[(pick >= a) & (pick < b)] - a) for s, a, b in zip(stores, starts[:-1], starts[1:])]

    device = torch.device("cpu")
    budget = cfg.train.eval_memory_mb

    def features(stores, objects: bool = False) -> tuple[torch.Tensor, np.ndarray | None]:
        """Pooled features, a budget's batch at a time (the sampled frames are never all in RAM); with
        ``objects``, also a detector's features at every labelled box, from the same pass."""
        pooled, at = [], []
        for s in stores:
            start = 0
            for x in eval_batches(deployed.model, s, budget):
                if objects:
                    boxes = [s.ragged("boxes", i) for i in range(start, start + len(x))]
                    p, o = pooled_and_object_features(deployed.model, x, boxes, device, budget_mb=budget)
                    at.append(o)
                else:
                    p = pooled_features(deployed.model, x, device, budget_mb=budget)
                start += len(x)
                pooled.append(p)
        return (torch.cat(pooled) if pooled else torch.empty(0)), \
            ((torch.cat(at).numpy() if at else np.empty((0, 0), np.float32)) if objects else None)

    if data.target:
        target, target_from = data.target, "target.bags"
    elif data.eval_target is not None:
        target, target_from = [data.eval_target], "eval_target"
    else:
        raise RunError(f"{run.path}: the run's config has neither target bags nor an eval target")
    # the discriminator's features per image (a detector's feature map averaged over locations); a detector
    # with a labelled eval target also at the objects: the source's boxes against the eval target's
    at_objects = info.task == "detection" and data.eval_target is not None
    f_s, source_objects = features(sample([data.source, data.source_val]), at_objects)
    f_t, _ = features(sample(target))
    target_objects = features(sample([data.eval_target]), True)[1] if at_objects else None
    confusion = None
    if data.eval_target is not None and task_spec(info.task).class_scores_per_image:
        e = data.eval_target
        probs = torch.cat([predict(deployed.model, x, device, budget_mb=budget, features=False)[0]
                           for x in eval_batches(deployed.model, e, budget)])
        confusion = classification_scores(probs.argmax(1).numpy(), e.columns["class_ids"], info.classes)
    return Features(f_s.numpy(), f_t.numpy(), target_from, confusion, tuple(info.classes),
                    source_objects, target_objects)


def tsne(features: Features, seed: int) -> np.ndarray:
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    x = np.concatenate([features.source, features.target]).astype(np.float64)
    perplexity = float(min(30.0, max(2.0, (len(x) - 1) / 3)))
    # One OpenMP thread: Barnes-Hut t-SNE on ~1000 points spends its time spin-waiting when the
    # cores are shared (measured 35 s with 2 threads vs 11 s with 1 on a loaded 2-core machine).
    with threadpool_limits(limits=1, user_api="openmp"):
        return TSNE(n_components=2, init="pca", perplexity=perplexity, learning_rate="auto",
                    random_state=seed).fit_transform(x)
