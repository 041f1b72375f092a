"""TensorRT plan keys and the no-TensorRT path (building a plan needs a GPU and is skipped here)."""

from __future__ import annotations

import pytest

from denarius.engine.errors import BackendUnavailable, ConfigError
from denarius.export.tensorrt import (
    TensorRTConfig,
    parse_plan_key,
    plan_filename,
    plan_key,
    require_tensorrt,
    source_variant,
    tensorrt_available,
)

needs_no_tensorrt = pytest.mark.skipif(tensorrt_available(), reason="tensorrt is installed; this checks the message when it is not")
needs_tensorrt = pytest.mark.skipif(
    not tensorrt_available(), reason="tensorrt is not importable here (no GPU build machine); plans are built on GPU hosts")


@pytest.mark.parametrize("cc, version, key", [
    ((8, 9), "10.3.0", "sm89-trt10.3.0"),
    ((9, 0), "11.4.1", "sm90-trt11.4.1"),
    ((10, 0), "10.14.1", "sm100-trt10.14.1"),
    ((12, 1), "11.0", "sm121-trt11.0"),
    ((8, 6), "10.0.1.post1", "sm86-trt10.0.1.post1"),
])
def test_plan_key_round_trip(cc, version, key):
    assert plan_key(cc, version) == key
    assert parse_plan_key(key) == (cc, version)
    assert plan_filename("ric", "int8", key) == f"ric.int8.{key}.plan"


@pytest.mark.parametrize("cc, version", [((8,), "10.3"), ((8, 9), "ten"), ((0, 1), "10.0"), ((8, 9), "10.3 beta")])
def test_plan_key_rejects_garbage(cc, version):
    with pytest.raises((ConfigError, ValueError)):
        plan_key(cc, version)


def test_parse_plan_key_rejects_other_names():
    with pytest.raises(ConfigError, match="not a plan key"):
        parse_plan_key("emperor.plan")


@pytest.mark.parametrize("precision, version, strong, variant", [
    ("int8", "10.3.0", None, "int8"),
    ("int8", "11.0.0", None, "int8"),
    ("fp16", "10.3.0", None, "fp32"),  # weak typing: fp32 file + FP16 flag
    ("fp16", "10.3.0", True, "fp16"),  # strongly typed 10.x: precision from the file
    ("fp16", "11.1.0", None, "fp16"),  # 11.x: always strongly typed
    ("fp32", "11.1.0", None, "fp32"),
])
def test_source_variant(precision, version, strong, variant):
    assert source_variant(precision, version, strongly_typed=strong) == variant


@pytest.mark.parametrize("kwargs, message", [
    ({"precision": "int4"}, "not one of"),
    ({"min_batch": 4, "opt_batch": 2}, "min <= opt <= max"),
    ({"max_batch": 0}, "max_batch"),
])
def test_config_validation(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        TensorRTConfig(**kwargs)


@needs_no_tensorrt
def test_missing_tensorrt_is_a_clear_error():
    with pytest.raises(BackendUnavailable, match=r"TensorRT is not available.*ort-cpu"):
        require_tensorrt()


@needs_no_tensorrt
def test_export_with_tensorrt_requested_skips_with_a_note(tiny_run, tmp_path):
    pytest.importorskip("torch")
    import json

    from denarius.export.bundle_export import ExportConfig, export_bundle

    result = export_bundle(tiny_run, tmp_path / "b", config=ExportConfig(tensorrt=True, parity_images=2))
    assert result.skipped and "TensorRT plans skipped" in result.skipped[0]
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["models"]["ric"]["plans"] == {}
    assert manifest["extra"]["tensorrt"]["built"] is False
    assert "TensorRT plans skipped" in manifest["extra"]["skipped"][0]


@needs_tensorrt
def test_build_plan_on_this_gpu(tiny_run, tmp_path):  # pragma: no cover - GPU hosts only
    from denarius.engine.bundle import load_bundle
    from denarius.export.bundle_export import ExportConfig, export_bundle

    config = ExportConfig(fp16=True, tensorrt=True, tensorrt_config=TensorRTConfig(
        precision="fp16", max_batch=8, opt_batch=4, timing_cache=tmp_path / "cache"))
    result = export_bundle(tiny_run, tmp_path / "b", config=config)
    bundle = load_bundle(result.path)
    for task in ("emperor", "ric"):
        (key, _), = bundle.models[task].plans.items()
        assert bundle.plan(task, key).stat().st_size > 0
    assert (tmp_path / "cache").stat().st_size > 0
