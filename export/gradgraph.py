"""Gradient graphs: reverse-mode differentiation of an exported ONNX classifier.

Stock onnxruntime (CPU and CUDA providers, no training build) cannot differentiate a graph,
so the landmark optimiser gets its ``d loss / d image`` from a second ONNX graph built here:
the forward classifier plus backward nodes made of standard ``ai.onnx`` ops (opset >= 17).

Contract of the result (one file, initializers shared between forward and backward)::

    inputs   image       float32 (N, 3, H, W)  normalised network input
             target      int64   (N,)          class index in [0, C) (callers validate it:
                                               onnxruntime fails on >= C, and -k counts
                                               from the end as in ONNX's GatherElements)
    outputs  logits      float32 (N, C)        the classifier's output, unchanged
             loss        float32 (N,)          -log softmax(logits)[n, target[n]]
             grad_image  float32 (N, 3, H, W)  d loss[n] / d image[n]

The loss is per sample, so ``grad_image[n]`` depends on sample n only and the batch axis
stays dynamic (batch 1 and 8 run on the same file). Spatial sizes must be static (they set
the ConvTranspose geometry); ``torch.onnx.export`` with ``dynamic_axes`` on the batch only
gives exactly that.

Differentiated operators (those of our AlexNet export, plus their plain variants): Conv,
Relu, MaxPool, AveragePool, GlobalAveragePool, Flatten, Reshape, Squeeze, Unsqueeze, Gemm,
Identity, Dropout (inference: identity). Nodes that do not depend on the image (constants,
shape arithmetic) are copied as they are; ``Shape``/``Size`` of an image-dependent tensor
carry no gradient. Any other operator on the image's path raises ``UnsupportedOpError``
naming its type and node.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from denarius.engine.errors import ConfigError, UnsupportedOpError

__all__ = ["build_gradient_graph", "write_gradient_graph", "SUPPORTED_OPS", "INPUT", "TARGET", "LOGITS", "LOSS", "GRAD"]

logger = logging.getLogger(__name__)

INPUT, TARGET, LOGITS, LOSS, GRAD = "image", "target", "logits", "loss", "grad_image"
MIN_OPSET = 17
# Operators whose outputs carry no gradient even when their input depends on the image.
_NON_DIFFERENTIABLE = {"Shape", "Size"}


class _Builder:
    """Emits backward nodes and constants with names that cannot collide with the forward graph."""

    def __init__(self, graph: onnx.GraphProto, shapes: dict[str, list[int | None]]):
        self.graph = graph
        self.shapes = shapes
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        for node in graph.node:
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
                for attr in node.attribute:
                    if attr.name == "value":
                        self.constants[node.output[0]] = numpy_helper.to_array(attr.t)
        self.taken = {v.name for v in [*graph.input, *graph.output, *graph.value_info]}
        self.taken |= set(self.constants)
        self.taken |= {name for node in graph.node for name in [*node.input, *node.output]}
        self._count = 0
        self._cache: dict[tuple, str] = {}

    def fresh(self, hint: str) -> str:
        while True:
            self._count += 1
            name = f"grad/{hint}_{self._count}"
            if name not in self.taken:
                self.taken.add(name)
                return name

    def const(self, hint: str, array: np.ndarray) -> str:
        array = np.asarray(array)
        key = (array.dtype.str, array.shape, array.tobytes())
        if key not in self._cache:
            name = self.fresh(hint)
            self.initializers.append(numpy_helper.from_array(array, name))
            self._cache[key] = name
        return self._cache[key]

    def op(self, op_type: str, inputs: list[str], *, hint: str, outputs: int = 1, **attrs) -> str | list[str]:
        names = [self.fresh(f"{hint}_{op_type}") for _ in range(outputs)]
        self.nodes.append(helper.make_node(op_type, inputs, names, name=names[0], **attrs))
        return names[0] if outputs == 1 else names

    def spatial(self, name: str, node: onnx.NodeProto) -> list[int]:
        """Static spatial dims (all dims after N, C) of tensor ``name``."""
        dims = self.shapes.get(name)
        if dims is None or len(dims) < 3 or any(d is None for d in dims[2:]):
            raise ConfigError(
                f"{_describe(node)}: the spatial shape of {name!r} is not static ({dims}); export "
                "the classifier with a dynamic batch axis only"
            )
        return [int(d) for d in dims[2:]]


def _describe(node: onnx.NodeProto) -> str:
    return f"{node.op_type} node {node.name or '<unnamed>'!r} (output {node.output[0]!r})"


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _explicit_pads(node, attrs, in_sizes, out_sizes, kernel, strides, dilations) -> tuple[list[int], list[int]]:
    """(begin, end) pads per spatial dim, resolving ``auto_pad``."""
    rank = len(in_sizes)
    auto_pad = attrs.get("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    if auto_pad in ("NOTSET", ""):
        pads = list(attrs.get("pads", [0] * (2 * rank)))
        return pads[:rank], pads[rank:]
    if auto_pad == "VALID":
        return [0] * rank, [0] * rank
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        begin, end = [], []
        for i in range(rank):
            effective = (kernel[i] - 1) * dilations[i] + 1
            total = max(0, (out_sizes[i] - 1) * strides[i] + effective - in_sizes[i])
            small, large = total // 2, total - total // 2
            begin.append(small if auto_pad == "SAME_UPPER" else large)
            end.append(large if auto_pad == "SAME_UPPER" else small)
        return begin, end
    raise UnsupportedOpError(f"{_describe(node)} has auto_pad={auto_pad!r}; valid: NOTSET, VALID, SAME_UPPER, SAME_LOWER")


def _transpose_geometry(node, in_sizes, out_sizes, effective, strides, begin, end) -> dict:
    """ConvTranspose attributes whose output has exactly ``in_sizes`` spatial dims.

    ConvTranspose gives ``s*(out-1) + output_padding + effective - begin - end``; the
    forward op floored away ``(in + begin + end - effective) mod s`` trailing pixels, which
    come back as ``output_padding``. A window that ran past the end (ceil_mode) is cropped
    by a larger end pad instead.
    """
    pads_end, output_padding = list(end), []
    for i, (size_in, size_out) in enumerate(zip(in_sizes, out_sizes, strict=True)):
        natural = strides[i] * (size_out - 1) + effective[i] - begin[i] - end[i]
        diff = size_in - natural
        if diff >= 0:
            if diff >= strides[i]:
                raise UnsupportedOpError(f"{_describe(node)}: unexpected geometry (input {in_sizes}, output {out_sizes})")
            output_padding.append(diff)
        else:
            output_padding.append(0)
            pads_end[i] -= diff
    return {"pads": list(begin) + pads_end, "output_padding": output_padding}


# --------------------------------------------------------------------------- rules
# Each rule gets (builder, forward node, its attributes, gradient of output 0) and returns
# {input index: gradient name} for the inputs that carry gradient.
Rule = Callable[[_Builder, onnx.NodeProto, dict, str], dict[int, str]]


def _grad_identity(b, node, attrs, dy):
    return {0: dy}


def _grad_reshape(b, node, attrs, dy):
    # Flatten/Reshape/Squeeze/Unsqueeze: (N, ...) -> back to the input's runtime shape.
    shape = b.op("Shape", [node.input[0]], hint="shape")
    return {0: b.op("Reshape", [dy, shape], hint="unflatten")}


def _grad_relu(b, node, attrs, dy):
    # y > 0 exactly where x > 0; torch's ReLU backward uses the same strict mask.
    positive = b.op("Greater", [node.output[0], b.const("zero", np.float32(0))], hint="relu_mask")
    return {0: b.op("Where", [positive, dy, b.const("zero", np.float32(0))], hint="relu")}


def _grad_gemm(b, node, attrs, dy):
    # Y = alpha * A' @ B' + beta * C with A' = A^T if transA, B' = B^T if transB.
    alpha = float(attrs.get("alpha", 1.0))
    trans_a, trans_b = int(attrs.get("transA", 0)), int(attrs.get("transB", 0))
    weight = node.input[1]
    if not trans_a:
        # dA = alpha * dY @ B'^T: (N, M) x (M, K) -> (N, K)
        return {0: b.op("Gemm", [dy, weight], hint="gemm", alpha=alpha, transB=1 - trans_b)}
    # A is (K, N): dA = (alpha * dY @ B'^T)^T = alpha * B' @ dY^T
    return {0: b.op("Gemm", [weight, dy], hint="gemm", alpha=alpha, transA=trans_b, transB=1)}


def _grad_conv(b, node, attrs, dy):
    # dX = ConvTranspose(dY, W): the adjoint of a convolution with the same weights.
    weight = node.input[1]
    w_shape = b.shapes.get(weight)
    kernel = list(attrs.get("kernel_shape") or (w_shape[2:] if w_shape else []))
    in_sizes, out_sizes = b.spatial(node.input[0], node), b.spatial(node.output[0], node)
    rank = len(in_sizes)
    if len(kernel) != rank or any(k is None for k in kernel):
        raise ConfigError(f"{_describe(node)}: kernel shape of {weight!r} is not static")
    strides = list(attrs.get("strides", [1] * rank))
    dilations = list(attrs.get("dilations", [1] * rank))
    begin, end = _explicit_pads(node, attrs, in_sizes, out_sizes, kernel, strides, dilations)
    effective = [(k - 1) * d + 1 for k, d in zip(kernel, dilations, strict=True)]
    group = int(attrs.get("group", 1))
    flipped_pads = [e - 1 - p for e, p in zip(effective * 2, begin + end, strict=True)]
    if all(s == 1 for s in strides) and group == 1 and min(flipped_pads) >= 0:
        # Stride 1: the adjoint is a plain convolution with the kernel flipped and its
        # in/out channels swapped. onnxruntime runs Conv much faster than ConvTranspose on
        # CPU, and folds the weight rearrangement into a constant when the session loads
        # (the file still stores each weight once).
        starts = b.const("flip_start", np.full(rank, -1, np.int64))
        ends = b.const("flip_end", np.full(rank, np.iinfo(np.int64).min, np.int64))
        axes = b.const("flip_axes", np.arange(2, 2 + rank, dtype=np.int64))
        steps = b.const("flip_steps", np.full(rank, -1, np.int64))
        swapped = b.op("Transpose", [weight], hint="conv_weight", perm=[1, 0, *range(2, 2 + rank)])
        flipped = b.op("Slice", [swapped, starts, ends, axes, steps], hint="conv_weight")
        return {0: b.op("Conv", [dy, flipped], hint="conv", kernel_shape=kernel, dilations=dilations, pads=flipped_pads)}
    geometry = _transpose_geometry(node, in_sizes, out_sizes, effective, strides, begin, end)
    dx = b.op(
        "ConvTranspose", [dy, weight], hint="conv",
        kernel_shape=kernel, strides=strides, dilations=dilations,
        group=group, **geometry,
    )
    return {0: dx}


def _grad_maxpool(b, node, attrs, dy):
    # Route each output gradient to its argmax. ONNX indices are flat over the whole
    # (N, C, H, W) input, so one 1-D ScatterElements(add) covers overlapping windows.
    if int(attrs.get("storage_order", 0)) != 0:
        raise UnsupportedOpError(f"{_describe(node)} has storage_order=1 (column-major indices); only 0 is supported")
    indices = node.output[1]
    flat = b.const("flat", np.array([-1], np.int64))
    shape = b.op("Shape", [node.input[0]], hint="shape")
    zeros = b.op("ConstantOfShape", [shape], hint="zeros", value=numpy_helper.from_array(np.zeros(1, np.float32)))
    scattered = b.op(
        "ScatterElements",
        [b.op("Reshape", [zeros, flat], hint="zeros_flat"),
         b.op("Reshape", [indices, flat], hint="idx_flat"),
         b.op("Reshape", [dy, flat], hint="dy_flat")],
        hint="maxpool", axis=0, reduction="add",
    )
    return {0: b.op("Reshape", [scattered, shape], hint="maxpool")}


def _grad_avgpool(b, node, attrs, dy):
    in_sizes, out_sizes = b.spatial(node.input[0], node), b.spatial(node.output[0], node)
    rank = len(in_sizes)
    kernel = list(attrs["kernel_shape"])
    strides = list(attrs.get("strides", [1] * rank))
    dilations = list(attrs.get("dilations", [1] * rank))
    if any(d != 1 for d in dilations):
        raise UnsupportedOpError(f"{_describe(node)} has dilations {dilations}; only 1 is supported")
    begin, end = _explicit_pads(node, attrs, in_sizes, out_sizes, kernel, strides, dilations)
    if all(k == 1 for k in kernel) and all(s == 1 for s in strides) and not any(begin + end):
        return {0: dy}  # kernel 1, stride 1: the identity torch emits for a 6x6 map at input 224
    # Divisor of each output window (ORT's rule: windows clipped at in+end_pad, and at
    # the real input unless count_include_pad).
    include_pad = int(attrs.get("count_include_pad", 0))
    divisor = np.ones(out_sizes, np.float64)
    for i in range(rank):
        start = np.arange(out_sizes[i]) * strides[i] - begin[i]
        stop = np.minimum(start + kernel[i], in_sizes[i] + end[i])
        size = stop - start if include_pad else np.minimum(stop, in_sizes[i]) - np.maximum(start, 0)
        divisor = divisor * size.reshape([-1 if j == i else 1 for j in range(rank)])
    scale = b.const("avg_scale", (1.0 / divisor).astype(np.float32))
    # Spread dY / divisor over each window: a ConvTranspose with a ones kernel, run with
    # channels folded into the batch so the channel count may stay unknown.
    folded = b.op("Reshape", [b.op("Mul", [dy, scale], hint="avg_scaled"),
                              b.const("fold", np.array([-1, 1, *out_sizes], np.int64))], hint="avg_fold")
    geometry = _transpose_geometry(node, in_sizes, out_sizes, kernel, strides, begin, end)
    spread = b.op(
        "ConvTranspose", [folded, b.const("ones", np.ones([1, 1, *kernel], np.float32))],
        hint="avgpool", kernel_shape=kernel, strides=strides, **geometry,
    )
    return {0: b.op("Reshape", [spread, b.op("Shape", [node.input[0]], hint="shape")], hint="avgpool")}


def _grad_global_avgpool(b, node, attrs, dy):
    in_sizes = b.spatial(node.input[0], node)
    scale = b.const("gap_scale", np.float32(1.0 / float(np.prod(in_sizes))))
    shape = b.op("Shape", [node.input[0]], hint="shape")
    return {0: b.op("Expand", [b.op("Mul", [dy, scale], hint="gap_scaled"), shape], hint="gap")}


def _grad_dropout(b, node, attrs, dy):
    if len(node.input) > 2 and node.input[2]:
        mode = b.constants.get(node.input[2])
        if mode is None or bool(np.asarray(mode).item()):
            raise UnsupportedOpError(f"{_describe(node)} may run in training mode; export the model in eval mode")
    return {0: dy}


_RULES: dict[str, tuple[Rule, tuple[int, ...]]] = {
    # op type: (rule, indices of inputs that may depend on the image)
    "Conv": (_grad_conv, (0,)),
    "Relu": (_grad_relu, (0,)),
    "MaxPool": (_grad_maxpool, (0,)),
    "AveragePool": (_grad_avgpool, (0,)),
    "GlobalAveragePool": (_grad_global_avgpool, (0,)),
    "Flatten": (_grad_reshape, (0,)),
    "Reshape": (_grad_reshape, (0,)),
    "Squeeze": (_grad_reshape, (0,)),
    "Unsqueeze": (_grad_reshape, (0,)),
    "Gemm": (_grad_gemm, (0,)),
    "Identity": (_grad_identity, (0,)),
    "Dropout": (_grad_dropout, (0,)),
}
SUPPORTED_OPS = tuple(sorted(_RULES))


def _static_shapes(model: onnx.ModelProto) -> dict[str, list[int | None]]:
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    except onnx.shape_inference.InferenceError as exc:
        raise ConfigError(f"ONNX shape inference failed on the classifier: {exc}") from exc
    shapes: dict[str, list[int | None]] = {}
    graph = inferred.graph
    for info in [*graph.input, *graph.output, *graph.value_info]:
        if info.type.HasField("tensor_type") and info.type.tensor_type.HasField("shape"):
            shapes[info.name] = [d.dim_value if d.HasField("dim_value") else None for d in info.type.tensor_type.shape.dim]
    for init in graph.initializer:
        shapes[init.name] = list(init.dims)
    return shapes


def _opset(model: onnx.ModelProto) -> int:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return entry.version
    raise ConfigError("the model imports no ai.onnx opset")


def build_gradient_graph(model: onnx.ModelProto) -> onnx.ModelProto:
    """Differentiate a classifier graph ``image`` -> ``logits`` into a gradient graph.

    Args:
        model: ONNX classifier, input ``image`` float32 (N, 3, H, W) with static H, W and
            output ``logits`` float32 (N, C); ai.onnx opset >= 13 (the result uses
            max(opset, 17)).

    Returns:
        A new, checker-clean ModelProto: inputs ``image`` (N, 3, H, W) float32 and
        ``target`` (N,) int64; outputs ``logits`` (N, C), ``loss`` (N,) and ``grad_image``
        (N, 3, H, W), all float32 (see the module docstring).

    Raises:
        UnsupportedOpError: an operator on the image's path has no gradient rule; the
            message names its type and node and lists the supported operators.
        ConfigError: wrong input/output names or types, dynamic spatial dims, old opset.
    """
    graph = model.graph
    initializer_names = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializer_names]
    if [i.name for i in inputs] != [INPUT]:
        raise ConfigError(f"the classifier must have exactly one input {INPUT!r}; it has {[i.name for i in inputs]}")
    if LOGITS not in [o.name for o in graph.output]:
        raise ConfigError(f"the classifier has no output {LOGITS!r}; outputs: {[o.name for o in graph.output]}")
    if inputs[0].type.tensor_type.elem_type != TensorProto.FLOAT:
        raise ConfigError(f"input {INPUT!r} must be float32")
    opset = _opset(model)
    if opset < 13:
        raise ConfigError(f"the classifier uses opset {opset}; re-export it with opset >= {MIN_OPSET}")
    for name in (TARGET, LOSS, GRAD):
        if any(name in (*n.input, *n.output) for n in graph.node) or name in initializer_names:
            raise ConfigError(f"the classifier already uses the tensor name {name!r}")

    shapes = _static_shapes(model)
    b = _Builder(graph, shapes)

    # Forward sweep: which tensors depend on the image, and is every such op differentiable?
    forward: list[onnx.NodeProto] = []
    carries = {INPUT}
    for node in graph.node:
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        forward.append(copy)
        live = [i for i, name in enumerate(node.input) if name in carries]
        if not live or (node.op_type in _NON_DIFFERENTIABLE and node.domain in ("", "ai.onnx")):
            continue
        if node.domain not in ("", "ai.onnx") or node.op_type not in _RULES:
            domain = f" (domain {node.domain!r})" if node.domain not in ("", "ai.onnx") else ""
            raise UnsupportedOpError(
                f"cannot differentiate {_describe(node)}{domain}: the gradient graph supports "
                f"only {', '.join(SUPPORTED_OPS)}"
            )
        _, allowed = _RULES[node.op_type]
        if any(i not in allowed for i in live):
            raise UnsupportedOpError(
                f"cannot differentiate {_describe(node)}: its input {node.input[live[-1]]!r} depends on the "
                "image; only the data input may (weights must be constants)"
            )
        carries.add(node.output[0])
        if node.op_type == "MaxPool" and (len(copy.output) < 2 or not copy.output[1]):
            # The backward pass needs the argmax; the forward node computes it for free.
            del copy.output[1:]
            copy.output.append(b.fresh("maxpool_indices"))

    # Loss head: loss = -log softmax(logits)[target]; d loss / d logits = softmax - onehot.
    log_probs = b.op("LogSoftmax", [LOGITS], hint="loss", axis=1)  # (N, C)
    picked = b.op("GatherElements", [log_probs, b.op("Unsqueeze", [TARGET, b.const("axis1", np.array([1], np.int64))], hint="target")],
                  hint="loss", axis=1)  # (N, 1)
    b.nodes.append(helper.make_node("Neg", [b.op("Squeeze", [picked, b.const("axis1", np.array([1], np.int64))], hint="loss")],
                                    [LOSS], name="grad/loss"))
    depth = b.op("Shape", [LOGITS], hint="classes", start=1, end=2)  # (1,) = C
    onehot = b.op("OneHot", [TARGET, depth, b.const("onehot_values", np.array([0.0, 1.0], np.float32))], hint="onehot", axis=-1)
    d_logits = b.op("Sub", [b.op("Exp", [log_probs], hint="softmax"), onehot], hint="d_logits")  # (N, C)

    # Backward sweep in reverse topological order, summing gradients of fanned-out tensors.
    pending: dict[str, list[str]] = {LOGITS: [d_logits]}
    for node, copy in zip(reversed(graph.node), reversed(forward), strict=True):
        if node.output[0] not in carries or node.output[0] not in pending:
            continue
        contributions = pending.pop(node.output[0])
        dy = contributions[0] if len(contributions) == 1 else b.op("Sum", contributions, hint="accumulate")
        rule, _ = _RULES[node.op_type]
        for index, dx in rule(b, copy, _attrs(copy), dy).items():
            name = node.input[index]
            if name in carries:
                pending.setdefault(name, []).append(dx)
    contributions = pending.pop(INPUT, [])
    if not contributions:
        raise ConfigError(f"{LOGITS!r} does not depend on {INPUT!r}; there is nothing to differentiate")
    grad = contributions[0] if len(contributions) == 1 else b.op("Sum", contributions, hint="accumulate")
    b.nodes.append(helper.make_node("Identity", [grad], [GRAD], name="grad/grad_image"))

    image_type = inputs[0].type.tensor_type
    image_dims = [d.dim_param or d.dim_value or None for d in image_type.shape.dim]
    batch = image_dims[0] if image_dims and image_dims[0] else "N"
    logits_info = next(o for o in graph.output if o.name == LOGITS)
    new_graph = helper.make_graph(
        [*forward, *b.nodes],
        f"{graph.name or 'classifier'}_gradient",
        inputs=[inputs[0], helper.make_tensor_value_info(TARGET, TensorProto.INT64, [batch])],
        outputs=[
            logits_info,
            helper.make_tensor_value_info(LOSS, TensorProto.FLOAT, [batch]),
            helper.make_tensor_value_info(GRAD, TensorProto.FLOAT, image_dims),
        ],
        initializer=[*graph.initializer, *b.initializers],
        value_info=list(graph.value_info),
        doc_string="Denarius gradient graph: image, target -> logits, loss = -log softmax[target], grad_image = d loss / d image",
    )
    result = onnx.ModelProto()
    result.CopyFrom(model)
    result.graph.CopyFrom(new_graph)
    for entry in result.opset_import:
        if entry.domain in ("", "ai.onnx"):
            entry.version = max(entry.version, MIN_OPSET)
    onnx.checker.check_model(result, full_check=True)
    logger.info("gradient graph: %d forward + %d backward nodes", len(forward), len(b.nodes))
    return result


def write_gradient_graph(onnx_path: str | Path, out_path: str | Path) -> Path:
    """Read a classifier ONNX file, write its gradient graph to ``out_path`` (atomically)."""
    onnx_path, out_path = Path(onnx_path), Path(out_path)
    if not onnx_path.is_file():
        raise ConfigError(f"ONNX file {onnx_path} does not exist")
    try:
        model = onnx.load(str(onnx_path))
    except Exception as exc:  # protobuf DecodeError and friends
        raise ConfigError(f"cannot read ONNX file {onnx_path}: {exc}") from exc
    result = build_gradient_graph(model)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out_path.name}.", suffix=".tmp", dir=out_path.parent)
    os.close(fd)
    try:
        onnx.save(result, tmp)
        os.replace(tmp, out_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out_path
