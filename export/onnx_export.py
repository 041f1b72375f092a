"""Checkpoint -> fp32 ONNX classifier, with metadata and an ORT-vs-PyTorch parity check.

The exported graph is the contract every backend runs::

    image  float32 (N, 3, S, S)  normalised by denarius.engine.preprocess   (N dynamic)
    logits float32 (N, C)        C = len(classes)

Metadata (``ModelProto.metadata_props``, all strings) lets a lone ``.onnx`` file explain
itself: ``denarius.classes`` (JSON list, output order), ``denarius.model_version``,
``denarius.task``, ``denarius.side``, ``denarius.input_size``, ``denarius.preprocess`` (JSON).

Parity: the same batch of real preprocessed coin photographs goes through PyTorch and
onnxruntime's CPU provider; the largest absolute logit difference divided by the largest
absolute PyTorch logit must stay below ``1e-4`` or the export is refused (BundleError).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from denarius.engine.backends.sessions import open_session
from denarius.engine.errors import BundleError, ConfigError
from denarius.engine.preprocess import PreprocessSpec, preprocess_batch

__all__ = [
    "OPSET",
    "INPUT_NAME",
    "OUTPUT_NAME",
    "ParityReport",
    "export_onnx",
    "check_parity",
    "read_metadata",
    "coin_plate_crops",
    "parity_batch",
]

logger = logging.getLogger(__name__)

OPSET = 17
INPUT_NAME = "image"
OUTPUT_NAME = "logits"
# Relative logit error above which an export is refused (max |ort - torch| / max |torch|).
PARITY_TOLERANCE = 1e-4


@dataclass(frozen=True)
class ParityReport:
    """onnxruntime CPU vs PyTorch on one batch.

    Attributes:
        images: batch size N that was compared.
        max_abs_diff: max |logits_ort - logits_torch| over the (N, C) batch.
        logit_scale: max |logits_torch| (the scale the difference is judged against).
        relative: ``max_abs_diff / logit_scale``; must be < ``tolerance``.
        tolerance: the bound that was applied.
        top1_agreement: fraction of the N images whose argmax agrees.
    """

    images: int
    max_abs_diff: float
    logit_scale: float
    relative: float
    tolerance: float
    top1_agreement: float

    @property
    def passed(self) -> bool:
        return self.relative < self.tolerance

    def to_dict(self) -> dict:
        return asdict(self)


def export_onnx(
    model,
    path: str | Path,
    *,
    input_size: int,
    classes: Sequence[str],
    model_version: str,
    task: str,
    side: str,
    preprocess: PreprocessSpec | None = None,
    opset: int = OPSET,
) -> Path:
    """Export an AlexNet (``torch.nn.Module``) to an fp32 ONNX file with a dynamic batch axis.

    Args:
        model: the classifier; put in eval mode here (dropout off).
        path: output ``.onnx`` file (parent folders are created).
        input_size: square input side S (the crop of the preprocessing spec).
        classes: class names in output order; ``len(classes)`` must equal the logits width.
        model_version: recorded in the metadata (the bundle carries the same string).
        task, side: "emperor"/"obverse" or "ric"/"reverse", recorded in the metadata.
        preprocess: the spec the model was trained with, recorded in the metadata.
        opset: ONNX opset, >= 17.

    Returns:
        ``path``. The file passes ``onnx.checker.check_model(full_check=True)``.

    Raises:
        ConfigError: opset < 17. BundleError: export produced a graph that is not what the
        engine expects (names, ranks, class count) or that the ONNX checker rejects.
    """
    import onnx
    import torch

    if opset < 17:
        raise ConfigError(f"opset must be >= 17 (LayerNorm-free AlexNet needs nothing newer), got {opset}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    dummy = torch.zeros(2, 3, input_size, input_size, dtype=torch.float32)
    with torch.no_grad():
        width = int(model(dummy).shape[1])
    if width != len(classes):
        raise BundleError(f"model has {width} outputs but {len(classes)} class names were given")
    import warnings

    with warnings.catch_warnings():
        # The TorchScript exporter is the contract (plain ops, no torch.export tracing);
        # torch warns that it is legacy on every call.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model,
            (dummy,),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "N"}, OUTPUT_NAME: {0: "N"}},
            do_constant_folding=True,
        )
    proto = onnx.load(str(path))
    _check_signature(proto, input_size=input_size, classes=len(classes), where=str(path))
    metadata = {
        "denarius.classes": json.dumps(list(classes), ensure_ascii=False),
        "denarius.model_version": str(model_version),
        "denarius.task": task,
        "denarius.side": side,
        "denarius.input_size": str(int(input_size)),
    }
    if preprocess is not None:
        metadata["denarius.preprocess"] = json.dumps(preprocess.to_dict())
    set_metadata(proto, metadata)
    proto.doc_string = f"Denarius {task} classifier ({side} side), model version {model_version}"
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise BundleError(f"exported {path} fails the ONNX checker: {exc}") from exc
    onnx.save(proto, str(path))
    logger.info("exported %s: %s model, %d classes, input %dx%d, opset %d", path.name, task, len(classes), input_size, input_size, opset)
    return path


def set_metadata(proto, metadata: dict[str, str]) -> None:
    """Replace/add ``metadata_props`` entries of an ``onnx.ModelProto`` in place."""
    keep = [p for p in proto.metadata_props if p.key not in metadata]
    del proto.metadata_props[:]
    proto.metadata_props.extend(keep)
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, str(value)


def read_metadata(path: str | Path) -> dict[str, str]:
    """``metadata_props`` of an ONNX file as a dict (no weights are parsed by onnxruntime)."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in proto.metadata_props}


def _check_signature(proto, *, input_size: int, classes: int, where: str) -> None:
    graph = proto.graph
    initialisers = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initialisers]
    if [i.name for i in inputs] != [INPUT_NAME] or [o.name for o in graph.output] != [OUTPUT_NAME]:
        raise BundleError(
            f"{where}: graph inputs {[i.name for i in inputs]} / outputs {[o.name for o in graph.output]}, "
            f"expected [{INPUT_NAME!r}] -> [{OUTPUT_NAME!r}]"
        )
    dims = [d.dim_param or d.dim_value for d in inputs[0].type.tensor_type.shape.dim]
    if len(dims) != 4 or not isinstance(dims[0], str) or dims[1:] != [3, input_size, input_size]:
        raise BundleError(f"{where}: input shape {dims}, expected [N, 3, {input_size}, {input_size}] with a dynamic N")
    out = [d.dim_param or d.dim_value for d in graph.output[0].type.tensor_type.shape.dim]
    if len(out) != 2 or out[1] != classes:
        raise BundleError(f"{where}: output shape {out}, expected [N, {classes}]")


def check_parity(
    model,
    onnx_path: str | Path,
    images: np.ndarray,
    *,
    tolerance: float = PARITY_TOLERANCE,
) -> ParityReport:
    """Run ``images`` through PyTorch and onnxruntime CPU and compare the logits.

    Args:
        model: the torch module that was exported (eval mode is set here).
        onnx_path: the exported fp32 file.
        images: (N, 3, S, S) float32, output of ``denarius.engine.preprocess.preprocess_batch``.
        tolerance: bound on ``max|ort - torch| / max|torch|``.

    Returns:
        The report (also logged).

    Raises:
        BundleError: the relative difference is not below ``tolerance`` (message has the figures).
    """
    import torch

    images = np.ascontiguousarray(images, dtype=np.float32)
    if images.ndim != 4 or len(images) == 0:
        raise ConfigError(f"parity images must be a non-empty (N, 3, S, S) batch, got shape {images.shape}")
    with torch.no_grad():
        expected = model.eval()(torch.from_numpy(images)).numpy().astype(np.float64)
    session = open_session(onnx_path)
    actual = session.run([OUTPUT_NAME], {INPUT_NAME: images})[0].astype(np.float64)
    max_abs = float(np.max(np.abs(actual - expected)))
    scale = float(np.max(np.abs(expected)))
    relative = max_abs / max(scale, np.finfo(np.float32).tiny)
    agreement = float(np.mean(actual.argmax(1) == expected.argmax(1)))
    report = ParityReport(
        images=len(images), max_abs_diff=max_abs, logit_scale=scale, relative=relative,
        tolerance=float(tolerance), top1_agreement=agreement,
    )
    logger.info(
        "parity %s: %d images, max |ort - torch| = %.3g, logit scale %.3g, relative %.3g (limit %.0e)",
        Path(onnx_path).name, report.images, max_abs, scale, relative, tolerance,
    )
    if not report.passed:
        raise BundleError(
            f"{Path(onnx_path).name}: onnxruntime and PyTorch logits differ by {max_abs:.3g} "
            f"(relative {relative:.3g} of the logit scale {scale:.3g}), above the limit {tolerance:.0e}; "
            "the export is wrong, refusing to write it into a bundle"
        )
    return report


def coin_plate_crops() -> list[np.ndarray]:
    """The 24 coins of scikit-image's ``coins()`` photograph (Greek coins from Pompeii).

    Returns:
        A list of (h, w, 3) uint8 RGB crops (greyscale replicated), one per coin on the plate
        (a 4 x 6 grid); empty when scikit-image is not installed.
    """
    try:
        from skimage import data
    except ImportError:
        return []
    plate = data.coins()  # (303, 384) uint8, 4 rows x 6 columns of coins
    rows, cols = 4, 6
    height, width = plate.shape
    crops = []
    for r in range(rows):
        for c in range(cols):
            top, bottom = round(r * height / rows), round((r + 1) * height / rows)
            left, right = round(c * width / cols), round((c + 1) * width / cols)
            crops.append(np.repeat(plate[top:bottom, left:right, None], 3, axis=2).copy())
    return crops


def parity_batch(
    spec: PreprocessSpec,
    *,
    sources: Sequence = (),
    limit: int = 16,
) -> np.ndarray:
    """A batch of real preprocessed photographs for the parity check.

    Args:
        spec: the model's preprocessing.
        sources: photographs to use first (paths, bytes or RGB arrays), e.g. from the
            calibration/training manifest; unreadable ones are skipped with a warning.
        limit: batch size cap N.

    Returns:
        (N, 3, crop, crop) float32 with 1 <= N <= limit: ``sources`` first, then scikit-image's
        coin plate crops.

    Raises:
        ConfigError: no usable photograph at all.
    """
    from denarius.engine.errors import InputError

    chosen = []
    for source in list(sources) + coin_plate_crops():
        if len(chosen) >= limit:
            break
        try:
            chosen.append(preprocess_batch([source], spec)[0])
        except InputError as exc:
            logger.warning("parity: skipping an unreadable image (%s)", exc)
    if not chosen:
        raise ConfigError("no real image available for the ONNX parity check: pass photographs or install scikit-image")
    return np.stack(chosen)
