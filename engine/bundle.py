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
    files        {relative path: sha256} for every file of the bundle

Loading verifies the schema version and every sha256, and refuses a missing, truncated or
tampered file by name. There is no pickle anywhere in a bundle.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from denarius import __version__
from denarius.engine.errors import BundleError, ConfigError
from denarius.engine.hierarchy import Hierarchy
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
    "sha256_file",
]

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
MODEL_NAMES = ("emperor", "ric")
SIDES = ("obverse", "reverse")
# Which photo each classifier reads: the emperor from the obverse, the RIC type from the reverse.
MODEL_SIDES = {"emperor": "obverse", "ric": "reverse"}
VARIANTS = ("fp32", "fp16", "int8", "int8-cpu", "grad")


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


def load_bundle(path: str | os.PathLike, *, verify: bool = True) -> Bundle:
    """Read ``manifest.json``, check the schema and (by default) every file's sha256.

    Raises:
        BundleError: the folder or manifest is missing or unreadable, the schema version is
            unknown, a file is missing, or a file's sha256 differs (the file is named).
    """
    root = Path(path)
    manifest_path = root / MANIFEST_NAME
    if not root.is_dir():
        raise BundleError(f"bundle folder not found: {root}")
    if not manifest_path.is_file():
        raise BundleError(f"{manifest_path} not found: not a Denarius bundle (create one with `denarius export`)")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BundleError(f"{manifest_path} is not valid JSON (truncated or tampered?): {error}") from None
    schema = manifest.get("schema_version")
    if schema != SCHEMA_VERSION:
        raise BundleError(
            f"{manifest_path}: schema_version {schema!r} is not supported by this Denarius "
            f"(supports {SCHEMA_VERSION}); re-export the bundle"
        )
    try:
        models = {name: ModelInfo.from_dict(name, manifest["models"][name]) for name in MODEL_NAMES}
        hierarchy = Hierarchy.from_dict(manifest["hierarchy"])
        preprocess = PreprocessSpec.from_dict(manifest["preprocess"])
        files = dict(manifest["files"])
    except (KeyError, TypeError, ValueError) as error:
        raise BundleError(f"{manifest_path}: malformed manifest ({type(error).__name__}: {error})") from None

    if models["emperor"].classes != hierarchy.emperors or models["ric"].classes != hierarchy.rics:
        raise BundleError(f"{manifest_path}: model class tables do not match the hierarchy")
    referenced = {p for m in models.values() for p in (*m.files.values(), *m.plans.values())}
    unlisted = sorted(referenced - set(files))
    if unlisted:
        raise BundleError(f"{manifest_path}: files without a sha256 entry: {unlisted}")
    for relative, expected in files.items():
        file_path = root / relative
        if not file_path.is_file():
            raise BundleError(f"bundle file missing: {file_path}")
        if verify and sha256_file(file_path) != expected:
            raise BundleError(f"bundle file {file_path} fails its sha256 check (truncated or tampered); re-export the bundle")

    return Bundle(
        path=root,
        schema_version=schema,
        version=str(manifest.get("version", "unknown")),
        created=str(manifest.get("created", "")),
        preprocess=preprocess,
        hierarchy=hierarchy,
        descriptions=dict(manifest.get("descriptions", {})),
        models=models,
        metrics=dict(manifest.get("metrics", {})),
        extra=dict(manifest.get("extra", {})),
    )


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
) -> Path:
    """Hash every file the models reference and write ``manifest.json`` atomically.

    The model files must already be in ``bundle_dir``. Returns the manifest path.
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
    for relative in relative_paths:
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
    path = root / MANIFEST_NAME
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(manifest, indent=2, sort_keys=False), encoding="utf-8")
    os.replace(temporary, path)
    return path
