"""Bundle integrity: the manifest is untrusted until verified.

Each test copies the real tiny bundle and tampers with it the way an attacker with write
access to the bundle folder would (keeping every sha256 consistent, so only the new checks
can catch it): paths leaving the bundle, limits above the runtime's own, and, with a
verify key, any edit of a signed manifest.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import stat
from pathlib import Path

import pytest

from denarius.engine.bundle import MANIFEST_NAME, load_bundle, sha256_file, write_bundle_manifest
from denarius.engine.bundle_signing import (
    PRIVATE_KEY_NAME,
    PUBLIC_KEY_NAME,
    SIGNATURE_NAME,
    generate_keypair,
    key_fingerprint,
    load_public_key,
    sign_manifest,
)
from denarius.engine.errors import BundleError, ConfigError
from denarius.engine.preprocess import MAX_PIXELS_CEILING, PreprocessSpec

pytest.importorskip("cryptography")  # the signing tests; bundle_signing imports it only when a key is used


@pytest.fixture
def bundle(tiny_bundle, tmp_path) -> Path:
    """A private copy of the tiny bundle, inside its own folder (``tmp_path / "bundle"``)."""
    copy = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, copy)
    return copy


def read_manifest(root: Path) -> dict:
    return json.loads((root / MANIFEST_NAME).read_text())


def write_manifest(root: Path, manifest: dict) -> None:
    (root / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2))


def point_ric_at(root: Path, target: str) -> None:
    """The manifest's RIC fp32 file becomes ``target``, its sha256 updated to match (a consistent edit)."""
    manifest = read_manifest(root)
    old = manifest["models"]["ric"]["files"]["fp32"]
    manifest["models"]["ric"]["files"]["fp32"] = target
    manifest["files"][target] = manifest["files"].pop(old)
    write_manifest(root, manifest)


# ------------------------------------------------------------------ paths stay in the bundle


def test_dotdot_path_is_refused_by_name(bundle):
    (bundle / "ric.onnx").rename(bundle.parent / "ric.onnx")
    point_ric_at(bundle, "../ric.onnx")
    with pytest.raises(BundleError, match=r"'\.\./ric\.onnx' has a '\.\.' component"):
        load_bundle(bundle)
    point_ric_at(bundle, "sub/../../ric.onnx")
    with pytest.raises(BundleError, match=r"'\.\.' component"):
        load_bundle(bundle, verify=False)  # path checks do not depend on the sha256 check


def test_absolute_path_is_refused_by_name(bundle):
    outside = bundle.parent / "elsewhere.onnx"
    shutil.copyfile(bundle / "ric.onnx", outside)
    point_ric_at(bundle, str(outside))
    with pytest.raises(BundleError, match=r"elsewhere\.onnx' is absolute"):
        load_bundle(bundle)


def test_symlink_leaving_the_bundle_is_refused(bundle):
    outside = bundle.parent / "outside.onnx"
    (bundle / "ric.onnx").rename(outside)
    (bundle / "ric.onnx").symlink_to(outside)  # same bytes, so its sha256 matches
    assert sha256_file(bundle / "ric.onnx") == read_manifest(bundle)["files"]["ric.onnx"]
    with pytest.raises(BundleError, match=r"'ric\.onnx' resolves to .*outside\.onnx, outside the bundle folder"):
        load_bundle(bundle)


def test_symlinked_folder_and_manifest(bundle, tmp_path):
    # A bundle reached through a symlinked folder is fine (its files resolve inside it) ...
    link = tmp_path / "current"
    link.symlink_to(bundle, target_is_directory=True)
    assert load_bundle(link).models["ric"].classes
    # ... and so is a symlink that stays inside the bundle.
    (bundle / "models").mkdir()
    (bundle / "ric.onnx").rename(bundle / "models" / "ric.onnx")
    (bundle / "ric.onnx").symlink_to(Path("models") / "ric.onnx")
    assert load_bundle(bundle).file("ric").is_file()
    # A manifest that is itself a link out of the bundle is refused.
    outside = tmp_path / "manifest.json"
    shutil.move(bundle / MANIFEST_NAME, outside)
    (bundle / MANIFEST_NAME).symlink_to(outside)
    with pytest.raises(BundleError, match=r"'manifest\.json' resolves to .* outside the bundle folder"):
        load_bundle(bundle)


def test_a_writer_refuses_paths_outside_too(bundle):
    loaded = load_bundle(bundle)
    models = {**loaded.models, "ric": dataclasses.replace(loaded.models["ric"], files={"fp32": "../ric.onnx"})}
    with pytest.raises(BundleError, match=r"'\.\.' component"):
        write_bundle_manifest(bundle, version="x", preprocess=loaded.preprocess, hierarchy=loaded.hierarchy, models=models)


# ------------------------------------------------------------------ limits within the runtime's own


@pytest.mark.parametrize(("field", "value", "words"), [
    ("max_pixels", 1e12, ["max_pixels", "integer"]),
    ("max_pixels", 10**12, ["max_pixels", f"{MAX_PIXELS_CEILING:,}"]),
    ("max_pixels", 0, ["max_pixels"]),
    ("resize", 100_000, ["resize", "4,096"]),
    ("crop", 10_000, ["crop"]),
    ("min_side", -5, ["min_side"]),
    ("coin_margin", 50.0, ["coin_margin"]),
    ("std", [0.2, 0.0, 0.2], ["std"]),
    ("remove_background", "no", ["remove_background"]),
])
def test_preprocess_limits_above_the_runtimes_are_refused_naming_the_field(bundle, field, value, words):
    manifest = read_manifest(bundle)
    manifest["preprocess"][field] = value
    write_manifest(bundle, manifest)
    with pytest.raises(BundleError) as caught:
        load_bundle(bundle)
    message = str(caught.value)
    assert "manifest.json: preprocess refused" in message
    for word in words:
        assert word in message, (word, message)


def test_nan_and_infinity_are_not_json(bundle):
    text = (bundle / MANIFEST_NAME).read_text()
    (bundle / MANIFEST_NAME).write_text(text.replace('"coin_margin": 0.04', '"coin_margin": NaN'))
    with pytest.raises(BundleError, match="NaN is not valid JSON"):
        load_bundle(bundle)
    (bundle / MANIFEST_NAME).write_text(text.replace('"coin_margin": 0.04', '"coin_margin": Infinity'))
    with pytest.raises(BundleError, match="Infinity is not valid JSON"):
        load_bundle(bundle)


def test_input_size_must_match_the_crop(bundle):
    manifest = read_manifest(bundle)
    manifest["models"]["ric"]["input_size"] = 4000
    write_manifest(bundle, manifest)
    with pytest.raises(BundleError, match=r"models\.ric\.input_size 4000 differs from preprocess\.crop 64"):
        load_bundle(bundle)


def test_the_spec_itself_enforces_the_ceiling():
    assert PreprocessSpec().max_pixels == MAX_PIXELS_CEILING
    with pytest.raises(ConfigError, match="max_pixels"):
        PreprocessSpec(max_pixels=MAX_PIXELS_CEILING + 1)
    with pytest.raises(ConfigError, match="mean"):
        PreprocessSpec(mean=(0.5, float("nan"), 0.5))


# ------------------------------------------------------------------ signed manifests


@pytest.fixture
def keys(tmp_path) -> tuple[Path, Path]:
    return generate_keypair(tmp_path / "keys")


def test_keygen_writes_a_private_key_only_its_owner_reads(keys):
    private, public = keys
    assert private.name == PRIVATE_KEY_NAME and public.name == PUBLIC_KEY_NAME
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" in private.read_bytes() and b"PUBLIC KEY" in public.read_bytes()
    assert not [p for p in private.parent.iterdir() if p.name.endswith(".tmp")]
    with pytest.raises(ConfigError, match="already exist"):
        generate_keypair(private.parent)


def test_signed_bundle_verifies_and_an_edited_manifest_is_refused_by_name(bundle, keys):
    private, public = keys
    sign_manifest(bundle, private)
    loaded = load_bundle(bundle, verify_key=public)
    assert loaded.signed_by == key_fingerprint(load_public_key(public))
    assert load_bundle(bundle).signed_by is None  # no key: not checked
    # The sweep's consistent class rename: models, hierarchy and descriptions all agree.
    text = (bundle / MANIFEST_NAME).read_text()
    (bundle / MANIFEST_NAME).write_text(text.replace("RIC V Probus 10", "RIC I Forged 1"))
    assert "RIC I Forged 1" in load_bundle(bundle).hierarchy.rics  # unsigned loading cannot tell
    with pytest.raises(BundleError, match=r"manifest\.json fails its signature check against key ed25519:"):
        load_bundle(bundle, verify_key=public)
    # One byte of whitespace is an edit too: the signature covers the exact bytes.
    (bundle / MANIFEST_NAME).write_text(text + " ")
    with pytest.raises(BundleError, match="fails its signature check"):
        load_bundle(bundle, verify_key=public)


def test_missing_wrong_and_foreign_signatures(bundle, keys, tmp_path):
    private, public = keys
    with pytest.raises(BundleError, match=r"manifest\.json is not signed \(manifest\.json\.sig is missing\)"):
        load_bundle(bundle, verify_key=public)
    (bundle / SIGNATURE_NAME).write_bytes(b"\x00" * 10)
    with pytest.raises(BundleError, match="not an Ed25519 signature"):
        load_bundle(bundle, verify_key=public)
    _, other_public = generate_keypair(tmp_path / "other")
    sign_manifest(bundle, private)
    with pytest.raises(BundleError, match="fails its signature check"):
        load_bundle(bundle, verify_key=other_public)


def test_key_forms_and_key_mistakes(bundle, keys):
    private, public = keys
    sign_manifest(bundle, private.read_bytes())
    key = load_public_key(public)
    from cryptography.hazmat.primitives import serialization

    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    for form in (public, str(public), public.read_bytes(), raw, key):
        assert load_bundle(bundle, verify=False, verify_key=form).signed_by == key_fingerprint(key)
    with pytest.raises(ConfigError, match="is a private key"):
        load_bundle(bundle, verify_key=private)
    with pytest.raises(ConfigError, match="not found"):
        load_bundle(bundle, verify_key=public.parent / "nope.pub")
    with pytest.raises(ConfigError, match="not a PEM public key"):
        load_bundle(bundle, verify_key=b"-----BEGIN PUBLIC KEY-----\ngarbage\n-----END PUBLIC KEY-----\n")
    with pytest.raises(ConfigError, match=r"not a PEM private key .*public key"):
        sign_manifest(bundle, public)


def test_rewriting_the_manifest_drops_a_stale_signature(bundle, keys):
    private, _ = keys
    sign_manifest(bundle, private)
    loaded = load_bundle(bundle)
    write_bundle_manifest(bundle, version="v2", preprocess=loaded.preprocess, hierarchy=loaded.hierarchy, models=loaded.models)
    assert not (bundle / SIGNATURE_NAME).exists()
    assert not [p for p in os.listdir(bundle) if p.endswith(".tmp")]


# ------------------------------------------------------------------ the CLI


def test_cli_keygen_sign_and_bundle_info(bundle, tmp_path, capsys):
    from denarius.apps.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, main

    keys = tmp_path / "cli-keys"
    assert main(["bundle-keygen", "--out", str(keys)]) == EXIT_OK
    assert "ed25519:" in capsys.readouterr().out
    assert main(["bundle-keygen", "--out", str(keys)]) == EXIT_USAGE
    assert "--overwrite" in capsys.readouterr().err
    public = keys / PUBLIC_KEY_NAME

    assert main(["bundle-info", str(bundle), "--verify-key", str(public)]) == EXIT_FAILURE
    assert "manifest.json is not signed" in capsys.readouterr().err
    assert main(["bundle-sign", str(bundle), "--key", str(keys / PRIVATE_KEY_NAME)]) == EXIT_OK
    assert "signed" in capsys.readouterr().out
    assert main(["bundle-info", str(bundle), "--verify-key", str(public)]) == EXIT_OK
    assert "manifest signature verified (key ed25519:" in capsys.readouterr().out

    manifest = read_manifest(bundle)
    manifest["preprocess"]["min_side"] = 17  # within every bound: only the signature catches it
    write_manifest(bundle, manifest)
    assert main(["bundle-info", str(bundle), "--verify-key", str(public)]) == EXIT_FAILURE
    err = capsys.readouterr().err
    assert "manifest.json fails its signature check" in err and err.count("\n") == 1
    assert main(["bundle-info", str(bundle), "--verify-key", str(keys / PRIVATE_KEY_NAME)]) == EXIT_USAGE
    assert "is a private key" in capsys.readouterr().err
