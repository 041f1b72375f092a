"""AlexNet with torchvision's layer layout, so an ImageNet checkpoint loads as is.

The state-dict keys are exactly torchvision's (``features.0/3/6/8/10`` convolutions,
``classifier.1/4/6`` linears, dropouts at ``classifier.0/3``). ``ModelConfig.width`` scales
every channel count and the hidden fc size for fast CPU tests; ``width=1.0`` is torchvision.

The adaptive average pool is chosen so that the model exports to ONNX as a plain
``AveragePool`` (torch's TorchScript ONNX exporter refuses ``AdaptiveAvgPool2d((6, 6))``
when the feature map is not a multiple of 6): the pooled size is 6 when the final feature
map is a multiple of 6 (input 224 -> feature 6x6 -> identity pool), otherwise the feature
map's own size (input 128 -> 3x3, 96 -> 2x2, 64 -> 1x1). Feature maps larger than 6 and not
divisible by 6 are refused with the list of valid input sizes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from denarius.engine.errors import ConfigError

__all__ = [
    "ModelConfig",
    "AlexNet",
    "build_model",
    "load_pretrained",
    "feature_size",
    "pooled_size",
    "valid_input_sizes",
    "HEAD_PREFIX",
    "IMAGENET_URL",
]

logger = logging.getLogger(__name__)

# The task-specific last layer; everything else can come from an ImageNet checkpoint.
HEAD_PREFIX = "classifier.6."
# torchvision's AlexNet_Weights.IMAGENET1K_V1, for users who download it by hand.
IMAGENET_URL = "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"

_CHANNELS = (64, 192, 384, 256, 256)
_HIDDEN = 4096


def _conv_out(size: int, kernel: int, stride: int, pad: int) -> int:
    return (size + 2 * pad - kernel) // stride + 1


def feature_size(input_size: int) -> int:
    """Side length of the last feature map (after ``features.12``) for a square input.

    224 -> 6, 128 -> 3, 96 -> 2, 64 -> 1; values < 1 mean the input is too small.
    """
    s = _conv_out(input_size, 11, 4, 2)  # features.0
    s = _conv_out(s, 3, 2, 0)  # features.2 (conv 3 keeps the size)
    s = _conv_out(s, 3, 2, 0)  # features.5 (convs 6, 8, 10 keep the size)
    s = _conv_out(s, 3, 2, 0)  # features.12
    return s


def _pooled_or_none(feature: int) -> int | None:
    if feature < 1:
        return None
    if feature % 6 == 0:
        return 6
    if feature < 6:
        return feature
    return None


def pooled_size(input_size: int) -> int:
    """Side of the average-pool output (the classifier sees 256*width*pooled**2 features)."""
    pooled = _pooled_or_none(feature_size(input_size))
    if pooled is None:
        raise ConfigError(
            f"input_size {input_size} gives a {feature_size(input_size)}x"
            f"{feature_size(input_size)} feature map, which does not export to ONNX as a "
            f"plain average pool (needs 1..6 or a multiple of 6); valid input sizes up to "
            f"512: {_format_ranges(valid_input_sizes(512))} (e.g. 64, 96, 128, 224)"
        )
    return pooled


def valid_input_sizes(upper: int = 512) -> list[int]:
    """All square input sizes in [1, upper] that the model accepts."""
    return [s for s in range(1, upper + 1) if _pooled_or_none(feature_size(s)) is not None]


def _format_ranges(values: list[int]) -> str:
    parts: list[str] = []
    start = prev = None
    for v in values:
        if start is None:
            start = prev = v
        elif v == prev + 1:
            prev = v
        else:
            parts.append(f"{start}-{prev}" if prev != start else str(start))
            start = prev = v
    if start is not None:
        parts.append(f"{start}-{prev}" if prev != start else str(start))
    return ", ".join(parts)


@dataclass(frozen=True)
class ModelConfig:
    """Input contract of an AlexNet.

    Attributes:
        num_classes: outputs of the last layer (``classifier.6``), >= 1.
        width: channel multiplier (> 0); 1.0 is torchvision's AlexNet (61M parameters).
        input_size: square input side in pixels; 224 is the paper's. See ``valid_input_sizes``.
        dropout: dropout probability of ``classifier.0`` and ``classifier.3``, in [0, 1).
    """

    num_classes: int
    width: float = 1.0
    input_size: int = 224
    dropout: float = 0.5

    def __post_init__(self):
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int) or self.num_classes < 1:
            raise ConfigError(f"num_classes must be an int >= 1, got {self.num_classes!r}")
        if not isinstance(self.width, (int, float)) or not self.width > 0 or self.width > 16:
            raise ConfigError(f"width must be a number in (0, 16], got {self.width!r}")
        if not isinstance(self.input_size, int) or isinstance(self.input_size, bool):
            raise ConfigError(f"input_size must be an int, got {self.input_size!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout!r}")
        object.__setattr__(self, "width", float(self.width))
        pooled_size(self.input_size)  # raises ConfigError listing valid sizes

    @property
    def channels(self) -> tuple[int, int, int, int, int]:
        """Output channels of features.0/3/6/8/10."""
        return tuple(_scale(c, self.width) for c in _CHANNELS)  # type: ignore[return-value]

    @property
    def hidden(self) -> int:
        """Width of classifier.1 and classifier.4 outputs (4096 at width 1)."""
        return _scale(_HIDDEN, self.width)

    @property
    def pooled(self) -> int:
        return pooled_size(self.input_size)

    def to_dict(self) -> dict:
        return {
            "num_classes": self.num_classes,
            "width": self.width,
            "input_size": self.input_size,
            "dropout": self.dropout,
        }

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        known = {"num_classes", "width", "input_size", "dropout"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown ModelConfig keys {unknown}; valid: {sorted(known)}")
        return cls(**data)


def _scale(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


class AlexNet(nn.Module):
    """AlexNet (Krizhevsky et al. 2012, torchvision variant).

    ``forward``: image float32 (N, 3, S, S), normalised, S = ``config.input_size``
    -> logits float32 (N, num_classes).
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        c1, c2, c3, c4, c5 = config.channels
        self.features = nn.Sequential(
            nn.Conv2d(3, c1, kernel_size=11, stride=4, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(c1, c2, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(c2, c3, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c3, c4, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c4, c5, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        pooled = config.pooled
        self.avgpool = nn.AdaptiveAvgPool2d((pooled, pooled))
        hidden = config.hidden
        self.classifier = nn.Sequential(
            nn.Dropout(p=config.dropout),
            nn.Linear(c5 * pooled * pooled, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(p=config.dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, config.num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # (N, c5, F, F)
        x = self.avgpool(x)  # (N, c5, P, P)
        x = torch.flatten(x, 1)  # (N, c5*P*P)
        return self.classifier(x)  # (N, num_classes)


def build_model(config: ModelConfig) -> AlexNet:
    """A freshly initialised AlexNet for ``config`` (torch's default init, as torchvision)."""
    return AlexNet(config)


def load_pretrained(model: AlexNet, weights: str | Path | None) -> list[str]:
    """Load ImageNet AlexNet weights into every layer except the head (``classifier.6``).

    Args:
        model: the AlexNet to fill in place.
        weights: path of a local torchvision AlexNet state dict (``.pth``, a plain
            ``{name: tensor}`` dict); ``"imagenet"`` to download torchvision's
            IMAGENET1K_V1 (needs torchvision and internet); ``None`` to train from scratch.

    Returns:
        The state-dict keys that were loaded (empty for ``None``).

    Raises:
        ConfigError: missing/unreadable file, not a state dict, missing keys, or shapes
            that do not match (e.g. ``width != 1`` or an ``input_size`` whose classifier.1
            differs from the 224 checkpoint); the message names every mismatching key.
    """
    if weights is None:
        logger.warning("no pre-trained weights given: training AlexNet from scratch")
        return []
    if str(weights) == "imagenet":
        state = _download_imagenet()
        source = "torchvision IMAGENET1K_V1"
    else:
        path = Path(weights)
        if not path.is_file():
            raise ConfigError(f"weights file {path} does not exist (pass a torchvision AlexNet .pth, 'imagenet' or nothing)")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many types for bad files
            raise ConfigError(f"cannot read weights file {path}: {type(exc).__name__}: {exc}") from exc
        source = str(path)
    return _load_state(model, state, source=source)


def _download_imagenet() -> dict:
    hint = f"download {IMAGENET_URL} elsewhere and pass the local file with --weights PATH"
    try:
        import torchvision  # noqa: F401  (optional; only needed for this download)
        from torchvision.models import AlexNet_Weights
    except ImportError as exc:
        raise ConfigError(f"--weights imagenet needs torchvision, which is not installed; {hint}") from exc
    try:
        return AlexNet_Weights.IMAGENET1K_V1.get_state_dict(progress=True)
    except Exception as exc:  # URLError, OSError, HTTP errors...
        raise ConfigError(f"could not download the ImageNet AlexNet weights ({type(exc).__name__}: {exc}); {hint}") from exc


def _load_state(model: AlexNet, state, *, source: str) -> list[str]:
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"{source} is not a plain AlexNet state dict ({{name: tensor}})")
    own = model.state_dict()
    wanted = [k for k in own if not k.startswith(HEAD_PREFIX)]
    missing = [k for k in wanted if k not in state]
    if missing:
        raise ConfigError(f"{source} lacks AlexNet keys {missing} (is it a torchvision AlexNet state dict?)")
    mismatched = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in wanted
        if tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if mismatched:
        raise ConfigError(
            f"{source} does not fit this model (width={model.config.width}, "
            f"input_size={model.config.input_size}); ImageNet weights need width=1 and a "
            f"6x6 pooled map (input_size 224). Mismatching keys: " + "; ".join(mismatched)
        )
    model.load_state_dict({k: state[k] for k in wanted}, strict=False)
    logger.info("loaded %d pre-trained tensors from %s (head %s* left fresh)", len(wanted), source, HEAD_PREFIX)
    return wanted
