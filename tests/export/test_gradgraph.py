"""Gradient graphs against torch autograd, run in a real onnxruntime CPU session."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from denarius.engine.errors import ConfigError, UnsupportedOpError
from denarius.export.gradgraph import build_gradient_graph, write_gradient_graph
from denarius.training.model import ModelConfig, build_model

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
FIXTURES = SHARED / "fixtures" / "real"
GRAD_RTOL = 1e-4  # max |grad_ort - grad_torch| relative to max |grad_torch|
LOGIT_ATOL = 1e-4  # relative to the logit scale (max |logit|, at least 1)


def _export(module: nn.Module, shape: tuple[int, ...]) -> onnx.ModelProto:
    """torch -> ONNX as export/ does: opset 17, TorchScript exporter, dynamic batch."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(), torch.zeros(1, *shape[1:]), buffer, dynamo=False, opset_version=17,
            input_names=["image"], output_names=["logits"],
            dynamic_axes={"image": {0: "N"}, "logits": {0: "N"}},
        )
    return onnx.load_from_string(buffer.getvalue())


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    """A CPU session returning logits, loss, grad_image and then each MaxPool's indices."""
    return ort.InferenceSession(_with_pool_indices(model).SerializeToString(), providers=["CPUExecutionProvider"])


def _torch_reference(module: nn.Module, image: np.ndarray, target: np.ndarray, pinned: list[np.ndarray] | None = None):
    """(logits (N, C), per-sample loss (N,), d loss / d image (N, 3, H, W)) by autograd.

    ``pinned``: flat argmax indices of each MaxPool (in module order) to route the max-pool
    gradient through instead of torch's own argmax. Real coin photos have blank backgrounds,
    so some pooling windows hold mathematically equal maxima that torch and onnxruntime
    round differently (1-ulp apart) and then pick differently; both are valid subgradients,
    but only a shared choice makes the comparison meaningful there.
    """
    hooks = []
    pools = [m for m in module.modules() if isinstance(m, nn.MaxPool2d)]
    if pinned is not None:
        assert len(pinned) == len(pools)
        for pool, indices in zip(pools, pinned, strict=True):
            def gather(mod, inputs, output, indices=torch.from_numpy(indices)):  # noqa: B008 - binds this pool's indices
                picked = inputs[0].flatten()[indices.flatten()].reshape(output.shape)
                # ORT's choice must be a true maximum of its window (to float32 rounding).
                scale = float(output.detach().abs().max()) or 1.0
                assert float((picked - output).detach().abs().max()) <= 1e-5 * scale
                return picked
            hooks.append(pool.register_forward_hook(gather))
    try:
        x = torch.from_numpy(image).requires_grad_(True)
        logits = module.eval()(x)
        loss = nn.functional.cross_entropy(logits, torch.from_numpy(target), reduction="none")
        loss.sum().backward()  # per-sample losses are independent: sum's gradient = each one's
    finally:
        for hook in hooks:
            hook.remove()
    return logits.detach().numpy(), loss.detach().numpy(), x.grad.numpy()


def _with_pool_indices(gradient_graph: onnx.ModelProto) -> onnx.ModelProto:
    """The gradient graph, also returning every MaxPool's Indices (N, C, h, w) int64."""
    model = onnx.ModelProto()
    model.CopyFrom(gradient_graph)
    for node in model.graph.node:
        if node.op_type == "MaxPool":
            model.graph.output.append(helper.make_tensor_value_info(node.output[1], TensorProto.INT64, None))
    return model


def _compare(session, module, image, target, *, pin_pools: bool = True) -> dict[str, float]:
    """Run the gradient graph and autograd on the same batch; assert and return the figures."""
    logits, loss, grad, *pool_indices = session.run(None, {"image": image, "target": target})
    ref_logits, ref_loss, ref_grad = _torch_reference(module, image, target, pool_indices if pin_pools else None)
    assert logits.shape == ref_logits.shape and loss.shape == target.shape and grad.shape == image.shape
    scale = max(1.0, float(np.abs(ref_logits).max()))
    figures = {
        "logits_abs": float(np.abs(logits - ref_logits).max()),
        "loss_abs": float(np.abs(loss - ref_loss).max()),
        "grad_abs": float(np.abs(grad - ref_grad).max()),
        "grad_rel": float(np.abs(grad - ref_grad).max() / np.abs(ref_grad).max()),
    }
    assert np.abs(ref_grad).max() > 0, "degenerate test: zero gradient"
    assert figures["logits_abs"] < LOGIT_ATOL * scale, figures
    assert figures["loss_abs"] < LOGIT_ATOL * scale, figures
    assert figures["grad_rel"] < GRAD_RTOL, figures
    return figures


# --------------------------------------------------------------------------- real images


def _coin_crops(count: int) -> list[np.ndarray]:
    """Square crops around coins of skimage's 'coins' photograph, as (h, w, 3) uint8 RGB."""
    from skimage import data

    gray = data.coins()  # (303, 384) uint8, 24 coins on a grid
    crops = []
    for row in range(2):
        for col in range(count // 2 + count % 2):
            top, left = 10 + row * 95, 10 + col * 60
            crops.append(np.repeat(gray[top : top + 90, left : left + 90, None], 3, axis=2))
    return crops[:count]


@pytest.fixture(scope="module")
def real_photos() -> list[np.ndarray]:
    """Eight decoded photographs: the two real fixture coins and six coins from skimage."""
    import cv2

    paths = sorted(FIXTURES.glob("*.jpg"))
    if not paths:
        pytest.skip(f"real-photo fixtures not found under {FIXTURES}")
    photos = [cv2.cvtColor(cv2.imread(str(p), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB) for p in paths]
    return (photos + _coin_crops(8 - len(photos)))[:8]


def _preprocessed(photos: list[np.ndarray], size: int) -> np.ndarray:
    """(8, 3, size, size) float32 through the one image pipeline."""
    from denarius.engine.preprocess import PreprocessSpec, preprocess_batch

    return preprocess_batch(photos, PreprocessSpec.for_input_size(size))


ALEXNET_CASES = [(64, 0.125), (96, 0.25), (128, 0.25), (224, 0.125)]
_ALEXNETS: dict[tuple[int, float], tuple[nn.Module, ort.InferenceSession]] = {}


def _alexnet(size: int, width: float, num_classes: int = 7):
    if (size, width) not in _ALEXNETS:
        torch.manual_seed(size)
        model = build_model(ModelConfig(num_classes=num_classes, width=width, input_size=size)).eval()
        _ALEXNETS[size, width] = model, _session(build_gradient_graph(_export(model, (1, 3, size, size))))
    return _ALEXNETS[size, width]


@pytest.mark.parametrize("batch", [1, 8])
@pytest.mark.parametrize(("size", "width"), ALEXNET_CASES)
def test_alexnet_gradient_matches_autograd(real_photos, size, width, batch):
    model, session = _alexnet(size, width)
    images = _preprocessed(real_photos, size)[:batch]
    target = np.arange(batch, dtype=np.int64) % 7
    figures = _compare(session, model, images, target)
    print(f"size={size} width={width} batch={batch}: {figures}")  # shown with -s; the report quotes them


@pytest.mark.parametrize("batch", [1, 8])
@pytest.mark.parametrize(("size", "width"), ALEXNET_CASES)
def test_alexnet_gradient_matches_plain_autograd_on_textured_images(size, width, batch):
    """Without pinning the max-pool choice: images with no flat regions have no tied maxima."""
    model, session = _alexnet(size, width)
    rng = np.random.default_rng(size + batch)
    images = rng.standard_normal((batch, 3, size, size), dtype=np.float32)
    _compare(session, model, images, rng.integers(0, 7, batch).astype(np.int64), pin_pools=False)


def test_per_sample_gradient_and_dynamic_batch_on_one_file(real_photos, tmp_path):
    model = build_model(ModelConfig(num_classes=5, width=0.125, input_size=96)).eval()
    source = tmp_path / "ric.onnx"
    onnx.save(_export(model, (1, 3, 96, 96)), str(source))
    out = write_gradient_graph(source, tmp_path / "ric.grad.onnx")
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    images = _preprocessed(real_photos, 96)
    target = np.array([0, 1, 2, 3, 4, 0, 1, 2], np.int64)
    _, loss8, grad8 = session.run(["logits", "loss", "grad_image"], {"image": images, "target": target})
    _, loss1, grad1 = session.run(["logits", "loss", "grad_image"], {"image": images[3:4], "target": target[3:4]})
    np.testing.assert_allclose(loss1, loss8[3:4], rtol=1e-5)
    np.testing.assert_allclose(grad1, grad8[3:4], rtol=0, atol=1e-5 * np.abs(grad8[3]).max())
    inputs = {i.name: i.type for i in session.get_inputs()}
    assert inputs["image"] == "tensor(float)" and inputs["target"] == "tensor(int64)"
    assert [o.name for o in session.get_outputs()] == ["logits", "loss", "grad_image"]


def test_uses_standard_ops_only():
    model, _ = _alexnet(224, 0.125)
    graph = build_gradient_graph(_export(model, (1, 3, 224, 224)))
    assert {n.domain for n in graph.graph.node} <= {""}
    assert {"ScatterElements", "ConvTranspose"} <= {n.op_type for n in graph.graph.node}
    # initializers are shared, not copied: each forward weight appears once
    names = [t.name for t in graph.graph.initializer]
    assert len(names) == len(set(names))
    assert sum(t.name.startswith("grad/") for t in graph.graph.initializer) < 10


# --------------------------------------------------------------------------- op variants


class _Head(nn.Module):
    """body -> flatten -> linear, so any body becomes an (N, C) classifier."""

    def __init__(self, body: nn.Module, shape: tuple[int, ...], classes: int = 5):
        super().__init__()
        self.body = body
        with torch.no_grad():
            features = body(torch.zeros(1, *shape[1:])).flatten(1).shape[1]
        self.fc = nn.Linear(features, classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.body(x), 1))


OP_VARIANTS = {
    "conv_stride2_dilated_grouped": (lambda: nn.Sequential(
        nn.Conv2d(3, 6, 3, stride=2, padding=(1, 2), dilation=2), nn.ReLU(),
        nn.Conv2d(6, 4, (3, 5), stride=(2, 3), groups=2), nn.ReLU()), (3, 3, 29, 31)),
    "conv_stride1_dilated_asymmetric": (lambda: nn.Sequential(
        nn.Conv2d(3, 5, (3, 5), padding=(2, 1), dilation=(2, 1)), nn.ReLU(),
        nn.Conv2d(5, 4, 3, padding=1, groups=1), nn.ReLU()), (2, 3, 11, 12)),
    "avgpool_pad_include": (lambda: nn.AvgPool2d(3, 2, 1, count_include_pad=True), (2, 3, 14, 15)),
    "avgpool_pad_exclude": (lambda: nn.AvgPool2d(3, 2, 1, count_include_pad=False), (2, 3, 14, 15)),
    "avgpool_ceil_exclude": (lambda: nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False), (2, 3, 14, 14)),
    "avgpool_ceil_include": (lambda: nn.AvgPool2d(2, 2, 0, ceil_mode=True), (2, 3, 13, 13)),
    "avgpool_identity": (lambda: nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(6)), (2, 3, 8, 8)),
    "global_avgpool": (lambda: nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1)), (2, 3, 9, 9)),
    "maxpool_pad_ceil": (lambda: nn.Sequential(nn.Conv2d(3, 4, 3), nn.MaxPool2d(3, 2, 1, ceil_mode=True)), (2, 3, 15, 14)),
    "maxpool_dilated": (lambda: nn.Sequential(nn.Conv2d(3, 4, 3), nn.MaxPool2d(2, 1, dilation=2)), (2, 3, 10, 10)),
    "mlp": (lambda: nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(3 * 6 * 6, 16), nn.ReLU()), (4, 3, 6, 6)),
}


@pytest.mark.parametrize("name", sorted(OP_VARIANTS))
def test_op_variant_matches_autograd(name):
    factory, shape = OP_VARIANTS[name]
    torch.manual_seed(0)
    model = _Head(factory(), shape).eval()
    graph = build_gradient_graph(_export(model, shape))
    rng = np.random.default_rng(0)
    image = rng.standard_normal(shape, dtype=np.float32)
    _compare(_session(graph), model, image, rng.integers(0, 5, shape[0]).astype(np.int64))


def _gemm_graph(trans_a: int, trans_b: int, alpha: float, beta: float) -> tuple[onnx.ModelProto, callable]:
    """image (N, 3, 4, 4) -> A -> Gemm(A, B, C) -> logits (N, 5), written by hand."""
    rng = np.random.default_rng(1)
    weight = rng.standard_normal((5, 48) if trans_b else (48, 5)).astype(np.float32)
    bias = rng.standard_normal(5).astype(np.float32)
    shape = [48, -1] if trans_a else [-1, 48]
    nodes = [
        helper.make_node("Reshape", ["image", "shape"], ["a"], name="to_matrix"),
        helper.make_node("Gemm", ["a", "w", "c"], ["logits"], name="fc", alpha=alpha, beta=beta, transA=trans_a, transB=trans_b),
    ]
    graph = helper.make_graph(
        nodes, "gemm", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 4, 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 5])],
        initializer=[numpy_helper.from_array(np.array(shape, np.int64), "shape"),
                     numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "c")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])

    def reference(x):
        a = x.reshape(*shape)
        a = a.T if trans_a else a
        w = torch.from_numpy(weight)
        return alpha * a @ (w.T if trans_b else w) + beta * torch.from_numpy(bias)

    return model, reference


class _Fn(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


@pytest.mark.parametrize(("trans_a", "trans_b", "alpha", "beta"), [(0, 0, 1.0, 1.0), (0, 1, 0.5, 2.0), (1, 0, 2.0, 0.0), (1, 1, 0.25, 1.0)])
def test_gemm_attributes(trans_a, trans_b, alpha, beta):
    model, reference = _gemm_graph(trans_a, trans_b, alpha, beta)
    image = np.random.default_rng(2).standard_normal((3, 3, 4, 4), dtype=np.float32)
    _compare(_session(build_gradient_graph(model)), _Fn(reference), image, np.array([0, 4, 2], np.int64))


def _dropout_graph(training_mode: bool | None) -> tuple[onnx.ModelProto, np.ndarray]:
    """image (N, 2, 3, 3) -> Identity -> Dropout -> Flatten -> Gemm -> logits (N, 4)."""
    weight = np.random.default_rng(3).standard_normal((4, 18)).astype(np.float32)
    dropout_inputs = ["x", "ratio"] + (["training"] if training_mode is not None else [])
    initializers = [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(np.array(0.5, np.float32), "ratio")]
    if training_mode is not None:
        initializers.append(numpy_helper.from_array(np.array(training_mode), "training"))
    nodes = [
        helper.make_node("Identity", ["image"], ["x"], name="copy"),
        helper.make_node("Dropout", dropout_inputs, ["d"], name="drop"),
        helper.make_node("Flatten", ["d"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "w"], ["logits"], name="fc", transB=1),
    ]
    graph = helper.make_graph(nodes, "dropout", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 2, 3, 3])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 4])], initializer=initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), weight


@pytest.mark.parametrize("training_mode", [None, False])
def test_identity_and_inference_dropout(training_mode):
    model, weight = _dropout_graph(training_mode)
    image = np.random.default_rng(4).standard_normal((3, 2, 3, 3), dtype=np.float32)
    reference = _Fn(lambda x: torch.flatten(x, 1) @ torch.from_numpy(weight).T)
    _compare(_session(build_gradient_graph(model)), reference, image, np.array([1, 0, 3], np.int64))


def test_training_mode_dropout_is_refused():
    with pytest.raises(UnsupportedOpError, match=r"Dropout node 'drop'.*training mode"):
        build_gradient_graph(_dropout_graph(True)[0])


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(("activation", "op_type"), [(nn.LeakyReLU(0.1), "LeakyRelu"), (nn.Sigmoid(), "Sigmoid")])
def test_unsupported_op_is_named(activation, op_type):
    model = _Head(nn.Sequential(nn.Conv2d(3, 4, 3), activation), (1, 3, 8, 8))
    exported = _export(model, (1, 3, 8, 8))
    node = next(n for n in exported.graph.node if n.op_type == op_type)
    with pytest.raises(UnsupportedOpError, match=rf"cannot differentiate {op_type} node '{node.name}'.*Conv, Dropout"):
        build_gradient_graph(exported)


def test_image_dependent_weight_is_refused():
    nodes = [
        helper.make_node("Flatten", ["image"], ["x"], name="flat"),
        helper.make_node("Gemm", ["x", "x"], ["logits"], name="self_product", transB=1),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, 2, 2])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", "N"])])
    with pytest.raises(UnsupportedOpError, match=r"self_product.*weights must be constants"):
        build_gradient_graph(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))


def test_wrong_names_and_files(tmp_path):
    model = _export(_Head(nn.Conv2d(3, 2, 3), (1, 3, 8, 8)), (1, 3, 8, 8))
    model.graph.output[0].name = "scores"
    model.graph.node[-1].output[0] = "scores"
    with pytest.raises(ConfigError, match="no output 'logits'"):
        build_gradient_graph(model)
    with pytest.raises(ConfigError, match="does not exist"):
        write_gradient_graph(tmp_path / "missing.onnx", tmp_path / "out.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ConfigError, match="cannot read ONNX file"):
        write_gradient_graph(junk, tmp_path / "out.onnx")
