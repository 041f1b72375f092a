"""LandmarkService: one landmark path on the engine's backends (real Engine, real sessions)."""

from __future__ import annotations

import numpy as np
import pytest

from denarius.engine.bundle import load_bundle
from denarius.engine.engine import CoinPair, Engine
from denarius.engine.errors import BundleError, DenariusError, InputError
from denarius.engine.landmarks import LandmarkConfig, compute_landmarks
from denarius.engine.landmarks.optimizer import NumpyOps
from denarius.engine.landmarks.service import LandmarkService
from denarius.engine.preprocess import normalize

from tests.engine.test_landmarks import _coin

CONFIG = LandmarkConfig(epsilon=0.01, window=21, stride=11)


@pytest.fixture(scope="module")
def engine(tiny_bundle):
    bundle = load_bundle(tiny_bundle)
    if not bundle.has("ric", "grad"):
        pytest.skip("tiny bundle has no gradient graph")
    with Engine(bundle, backend="ort-cpu", precision="fp32") as opened:
        yield opened


def test_from_engine_runs_forward_passes_on_the_engines_backend(engine, model):
    with LandmarkService.from_engine(engine) as service:
        ric = service.model("ric")
        assert ric._forward is engine.backend and service.backend is engine.backend
        assert service.gradient_kind == "ort-cpu" and service.ops is NumpyOps  # no GPU backend here
        crops = np.stack([_coin(1), _coin(2)])
        before = ric.forward_equivalents
        maps = service.compute(crops, model="ric", config=CONFIG)
        assert ric.forward_equivalents > before  # the cost is counted on the service's model
        # the same maps as a GradientModel on sessions of its own
        for crop, served in zip(crops, maps, strict=True):
            [alone] = compute_landmarks(model, crop, config=CONFIG)
            assert served.target == alone.target and served.iterations == alone.iterations
            np.testing.assert_allclose(served.heatmap, alone.heatmap, atol=1e-4)
        p = service.probabilities(crops, model="ric")
        np.testing.assert_allclose(p, model.probabilities(normalize(crops, model.spec)), rtol=0, atol=1e-6)
        assert p.dtype == np.float64 and p.shape == (2, len(service.classes("ric")))
    # closing the service leaves the engine's backend open
    assert not engine.backend.closed
    [answer] = engine.identify([CoinPair(reverse=_coin(3))], top_k=1)
    assert answer.ok and answer.mode == "ric"
    with pytest.raises(DenariusError, match="closed"):
        service.model("ric")


def test_sides_targets_and_preprocessing(engine, fixture_photos):
    with LandmarkService.from_engine(engine) as service:
        assert service.model_name("obverse") == "emperor" and service.model_name("reverse") == "ric"
        with pytest.raises(InputError, match="valid sides"):
            service.model_name("edge")
        assert service.check_target("ric", None) is None
        with pytest.raises(InputError, match="for the reverse; valid labels: RIC V"):
            service.check_target("ric", "RIC X Nobody 1", side="reverse")
        photo = fixture_photos["reverse"].read_bytes()
        crop = service.crop(photo, side="reverse")
        assert crop.shape == (64, 64, 3) and crop.dtype == np.uint8
        # network inputs -> crops is exact on uint8 pixels
        back = service.crops_from_inputs(normalize(crop[None], engine.bundle.preprocess), model="ric")
        np.testing.assert_array_equal(back[0], crop)
        with pytest.raises(InputError, match="reverse"):
            service.crop(b"not an image", side="reverse")
        [m] = service.for_source(photo, side="reverse", config=CONFIG)
        np.testing.assert_array_equal(m.image, crop)
        assert m.source_size is not None and m.source_heatmap().shape == m.source_size


def test_window_regions_are_built_once_per_geometry(engine):
    with LandmarkService.from_engine(engine) as service:
        first = service.regions(CONFIG, _coin(1))
        assert service.regions(CONFIG, _coin(2)) is first
        assert service.regions(LandmarkConfig(window=11, stride=3), _coin(1)) is not first
        superpixels = LandmarkConfig(superpixels=20)
        assert service.regions(superpixels, _coin(1)) is not service.regions(superpixels, _coin(1))


def test_open_owns_its_backend_and_refuses_a_bundle_without_gradients(tiny_bundle, tmp_path):
    service = LandmarkService.open(tiny_bundle, backend="ort-cpu", models=("ric",))
    backend = service.backend
    assert backend.graphs == ("ric",) and backend.precision == "fp32"
    service.close()
    assert backend.closed
    import shutil

    from denarius.engine.bundle import write_bundle_manifest

    bundle = load_bundle(tiny_bundle)
    copy = tmp_path / "no_grad"
    copy.mkdir()
    models = {}
    for name, info in bundle.models.items():
        shutil.copy(bundle.file(name), copy / f"{name}.onnx")
        models[name] = type(info)(name=name, side=info.side, classes=info.classes, input_size=info.input_size,
                                  files={"fp32": f"{name}.onnx"})
    write_bundle_manifest(copy, version="no-grad", preprocess=bundle.preprocess, hierarchy=bundle.hierarchy,
                          models=models, descriptions={})
    with LandmarkService.open(copy, backend="ort-cpu") as service:
        with pytest.raises(BundleError, match="gradient graph of the ric model"):
            service.require_gradient("ric")
        [m] = service.compute(_coin(3), model="ric", config=LandmarkConfig(method="occlusion", window=21, stride=11))
        assert m.method == "occlusion"  # forward-only methods need no gradient graph
        with pytest.raises(BundleError, match="no gradient graph"):
            service.compute(_coin(3), model="ric", config=CONFIG)


# ------------------------------------------------------------------ GPU (tools/gpu_check.sh)


@pytest.fixture(scope="module")
def gpu_bundle(request):
    """$DENARIUS_GPU_BUNDLE (a bundle carried to a GPU host without PyTorch), else the tiny bundle."""
    import os
    from pathlib import Path

    path = os.environ.get("DENARIUS_GPU_BUNDLE")
    return load_bundle(Path(path)) if path else load_bundle(request.getfixturevalue("tiny_bundle"))


GPU_RTOL = 1e-4  # max |cuda - cpu| / max |cpu|, per output


@pytest.mark.gpu
def test_gradient_graph_on_ort_cuda_matches_ort_cpu(gpu_bundle):
    """The service on ort-cuda: gradient graph on CUDA vs ort-cpu, and CudaOps chosen."""
    from denarius.engine.backends import backend_status
    from denarius.engine.errors import BackendUnavailable
    from denarius.engine.landmarks.cuda import cuda_available

    reason = backend_status(gpu_bundle)["ort-cuda"]
    if reason is not None:
        pytest.skip(f"ort-cuda unavailable here: {reason}")
    try:
        gpu = LandmarkService.open(gpu_bundle, backend="ort-cuda")
    except BackendUnavailable as error:
        pytest.skip(f"ort-cuda unavailable here: {error}")
    rng = np.random.default_rng(0)
    with gpu, LandmarkService.open(gpu_bundle, backend="ort-cpu") as cpu:
        assert gpu.backend.on_gpu and gpu.gradient_kind == "ort-cuda"
        for name in ("emperor", "ric"):
            size = gpu.input_size(name)
            crops = rng.integers(0, 256, (4, size, size, 3), dtype=np.uint8)
            images = normalize(crops, gpu.model(name).spec)
            targets = np.arange(4, dtype=np.int64) % len(gpu.classes(name))
            on_gpu = gpu.model(name).loss_and_grad(images, targets)
            on_cpu = cpu.model(name).loss_and_grad(images, targets)
            assert gpu.model(name)._gradient.on_gpu
            for label, got, want in zip(("logits", "loss", "grad_image"), on_gpu, on_cpu, strict=True):
                relative = float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-30))
                print(f"{name} {label}: max |cuda - cpu| / max |cpu| = {relative:.2e}")
                assert relative <= GPU_RTOL, f"{name} {label}: relative difference {relative:.2e} > {GPU_RTOL:g}"
        if cuda_available():
            assert gpu.ops.name == "cuda"  # masking on the GPU too
            [g] = gpu.compute(crops[0], model="ric", config=CONFIG)
            [c] = cpu.compute(crops[0], model="ric", config=CONFIG)
            assert g.target == c.target
            np.testing.assert_allclose(g.p_full, c.p_full, rtol=1e-4)
        else:
            print("pycuda cannot use the GPU here: the masking ran on NumPy")
