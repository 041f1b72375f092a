"""Bundle manifest: loads, verifies every sha256, refuses tampering by file name."""

import json
import shutil

import pytest

from denarius.engine.bundle import load_bundle
from denarius.engine.errors import BundleError


def test_tiny_bundle_loads(tiny_bundle):
    bundle = load_bundle(tiny_bundle)
    assert bundle.models["ric"].classes == bundle.hierarchy.rics
    assert bundle.models["emperor"].side == "obverse"
    assert bundle.file("ric").is_file()
    assert bundle.preprocess.crop == bundle.models["ric"].input_size
    with pytest.raises(BundleError, match="no 'int8' variant"):
        bundle.file("ric", "int8")


def test_flipped_byte_is_refused_by_name(tiny_bundle, tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, copy)
    target = copy / "ric.onnx"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"ric\.onnx fails its sha256 check"):
        load_bundle(copy)


def test_truncated_and_missing_files_and_bad_schema(tiny_bundle, tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, copy)
    (copy / "emperor.onnx").write_bytes((copy / "emperor.onnx").read_bytes()[:100])
    with pytest.raises(BundleError, match=r"emperor.onnx"):
        load_bundle(copy)
    (copy / "emperor.onnx").unlink()
    with pytest.raises(BundleError, match=r"missing.*emperor.onnx"):
        load_bundle(copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["schema_version"] = 99
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="schema_version 99"):
        load_bundle(copy)
    (copy / "manifest.json").write_text("{ truncated")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(copy)
    with pytest.raises(BundleError, match="not a Denarius bundle"):
        load_bundle(tmp_path)
