"""The model bundle: a directory with ONNX files and a ``manifest.json`` that describes them.

``manifest.json`` carries everything the engine needs to preprocess, infer and label::

    schema_version, created, denarius_version, version (the model version),
    preprocess   PreprocessSpec.to_dict()
    models       {"emperor"|"ric": {side, classes, input_name, output_name, input_size,
                  files {fp32|fp16|int8|int8-cpu|grad: relative path}, plans {key: relative path},
                  agreement {...int8/fp16 vs fp32...}}}
    hierarchy    Hierarchy.to_dict()
    descriptions {ric: {"obverse": str, "reverse": str}}
    metrics      cross-validated accuracies, if known
    calibration  optional {emperor|ric: {temperature}, report}: temperature scaling fitted at
                 export (absent = temperature 1); see denarius.engine.open_set
    open_set     optional {score, threshold, far, auroc, report}: the "not in the catalogue"
                 rule (absent = no open-set decision)
    files        {relative path: sha256} for every file of the bundle
    guidebook    optional {"index": "guidebook/index.json"}: the class guidebooks
                 (``denarius guidebook``; denarius.engine.landmarks.guidebook), every file
                 of which is in ``files``; added to an exported bundle by
                 :func:`set_bundle_guidebook`

Loading verifies the schema version and every sha256, and refuses a missing, truncated or
tampered file by name. There is no pickle anywhere in a bundle.

The manifest is untrusted input until verified: every path it names must stay inside the
bundle folder (no absolute path, no ``..`` component, no symlink leading out), its
preprocessing limits must lie within the runtime's own (``PreprocessSpec``'s bounds, e.g.
``MAX_PIXELS_CEILING``), and JSON's non-standard NaN/Infinity are refused. With a
``verify_key`` the manifest's Ed25519 signature (``manifest.json.sig``, see
``denarius.engine.bundle_signing``) must match, so an edited manifest is refused by name.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath

from denarius import __version__
from denarius.engine.atomic_write import write_atomic
from denarius.engine.bundle_signing import SIGNATURE_NAME
from denarius.engine.errors import BundleError, ConfigError
from denarius.engine.hierarchy import Hierarchy
from denarius.engine.open_set import Calibration, OpenSet
from denarius.engine.preprocess import PreprocessSpec

__all__ = [
    "SCHEMA_VERSION",
    "MANIFEST_NAME",
    "MODEL_NAMES",
    "MODEL_SIDES",
    "SIDES",
    "VARIANTS",
    "ModelInfo",
    "Bundle",
    "load_bundle",
    "write_bundle_manifest",
    "set_bundle_guidebook",
    "sha256_file",
]

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
MODEL_NAMES = ("emperor", "ric")
SIDES = ("obverse", "reverse")
# Which photo each classifier reads: the emperor from the obverse, the RIC type from the reverse.
MODEL_SIDES = {"emperor": "obverse", "ric": "reverse"}
VARIANTS = ("fp32", "fp16", "int8", "int8-cpu", "grad")
MAX_MANIFEST_BYTES = 64 * 1024 * 1024  # a manifest is text: class tables, descriptions, hashes


@dataclass(frozen=True)
class ModelInfo:
    """One classifier of the bundle.

    Attributes:
        name: "emperor" (from the obverse) or "ric" (from the reverse).
        side: "obverse" or "reverse".
        classes: output class names, in logit order (C,).
        input_size: side S of the (N, 3, S, S) float32 input.
        files: {variant: path relative to the bundle}; variants in ``VARIANTS``. "int8" is
            symmetric QDQ (what TensorRT needs); "int8-cpu" has unsigned 8-bit activations,
            which onnxruntime's x86 kernels run faster; ort-cpu uses it when present.
        plans: {key: path} of TensorRT plans, key = f"sm{major}{minor}-trt{version}".
        agreement: quality of reduced-precision variants vs fp32, e.g.
            {"int8": {"top1_agreement": 0.99, "accuracy_delta": -0.002, "images": 300}}.
    """

    name: str
    side: str
    classes: tuple[str, ...]
    input_size: int
    files: dict = field(default_factory=dict)
    plans: dict = field(default_factory=dict)
    agreement: dict = field(default_factory=dict)
    input_name: str = "image"
    output_name: str = "logits"

    def to_dict(self) -> dict:
        return {
            "side": self.side,
            "classes": list(self.classes),
            "input_name": self.input_name,
            "output_name": self.output_name,
            "input_size": self.input_size,
            "input_shape": [None, 3, self.input_size, self.input_size],
            "output_shape": [None, len(self.classes)],
            "files": dict(self.files),
            "plans": dict(self.plans),
            "agreement": dict(self.agreement),
        }

    @classmethod
    def from_dict(cls, name: str, data: dict) -> ModelInfo:
        return cls(
            name=name,
            side=data["side"],
            classes=tuple(data["classes"]),
            input_size=int(data["input_size"]),
            files=dict(data.get("files", {})),
            plans=dict(data.get("plans", {})),
            agreement=dict(data.get("agreement", {})),
            input_name=data.get("input_name", "image"),
            output_name=data.get("output_name", "logits"),
        )


@dataclass(frozen=True)
class Bundle:
    """A loaded, verified model bundle (see the module docstring for the format)."""

    path: Path
    schema_version: int
    version: str
    created: str
    preprocess: PreprocessSpec
    hierarchy: Hierarchy
    descriptions: dict
    models: dict
    metrics: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    signed_by: str | None = None  # fingerprint of the key the manifest's signature was verified with
    calibration: Calibration = field(default_factory=Calibration)  # temperatures (1 when the manifest has none)
    open_set: OpenSet | None = None  # the unknown-coin rule, None = no decision
    files: dict = field(default_factory=dict)  # {relative path: sha256} of every file the manifest lists
    guidebook: str | None = None  # relative path of the guidebook index, None = no guidebook

    def has(self, model: str, variant: str) -> bool:
        return variant in self._model(model).files

    def file(self, model: str, variant: str = "fp32") -> Path:
        """Absolute path of one variant of one model; BundleError if the bundle lacks it."""
        info = self._model(model)
        if variant not in info.files:
            raise BundleError(
                f"bundle {self.path} has no {variant!r} variant of the {model} model; "
                f"it has: {sorted(info.files)}. Re-export with the matching flag (e.g. --int8, --fp16)."
            )
        return self.path / info.files[variant]

    def plan(self, model: str, key: str) -> Path | None:
        """Path of the TensorRT plan for ``key`` (GPU + TensorRT version), or None."""
        relative = self._model(model).plans.get(key)
        return None if relative is None else self.path / relative

    def _model(self, model: str) -> ModelInfo:
        try:
            return self.models[model]
        except KeyError:
            raise ConfigError(f"unknown model {model!r}; choose from {list(self.models)}") from None


def sha256_file(path: Path, *, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def load_bundle(path: str | os.PathLike, *, verify: bool = True, verify_key=None) -> Bundle:
    """Read ``manifest.json``, check the schema, its paths and limits and (by default) every file's sha256.

    Args:
        path: the bundle folder.
        verify: check every file's sha256 (False skips only that; paths, limits and a
            signature are always checked).
        verify_key: an Ed25519 public key (a PEM file's path, PEM bytes or 32 raw bytes; see
            ``denarius.engine.bundle_signing``); the manifest must then carry a valid
            ``manifest.json.sig``. None loads unsigned bundles (and ignores a signature).
    Raises:
        BundleError: the folder or manifest is missing or unreadable, the schema version is
            unknown, a path leaves the bundle (absolute, ``..``, a symlink out), a limit
            exceeds the runtime's own, a file is missing, a file's sha256 differs, or the
            signature is missing or wrong (the file or field is named).
        ConfigError: ``verify_key`` cannot be read or is not an Ed25519 public key.
    """
    root = Path(path)
    manifest_path = root / MANIFEST_NAME
    if not root.is_dir():
        raise BundleError(f"bundle folder not found: {root}")
    if not manifest_path.is_file():
        raise BundleError(f"{manifest_path} not found: not a Denarius bundle (create one with `denarius export`)")
    base = root.resolve()
    raw = _read_manifest_bytes(base, manifest_path)
    signed_by = None
    if verify_key is not None:
        from denarius.engine.bundle_signing import verify_manifest

        signed_by = verify_manifest(manifest_path, raw, verify_key)
    manifest = _parse_manifest(manifest_path, raw)
    models, hierarchy, preprocess, files = _manifest_parts(manifest_path, manifest)
    _check_models(manifest_path, models, hierarchy, preprocess, files)
    for relative, expected in files.items():
        file_path = root / relative
        _confined(base, relative, manifest_path)
        if not file_path.is_file():
            raise BundleError(f"bundle file missing: {file_path}")
        if verify and sha256_file(file_path) != expected:
            raise BundleError(f"bundle file {file_path} fails its sha256 check (truncated or tampered); re-export the bundle")

    guidebook = _guidebook_index(manifest_path, manifest.get("guidebook"), files)
    return Bundle(
        path=root,
        schema_version=manifest["schema_version"],
        version=str(manifest.get("version", "unknown")),
        created=str(manifest.get("created", "")),
        preprocess=preprocess,
        hierarchy=hierarchy,
        descriptions=dict(manifest.get("descriptions", {})),
        models=models,
        metrics=dict(manifest.get("metrics", {})),
        extra=dict(manifest.get("extra", {})),
        signed_by=signed_by,
        calibration=Calibration.from_manifest(manifest.get("calibration"), str(manifest_path)),
        open_set=OpenSet.from_manifest(manifest.get("open_set"), str(manifest_path)),
        files=dict(files),
        guidebook=guidebook,
    )


def _guidebook_index(manifest_path: Path, section, files: dict) -> str | None:
    """The guidebook index's relative path from the manifest's optional ``guidebook`` object;
    it must be one of the hashed files."""
    if section is None:
        return None
    index = section.get("index") if isinstance(section, dict) else None
    if not isinstance(index, str) or index not in files:
        raise BundleError(f"{manifest_path}: guidebook.index {index!r} is not a file with a sha256 entry; "
                          "rebuild the guidebook with `denarius guidebook`")
    return index


def _read_manifest_bytes(base: Path, manifest_path: Path) -> bytes:
    """The manifest's bytes, read once (what a signature covers is what is parsed)."""
    _confined(base, MANIFEST_NAME, manifest_path)
    size = manifest_path.stat().st_size
    if size > MAX_MANIFEST_BYTES:
        raise BundleError(f"{manifest_path} is {size:,} bytes, more than a manifest can be ({MAX_MANIFEST_BYTES:,}); not a Denarius bundle")
    return manifest_path.read_bytes()


def _parse_manifest(manifest_path: Path, raw: bytes) -> dict:
    """Strict JSON (no NaN/Infinity) holding an object of the supported schema version."""

    def refuse_constant(name: str):
        raise BundleError(f"{manifest_path}: {name} is not valid JSON; a bundle manifest holds finite numbers only")

    try:
        manifest = json.loads(raw.decode("utf-8"), parse_constant=refuse_constant)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BundleError(f"{manifest_path} is not valid JSON (truncated or tampered?): {error}") from None
    schema = manifest.get("schema_version") if isinstance(manifest, dict) else None
    if schema != SCHEMA_VERSION or isinstance(schema, bool):
        raise BundleError(
            f"{manifest_path}: schema_version {schema!r} is not supported by this Denarius "
            f"(supports {SCHEMA_VERSION}); re-export the bundle"
        )
    return manifest


def _manifest_parts(manifest_path: Path, manifest: dict) -> tuple[dict, Hierarchy, PreprocessSpec, dict]:
    """(models, hierarchy, preprocess spec, files) of a parsed manifest."""
    try:
        preprocess = PreprocessSpec.from_dict(manifest["preprocess"])
    except ConfigError as error:
        raise BundleError(f"{manifest_path}: preprocess refused: {error} (this runtime's own bounds; re-export the bundle)") from None
    except (KeyError, TypeError, ValueError) as error:
        raise BundleError(f"{manifest_path}: malformed preprocess spec ({type(error).__name__}: {error})") from None
    try:
        models = {name: ModelInfo.from_dict(name, manifest["models"][name]) for name in MODEL_NAMES}
        hierarchy = Hierarchy.from_dict(manifest["hierarchy"])
        files = dict(manifest["files"])
    except (KeyError, TypeError, ValueError) as error:
        raise BundleError(f"{manifest_path}: malformed manifest ({type(error).__name__}: {error})") from None
    return models, hierarchy, preprocess, files


def _check_models(manifest_path: Path, models: dict, hierarchy: Hierarchy, preprocess: PreprocessSpec, files: dict) -> None:
    """Class tables match the hierarchy, inputs match the spec, every referenced file is hashed."""
    if models["emperor"].classes != hierarchy.emperors or models["ric"].classes != hierarchy.rics:
        raise BundleError(f"{manifest_path}: model class tables do not match the hierarchy")
    for name, info in models.items():
        if info.input_size != preprocess.crop:
            raise BundleError(f"{manifest_path}: models.{name}.input_size {info.input_size} differs from preprocess.crop {preprocess.crop}")
    referenced = {p for m in models.values() for p in (*m.files.values(), *m.plans.values())}
    unlisted = sorted(map(str, referenced - set(files)))
    if unlisted:
        raise BundleError(f"{manifest_path}: files without a sha256 entry: {unlisted}")


def _confined(base: Path, relative, manifest_path: Path) -> Path:
    """``base / relative`` resolved (symlinks followed), refused unless it lies inside ``base``.

    Args:
        base: the bundle folder, already resolved.
        relative: a path as the manifest names it (a str, "/"-separated).
    Raises:
        BundleError: not a non-empty string, absolute, a ``..`` component, or resolving outside
            ``base`` (a symlink leading out); the path is named.
    """
    if not isinstance(relative, str) or not relative or "\x00" in relative:
        raise BundleError(f"{manifest_path}: file path {relative!r} is not a relative path")
    posix, windows = PurePosixPath(relative), PureWindowsPath(relative)
    if posix.is_absolute() or windows.is_absolute() or windows.drive:
        raise BundleError(f"{manifest_path}: file path {relative!r} is absolute; a bundle names its files relative to its folder")
    if ".." in posix.parts or ".." in windows.parts:
        raise BundleError(f"{manifest_path}: file path {relative!r} has a '..' component; bundle files must lie inside the bundle folder")
    resolved = (base / relative).resolve()
    if resolved != base and base not in resolved.parents:
        raise BundleError(f"{manifest_path}: {relative!r} resolves to {resolved}, outside the bundle folder {base} "
                          "(a symlink leading out of the bundle); copy the file into the bundle")
    return resolved


def write_bundle_manifest(
    bundle_dir: str | os.PathLike,
    *,
    version: str,
    preprocess: PreprocessSpec,
    hierarchy: Hierarchy,
    models: dict[str, ModelInfo],
    descriptions: dict | None = None,
    metrics: dict | None = None,
    extra: dict | None = None,
    calibration: dict | None = None,
    open_set: dict | None = None,
) -> Path:
    """Hash every file the models reference and write ``manifest.json`` atomically.

    The model files must already be in ``bundle_dir`` (named relative to it, inside it). A
    signature of an earlier manifest is removed: sign the new one with
    ``denarius.engine.bundle_signing.sign_manifest``. ``calibration`` / ``open_set`` are the
    optional objects of ``Calibration.to_dict()`` / ``OpenSet.to_dict()`` (checked as a loader
    would). Returns the manifest path.
    """
    root = Path(bundle_dir)
    if set(models) != set(MODEL_NAMES):
        raise ConfigError(f"a bundle needs exactly the models {MODEL_NAMES}, got {sorted(models)}")
    for name, info in models.items():
        if info.side != MODEL_SIDES[name]:
            raise ConfigError(f"the {name} model reads the {MODEL_SIDES[name]}, not the {info.side}")
        unknown = sorted(set(info.files) - set(VARIANTS))
        if unknown or "fp32" not in info.files:
            raise ConfigError(f"{name}: variants must include 'fp32' and be among {VARIANTS}; got {sorted(info.files)}")
    relative_paths = sorted({p for m in models.values() for p in (*m.files.values(), *m.plans.values())})
    files = {}
    base = root.resolve()
    for relative in relative_paths:
        _confined(base, relative, root / MANIFEST_NAME)
        if not (root / relative).is_file():
            raise BundleError(f"cannot write the manifest: {root / relative} does not exist")
        files[relative] = sha256_file(root / relative)
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "denarius_version": __version__,
        "version": version,
        "preprocess": preprocess.to_dict(),
        "models": {name: models[name].to_dict() for name in MODEL_NAMES},
        "hierarchy": hierarchy.to_dict(),
        "descriptions": descriptions or {},
        "metrics": metrics or {},
        "extra": extra or {},
        "files": files,
    }
    where = str(root / MANIFEST_NAME)
    if calibration is not None:
        Calibration.from_manifest(calibration, where)
        manifest["calibration"] = calibration
    if open_set is not None:
        OpenSet.from_manifest(open_set, where)
        manifest["open_set"] = open_set
    path = root / MANIFEST_NAME
    write_atomic(path, json.dumps(manifest, indent=2, sort_keys=False, allow_nan=False).encode("utf-8"))
    # A signature of the manifest this one replaces would only fail; sign again (bundle_signing).
    (root / SIGNATURE_NAME).unlink(missing_ok=True)
    return path


def set_bundle_guidebook(bundle_dir: str | os.PathLike, *, index: str, files: list[str], prefix: str = "guidebook/") -> Path:
    """List a guidebook in an existing bundle's manifest: hash ``files`` (already written,
    bundle-relative, all under ``prefix``) into ``files``, drop the entries of an earlier
    guidebook under ``prefix``, set ``"guidebook": {"index": index}``, and write the manifest
    atomically. Everything else in the manifest is kept as it was.

    The bundle must load, and every file outside ``prefix`` verify. A signature of the old
    manifest is removed (it would only fail): sign the new one
    (``denarius.engine.bundle_signing.sign_manifest``). Returns the manifest path.

    Raises:
        BundleError: the bundle does not verify, or a file is missing or leaves the bundle.
        ConfigError: a file or the index is not under ``prefix``, or the index is not among ``files``.
    """
    root = Path(bundle_dir)
    load_bundle(root, verify=False)  # paths, limits, schema: never rewrite a manifest that does not load
    outside = sorted(p for p in files if not p.startswith(prefix))
    if outside or index not in files:
        raise ConfigError(f"guidebook files must lie under {prefix!r} and include the index {index!r}; got {outside or files[:5]}")
    path = root / MANIFEST_NAME
    manifest = _parse_manifest(path, _read_manifest_bytes(root.resolve(), path))
    base = root.resolve()
    listed = {relative: digest for relative, digest in manifest["files"].items() if not relative.startswith(prefix)}
    for relative, expected in listed.items():  # the earlier guidebook's files are being replaced: not checked
        if sha256_file(root / relative) != expected:
            raise BundleError(f"bundle file {root / relative} fails its sha256 check (truncated or tampered); re-export the bundle")
    for relative in sorted(files):
        _confined(base, relative, path)
        if not (root / relative).is_file():
            raise BundleError(f"cannot list the guidebook: {root / relative} does not exist")
        listed[relative] = sha256_file(root / relative)
    manifest["files"] = listed
    manifest["guidebook"] = {"index": index}
    write_atomic(path, json.dumps(manifest, indent=2, sort_keys=False, allow_nan=False).encode("utf-8"))
    (root / SIGNATURE_NAME).unlink(missing_ok=True)
    return path
