"""Signed bundle manifests: an Ed25519 signature over the exact bytes of ``manifest.json``.

The manifest lists the sha256 of every file of the bundle, so a valid signature over it
covers the whole bundle: a renamed class, a changed limit or a swapped ONNX file (with its
sha256 updated) no longer verifies::

    denarius bundle-keygen --out keys/        keys/bundle-signing.key (private, mode 0600)
                                              keys/bundle-signing.pub (public, give it to servers)
    denarius export runs/r1 --out bundle/ --sign-key keys/bundle-signing.key
    denarius bundle-sign bundle/ --key keys/bundle-signing.key        (an existing bundle)
    denarius bundle-info bundle/ --verify-key keys/bundle-signing.pub
    load_bundle("bundle/", verify_key="keys/bundle-signing.pub")

``manifest.json.sig`` holds the 64-byte raw signature. Keys are PEM files (PKCS#8 private
key, SubjectPublicKeyInfo public key); a public key may also be given as its 32 raw bytes.
``cryptography`` (the serve and train extras) is imported only when a key is used.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from denarius.engine.atomic_write import write_atomic
from denarius.engine.errors import BundleError, ConfigError

__all__ = [
    "SIGNATURE_NAME",
    "PRIVATE_KEY_NAME",
    "PUBLIC_KEY_NAME",
    "KeySource",
    "generate_keypair",
    "load_private_key",
    "load_public_key",
    "public_key_pem",
    "key_fingerprint",
    "sign_manifest",
    "verify_manifest",
]

SIGNATURE_NAME = "manifest.json.sig"
PRIVATE_KEY_NAME = "bundle-signing.key"
PUBLIC_KEY_NAME = "bundle-signing.pub"
SIGNATURE_BYTES = 64
RAW_PUBLIC_KEY_BYTES = 32
MAX_KEY_FILE_BYTES = 64 * 1024

# A key file's path, or the key itself: PEM bytes, or (public keys) the 32 raw bytes.
KeySource = str | os.PathLike | bytes


def _ed25519():
    """The cryptography module of Ed25519 keys (imported here only: a key is in use)."""
    from cryptography.hazmat.primitives.asymmetric import ed25519

    return ed25519


def _key_bytes(source: KeySource, *, what: str) -> tuple[bytes, str]:
    """(key bytes, how to name the key in messages) from a path or the bytes themselves."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), f"the given {what}"
    path = Path(source)
    try:
        if path.stat().st_size > MAX_KEY_FILE_BYTES:
            raise ConfigError(f"{what} {path} is not a key file (larger than {MAX_KEY_FILE_BYTES // 1024} KiB)")
        return path.read_bytes(), f"{what} {path}"
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{what} {path} is a folder; give the key file (e.g. {path / PUBLIC_KEY_NAME})") from None
    except OSError as error:
        raise ConfigError(f"cannot read {what} {path}: {error.strerror or error}") from None


def load_private_key(source: KeySource):
    """An Ed25519 private key from a PEM file (``denarius bundle-keygen``) or PEM bytes.

    Returns:
        ``cryptography``'s Ed25519PrivateKey.
    Raises:
        ConfigError: unreadable, not PEM, encrypted, or not an Ed25519 key.
    """
    from cryptography.hazmat.primitives import serialization

    data, name = _key_bytes(source, what="signing key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise ConfigError(f"{name} is encrypted; give an unencrypted PEM key (from `denarius bundle-keygen`)") from None
    except ValueError:
        hint = " (that is a public key: signing needs the private one)" if b"PUBLIC KEY" in data else ""
        raise ConfigError(f"{name} is not a PEM private key{hint}") from None
    if not isinstance(key, _ed25519().Ed25519PrivateKey):
        raise ConfigError(f"{name} is a {type(key).__name__}, not an Ed25519 key; create one with `denarius bundle-keygen`")
    return key


def load_public_key(source: KeySource):
    """An Ed25519 public key from a PEM file, PEM bytes, or its 32 raw bytes.

    Returns:
        ``cryptography``'s Ed25519PublicKey.
    Raises:
        ConfigError: unreadable, a private key, or not an Ed25519 public key.
    """
    from cryptography.hazmat.primitives import serialization

    ed25519 = _ed25519()
    data, name = _key_bytes(source, what="verify key")
    if len(data) == RAW_PUBLIC_KEY_BYTES and not data.startswith(b"-----"):
        return ed25519.Ed25519PublicKey.from_public_bytes(data)
    if b"PRIVATE KEY" in data:
        raise ConfigError(f"{name} is a private key; give servers the public key ({PUBLIC_KEY_NAME}) and keep the private one secret")
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        raise ConfigError(f"{name} is not a PEM public key (nor 32 raw Ed25519 bytes)") from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise ConfigError(f"{name} is a {type(key).__name__}, not an Ed25519 public key")
    return key


def public_key_pem(key) -> bytes:
    """PEM (SubjectPublicKeyInfo) of a public key, or of a private key's public half."""
    from cryptography.hazmat.primitives import serialization

    public = key.public_key() if hasattr(key, "public_key") else key
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_fingerprint(key) -> str:
    """"ed25519:" + the first 16 hex digits of the sha256 of the raw public key (names a key in logs)."""
    from cryptography.hazmat.primitives import serialization

    public = key.public_key() if hasattr(key, "public_key") else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "ed25519:" + hashlib.sha256(raw).hexdigest()[:16]


def generate_keypair(out_dir: str | os.PathLike, *, overwrite: bool = False) -> tuple[Path, Path]:
    """Write a new signing keypair into ``out_dir`` (created if missing).

    Returns:
        (private key path, mode 0600; public key path, mode 0644).
    Raises:
        ConfigError: a key file is already there and ``overwrite`` is False.
    """
    from cryptography.hazmat.primitives import serialization

    folder = Path(out_dir)
    private_path, public_path = folder / PRIVATE_KEY_NAME, folder / PUBLIC_KEY_NAME
    existing = [str(p) for p in (private_path, public_path) if p.exists()]
    if existing and not overwrite:
        verb = "exists" if len(existing) == 1 else "exist"
        raise ConfigError(f"{' and '.join(existing)} already {verb}; pass --overwrite to replace the keypair "
                          "(bundles signed with the old key then fail to verify against the new one)")
    folder.mkdir(parents=True, exist_ok=True)
    key = _ed25519().Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    if private_path.exists():
        private_path.unlink()  # a fresh file, so the 0600 mode applies
    write_atomic(private_path, pem, durable=True, mode=0o600)
    write_atomic(public_path, public_key_pem(key), durable=True)
    return private_path, public_path


def sign_manifest(bundle_dir: str | os.PathLike, key: KeySource) -> Path:
    """Sign ``bundle_dir/manifest.json`` as it is on disk; writes ``manifest.json.sig``.

    Args:
        key: the private key (a PEM file's path, PEM bytes, or a loaded Ed25519PrivateKey).
    Returns:
        the signature's path.
    """
    from denarius.engine.bundle import MANIFEST_NAME

    private = key if isinstance(key, _ed25519().Ed25519PrivateKey) else load_private_key(key)
    root = Path(bundle_dir)
    try:
        manifest = (root / MANIFEST_NAME).read_bytes()
    except FileNotFoundError:
        raise BundleError(f"{root / MANIFEST_NAME} not found: nothing to sign") from None
    return write_atomic(root / SIGNATURE_NAME, private.sign(manifest), durable=True)


def verify_manifest(manifest_path: Path, manifest: bytes, key: KeySource) -> str:
    """Check ``manifest`` (the bytes read from ``manifest_path``) against its ``.sig`` file.

    Args:
        manifest_path: where the manifest was read; its signature is ``manifest.json.sig``
            beside it.
        manifest: the exact bytes that will be parsed (read once, so what is verified is
            what is loaded).
        key: the public key (see :func:`load_public_key`), or a loaded Ed25519PublicKey.
    Returns:
        the key's fingerprint (:func:`key_fingerprint`).
    Raises:
        BundleError: the signature is missing, malformed, or does not match (the message
            names manifest.json).
        ConfigError: the key cannot be read.
    """
    from cryptography.exceptions import InvalidSignature

    ed25519 = _ed25519()
    public = key if isinstance(key, ed25519.Ed25519PublicKey) else load_public_key(key)
    signature_path = manifest_path.with_name(SIGNATURE_NAME)
    try:
        signature = signature_path.read_bytes()[: SIGNATURE_BYTES + 1]
    except FileNotFoundError:
        raise BundleError(f"{manifest_path} is not signed ({SIGNATURE_NAME} is missing) and a verify key was given; "
                          "sign it with `denarius bundle-sign` or export with --sign-key") from None
    except OSError as error:
        raise BundleError(f"cannot read the signature {signature_path}: {error.strerror or error}") from None
    if len(signature) != SIGNATURE_BYTES:
        raise BundleError(f"{manifest_path}: {SIGNATURE_NAME} is not an Ed25519 signature ({SIGNATURE_BYTES} bytes expected)")
    try:
        public.verify(signature, manifest)
    except InvalidSignature:
        raise BundleError(
            f"{manifest_path} fails its signature check against key {key_fingerprint(public)}: the manifest was "
            "edited after signing, or signed with another key; refusing the bundle") from None
    return key_fingerprint(public)
