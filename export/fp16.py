"""FP16 ONNX: weights and activations in float16, float32 ``image`` in and ``logits`` out.

Keeping the graph's inputs/outputs fp32 means every backend feeds the same
``denarius.engine.preprocess`` tensors and reads the same logits dtype; the casts sit inside the graph.
This is the file TensorRT 11 (strongly typed) builds an fp16 plan from, and what the
onnxruntime CUDA provider runs at half precision.

onnxconverter-common's ``convert_float_to_float16(keep_io_types=True)`` does the conversion
when it is installed; otherwise a small converter here does the same for the plain AlexNet
graph (Conv, Relu, MaxPool, AveragePool, Flatten, Gemm ...): float initialisers become
float16, a Cast after each float input, a Cast before each float output.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from denarius.engine.errors import BundleError

__all__ = ["convert_fp16", "to_fp16_model"]

logger = logging.getLogger(__name__)

# float16's largest finite value; fp32 weights beyond it would become inf.
_FP16_MAX = 65504.0


def to_fp16_model(model, *, use_library: bool = True):
    """Convert an fp32 ``onnx.ModelProto`` to fp16 compute with fp32 inputs/outputs.

    Args:
        model: fp32 ModelProto (not modified).
        use_library: use onnxconverter-common when importable (else the built-in converter).

    Returns:
        A new ModelProto.

    Raises:
        BundleError: a weight does not fit in float16 (named).
    """
    import onnx
    from onnx import numpy_helper

    for tensor in model.graph.initializer:
        if tensor.data_type == onnx.TensorProto.FLOAT:
            values = numpy_helper.to_array(tensor)
            if values.size and float(np.max(np.abs(values))) > _FP16_MAX:
                raise BundleError(f"weight {tensor.name} exceeds the float16 range (max |w| = {np.max(np.abs(values)):.3g})")
    if use_library:
        try:
            from onnxconverter_common import float16
        except ImportError:
            logger.info("onnxconverter-common not installed; using the built-in fp16 converter")
        else:
            import warnings

            # The library warns once per tensor holding values below fp16's resolution that
            # it clamps to +-1e-7 (harmless for trained weights); keep one log line instead.
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                converted = float16.convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=False)
            if caught:
                logger.debug("fp16 conversion: %d tensors had values clamped into the float16 range", len(caught))
            return converted
    return _convert_builtin(model)


def _convert_builtin(model):
    import onnx
    from onnx import helper, numpy_helper

    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    for i, tensor in enumerate(graph.initializer):
        if tensor.data_type == onnx.TensorProto.FLOAT:
            half = numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.float16), tensor.name)
            graph.initializer[i].CopyFrom(half)
    # Cast attributes/constant nodes carrying float tensors (e.g. Constant) to fp16 as well.
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value" and attr.t.data_type == onnx.TensorProto.FLOAT:
                    attr.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(attr.t).astype(np.float16), attr.t.name))
        if node.op_type == "Cast":
            for attr in node.attribute:
                if attr.name == "to" and attr.i == onnx.TensorProto.FLOAT:
                    attr.i = onnx.TensorProto.FLOAT16
    initialisers = {t.name for t in graph.initializer}
    new_nodes = []
    for value in graph.input:
        if value.name in initialisers or value.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
            continue
        half_name = f"{value.name}__fp16"
        for node in graph.node:
            node.input[:] = [half_name if name == value.name else name for name in node.input]
        new_nodes.append(helper.make_node("Cast", [value.name], [half_name], to=onnx.TensorProto.FLOAT16, name=f"{value.name}_to_fp16"))
    tail = []
    for value in graph.output:
        if value.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
            continue
        half_name = f"{value.name}__fp16"
        for node in graph.node:
            node.output[:] = [half_name if name == value.name else name for name in node.output]
        tail.append(helper.make_node("Cast", [half_name], [value.name], to=onnx.TensorProto.FLOAT, name=f"{value.name}_to_fp32"))
    nodes = new_nodes + list(graph.node) + tail
    del graph.node[:]
    graph.node.extend(nodes)
    # Intermediate value_info entries still claim float32; drop them and re-infer.
    del graph.value_info[:]
    return onnx.shape_inference.infer_shapes(out, strict_mode=True)


def convert_fp16(fp32_path: str | Path, out_path: str | Path, *, use_library: bool = True) -> Path:
    """Write the fp16 variant of an fp32 ONNX classifier (metadata kept, checker clean).

    Raises:
        BundleError: the converted graph fails the ONNX checker or onnxruntime cannot load it.
    """
    import onnx

    from denarius.engine.backends.sessions import open_session

    fp32_path, out_path = Path(fp32_path), Path(out_path)
    model = onnx.load(str(fp32_path))
    converted = to_fp16_model(model, use_library=use_library)
    from denarius.export.onnx_export import set_metadata

    meta = {p.key: p.value for p in model.metadata_props}
    meta["denarius.precision"] = "fp16"
    set_metadata(converted, meta)
    try:
        onnx.checker.check_model(converted, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise BundleError(f"fp16 conversion of {fp32_path.name} fails the ONNX checker: {exc}") from exc
    out_path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(converted, str(out_path))
    open_session(out_path)  # the file must at least load where every test runs (BundleError otherwise)
    logger.info("converted %s -> %s (fp16 compute, fp32 image/logits)", fp32_path.name, out_path.name)
    return out_path
