"""Training checkpoints: everything needed to rebuild, resume and export one model.

On disk a checkpoint is a ``torch.save`` of plain containers only (dicts, lists, tensors,
str, int, float, bool, None), so ``torch.load(path, weights_only=True)`` reads it and no
pickled class is ever executed::

    {"format": "denarius-checkpoint", "version": 1,
     "task": "emperor" | "ric", "side": "obverse" | "reverse",
     "model_config": {num_classes, width, input_size, dropout},
     "classes": [str, ...], "preprocess": {...},          # PreprocessSpec.to_dict()
     "state_dict": {name: tensor}, "optimizer_state": {...} | None,
     "epoch": int, "history": [{...}, ...], "extra": {...}}
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from denarius.engine.atomic_write import output_error
from denarius.engine.bundle import SIDES
from denarius.engine.errors import ConfigError
from denarius.training.model import ModelConfig, build_model

__all__ = ["Checkpoint", "save_checkpoint", "load_checkpoint", "model_from_checkpoint", "TASKS", "SIDES"]

logger = logging.getLogger(__name__)

FORMAT = "denarius-checkpoint"
VERSION = 1
TASKS = ("emperor", "ric")
_KEYS = (
    "format", "version", "task", "side", "model_config", "classes", "preprocess",
    "state_dict", "optimizer_state", "epoch", "history", "extra",
)


@dataclass(frozen=True)
class Checkpoint:
    """One trained (or training) model with its contract.

    Attributes:
        task: "emperor" (trained on obverses) or "ric" (trained on reverses).
        side: coin side the model reads, "obverse" or "reverse".
        model_config: architecture; ``model_config.num_classes == len(classes)``.
        classes: class names in output order (C,).
        preprocess: ``denarius.engine.preprocess.PreprocessSpec.to_dict()`` used for training.
        state_dict: ``{name: tensor}`` of the model (CPU tensors).
        optimizer_state: ``optimizer.state_dict()`` for resuming, or None.
        epoch: number of completed epochs.
        history: one plain dict per epoch/evaluation (loss, accuracy, iteration...).
        extra: anything else plain (seed, learning rates, fold...).
    """

    task: str
    side: str
    model_config: ModelConfig
    classes: tuple[str, ...]
    preprocess: dict
    state_dict: dict
    optimizer_state: dict | None = None
    epoch: int = 0
    history: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.task not in TASKS:
            raise ConfigError(f"checkpoint task {self.task!r} is not one of {list(TASKS)}")
        if self.side not in SIDES:
            raise ConfigError(f"checkpoint side {self.side!r} is not one of {list(SIDES)}")
        if not isinstance(self.model_config, ModelConfig):
            raise ConfigError("checkpoint model_config must be a ModelConfig")
        classes = tuple(self.classes)
        if not all(isinstance(c, str) for c in classes):
            raise ConfigError("checkpoint classes must all be strings")
        if len(set(classes)) != len(classes):
            raise ConfigError("checkpoint classes contain duplicates")
        if len(classes) != self.model_config.num_classes:
            raise ConfigError(
                f"checkpoint has {len(classes)} classes but model_config.num_classes="
                f"{self.model_config.num_classes}"
            )
        object.__setattr__(self, "classes", classes)
        if not isinstance(self.epoch, int) or self.epoch < 0:
            raise ConfigError(f"checkpoint epoch must be an int >= 0, got {self.epoch!r}")


def _check_plain(value: Any, where: str) -> None:
    """Refuse anything ``torch.load(weights_only=True)`` could not read back."""
    if value is None or isinstance(value, (str, bool, int, float, torch.Tensor)):
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, (str, int)):
                raise ConfigError(f"{where}: key {k!r} is a {type(k).__name__}; only str/int keys are allowed")
            _check_plain(v, f"{where}.{k}")
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_plain(v, f"{where}[{i}]")
        return
    raise ConfigError(
        f"{where} is a {type(value).__name__}; checkpoints hold only tensors, dicts, lists, "
        "str, int, float, bool and None (convert it, e.g. with float() or .to_dict())"
    )


class _RecordingWriter:
    """The file ``torch.save`` writes through, keeping the ``OSError`` a write raised.

    torch reports a failed write (a full disk) as a bare RuntimeError ("unexpected pos ...");
    :func:`save_checkpoint` raises the recorded OSError instead, which names the file.
    """

    def __init__(self, handle):
        self.handle = handle
        self.error: OSError | None = None

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        size = view.nbytes
        try:
            while view:
                view = view[self.handle.write(view) :]
        except OSError as error:
            self.error = error
            raise
        return size

    def flush(self) -> None:
        self.handle.flush()


def save_checkpoint(path: str | Path, ckpt: Checkpoint) -> Path:
    """Write ``ckpt`` atomically (temporary file in the same folder + ``os.replace``).

    Raises:
        ConfigError: a field holds something other than plain containers.
        OSError: the write failed (ENOSPC on a full disk, ...), ``filename`` = ``path``; no
            temporary file is left behind.
    """
    path = Path(path)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "task": ckpt.task,
        "side": ckpt.side,
        "model_config": ckpt.model_config.to_dict(),
        "classes": list(ckpt.classes),
        "preprocess": dict(ckpt.preprocess),
        "state_dict": {k: v.detach().cpu() for k, v in ckpt.state_dict.items()},
        "optimizer_state": ckpt.optimizer_state,
        "epoch": int(ckpt.epoch),
        "history": list(ckpt.history),
        "extra": dict(ckpt.extra),
    }
    for key in ("preprocess", "optimizer_state", "history", "extra"):
        _check_plain(payload[key], key)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            writer = _RecordingWriter(f)
            try:
                torch.save(payload, writer)
            except RuntimeError:
                if writer.error is None:
                    raise
                raise writer.error from None
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as error:
        Path(tmp).unlink(missing_ok=True)
        raise output_error(error, path) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    logger.debug("saved checkpoint %s (epoch %d)", path, ckpt.epoch)
    return path


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint written by ``save_checkpoint`` (``weights_only=True``, no pickle code).

    Raises:
        ConfigError: the file is missing, truncated, not a Denarius checkpoint, of a newer
            version, or its fields are inconsistent.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"checkpoint {path} does not exist")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, foreign pickle, ...
        raise ConfigError(
            f"checkpoint {path} cannot be read ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
            "it is truncated or not a Denarius checkpoint"
        ) from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ConfigError(f"{path} is not a Denarius checkpoint (no format={FORMAT!r} marker)")
    if data.get("version") != VERSION:
        raise ConfigError(f"checkpoint {path} has version {data.get('version')!r}; this Denarius reads version {VERSION}")
    missing = [k for k in _KEYS if k not in data]
    if missing:
        raise ConfigError(f"checkpoint {path} lacks keys {missing}")
    state = data["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"checkpoint {path}: state_dict is not a {{name: tensor}} dict")
    try:
        return Checkpoint(
            task=data["task"],
            side=data["side"],
            model_config=ModelConfig.from_dict(data["model_config"]),
            classes=tuple(data["classes"]),
            preprocess=data["preprocess"],
            state_dict=state,
            optimizer_state=data["optimizer_state"],
            epoch=data["epoch"],
            history=data["history"],
            extra=data["extra"],
        )
    except (ConfigError, TypeError) as exc:
        raise ConfigError(f"checkpoint {path}: {exc}") from exc


def model_from_checkpoint(ckpt: Checkpoint) -> nn.Module:
    """The AlexNet of ``ckpt`` with its weights, in eval mode, on CPU.

    Raises:
        ConfigError: the state dict does not match ``ckpt.model_config`` (keys named).
    """
    model = build_model(ckpt.model_config)
    own = model.state_dict()
    missing = sorted(set(own) - set(ckpt.state_dict))
    unexpected = sorted(set(ckpt.state_dict) - set(own))
    wrong = [
        f"{k}: {tuple(ckpt.state_dict[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in ckpt.state_dict and tuple(ckpt.state_dict[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or wrong:
        raise ConfigError(
            f"checkpoint weights do not match its model_config {ckpt.model_config}: "
            f"missing {missing}, unexpected {unexpected}, wrong shapes {wrong}"
        )
    model.load_state_dict(ckpt.state_dict)
    return model.eval()
