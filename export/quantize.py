"""INT8 ONNX by onnxruntime static quantization (QDQ), and agreement with fp32.

The INT8 file is a QDQ graph: ``QuantizeLinear``/``DequantizeLinear`` pairs around every
Conv and Gemm, int8 weights quantised per output channel, int8 activations, fp32 biases,
and every zero point 0 (symmetric). That is what TensorRT's explicit-quantisation path requires, so the
same file serves onnxruntime CPU (which fuses the pairs into QLinearConv/QGemm kernels)
and TensorRT INT8 (10.x and the strongly typed 11.x).

Calibration feeds ``denarius.engine.preprocess`` outputs of real photographs from a dataset manifest
(the obverse for the emperor model, the reverse for the RIC model). The agreement report
runs fp32 and the reduced-precision file on *other* coins of the same manifest (disjoint
from the calibration coins) and gives the top-1 agreement and the accuracy change.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from denarius.engine.backends.sessions import open_session, quiet_options
from denarius.engine.errors import BundleError, ConfigError, InputError
from denarius.engine.preprocess import PreprocessSpec, preprocess_batch
from denarius.export.onnx_export import INPUT_NAME, OUTPUT_NAME

__all__ = [
    "QuantizeConfig",
    "ImageSet",
    "AgreementReport",
    "ImageCalibrationReader",
    "split_calibration",
    "preprocess_images",
    "quantize_int8",
    "measure_agreement",
]

logger = logging.getLogger(__name__)

_METHODS = ("minmax", "entropy", "percentile")


@dataclass(frozen=True)
class QuantizeConfig:
    """How INT8 files are calibrated and judged.

    Attributes:
        calibration_size: coins whose photographs calibrate the activation ranges (>= 1).
        evaluation_size: coins (disjoint from the calibration ones) for the agreement report.
        batch_size: images per calibration / evaluation batch.
        method: activation range estimator: "minmax", "entropy" or "percentile".
        per_channel: per-output-channel weight scales (TensorRT supports them; keep True).
        symmetric_activations: zero point 0 for activations, as TensorRT INT8 requires.
        unsigned_activations: uint8 activations with a zero point (the "int8-cpu" file):
            onnxruntime's x86 u8s8 kernels run them faster; TensorRT cannot use them.
        preprocess_graph: run ``quant_pre_process`` (shape inference + basic optimisation) first.
        seed: shuffles the manifest before it is split into calibration / evaluation coins.
    """

    calibration_size: int = 300
    evaluation_size: int = 200
    batch_size: int = 16
    method: str = "minmax"
    per_channel: bool = True
    symmetric_activations: bool = True
    unsigned_activations: bool = False
    preprocess_graph: bool = True
    seed: int = 0

    def __post_init__(self):
        for name in ("calibration_size", "evaluation_size", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be an int >= 1, got {value!r}")
        if self.method not in _METHODS:
            raise ConfigError(f"calibration method {self.method!r} is not one of {list(_METHODS)}")


@dataclass(frozen=True)
class ImageSet:
    """Photographs of one coin side with optional labels.

    Attributes:
        sources: image paths (or bytes / RGB arrays), one per coin.
        labels: (len(sources),) int64 class indices into the model's class table; -1 where
            the coin's class is not one of the model's classes (counts for agreement only).
    """

    sources: tuple
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.sources)


@dataclass(frozen=True)
class AgreementReport:
    """A reduced-precision file vs fp32 on the same images.

    Attributes:
        variant: "int8" or "fp16".
        images: evaluation images N (disjoint from the calibration images).
        labelled: how many of them have a label in the model's class table.
        top1_agreement: fraction of the N images where both files predict the same class.
        fp32_accuracy, variant_accuracy: top-1 accuracy on the labelled images (None if 0).
        accuracy_delta: ``variant_accuracy - fp32_accuracy`` (None if no labels).
        max_abs_logit_diff: max |logits_variant - logits_fp32|.
        calibration_images: how many images calibrated the variant (0 for fp16).
    """

    variant: str
    images: int
    labelled: int
    top1_agreement: float
    fp32_accuracy: float | None
    variant_accuracy: float | None
    accuracy_delta: float | None
    max_abs_logit_diff: float
    calibration_images: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        text = f"{self.variant} vs fp32 on {self.images} held-out images: top-1 agreement {self.top1_agreement:.1%}"
        if self.accuracy_delta is not None:
            text += (
                f", accuracy {self.variant_accuracy:.1%} vs {self.fp32_accuracy:.1%} "
                f"(delta {self.accuracy_delta:+.1%}, {self.labelled} labelled)"
            )
        return text


def split_calibration(
    images: ImageSet,
    *,
    calibration_size: int,
    evaluation_size: int,
    seed: int = 0,
) -> tuple[ImageSet, ImageSet]:
    """Shuffle coins and split them into disjoint calibration and evaluation sets.

    When the manifest is smaller than ``calibration_size + evaluation_size``, a third of the
    coins (at most ``evaluation_size``) is held out for evaluation and the rest calibrates.

    Raises:
        ConfigError: fewer than 2 images (nothing can be held out).
    """
    count = len(images)
    if count < 2:
        raise ConfigError(f"INT8 calibration needs at least 2 images (1 to calibrate, 1 to evaluate), got {count}")
    order = np.random.default_rng(seed).permutation(count)
    n_eval = min(evaluation_size, max(1, count // 3)) if count < calibration_size + evaluation_size else evaluation_size
    n_cal = min(calibration_size, count - n_eval)
    cal, ev = order[:n_cal], order[n_cal : n_cal + n_eval]

    def pick(indices):
        return ImageSet(sources=tuple(images.sources[i] for i in indices), labels=images.labels[indices])

    return pick(cal), pick(ev)


def preprocess_images(
    sources: Sequence,
    spec: PreprocessSpec,
    *,
    progress: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Preprocess photographs, skipping unreadable ones.

    Returns:
        ``(images, kept)``: (M, 3, crop, crop) float32 and the (M,) int64 indices into
        ``sources`` of the images that could be read.
    """
    from tqdm.auto import tqdm

    arrays, kept = [], []
    for i, source in enumerate(tqdm(sources, desc=progress, disable=progress is None, leave=False)):
        try:
            arrays.append(preprocess_batch([source], spec)[0])
            kept.append(i)
        except InputError as exc:
            logger.warning("skipping image %s: %s", source if isinstance(source, (str, Path)) else i, exc)
    shape = (0, 3, spec.crop, spec.crop)
    return (np.stack(arrays) if arrays else np.zeros(shape, np.float32)), np.asarray(kept, np.int64)


try:  # onnxruntime is a base dependency of every install (cpu or gpu extra)
    from onnxruntime.quantization import CalibrationDataReader as _ReaderBase
except ImportError:  # pragma: no cover - only without onnxruntime
    _ReaderBase = object


class ImageCalibrationReader(_ReaderBase):
    """Feeds ``{input_name: (B, 3, S, S) float32}`` batches of preprocessed photographs.

    Images are decoded and preprocessed lazily, one batch at a time (a few hundred
    224-px images would otherwise hold ~180 MB); unreadable ones are skipped with a warning.
    """

    def __init__(self, sources: Sequence, spec: PreprocessSpec, *, batch_size: int = 16, input_name: str = INPUT_NAME):
        if not sources:
            raise ConfigError("calibration needs at least one image")
        self.sources = list(sources)
        self.spec = spec
        self.batch_size = batch_size
        self.input_name = input_name
        self.used = 0
        self._iterator = None

    def _batches(self) -> Iterable[dict]:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(self.sources), desc="calibrating", unit="img", leave=False)
        try:
            for start in range(0, len(self.sources), self.batch_size):
                chunk = self.sources[start : start + self.batch_size]
                batch, _ = preprocess_images(chunk, self.spec)
                bar.update(len(chunk))
                if len(batch):
                    self.used += len(batch)
                    yield {self.input_name: batch}
        finally:
            bar.close()

    def get_next(self) -> dict | None:
        if self._iterator is None:
            self._iterator = iter(self._batches())
        return next(self._iterator, None)

    def rewind(self) -> None:
        self._iterator = None
        self.used = 0


def quantize_int8(
    fp32_path: str | Path,
    out_path: str | Path,
    *,
    calibration_sources: Sequence,
    spec: PreprocessSpec,
    config: QuantizeConfig = QuantizeConfig(),
) -> tuple[Path, int]:
    """Statically quantise an fp32 classifier to a QDQ INT8 ONNX file.

    Args:
        fp32_path: the exported fp32 ONNX (input ``image``, output ``logits``).
        out_path: where the INT8 file goes.
        calibration_sources: photographs (paths / bytes / RGB arrays) of the model's side.
        spec: the model's preprocessing.
        config: calibration options.

    Returns:
        ``(out_path, images_used)``.

    Raises:
        ConfigError: no calibration image could be read.
        BundleError: onnxruntime failed to quantise the graph (its message is included).
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    fp32_path, out_path = Path(fp32_path), Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    method = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[config.method]
    # onnxruntime's histogram calibrators (entropy, percentile) stack the per-batch tensors
    # and fail on a shorter last batch; one image per run keeps every batch the same shape.
    batch_size = config.batch_size if config.method == "minmax" else 1
    reader = ImageCalibrationReader(list(calibration_sources), spec, batch_size=batch_size)
    with tempfile.TemporaryDirectory(prefix="denarius-quant-") as work:
        source = fp32_path
        if config.preprocess_graph:
            from onnxruntime.quantization.shape_inference import quant_pre_process

            source = Path(work) / "prepared.onnx"
            quant_pre_process(str(fp32_path), str(source), skip_symbolic_shape=False)
        try:
            quantize_static(
                str(source),
                str(out_path),
                reader,
                quant_format=QuantFormat.QDQ,
                per_channel=config.per_channel,
                activation_type=QuantType.QUInt8 if config.unsigned_activations else QuantType.QInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=method,
                extra_options={
                    "ActivationSymmetric": config.symmetric_activations and not config.unsigned_activations,
                    "WeightSymmetric": True,
                    # TensorRT's DequantizeLinear takes int8 (not int32) inputs, so biases stay
                    # fp32; onnxruntime quantises them itself when it fuses QLinearConv/QGemm.
                    "QuantizeBias": False,
                    # Not "CalibMaxIntermediateOutputs": onnxruntime 1.32's MinMax calibrator
                    # discards (instead of merging) the batches collected before each flush.
                    # MinMax keeps only per-tensor min/max per batch, so memory stays small.
                },
            )
        except Exception as exc:  # onnxruntime raises many types here
            if reader.used == 0:
                raise ConfigError("INT8 calibration found no readable image among the calibration photographs") from exc
            raise BundleError(f"onnxruntime could not quantise {fp32_path.name}: {type(exc).__name__}: {exc}") from exc
    if reader.used == 0:
        raise ConfigError("INT8 calibration found no readable image among the calibration photographs")
    # quantize_static drops the fp32 file's metadata; the INT8 file should explain itself too.
    proto = onnx.load(str(out_path))
    _keep_float_outputs(proto)
    source_meta = {p.key: p.value for p in onnx.load(str(fp32_path), load_external_data=False).metadata_props}
    source_meta.update({"denarius.precision": "int8", "denarius.calibration_images": str(reader.used)})
    from denarius.export.onnx_export import set_metadata

    set_metadata(proto, source_meta)
    onnx.save(proto, str(out_path))
    logger.info("quantised %s -> %s (QDQ int8, %s calibration on %d images)", fp32_path.name, out_path.name, config.method, reader.used)
    return out_path, reader.used


def _keep_float_outputs(proto) -> None:
    """Drop the Quantize/Dequantize pair that quantize_static puts on each graph output.

    Rounding the logits to 256 levels would coarsen the probabilities the engine reports
    (and the landmark optimiser's constraint) for no speed gain; the last Gemm still has
    int8 inputs and weights, and both onnxruntime (QGemm with float output) and TensorRT
    run it that way.
    """
    graph = proto.graph
    producer = {out: node for node in graph.node for out in node.output}
    removed = set()
    for output in graph.output:
        dq = producer.get(output.name)
        if dq is None or dq.op_type != "DequantizeLinear":
            continue
        q = producer.get(dq.input[0])
        if q is None or q.op_type != "QuantizeLinear":
            continue
        consumers = [n for n in graph.node if q.output[0] in n.input or dq.output[0] in n.input]
        if consumers != [dq]:
            continue  # the quantised logits feed something else; leave the graph alone
        source = producer.get(q.input[0])
        if source is None:
            continue
        source.output[:] = [output.name if name == q.input[0] else name for name in source.output]
        removed.update({id(q), id(dq)})
    if removed:
        kept = [n for n in graph.node if id(n) not in removed]
        del graph.node[:]
        graph.node.extend(kept)
        used = {name for node in graph.node for name in node.input}
        dangling = [t for t in graph.initializer if t.name not in used]
        for tensor in dangling:
            graph.initializer.remove(tensor)


def measure_agreement(
    fp32_path: str | Path,
    variant_path: str | Path,
    images: np.ndarray,
    *,
    labels: np.ndarray | None = None,
    variant: str = "int8",
    batch_size: int = 32,
    calibration_images: int = 0,
    input_name: str = INPUT_NAME,
    output_name: str = OUTPUT_NAME,
) -> AgreementReport:
    """Compare a reduced-precision file with fp32 on onnxruntime CPU.

    Args:
        images: (N, 3, S, S) float32 preprocessed held-out photographs, N >= 1.
        labels: (N,) int64 class indices, -1 for unknown; None if there are no labels.
        input_name, output_name: the classifier's tensor names (those the bundle manifest
            records, ``ModelInfo.input_name`` / ``output_name``).

    Raises:
        ConfigError: empty image batch.
    """
    if len(images) == 0:
        raise ConfigError(f"no evaluation image for the {variant} agreement report")
    reference = open_session(fp32_path, options=quiet_options())
    candidate = open_session(variant_path, options=quiet_options())
    ref_logits, var_logits = [], []
    for start in range(0, len(images), batch_size):
        batch = np.ascontiguousarray(images[start : start + batch_size], np.float32)
        ref_logits.append(reference.run([output_name], {input_name: batch})[0])
        var_logits.append(candidate.run([output_name], {input_name: batch})[0].astype(np.float32))
    ref, var = np.concatenate(ref_logits), np.concatenate(var_logits)
    ref_top, var_top = ref.argmax(1), var.argmax(1)
    agreement = float(np.mean(ref_top == var_top))
    fp32_acc = var_acc = delta = None
    labelled = 0
    if labels is not None:
        labels = np.asarray(labels, np.int64)
        known = labels >= 0
        labelled = int(known.sum())
        if labelled:
            fp32_acc = float(np.mean(ref_top[known] == labels[known]))
            var_acc = float(np.mean(var_top[known] == labels[known]))
            delta = var_acc - fp32_acc
    report = AgreementReport(
        variant=variant, images=len(images), labelled=labelled, top1_agreement=agreement,
        fp32_accuracy=fp32_acc, variant_accuracy=var_acc, accuracy_delta=delta,
        max_abs_logit_diff=float(np.max(np.abs(var - ref))), calibration_images=calibration_images,
    )
    logger.info("%s: %s", Path(variant_path).name, report.summary())
    return report
