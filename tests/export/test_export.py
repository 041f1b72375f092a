"""`denarius export` end to end: a tiny trained run -> bundle, checked with real onnxruntime sessions."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from denarius.engine.bundle import load_bundle
from denarius.engine.errors import BundleError, ConfigError
from denarius.engine.preprocess import preprocess_batch

torch = pytest.importorskip("torch")

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO.parent / "shared" / "fixtures" / "real"
PARITY_RTOL = 1e-4  # max |ort - torch| relative to max |torch logit|
FP16_RTOL = 2e-2  # fp16 compute: ~3 significant digits through 8 layers
MIN_INT8_AGREEMENT = 0.9  # tiny model, 24 held-out photos: at most 2 disagreements


def _cli(command: str, argv: list[str]) -> int:
    """Run one `denarius` subcommand module the way denarius.apps.cli.main does."""
    import importlib

    module = importlib.import_module(f"denarius.apps.cli.cmd_{command.replace('-', '_')}")
    parser = argparse.ArgumentParser(prog=f"denarius {command}")
    module.add_arguments(parser)
    return module.run(parser.parse_args(argv))


def _photos(spec, count: int = 10) -> np.ndarray:
    """Real photographs preprocessed for the bundle: the fixture pair, then the coin plate."""
    from denarius.export.onnx_export import coin_plate_crops

    sources = [p for p in sorted(FIXTURES.glob("*.jpg"))] + coin_plate_crops()
    return preprocess_batch(sources[:count], spec)


@pytest.fixture(scope="session")
def bundle(tiny_run, tmp_path_factory) -> Path:
    """The tiny run exported through the CLI with INT8 (calibrated on its manifest) and FP16."""
    out = tmp_path_factory.mktemp("export_bundle") / "bundle"
    manifest = json.loads((tiny_run / "run.json").read_text())["manifest"]
    photos = [arg for p in sorted(FIXTURES.glob("*.jpg")) for arg in ("--parity-photo", str(p))]
    code = _cli("export", [
        str(tiny_run), "--out", str(out), "--int8", "--calibration", manifest,
        "--calibration-size", "40", "--fp16", "--model-version", "tiny-1", *photos,
    ])
    assert code == 0
    return out


def _torch_model(run_dir: Path, task: str):
    from denarius.training.checkpoint import load_checkpoint, model_from_checkpoint

    return model_from_checkpoint(load_checkpoint(run_dir / f"{task}.pt"))


def test_bundle_manifest_carries_everything_the_engine_needs(bundle, tiny_run):
    run = json.loads((tiny_run / "run.json").read_text())
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["schema_version"] == 1
    assert manifest["version"] == "tiny-1"
    assert manifest["preprocess"] == run["preprocess"]
    assert manifest["hierarchy"] == run["hierarchy"]
    assert manifest["descriptions"] == run["descriptions"]
    assert manifest["metrics"] == run["metrics"]
    for task, side, table in (("emperor", "obverse", "emperors"), ("ric", "reverse", "rics")):
        info = manifest["models"][task]
        assert info["side"] == side
        assert info["classes"] == run["hierarchy"][table]
        assert info["input_name"] == "image" and info["output_name"] == "logits"
        assert set(info["files"]) == {"fp32", "grad", "int8", "int8-cpu", "fp16"}
        assert info["agreement"]["int8"]["calibration_images"] == 40
    # every file of the bundle (except the manifest itself) has a sha256, and nothing else
    on_disk = {p.name for p in bundle.iterdir()} - {"manifest.json"}
    assert set(manifest["files"]) == on_disk
    assert all(len(digest) == 64 for digest in manifest["files"].values())
    assert not list(bundle.parent.glob(".bundle.partial-*")), "the staging folder must be gone"


@pytest.mark.parametrize("task", ["emperor", "ric"])
@pytest.mark.parametrize("batch", [1, 8])
def test_fp32_onnx_matches_pytorch_on_real_photos(bundle, tiny_run, task, batch):
    loaded = load_bundle(bundle)
    images = _photos(loaded.preprocess, count=batch)
    with torch.no_grad():
        expected = _torch_model(tiny_run, task)(torch.from_numpy(images)).numpy()
    session = ort.InferenceSession(str(loaded.file(task, "fp32")), providers=["CPUExecutionProvider"])
    actual = session.run(["logits"], {"image": images})[0]
    assert actual.shape == (batch, len(loaded.models[task].classes))
    assert np.max(np.abs(actual - expected)) / np.max(np.abs(expected)) < PARITY_RTOL
    parity = json.loads((bundle / "manifest.json").read_text())["extra"]["parity"][task]
    assert parity["relative"] < PARITY_RTOL and parity["images"] == 16


def test_onnx_file_is_checker_clean_with_metadata(bundle):
    loaded = load_bundle(bundle)
    for task in ("emperor", "ric"):
        proto = onnx.load(str(loaded.file(task, "fp32")))
        onnx.checker.check_model(proto, full_check=True)
        assert max(op.version for op in proto.opset_import if op.domain in ("", "ai.onnx")) >= 17
        meta = {p.key: p.value for p in proto.metadata_props}
        assert json.loads(meta["denarius.classes"]) == list(loaded.models[task].classes)
        assert meta["denarius.model_version"] == "tiny-1"
        assert meta["denarius.task"] == task
        batch_dim = proto.graph.input[0].type.tensor_type.shape.dim[0]
        assert batch_dim.dim_param, "the batch axis must be dynamic"


def test_int8_is_symmetric_per_channel_qdq_and_agreement_is_reported(bundle):
    loaded = load_bundle(bundle)
    for task in ("emperor", "ric"):
        report = loaded.models[task].agreement["int8"]
        assert report["images"] >= 20 and report["labelled"] == report["images"]
        assert report["top1_agreement"] >= MIN_INT8_AGREEMENT, report
        assert abs(report["accuracy_delta"]) <= 1 - MIN_INT8_AGREEMENT
        proto = onnx.load(str(loaded.file(task, "int8")))
        ops = [n.op_type for n in proto.graph.node]
        assert ops.count("QuantizeLinear") >= 8 and "DequantizeLinear" in ops
        inits = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
        zero_points = [inits[n.input[2]] for n in proto.graph.node
                       if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 2]
        assert zero_points and all(zp.dtype == np.int8 and not zp.any() for zp in zero_points), "TensorRT needs int8, zero point 0"
        conv_weight = next(n for n in proto.graph.node if n.op_type == "DequantizeLinear" and n.input[0].startswith("features.0.weight"))
        assert inits[conv_weight.input[1]].shape == (inits[conv_weight.input[0]].shape[0],), "per-output-channel weight scales"
        assert proto.graph.node[-1].op_type == "Gemm" and proto.graph.node[-1].output[0] == "logits", "float logits out"
        # it runs on onnxruntime CPU and mostly agrees with fp32 on real photos
        images = _photos(loaded.preprocess, count=8)
        fp32 = ort.InferenceSession(str(loaded.file(task, "fp32")), providers=["CPUExecutionProvider"]).run(None, {"image": images})[0]
        int8 = ort.InferenceSession(str(loaded.file(task, "int8")), providers=["CPUExecutionProvider"]).run(None, {"image": images})[0]
        assert int8.dtype == np.float32 and int8.shape == fp32.shape
        assert np.mean(int8.argmax(1) == fp32.argmax(1)) >= 0.75


def test_fp16_file_runs_on_cpu_with_fp32_io_and_agrees(bundle):
    loaded = load_bundle(bundle)
    images = _photos(loaded.preprocess, count=8)
    for task in ("emperor", "ric"):
        proto = onnx.load(str(loaded.file(task, "fp16")))
        assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
        assert proto.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
        weights = [t for t in proto.graph.initializer if t.name.endswith("weight")]
        assert weights and all(t.data_type == onnx.TensorProto.FLOAT16 for t in weights)
        fp32 = ort.InferenceSession(str(loaded.file(task, "fp32")), providers=["CPUExecutionProvider"]).run(None, {"image": images})[0]
        fp16 = ort.InferenceSession(str(loaded.file(task, "fp16")), providers=["CPUExecutionProvider"]).run(None, {"image": images})[0]
        assert fp16.dtype == np.float32
        assert np.max(np.abs(fp16 - fp32)) / np.max(np.abs(fp32)) < FP16_RTOL
        assert loaded.models[task].agreement["fp16"]["top1_agreement"] >= 0.95


def test_builtin_fp16_converter_matches_the_library(bundle, tmp_path):
    from denarius.export.fp16 import convert_fp16

    loaded = load_bundle(bundle)
    images = _photos(loaded.preprocess, count=4)
    fp32_path = loaded.file("ric", "fp32")
    out = convert_fp16(fp32_path, tmp_path / "ric.fp16.onnx", use_library=False)
    fp32 = ort.InferenceSession(str(fp32_path), providers=["CPUExecutionProvider"]).run(None, {"image": images})[0]
    half = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"image": images})[0]
    assert half.dtype == np.float32
    assert np.max(np.abs(half - fp32)) / np.max(np.abs(fp32)) < FP16_RTOL
    assert onnx.load(str(out)).graph.node[0].op_type == "Cast"


def test_bundle_loads_and_runs_with_torch_absent(bundle):
    photo = FIXTURES / "maximianus_reverse.jpg"
    script = f"""
import sys
sys.modules["torch"] = None  # any `import torch` now raises ImportError
import numpy as np, onnxruntime as ort
from denarius.engine.bundle import load_bundle
from denarius.engine.preprocess import preprocess_batch
b = load_bundle({str(bundle)!r})
x = preprocess_batch([{str(photo)!r}] if {photo.is_file()} else [np.full((80, 80, 3), 128, np.uint8)], b.preprocess)
for variant in ("fp32", "int8", "fp16"):
    s = ort.InferenceSession(str(b.file("ric", variant)), providers=["CPUExecutionProvider"])
    assert s.run(None, {{"image": x}})[0].shape == (1, len(b.hierarchy.rics))
from denarius.apps.cli import main
code = main(["bundle-info", {str(bundle)!r}])
assert "torch" not in sys.modules or sys.modules["torch"] is None
sys.exit(code)
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "model version tiny-1" in result.stdout
    assert "every sha256 verified" in result.stdout
    assert "int8 vs fp32: top-1 agreement" in result.stdout


@pytest.mark.parametrize("victim", ["ric.int8.onnx", "emperor.grad.onnx", "emperor.onnx"])
def test_flipped_byte_is_refused_naming_the_file(bundle, tmp_path, victim):
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    path = copy / victim
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=victim.replace(".", r"\.")):
        load_bundle(copy)
    assert _cli("bundle-info", [str(copy), "--no-verify"]) == 0  # structure is still readable
    with pytest.raises(BundleError, match="sha256"):
        _cli("bundle-info", [str(copy)])


def test_truncated_file_is_refused(bundle, tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    path = copy / "emperor.fp16.onnx"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(BundleError, match=r"emperor\.fp16\.onnx"):
        load_bundle(copy)


def test_bundle_info_json(bundle, capsys):
    assert _cli("bundle-info", [str(bundle), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["version"] == "tiny-1"
    assert summary["models"]["ric"]["classes"] == 6
    assert set(summary["models"]["emperor"]["files"]) == {"fp32", "grad", "int8", "int8-cpu", "fp16"}


def test_export_refuses_a_non_empty_out_unless_overwrite(tiny_run, tmp_path):
    from denarius.export.bundle_export import ExportConfig, export_bundle

    out = tmp_path / "occupied"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty"):
        export_bundle(tiny_run, out)
    with pytest.raises(ConfigError, match="not a bundle"):
        export_bundle(tiny_run, out, config=ExportConfig(overwrite=True))
    assert (out / "notes.txt").read_text() == "mine"


def test_plain_export_has_fp32_and_gradient_graphs_only(tiny_run, tmp_path):
    from denarius.export.bundle_export import ExportConfig, export_bundle

    result = export_bundle(tiny_run, tmp_path / "plain", config=ExportConfig(parity_images=4))
    loaded = load_bundle(result.path)
    for task in ("emperor", "ric"):
        assert set(loaded.models[task].files) == {"fp32", "grad"}
        assert loaded.models[task].agreement == {}
        grad = ort.InferenceSession(str(loaded.file(task, "grad")), providers=["CPUExecutionProvider"])
        assert [o.name for o in grad.get_outputs()][:3] == ["logits", "loss", "grad_image"]
    assert result.version.startswith("run-")  # default: run folder name + checkpoint hash


def test_export_errors_name_what_is_wrong(tiny_run, tmp_path):
    from denarius.export.bundle_export import export_bundle

    broken = tmp_path / "run"
    shutil.copytree(tiny_run, broken)
    (broken / "ric.pt").unlink()
    with pytest.raises(ConfigError, match=r"ric\.pt"):
        export_bundle(broken, tmp_path / "out")
    shutil.copy(tiny_run / "emperor.pt", broken / "ric.pt")  # wrong checkpoint in the ric slot
    with pytest.raises(ConfigError, match="emperor/obverse checkpoint, expected ric/reverse"):
        export_bundle(broken, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".out.partial-*")), "a failed export leaves nothing behind"


def test_int8_without_any_calibration_manifest_is_a_clear_error(tiny_run, tmp_path):
    from denarius.export.bundle_export import ExportConfig, export_bundle

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    meta = json.loads((run / "run.json").read_text())
    del meta["manifest"]
    (run / "run.json").write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match="--calibration MANIFEST"):
        export_bundle(run, tmp_path / "out", config=ExportConfig(int8=True))


def test_parity_check_refuses_a_graph_that_differs_from_the_model(tiny_run, tmp_path):
    from denarius.engine.preprocess import PreprocessSpec
    from denarius.export.onnx_export import check_parity, export_onnx

    model = _torch_model(tiny_run, "emperor")
    spec = PreprocessSpec.for_input_size(64)
    path = export_onnx(
        model, tmp_path / "e.onnx", input_size=64, classes=("a", "b", "c"), model_version="x", task="emperor", side="obverse")
    images = _photos(spec, count=4)
    assert check_parity(model, path, images).passed
    with torch.no_grad():
        model.classifier[6].bias.add_(0.05)  # the file no longer matches the module
    with pytest.raises(BundleError, match="differ by"):
        check_parity(model, path, images)


def test_export_onnx_refuses_wrong_class_count(tiny_run, tmp_path):
    from denarius.export.onnx_export import export_onnx

    with pytest.raises(BundleError, match="3 outputs but 2 class names"):
        export_onnx(_torch_model(tiny_run, "emperor"), tmp_path / "e.onnx", input_size=64, classes=("a", "b"),
                    model_version="x", task="emperor", side="obverse")


def test_commands_are_registered():
    from denarius.apps.cli import COMMANDS

    assert COMMANDS["export"][0] == "cmd_export"
    assert COMMANDS["bundle-info"][0] == "cmd_bundle_info"


def test_bundle_info_module_does_not_import_torch_at_import_time():
    code = "import sys; sys.modules['torch'] = None; import denarius.apps.cli.cmd_bundle_info, denarius.apps.cli.cmd_export"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO, env={**os.environ}, timeout=60).returncode == 0


def test_cpu_int8_variant_has_uint8_activations_and_is_what_ort_cpu_runs(bundle):
    import onnx
    from onnx import numpy_helper

    from denarius.engine.backends.registry import file_variant

    loaded = load_bundle(bundle)
    for task in ("emperor", "ric"):
        assert 0.0 <= loaded.models[task].agreement["int8-cpu"]["top1_agreement"] <= 1.0
        proto = onnx.load(str(loaded.file(task, "int8-cpu")))
        zero_points = [numpy_helper.to_array(i) for i in proto.graph.initializer if i.name.endswith("zero_point")]
        assert any(zp.dtype == np.uint8 for zp in zero_points), "the CPU file quantises activations to uint8"
        assert file_variant(loaded, "ort-cpu", task, "int8") == "int8-cpu"
        assert file_variant(loaded, "ort-cuda", task, "fp16") == "fp16"


def test_held_out_coins_sharing_an_image_with_training_are_dropped(tmp_path):
    """drop_training_images drops a held-out coin when either side is byte-identical to any
    training image (image_digests, sha256), and keeps the rest."""
    import shutil

    import cv2
    import numpy as np

    from denarius.engine.manifest import read_manifest
    from denarius.export.open_world import drop_training_images

    rng = np.random.default_rng(0)
    for folder in ("train", "held"):
        (tmp_path / folder).mkdir()
    for name in ("a", "b", "c", "d"):
        cv2.imwrite(str(tmp_path / "held" / f"{name}.png"), rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
    shutil.copy(tmp_path / "held" / "b.png", tmp_path / "train" / "t.png")  # the same bytes as held-out b
    cv2.imwrite(str(tmp_path / "train" / "u.png"), rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
    header = "coin_id,obverse,reverse,emperor,ric,obverse_description,reverse_description\n"
    (tmp_path / "train" / "manifest.csv").write_text(header + "t0,t.png,u.png,Probus,RIC V Probus 10,,\n")
    (tmp_path / "held" / "manifest.csv").write_text(
        header + "h0,a.png,b.png,Probus,RIC V Probus 10,,\nh1,c.png,d.png,Probus,RIC V Probus 10,,\n")
    kept, dropped = drop_training_images(read_manifest(tmp_path / "held" / "manifest.csv"),
                                         read_manifest(tmp_path / "train" / "manifest.csv"))
    assert [r.coin_id for r in kept] == ["h1"] and dropped == 1


def test_auto_runs_an_int8_bundle_on_openvino_when_its_agreement_allows(bundle):
    """The engine's INT8 rule decides for OpenVINO too; its INT8 top-1s agree with onnxruntime's."""
    from denarius.engine.backends import backend_status, default_precision, open_backend

    loaded = load_bundle(bundle)
    if backend_status(loaded)["openvino"] is not None:
        pytest.skip(backend_status(loaded)["openvino"])
    images = _photos(loaded.preprocess, count=10)
    with open_backend(loaded, "openvino", "int8") as openvino, open_backend(loaded, "ort-cpu", "int8") as ort_int8:
        for task in ("emperor", "ric"):
            agree = np.mean(openvino.infer(task, images).argmax(1) == ort_int8.infer(task, images).argmax(1))
            assert agree >= 0.9, (task, agree)
    with open_backend(loaded) as chosen:
        if default_precision(loaded, "openvino") == "int8":
            assert (chosen.name, chosen.precision) == ("openvino", "int8")
        else:
            assert chosen.name == "ort-cpu"
    with open_backend(loaded, precision="fp32") as fp32:
        assert fp32.name == "ort-cpu"
