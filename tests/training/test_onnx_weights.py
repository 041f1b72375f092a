"""model_from_onnx: the bundle's PyTorch AlexNet rebuilt from its fp32 ONNX file."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from denarius.engine.bundle import load_bundle  # noqa: E402
from denarius.engine.errors import BundleError  # noqa: E402
from denarius.training.onnx_weights import model_from_onnx  # noqa: E402


def test_rebuilt_model_gives_the_bundles_logits(tiny_bundle):
    import onnxruntime as ort

    bundle = load_bundle(tiny_bundle)
    info = bundle.models["ric"]
    path = bundle.file("ric", "fp32")
    model = model_from_onnx(path, num_classes=len(info.classes), input_size=info.input_size)
    x = np.random.default_rng(0).standard_normal((3, 3, info.input_size, info.input_size)).astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    expected = session.run(None, {session.get_inputs()[0].name: x})[0]
    with torch.inference_mode():
        got = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())
    assert not model.training


def test_not_an_alexnet_is_a_bundle_error(tiny_bundle, tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    path = tmp_path / "identity.onnx"
    onnx.save(helper.make_model(graph), str(path))
    with pytest.raises(BundleError, match=r"no 'features.0.weight' initializer"):
        model_from_onnx(path, num_classes=3, input_size=64)
    bundle = load_bundle(tiny_bundle)
    with pytest.raises(BundleError, match="do not fit the AlexNet"):
        model_from_onnx(bundle.file("ric", "fp32"), num_classes=2, input_size=64)  # the bundle's head has 6 classes


def test_torch_eager_bench_baseline_uses_it(tiny_bundle, symbol_coin):
    import cv2

    from denarius.apps.bench.torch_eager import TorchEagerPipeline

    _, png = cv2.imencode(".png", symbol_coin(0)[0])
    [ranked] = TorchEagerPipeline(load_bundle(tiny_bundle), threads=1).identify([(png.tobytes(), png.tobytes())], top_k=2)
    assert len(ranked) == 2 and all(0 <= score <= 1 for _, score in ranked)
