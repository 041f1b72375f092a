"""The PyTorch AlexNet of a bundle, rebuilt from its fp32 ONNX file.

The exported graph's initializers keep the torchvision state-dict names
(``features.0.weight`` ...), so the weights load into :func:`denarius.training.model.build_model`
as they are, with the width read from the first convolution. The PyTorch-eager bench
baseline and the Captum peers of ``landmarks-eval`` use it; no training run is needed.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from denarius.engine.errors import BundleError

__all__ = ["model_from_onnx"]


def model_from_onnx(path: str | Path, *, num_classes: int, input_size: int) -> nn.Module:
    """The AlexNet whose weights are the initializers of the fp32 ONNX file ``path``, in eval mode.

    Raises:
        BundleError: the file's initializers are not an AlexNet of this project (names the keys).
    """
    import onnx
    import torch
    from onnx import numpy_helper

    from denarius.training.model import ModelConfig, build_model

    state = {init.name: torch.from_numpy(numpy_helper.to_array(init).copy()) for init in onnx.load(str(path)).graph.initializer}
    if "features.0.weight" not in state:
        raise BundleError(f"{path}: no 'features.0.weight' initializer; not an AlexNet exported by denarius export")
    width = state["features.0.weight"].shape[0] / 64.0
    model = build_model(ModelConfig(num_classes=num_classes, width=width, input_size=input_size))
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise BundleError(f"{path}: its weights do not fit the AlexNet of width {width:g}: {error}") from None
    return model.eval()
