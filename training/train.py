"""The training recipe: fine-tune (or train from scratch) the paper's two AlexNets.

Read it top to bottom like torchvision's classification reference::

    train_one_epoch(model, optimizer, loader, ...)   one pass, per-iteration LR schedule
    evaluate(model, loader)                          loss, top-1, class probabilities
    fit(task=..., canonical=..., ...)                one model, with checkpoints and resume
    train_run(manifest, out_dir, config=...)         both models + run.json (``denarius train``)

Recipe (paper section 3.1, adapted so that it also converges from scratch on a CPU):

- The pre-trained layers learn at ``lr``; the new last layer (``classifier.6``) at
  ``lr * new_layer_lr_mult``. The multiplier defaults to 10 with ImageNet weights (the
  Caffe fine-tuning convention) and to 1 from scratch, where no layer is pre-trained.
- AdamW (default) or SGD with momentum; linear warm-up then cosine decay, computed from
  the global iteration so that a resumed run follows the same schedule.
- Training crops are random (``denarius.engine.preprocess.crop_image`` with a numpy Generator),
  evaluation crops centred.

Determinism: the model is initialised after ``torch.manual_seed(seed)``; every epoch
re-seeds torch (dropout), the shuffling generator and the crop RNG from (seed, task, epoch),
and the data loader runs in-process. On CPU a run, and a run resumed from any epoch's
checkpoint, gives bit-identical weights.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from denarius.engine.errors import ConfigError
from denarius.engine.preprocess import PreprocessSpec
from denarius.training.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from denarius.training.datasets import TASK_SIDE, CoinSideDataset, canonical_images, task_targets
from denarius.training.metrics import mean_class_accuracy
from denarius.training.model import HEAD_PREFIX, ModelConfig, build_model, load_pretrained

__all__ = [
    "TrainConfig",
    "lr_factor",
    "build_optimizer",
    "train_one_epoch",
    "evaluate",
    "predict_proba",
    "check_resumable",
    "fit",
    "train_run",
    "setup_torch",
]

logger = logging.getLogger(__name__)

TASK_SEED = {"emperor": 1, "ric": 2}
OPTIMIZERS = ("adamw", "sgd")


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run (both models use the same).

    Defaults are the CPU recipe measured to converge from scratch on the synthetic
    ``bench`` set (see docs/results_bench.md); for the paper's setting use
    ``input_size=224, width=1.0, weights="imagenet"`` (or a local .pth).

    Attributes:
        epochs: passes over the training coins.
        batch_size: images per step.
        lr: learning rate of the pre-trained layers (all layers, from scratch).
        new_layer_lr_mult: LR multiplier of the new last layer; None = 10 with pre-trained
            weights, 1 without.
        optimizer: "adamw" or "sgd" (momentum ``momentum``, Nesterov off).
        momentum: SGD momentum (ignored by AdamW).
        weight_decay: decoupled (AdamW) or L2 (SGD) weight decay; not applied to biases.
        warmup_epochs: linear LR warm-up length, then cosine decay to 0 at ``epochs``.
        input_size: network input side in px (crop); the canonical image is 256/224 larger.
        width: AlexNet channel multiplier (1.0 = the paper's AlexNet).
        dropout: classifier dropout (AlexNet: 0.5). 0 by default: from scratch on ~1,000
            coins per fold on a CPU, learning at all is the bottleneck, not over-fitting.
        jitter: photometric jitter strength of training crops (0 = the paper's crops only);
            see ``denarius.training.datasets.photometric_jitter``.
        balance: weight the cross-entropy of every class by the inverse of its frequency in
            the training coins (mean weight 1), i.e. optimise the paper's measure, the mean
            per-class accuracy. Without it a from-scratch AlexNet first collapses onto the
            emperor that owns most coins and stays there for many epochs.
        weights: None (from scratch), "imagenet" or the path of a torchvision AlexNet .pth.
        seed: seeds initialisation, shuffling, crops and dropout.
        threads: torch CPU threads (None leaves torch's setting alone). 1 by default: on the
            shared 2-core development machine (load ~10-20) two OpenMP threads made an epoch
            of the tiny model 30x slower (13.6 s vs 0.4 s, measured); raise it on a machine
            of your own.
    """

    epochs: int = 40
    batch_size: int = 32
    lr: float = 2e-4
    new_layer_lr_mult: float | None = None
    optimizer: str = "adamw"
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: float = 1.0
    input_size: int = 96
    width: float = 0.25
    dropout: float = 0.0
    jitter: float = 0.5
    balance: bool = True
    weights: str | None = None
    seed: int = 0
    threads: int | None = 1

    def __post_init__(self):
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise ConfigError(f"epochs must be an int >= 1, got {self.epochs!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError(f"batch_size must be an int >= 1, got {self.batch_size!r}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr!r}")
        if self.new_layer_lr_mult is not None and not self.new_layer_lr_mult > 0:
            raise ConfigError(f"new_layer_lr_mult must be > 0, got {self.new_layer_lr_mult!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {list(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.weight_decay < 0 or self.warmup_epochs < 0 or not 0 <= self.momentum < 1:
            raise ConfigError("weight_decay and warmup_epochs must be >= 0 and momentum in [0, 1)")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be >= 1 or None, got {self.threads!r}")
        self.model_config(1)  # validates width/input_size/dropout, listing valid input sizes

    @property
    def head_lr_mult(self) -> float:
        if self.new_layer_lr_mult is not None:
            return float(self.new_layer_lr_mult)
        return 10.0 if self.weights else 1.0

    def model_config(self, num_classes: int) -> ModelConfig:
        return ModelConfig(num_classes=num_classes, width=self.width, input_size=self.input_size, dropout=self.dropout)

    def preprocess_spec(self) -> PreprocessSpec:
        """The paper's resize 256 / crop 224 ratio at ``input_size``."""
        return PreprocessSpec.for_input_size(self.input_size)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown TrainConfig keys {unknown}; valid: {sorted(known)}")
        return cls(**data)


# --------------------------------------------------------------------------- optimisation


def lr_factor(iteration: int, *, total: int, warmup: int) -> float:
    """LR multiplier at a global iteration: linear warm-up to 1, then cosine to 0 at ``total``."""
    if warmup > 0 and iteration < warmup:
        return (iteration + 1) / warmup
    progress = (iteration - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """Three parameter groups: pre-trained weights, their biases (no decay), the new head.

    Each group keeps its peak learning rate in ``group["base_lr"]``; the schedule scales it.
    """
    body_w, body_b, head = [], [], []
    for name, param in model.named_parameters():
        if name.startswith(HEAD_PREFIX):
            head.append(param)
        elif name.endswith(".bias"):
            body_b.append(param)
        else:
            body_w.append(param)
    head_lr = config.lr * config.head_lr_mult
    groups = [
        {"params": body_w, "base_lr": config.lr, "lr": config.lr, "weight_decay": config.weight_decay, "name": "body"},
        {"params": body_b, "base_lr": config.lr, "lr": config.lr, "weight_decay": 0.0, "name": "body_bias"},
        {"params": head, "base_lr": head_lr, "lr": head_lr, "weight_decay": config.weight_decay, "name": "head"},
    ]
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr)
    return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)


def train_one_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: torch.utils.data.DataLoader,
    *,
    start_iteration: int,
    total_iterations: int,
    warmup_iterations: int,
    class_weights: torch.Tensor | None = None,
    desc: str = "train",
    progress: bool = True,
) -> dict:
    """One pass over ``loader`` with a per-iteration LR; returns mean loss and top-1 accuracy.

    ``class_weights``: optional (C,) float32 cross-entropy weights (see ``TrainConfig.balance``).
    """
    model.train()
    criterion = nn.CrossEntropyLoss(weight=class_weights)
    loss_sum, correct, seen = 0.0, 0, 0
    iteration = start_iteration
    bar = tqdm(loader, desc=desc, unit="batch", disable=not progress, leave=False)
    for images, targets in bar:  # (B, 3, S, S) float32, (B,) int64
        factor = lr_factor(iteration, total=total_iterations, warmup=warmup_iterations)
        for group in optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
        logits = model(images)  # (B, C)
        loss = criterion(logits, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        iteration += 1
        batch = len(targets)
        loss_sum += float(loss.detach()) * batch
        correct += int((logits.detach().argmax(1) == targets).sum())
        seen += batch
        bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
    return {"loss": loss_sum / max(1, seen), "accuracy": correct / max(1, seen), "iteration": iteration}


@torch.no_grad()
def predict_proba(model: nn.Module, loader: torch.utils.data.DataLoader) -> tuple[np.ndarray, np.ndarray]:
    """Softmax probabilities of every item: ((N, C) float32, targets (N,) int64)."""
    model.eval()
    probs, targets = [], []
    for images, target in loader:
        probs.append(torch.softmax(model(images), dim=1).numpy())
        targets.append(target.numpy())
    return np.concatenate(probs), np.concatenate(targets)


def evaluate(model: nn.Module, loader: torch.utils.data.DataLoader) -> dict:
    """Mean cross-entropy, top-1 and mean per-class accuracy on centre crops, plus the
    (N, C) float32 probabilities and (N,) int64 targets."""

    probs, targets = predict_proba(model, loader)
    picked = probs[np.arange(len(targets)), targets]
    loss = float(-np.log(np.clip(picked, 1e-12, None)).mean()) if len(targets) else float("nan")
    accuracy = float((probs.argmax(1) == targets).mean()) if len(targets) else float("nan")
    per_class = mean_class_accuracy(targets, probs.argmax(1), probs.shape[1]) if len(targets) else float("nan")
    return {"loss": loss, "accuracy": accuracy, "mean_class_accuracy": per_class, "probabilities": probs, "targets": targets}


# --------------------------------------------------------------------------- one model


def init_from_scratch(model: nn.Module) -> None:
    """He initialisation for training without pre-trained weights.

    torch's default (Kaiming-uniform with a=sqrt(5), i.e. weight variance 1/(3 fan_in)) shrinks
    the mean square of the activations about 6x per conv/linear + ReLU layer, so through
    AlexNet's 7 layers the logits start near zero and from-scratch training stalled on the
    majority class (measured on the tiny synthetic set). He-normal weights
    (fan_in, ReLU gain) keep the activation scale; the new head starts small.
    """
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            if f"{name}." == HEAD_PREFIX:
                nn.init.normal_(module.weight, 0.0, 0.01)
            else:
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
            nn.init.zeros_(module.bias)


def _epoch_seed(seed: int, task: str, epoch: int) -> int:
    return int(np.random.SeedSequence([seed, TASK_SEED[task], epoch + 1]).generate_state(1)[0])


def check_resumable(ckpt: Checkpoint, *, task: str, classes, model_config: ModelConfig, spec: PreprocessSpec, source="checkpoint") -> None:
    """Refuse to continue ``ckpt`` for another task, label set, architecture or preprocessing.

    Raises:
        ConfigError: naming what differs (for labels: which classes are missing/extra).
    """
    classes = tuple(classes)
    if ckpt.task != task:
        raise ConfigError(f"{source} is a {ckpt.task!r} model, expected {task!r}")
    if ckpt.classes != classes:
        only_ckpt = sorted(set(ckpt.classes) - set(classes))
        only_data = sorted(set(classes) - set(ckpt.classes))
        detail = (
            f"only in the checkpoint: {only_ckpt[:10]}, only in the manifest: {only_data[:10]}"
            if only_ckpt or only_data
            else "same labels in a different order"
        )
        raise ConfigError(
            f"{source} was trained for a different {task} label set ({len(ckpt.classes)} classes vs "
            f"{len(classes)} in the manifest; {detail}); train into a new --out folder instead of resuming"
        )
    if ckpt.model_config != model_config:
        raise ConfigError(
            f"{source} has model {ckpt.model_config.to_dict()}, but this run asks for "
            f"{model_config.to_dict()}; use the same --width/--input-size to resume"
        )
    if PreprocessSpec.from_dict(ckpt.preprocess) != spec:
        raise ConfigError(f"{source} was trained with preprocessing {ckpt.preprocess}, this run uses {spec.to_dict()}")


def fit(
    *,
    task: str,
    canonical: np.ndarray,
    targets: np.ndarray,
    classes,
    config: TrainConfig,
    train_indices: np.ndarray | None = None,
    val_indices: np.ndarray | None = None,
    checkpoint_path: str | Path | None = None,
    resume: Checkpoint | None = None,
    extra: dict | None = None,
    on_epoch_end=None,
    progress: bool = True,
) -> tuple[nn.Module, Checkpoint]:
    """Train one AlexNet for ``task`` on cached canonical images.

    Args:
        task: "emperor" (obverse images) or "ric" (reverse images).
        canonical: (M, resize, resize, 3) uint8 canonical images of the task's side.
        targets: (M,) int64 class indices into ``classes``.
        classes: class names (C,), the model's output order.
        train_indices / val_indices: rows of ``canonical`` to train on (default all) / to
            evaluate after every epoch (history ``val_accuracy``, ``val_loss``), or None.
        checkpoint_path: where to save the checkpoint after every epoch (None: nowhere).
        resume: a checkpoint to continue (checked with :func:`check_resumable`).
        extra: plain values stored in the checkpoint's ``extra``.
        on_epoch_end: optional ``callable(Checkpoint)`` called after every epoch (e.g. to
            keep per-epoch snapshots); the checkpoint holds copies of the current weights.
    Returns:
        (model in eval mode, final Checkpoint). ``checkpoint.history`` has one dict per
        epoch: epoch, iteration, lr, train_loss, train_accuracy[, val_loss, val_accuracy].
    """
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    spec = config.preprocess_spec()
    classes = tuple(classes)
    model_config = config.model_config(len(classes))
    if resume is not None:
        check_resumable(resume, task=task, classes=classes, model_config=model_config, spec=spec)

    torch.manual_seed(_epoch_seed(config.seed, task, -1))
    model = build_model(model_config)
    if resume is None:
        if config.weights is None:
            init_from_scratch(model)
        load_pretrained(model, config.weights)
    optimizer = build_optimizer(model, config)
    start_epoch, history = 0, []
    if resume is not None:
        model.load_state_dict(resume.state_dict)
        if resume.optimizer_state is not None:
            optimizer.load_state_dict(resume.optimizer_state)
        start_epoch, history = resume.epoch, list(resume.history)
        logger.info("resuming %s from epoch %d", task, start_epoch)

    train_set = CoinSideDataset(canonical, targets, spec, indices=train_indices, jitter=config.jitter)
    val_loader = None
    if val_indices is not None and len(val_indices):
        val_set = CoinSideDataset(canonical, targets, spec, indices=val_indices)
        val_loader = torch.utils.data.DataLoader(val_set, batch_size=max(64, config.batch_size), shuffle=False)
    class_weights = None
    if config.balance:
        counts = np.bincount(train_set.labels, minlength=len(classes)).astype(np.float64)
        present = counts > 0
        weights = np.zeros(len(classes))
        weights[present] = 1.0 / counts[present]
        weights *= present.sum() / weights.sum()  # mean weight 1 over the classes present
        class_weights = torch.tensor(weights, dtype=torch.float32)
    steps = math.ceil(len(train_set) / config.batch_size)
    total = steps * config.epochs
    warmup = min(total, round(config.warmup_epochs * steps))
    ckpt_extra = {"seed": config.seed, "train_config": config.to_dict(), "train_size": len(train_set), **(extra or {})}

    def snapshot(epoch: int) -> Checkpoint:
        return Checkpoint(
            task=task, side=TASK_SIDE[task], model_config=model_config, classes=classes,
            preprocess=spec.to_dict(), state_dict={k: v.detach().clone() for k, v in model.state_dict().items()},
            optimizer_state=copy.deepcopy(optimizer.state_dict()), epoch=epoch, history=list(history), extra=ckpt_extra,
        )

    ckpt = snapshot(start_epoch)
    for epoch in range(start_epoch, config.epochs):
        seed = _epoch_seed(config.seed, task, epoch)
        torch.manual_seed(seed)  # dropout
        train_set.set_rng(np.random.default_rng(seed))  # crops
        loader = torch.utils.data.DataLoader(
            train_set, batch_size=config.batch_size, shuffle=True, num_workers=0,
            generator=torch.Generator().manual_seed(seed),
        )
        started = time.perf_counter()
        stats = train_one_epoch(
            model, optimizer, loader, start_iteration=epoch * steps, total_iterations=total,
            warmup_iterations=warmup, class_weights=class_weights, desc=f"{task} {epoch + 1}/{config.epochs}",
            progress=progress,
        )
        entry = {
            "epoch": epoch + 1,
            "iteration": stats["iteration"],
            "lr": optimizer.param_groups[0]["lr"],
            "train_loss": stats["loss"],
            "train_accuracy": stats["accuracy"],
            "seconds": time.perf_counter() - started,
        }
        if val_loader is not None:
            val = evaluate(model, val_loader)
            entry.update(val_loss=val["loss"], val_accuracy=val["accuracy"], val_mean_class_accuracy=val["mean_class_accuracy"])
        history.append(entry)
        logger.info(
            "%s epoch %d/%d: loss %.3f acc %.3f%s (%.1fs)", task, epoch + 1, config.epochs, stats["loss"],
            stats["accuracy"], f" val acc {entry['val_accuracy']:.3f}" if "val_accuracy" in entry else "", entry["seconds"],
        )
        ckpt = snapshot(epoch + 1)
        if checkpoint_path is not None:
            save_checkpoint(checkpoint_path, ckpt)
        if on_epoch_end is not None:
            on_epoch_end(ckpt)
    return model.eval(), ckpt


# --------------------------------------------------------------------------- both models



def setup_torch(threads: int) -> None:
    """Deterministic CPU training on ``threads`` threads (what ``denarius train`` and the quickstart run)."""
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)


def train_run(
    manifest: str | Path,
    out_dir: str | Path,
    *,
    config: TrainConfig,
    merge_threshold: int = 2,
    resume: bool = False,
    metrics: dict | None = None,
    progress: bool = True,
) -> dict:
    """``denarius train``: both models of the paper on one manifest, written to ``out_dir``.

    Writes ``out_dir/emperor.pt``, ``out_dir/ric.pt`` (checkpoints, updated every epoch) and
    ``out_dir/run.json`` (the contract read by ``denarius export``)::

        {"hierarchy": Hierarchy.to_dict(), "descriptions": {ric: {"obverse", "reverse"}},
         "merged": {label: [original labels]}, "preprocess": PreprocessSpec.to_dict(),
         "manifest": str, "metrics": metrics or {},   # e.g. cross-validated accuracies
         "training": {"emperor": {...}, "ric": {...}},  # epochs, final train loss/accuracy
         "train_config": TrainConfig.to_dict()}

    Everything that can be wrong with the input is checked before the first step: the
    manifest (``ManifestError``: missing images...), every image decodes (``InputError``),
    and with ``resume`` the checkpoints match the label sets (``ConfigError``).

    Returns:
        The run.json dict.
    """
    from denarius.training.data import load_dataset

    out_dir = Path(out_dir)
    dataset = load_dataset(manifest, merge_threshold=merge_threshold)
    spec = config.preprocess_spec()
    tables = {"emperor": dataset.hierarchy.emperors, "ric": dataset.hierarchy.rics}
    resumed: dict[str, Checkpoint | None] = {"emperor": None, "ric": None}
    if resume:
        for task, classes in tables.items():
            path = out_dir / f"{task}.pt"
            if path.is_file():
                ckpt = load_checkpoint(path)
                check_resumable(
                    ckpt, task=task, classes=classes, model_config=config.model_config(len(classes)), spec=spec, source=str(path))
                resumed[task] = ckpt
            else:
                logger.warning("--resume: %s does not exist, training %s from the start", path, task)
    canonical = {task: canonical_images(dataset, side, spec, progress=progress) for task, side in TASK_SIDE.items()}
    out_dir.mkdir(parents=True, exist_ok=True)
    training = {}
    for task, classes in tables.items():
        _, ckpt = fit(
            task=task, canonical=canonical[task], targets=task_targets(dataset, task), classes=classes,
            config=config, checkpoint_path=out_dir / f"{task}.pt", resume=resumed[task], progress=progress,
        )
        last = ckpt.history[-1] if ckpt.history else {}
        training[task] = {
            "epochs": ckpt.epoch,
            "train_loss": last.get("train_loss"),
            "train_accuracy": last.get("train_accuracy"),
            "classes": len(classes),
            "coins": len(dataset),
        }
    run = {
        "hierarchy": dataset.hierarchy.to_dict(),
        "descriptions": dataset.descriptions,
        "merged": dataset.merged,
        "preprocess": spec.to_dict(),
        "manifest": str(Path(manifest).resolve()),
        "metrics": dict(metrics or {}),
        "training": training,
        "train_config": config.to_dict(),
    }
    (out_dir / "run.json").write_text(json.dumps(run, indent=2) + "\n", encoding="utf-8")
    return run
