"""`denarius export --sign-key`: the exported manifest is signed, verifies against the public key,
and a bad key fails before the export does any work."""

from __future__ import annotations

import pytest

from denarius.apps.cli import EXIT_OK, EXIT_USAGE, main
from denarius.engine.bundle import load_bundle
from denarius.engine.bundle_signing import SIGNATURE_NAME, generate_keypair
from denarius.engine.errors import BundleError

pytest.importorskip("cryptography")  # bundle_signing imports it only when a key is used


def test_export_with_sign_key_writes_a_verifying_signature(tiny_run, tmp_path, capsys):
    private, public = generate_keypair(tmp_path / "keys")
    out = tmp_path / "signed"
    assert main(["export", str(tiny_run), "--out", str(out), "--parity-images", "4", "--sign-key", str(private)]) == EXIT_OK
    assert "manifest signed by ed25519:" in capsys.readouterr().out
    assert (out / SIGNATURE_NAME).stat().st_size == 64
    assert load_bundle(out, verify_key=public).signed_by
    _, other = generate_keypair(tmp_path / "other")
    with pytest.raises(BundleError, match="fails its signature check"):
        load_bundle(out, verify_key=other)


def test_a_public_key_as_sign_key_fails_before_exporting(tiny_run, tmp_path, capsys):
    _, public = generate_keypair(tmp_path / "keys")
    out = tmp_path / "never"
    assert main(["export", str(tiny_run), "--out", str(out), "--sign-key", str(public)]) == EXIT_USAGE
    assert "that is a public key" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".never.partial-*"))
