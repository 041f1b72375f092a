"""Backends: choice, errors that list the choices, feed validation, tuned CPU sessions, GPU skips."""

from __future__ import annotations

import logging
import subprocess
import sys

import numpy as np
import pytest

from denarius.engine.backends import available_backends, backend_status, default_precision, open_backend, physical_cores
from denarius.engine.backends.ort_cpu import OrtCpuBackend
from denarius.engine.bundle import load_bundle
from denarius.engine.errors import BackendUnavailable, BundleError, ConfigError, DenariusError, InputError


@pytest.fixture(scope="module")
def bundle(tiny_bundle):
    return load_bundle(tiny_bundle)


@pytest.fixture(scope="module")
def images(bundle):
    size = bundle.preprocess.crop
    return np.random.default_rng(0).standard_normal((5, 3, size, size)).astype(np.float32)


def reference_logits(bundle, model, images):
    import onnxruntime as ort

    session = ort.InferenceSession(str(bundle.file(model)), providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"image": images})[0]


def test_auto_picks_the_best_available_and_logs_why(bundle, caplog):
    with caplog.at_level(logging.INFO, logger="denarius.engine.backends.registry"):
        backend = open_backend(bundle)
    # the best available, openvino only for a bundle that runs int8 (this one: fp32)
    expected = next(n for n in available_backends(bundle) if n != "openvino" or default_precision(bundle, n) == "int8")
    with backend:
        assert backend.name == expected
        assert backend.graphs == ("emperor", "ric")
    assert f"chose {backend.name}" in caplog.text
    if backend.name == "ort-cpu":
        assert "tensorrt" in caplog.text and "ort-cuda" in caplog.text  # the skipped ones, with reasons
        if backend_status(bundle)["openvino"] is None:
            assert "int8 only" in caplog.text


def test_unknown_and_unavailable_backends_say_what_exists(bundle):
    with pytest.raises(ConfigError, match=r"choose from .*ort-cpu"):
        open_backend(bundle, "onnx")
    with pytest.raises(ConfigError, match="precision"):
        open_backend(bundle, "ort-cpu", "bf16")
    status = backend_status(bundle)
    for name in ("ort-cuda", "tensorrt"):
        if status[name] is None:
            continue
        with pytest.raises(BackendUnavailable, match=r"Available backends: \[.*'ort-cpu'\]") as error:
            open_backend(bundle, name)
        assert status[name] in str(error.value)


def test_missing_variant_is_a_bundle_error(bundle):
    if bundle.has("emperor", "int8"):
        pytest.skip("the tiny bundle has an int8 variant")
    with pytest.raises(BundleError, match="int8"):
        open_backend(bundle, "ort-cpu", "int8")


def test_cpu_sessions_are_tuned_for_throughput(bundle):
    import onnxruntime as ort

    with open_backend(bundle, "ort-cpu", "fp32") as backend:
        options = backend.session("emperor").get_session_options()
        assert options.intra_op_num_threads == physical_cores()
        assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        assert options.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
        assert options.enable_mem_pattern and options.enable_cpu_mem_arena
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


@pytest.mark.parametrize("max_batch", [1, 2, 64])
def test_infer_matches_onnxruntime_and_splits_large_batches(bundle, images, max_batch):
    with open_backend(bundle, "ort-cpu", "fp32", max_batch=max_batch) as backend:
        for model in ("emperor", "ric"):
            logits = backend.infer(model, images)
            assert logits.dtype == np.float32 and logits.shape == (5, len(bundle.models[model].classes))
            np.testing.assert_allclose(logits, reference_logits(bundle, model, images), rtol=0, atol=1e-5)


def test_infer_validates_its_feed(bundle, images):
    with open_backend(bundle, "ort-cpu", "fp32") as backend:
        with pytest.raises(InputError, match="float32"):
            backend.infer("emperor", images.astype(np.float64))
        with pytest.raises(InputError, match=r"shape \(N, 3, 64, 64\)"):
            backend.infer("emperor", images[:, :, :32])
        with pytest.raises(InputError, match="empty"):
            backend.infer("emperor", images[:0])
        with pytest.raises(ConfigError, match="open graphs"):
            backend.infer("landmarks", images)
        strided = images[::2]  # not contiguous: copied once, same answer
        np.testing.assert_allclose(backend.infer("ric", strided), reference_logits(bundle, "ric", np.ascontiguousarray(strided)), atol=1e-5)
    with pytest.raises(DenariusError, match="closed"):
        backend.infer("emperor", images)


def test_gradient_graph_runs_through_run(bundle, images):
    if not bundle.has("emperor", "grad"):
        pytest.skip("the tiny bundle has no gradient graph (denarius.export.gradgraph not available)")
    with open_backend(bundle, "ort-cpu", graphs=("emperor.grad",)) as backend:
        out = backend.run("emperor.grad", {"image": images, "target": np.zeros(5, np.int64)})
    assert out["grad_image"].shape == images.shape and out["loss"].shape == (5,)
    np.testing.assert_allclose(out["logits"], reference_logits(bundle, "emperor", images), atol=1e-4)


def test_run_validates_its_feeds_like_infer(bundle, images):
    if not bundle.has("ric", "grad"):
        pytest.skip("the tiny bundle has no gradient graph (denarius.export.gradgraph not available)")
    target = np.zeros(5, np.int64)
    with open_backend(bundle, "ort-cpu", graphs=("ric", "ric.grad")) as backend:
        specs = backend.input_specs("ric.grad")
        assert set(specs) == {"image", "target"} and specs["target"].dtype == np.int64
        assert specs["image"].shape == (None, 3, 64, 64)
        assert backend.output_names("ric.grad") == ("logits", "loss", "grad_image")
        with pytest.raises(InputError, match=r"missing input\(s\) \['target'\]; the graph takes image: \(N, 3, 64, 64\) float32"):
            backend.run("ric.grad", {"image": images})
        with pytest.raises(InputError, match=r"unknown input\(s\) \['labels'\]"):
            backend.run("ric.grad", {"image": images, "target": target, "labels": target})
        with pytest.raises(InputError, match="'target' must be int64, got int32"):
            backend.run("ric.grad", {"image": images, "target": target.astype(np.int32)})
        with pytest.raises(InputError, match="'image' must be float32, got float64"):
            backend.run("ric.grad", {"image": images.astype(np.float64), "target": target})
        with pytest.raises(InputError, match="'image' must have rank 4"):
            backend.run("ric.grad", {"image": images[0], "target": target})
        with pytest.raises(InputError, match="'image' has size 32 on axis 2"):
            backend.run("ric.grad", {"image": images[:, :, :32], "target": target})
        with pytest.raises(InputError, match="size 0 on axis 0"):
            backend.run("ric", {"image": images[:0]})
        with pytest.raises(ConfigError, match=r"no output\(s\) \['probabilities'\]; the graph's outputs: \['logits'"):
            backend.run("ric.grad", {"image": images, "target": target}, ["probabilities"])
        with pytest.raises(ConfigError, match="not a classifier"):
            OrtCpuBackend({"g": _grad_only(bundle)}).infer("g", images)
        strided = images[::2]  # not contiguous: copied once, same answer
        out = backend.run("ric", {"image": strided}, ["logits"])
        np.testing.assert_allclose(out["logits"], reference_logits(bundle, "ric", np.ascontiguousarray(strided)), atol=1e-5)


def _grad_only(bundle):
    from denarius.engine.backends import GraphFile

    return GraphFile(path=bundle.file("ric", "grad"), input_name="pixels")


def test_one_session_factory_says_which_file_is_wrong(tmp_path):
    from denarius.engine.backends.sessions import open_session

    with pytest.raises(BundleError, match="does not exist"):
        open_session(tmp_path / "missing.onnx")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a protobuf")
    with pytest.raises(BundleError, match=r"onnxruntime cannot load .*broken\.onnx"):
        open_session(broken)


def test_explicit_thread_count(bundle, images):
    with OrtCpuBackend({"emperor": _graph(bundle, "emperor")}, threads=1, max_batch=8) as backend:
        assert backend.session("emperor").get_session_options().intra_op_num_threads == 1
        assert backend.infer("emperor", images).shape[0] == 5


def _graph(bundle, model):
    from denarius.engine.backends import GraphFile

    return GraphFile(path=bundle.file(model))


def test_importing_the_engine_loads_no_torch_tensorrt_or_pycuda(tiny_bundle):
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import denarius.engine, denarius.engine.backends, denarius.engine.batcher, denarius.engine.engine\n"
        "from denarius.engine.backends import backend_status\n"
        f"e = denarius.engine.Engine({str(tiny_bundle)!r}, backend='ort-cpu'); e.close()\n"
        "loaded = sorted(m for m in sys.modules\n"
        "                if m.startswith(('tensorrt', 'pycuda', 'denarius.training', 'denarius.export')))\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# ------------------------------------------------------------------ GPU backends


@pytest.mark.gpu
def test_ort_cuda_matches_cpu(bundle, images):
    reason = backend_status(bundle)["ort-cuda"]
    if reason is not None:
        pytest.skip(f"ort-cuda unavailable here: {reason}")
    try:
        backend = open_backend(bundle, "ort-cuda", "fp32")
    except BackendUnavailable as error:
        pytest.skip(f"ort-cuda unavailable here: {error}")
    with backend:
        for model in ("emperor", "ric"):
            np.testing.assert_allclose(backend.infer(model, images), reference_logits(bundle, model, images), atol=1e-3)
            np.testing.assert_allclose(backend.infer(model, images[:2]), reference_logits(bundle, model, images[:2]), atol=1e-3)


@pytest.mark.gpu
def test_tensorrt_plan_for_this_gpu(bundle, images):
    reason = backend_status(bundle)["tensorrt"]
    if reason is not None:
        pytest.skip(f"tensorrt unavailable here: {reason}")
    with open_backend(bundle, "tensorrt") as backend:
        for model in ("emperor", "ric"):
            np.testing.assert_allclose(backend.infer(model, images), reference_logits(bundle, model, images), atol=5e-2)


def test_openvino_matches_onnxruntime_and_refuses_gradient_graphs(bundle, images):
    if backend_status(bundle)["openvino"] is not None:
        pytest.skip(backend_status(bundle)["openvino"])
    with open_backend(bundle, "openvino", "fp32", max_batch=2) as backend:
        assert backend.name == "openvino" and backend.precision == "fp32"
        for model in ("emperor", "ric"):
            logits = backend.infer(model, images)  # 5 images, split into batches of 2
            expected = reference_logits(bundle, model, images)
            assert logits.shape == expected.shape and logits.dtype == np.float32
            assert np.max(np.abs(logits - expected)) <= 1e-4 * np.max(np.abs(expected))
            snapshot = logits.copy()
            backend.infer(model, np.ascontiguousarray(images[::-1]))
            assert np.array_equal(logits, snapshot)  # the caller's array, not the request's output buffer
        with pytest.raises(InputError, match="shape"):
            backend.infer("emperor", images[:, :, :8])
    with pytest.raises(ConfigError, match="onnxruntime only"):
        open_backend(bundle, "openvino", graphs=("ric", "ric.grad"))
    with pytest.raises(ConfigError, match="does not run fp16"):
        open_backend(bundle, "openvino", "fp16")


def test_openvino_is_safe_from_several_threads(bundle, images):
    if backend_status(bundle)["openvino"] is not None:
        pytest.skip(backend_status(bundle)["openvino"])
    from concurrent.futures import ThreadPoolExecutor

    with open_backend(bundle, "openvino", "fp32") as backend:
        expected = backend.infer("ric", images)
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda i: backend.infer("ric", images), range(16)))
    for result in results:
        np.testing.assert_allclose(result, expected, atol=1e-5)


def test_landmarks_over_an_openvino_classifier_take_their_gradients_from_onnxruntime_on_the_cpu(bundle):
    """An Engine on openvino (auto's choice for an INT8 bundle) serves landmarks: the gradient
    graph opens on ort-cpu, the same device, not on a CUDA backend this host may lack."""
    from denarius.engine.landmarks.api import LandmarkConfig
    from denarius.engine.landmarks.service import LandmarkService

    if backend_status(bundle)["openvino"] is not None:
        pytest.skip(backend_status(bundle)["openvino"])
    if not bundle.has("ric", "grad"):
        pytest.skip("tiny bundle has no gradient graph")
    with open_backend(bundle, "openvino", "fp32") as backend:
        service = LandmarkService(bundle, backend)
        assert service.gradient_kind == "ort-cpu"
        size = service.input_size("ric")
        crop = np.random.default_rng(1).integers(0, 256, (size, size, 3), dtype=np.uint8)
        maps = service.compute(crop, model="ric", config=LandmarkConfig())
        assert len(maps) == 1 and np.isfinite(maps[0].heatmap).all()
        service.close()
