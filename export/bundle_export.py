"""Training run directory -> model bundle (``denarius export``).

Reads ``RUN_DIR/{emperor,ric}.pt`` and ``RUN_DIR/run.json`` (written by ``denarius train``)
and writes a bundle directory::

    emperor.onnx  ric.onnx              fp32, parity-checked against PyTorch
    emperor.grad.onnx  ric.grad.onnx    gradient graphs (denarius.export.gradgraph)
    *.int8.onnx                         --int8: QDQ static quantisation + agreement report
    *.fp16.onnx                         --fp16: fp16 compute, fp32 image/logits
    *.plan                              --tensorrt, where tensorrt is importable
    manifest.json                       denarius.engine.bundle's writer: specs, tables, sha256 of every file
    manifest.json.sig                   --sign-key: Ed25519 signature of manifest.json (denarius.engine.bundle_signing)
    report/reliability.png              --calibrate-on: reliability diagram before/after temperature scaling
    report/risk_coverage.png            --unknown-manifest: risk-coverage of every open-set score

``--calibrate-on HELDOUT.csv`` fits one temperature per classifier on held-out coins and
stores it in the manifest (``calibration``); with ``--unknown-manifest UNKNOWN.csv`` (coins
outside the catalogue) it also chooses the open-set score and its threshold for
``--open-set-far`` (``open_set``). See denarius.export.open_world.

The bundle is assembled in a hidden sibling folder and moved into place only once it is
complete and verifies, so a failed export never leaves a half bundle at ``out``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from denarius.engine.errors import BundleError, ConfigError, DenariusError
from denarius.engine.hierarchy import Hierarchy
from denarius.engine.preprocess import PreprocessSpec
from denarius.export.quantize import QuantizeConfig
from denarius.export.tensorrt import TensorRTConfig

__all__ = ["ExportConfig", "ExportResult", "export_bundle", "read_run", "TASKS"]

logger = logging.getLogger(__name__)

# model name -> the coin side it reads (the bundle and the checkpoints agree on this).
TASKS = {"emperor": "obverse", "ric": "reverse"}


@dataclass(frozen=True)
class ExportConfig:
    """What ``export_bundle`` produces.

    Attributes:
        int8: add QDQ INT8 files (needs calibration photographs: ``calibration`` or the
            run's own manifest).
        calibration: dataset manifest (CSV) whose photographs calibrate INT8 and judge it;
            None = the manifest recorded in run.json.
        quantize: calibration size, evaluation size, method...
        fp16: add fp16 files.
        tensorrt: build TensorRT plans for this machine's GPU (skipped, with a warning,
            when tensorrt is not importable).
        tensorrt_config: plan options; its precision must have a source file (int8 needs --int8).
        model_version: recorded in the manifest and ONNX metadata; None = run folder name +
            a hash of both checkpoints.
        parity_sources: extra photographs for the parity check (paths), used first.
        parity_images: parity batch size.
        parity_tolerance: bound on max|ort - torch| / max|torch|.
        overwrite: replace an existing bundle at ``out``.
        sign_key: an Ed25519 private key (PEM, from ``denarius bundle-keygen``); the
            manifest is signed with it (``manifest.json.sig``) and verified before the
            bundle is moved into place. None = unsigned.
        calibrate_on: dataset manifest of held-out coins of the catalogue: temperatures are
            fitted on one half, the ECE is reported on the other (images byte-identical to
            the run's training images are dropped). None = no calibration (temperature 1).
        unknown_manifest: coins of emperors/types outside the catalogue (rows the bundle
            knows are dropped): the open-set score and threshold are chosen on them.
        open_set_far: the false-accept rate of unknown coins the threshold is chosen for.
        open_set_score: one of ``denarius.engine.open_set.OPEN_SET_SCORES``; None = the
            one with the highest AUROC.
        open_world_seed: seed of the fit/test split of ``calibrate_on``.
    """

    int8: bool = False
    calibration: Path | None = None
    quantize: QuantizeConfig = QuantizeConfig()
    fp16: bool = False
    tensorrt: bool = False
    tensorrt_config: TensorRTConfig = TensorRTConfig()
    model_version: str | None = None
    parity_sources: tuple = ()
    parity_images: int = 16
    parity_tolerance: float = 1e-4
    overwrite: bool = False
    sign_key: Path | None = None
    calibrate_on: Path | None = None
    unknown_manifest: Path | None = None
    open_set_far: float = 0.05
    open_set_score: str | None = None
    open_world_seed: int = 0

    def __post_init__(self):
        for name in ("calibrate_on", "unknown_manifest"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, Path(getattr(self, name)))
        if self.unknown_manifest is not None and self.calibrate_on is None:
            raise ConfigError("--unknown-manifest needs --calibrate-on HELDOUT.csv (held-out coins of the catalogue)")
        if not 0 <= self.open_set_far < 1:
            raise ConfigError(f"--open-set-far must be in [0, 1), got {self.open_set_far}")
        if self.calibration is not None:
            object.__setattr__(self, "calibration", Path(self.calibration))
        if self.sign_key is not None:
            object.__setattr__(self, "sign_key", Path(self.sign_key))
        object.__setattr__(self, "parity_sources", tuple(self.parity_sources))
        if self.parity_images < 1:
            raise ConfigError(f"parity_images must be >= 1, got {self.parity_images}")
        if not 0 < self.parity_tolerance < 1:
            raise ConfigError(f"parity_tolerance must be in (0, 1), got {self.parity_tolerance}")


@dataclass(frozen=True)
class ExportResult:
    """What an export did.

    Attributes:
        path: the bundle directory.
        version: model version recorded in it.
        parity: {model: ParityReport.to_dict()}.
        agreement: {model: {variant: AgreementReport.to_dict()}}.
        plans: {model: {key: file name}}.
        skipped: human-readable notes on what was requested but not produced, and why.
        signed_by: fingerprint of the key the manifest was signed with, or None.
    """

    path: Path
    version: str
    parity: dict
    agreement: dict
    plans: dict = field(default_factory=dict)
    skipped: tuple[str, ...] = ()
    signed_by: str | None = None
    open_world: dict = field(default_factory=dict)


def read_run(run_dir: str | Path) -> dict:
    """Load and check ``RUN_DIR/run.json`` (the contract written by ``denarius train``).

    Raises:
        ConfigError: the folder, a checkpoint or run.json is missing, or run.json lacks keys.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"run directory {run_dir} does not exist (create one with `denarius train`)")
    missing = [name for name in ("run.json", "emperor.pt", "ric.pt") if not (run_dir / name).is_file()]
    if missing:
        raise ConfigError(f"run directory {run_dir} lacks {missing}; it must hold emperor.pt, ric.pt and run.json from `denarius train`")
    try:
        run = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{run_dir / 'run.json'} is not valid JSON: {exc}") from None
    absent = [key for key in ("hierarchy", "preprocess") if key not in run]
    if absent:
        raise ConfigError(f"{run_dir / 'run.json'} lacks {absent}")
    return run


def _default_version(run_dir: Path) -> str:
    digest = hashlib.sha256()
    for name in ("emperor.pt", "ric.pt"):
        digest.update((run_dir / name).read_bytes())
    return f"{run_dir.resolve().name}-{digest.hexdigest()[:12]}"


def _side_images(records, task: str, classes: tuple[str, ...], merged: dict):
    """ImageSet of one side's photographs with labels in the model's class table."""
    from denarius.export.quantize import ImageSet

    to_class = {original: label for label, originals in merged.items() for original in originals}
    index = {name: i for i, name in enumerate(classes)}
    sources, labels = [], []
    for record in records:
        if task == "emperor":
            sources.append(record.obverse)
            labels.append(index.get(record.emperor, -1))
        else:
            sources.append(record.reverse)
            labels.append(index.get(to_class.get(record.ric, record.ric), -1))
    return ImageSet(sources=tuple(sources), labels=np.asarray(labels, np.int64))


def _load_records(manifest: Path | None, *, required: bool):
    if manifest is None:
        if required:
            raise ConfigError("--int8 needs calibration photographs: pass --calibration MANIFEST (run.json names no manifest)")
        return []
    from denarius.engine.manifest import read_manifest

    try:
        return read_manifest(manifest)
    except DenariusError:
        if required:
            raise
        logger.warning("the run's manifest %s is unreadable; the parity check uses scikit-image's coin plate only", manifest)
        return []


def _check_checkpoint(ckpt, *, task: str, classes: tuple[str, ...], spec: PreprocessSpec, source: Path) -> None:
    if ckpt.task != task or ckpt.side != TASKS[task]:
        raise ConfigError(f"{source} is a {ckpt.task}/{ckpt.side} checkpoint, expected {task}/{TASKS[task]}")
    if tuple(ckpt.classes) != tuple(classes):
        raise ConfigError(f"{source}: its {len(ckpt.classes)} classes differ from run.json's {task} table ({len(classes)} classes)")
    if PreprocessSpec.from_dict(ckpt.preprocess) != spec:
        raise ConfigError(f"{source}: preprocessing differs from run.json's ({ckpt.preprocess} vs {spec.to_dict()})")
    if ckpt.model_config.input_size != spec.crop:
        raise ConfigError(f"{source}: model input {ckpt.model_config.input_size} px but the preprocessing crops {spec.crop} px")


def _prepare_out(out: Path, overwrite: bool) -> None:
    if not out.exists():
        return
    from denarius.engine.bundle import MANIFEST_NAME

    if not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a directory")
    contents = list(out.iterdir())
    if contents and not overwrite:
        raise ConfigError(f"--out {out} already exists and is not empty; choose another folder or pass --overwrite")
    if contents and not (out / MANIFEST_NAME).is_file():
        raise ConfigError(f"--out {out} is not empty and is not a bundle (no manifest.json); refusing to delete it")


def _gradient_graph(fp32: Path, grad: Path) -> None:
    try:
        from denarius.export.gradgraph import write_gradient_graph
    except ImportError as exc:
        raise BundleError(f"cannot build gradient graphs: denarius.export.gradgraph is unavailable ({exc})") from exc
    try:
        write_gradient_graph(fp32, grad)
    except DenariusError:
        raise
    except Exception as exc:  # anything else is a bug; fail the export loudly
        raise BundleError(f"gradient graph of {fp32.name} failed: {type(exc).__name__}: {exc}") from exc
    if not grad.is_file():
        raise BundleError(f"write_gradient_graph did not write {grad.name}")


def export_bundle(run_dir: str | Path, out: str | Path, *, config: ExportConfig = ExportConfig()) -> ExportResult:
    """Export a training run to a verified bundle at ``out``.

    Raises:
        ConfigError: bad run directory, checkpoints that disagree with run.json, ``out`` in the
            way, an unreadable or non-Ed25519 ``sign_key``.
        ManifestError: the calibration manifest is invalid.
        BundleError: parity failure, gradient-graph failure, quantisation/conversion failure,
            TensorRT parser/build errors.
    """
    try:
        import torch  # noqa: F401 - fail early and clearly when the train extra is missing
    except ImportError as exc:
        raise ConfigError("`denarius export` needs PyTorch and onnx: pip install 'denarius[train]'") from exc

    from denarius.engine.bundle import ModelInfo, load_bundle, write_bundle_manifest
    from denarius.export.onnx_export import check_parity, export_onnx, parity_batch
    from denarius.training.checkpoint import load_checkpoint, model_from_checkpoint

    run_dir, out = Path(run_dir), Path(out)
    run = read_run(run_dir)
    hierarchy = Hierarchy.from_dict(run["hierarchy"])
    spec = PreprocessSpec.from_dict(run["preprocess"])
    merged = dict(run.get("merged") or {})
    tables = {"emperor": hierarchy.emperors, "ric": hierarchy.rics}
    version = config.model_version or _default_version(run_dir)
    _prepare_out(out, config.overwrite)
    signing_key = _signing_key(config.sign_key)  # read before the long work: a bad key fails at once

    manifest = config.calibration or (Path(run["manifest"]) if run.get("manifest") else None)
    records = _load_records(manifest, required=config.int8)

    trt_module = None
    skipped: list[str] = []
    if config.tensorrt:
        from denarius.export.tensorrt import tensorrt_available

        if tensorrt_available():
            from denarius.export.tensorrt import require_tensorrt

            trt_module = require_tensorrt()
        else:
            note = "TensorRT plans skipped: `import tensorrt` fails on this machine (install the gpu extra on a GPU host and re-export)"
            logger.warning(note)
            skipped.append(note)

    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    parity, agreement, plans_out = {}, {}, {}
    try:
        models = {}
        for task, side in TASKS.items():
            classes = tuple(tables[task])
            ckpt_path = run_dir / f"{task}.pt"
            ckpt = load_checkpoint(ckpt_path)
            _check_checkpoint(ckpt, task=task, classes=classes, spec=spec, source=ckpt_path)
            model = model_from_checkpoint(ckpt)
            files = {"fp32": f"{task}.onnx", "grad": f"{task}.grad.onnx"}

            fp32 = export_onnx(
                model, stage / files["fp32"], input_size=spec.crop, classes=classes,
                model_version=version, task=task, side=side, preprocess=spec,
            )
            images = _side_images(records, task, classes, merged)
            batch = parity_batch(
                spec, sources=list(config.parity_sources) + list(images.sources[: config.parity_images]), limit=config.parity_images)
            parity[task] = check_parity(model, fp32, batch, tolerance=config.parity_tolerance).to_dict()
            _gradient_graph(fp32, stage / files["grad"])

            agreement[task] = {}
            held_out = None
            if config.int8:
                held_out = _export_int8(task, fp32, stage, files, images, spec, config, agreement)
            if config.fp16 or _needs_fp16_file(config, trt_module):
                from denarius.export.fp16 import convert_fp16
                from denarius.export.quantize import measure_agreement

                files["fp16"] = f"{task}.fp16.onnx"
                convert_fp16(fp32, stage / files["fp16"])
                eval_images, eval_labels = held_out if held_out is not None else (batch, None)
                agreement[task]["fp16"] = measure_agreement(
                    fp32, stage / files["fp16"], eval_images, labels=eval_labels, variant="fp16").to_dict()

            plans = {}
            if trt_module is not None:
                plans = _build_plans(task, stage, files, spec, config, trt_module)
            plans_out[task] = dict(plans)
            models[task] = ModelInfo(
                name=task, side=side, classes=classes, input_size=spec.crop,
                files=files, plans=plans, agreement=agreement[task],
            )

        extra = {
            "source_run": str(run_dir.resolve()),
            "parity": parity,
            "merged": merged,
            "training": run.get("training", {}),
            "train_config": run.get("train_config", {}),
        }
        if config.tensorrt:
            extra["tensorrt"] = {
                "precision": config.tensorrt_config.precision,
                "batch_profile": [config.tensorrt_config.min_batch, config.tensorrt_config.opt_batch, config.tensorrt_config.max_batch],
                "built": trt_module is not None,
            }
        if skipped:
            extra["skipped"] = list(skipped)
        open_world = _open_world(config, run, stage, models, spec, hierarchy, merged, version) if config.calibrate_on else {}
        write_bundle_manifest(
            stage, version=version, preprocess=spec, hierarchy=hierarchy, models=models,
            descriptions=run.get("descriptions") or {}, metrics=run.get("metrics") or {}, extra=extra,
            calibration=open_world.get("calibration"), open_set=open_world.get("open_set"),
        )
        verify_key = None
        if signing_key is not None:
            from denarius.engine.bundle_signing import sign_manifest

            sign_manifest(stage, signing_key)
            verify_key = signing_key.public_key()
        # What the engine will do; fail here, not in production.
        signed_by = load_bundle(stage, verify=True, verify_key=verify_key).signed_by
        if out.exists():
            shutil.rmtree(out)
        os.replace(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    logger.info("bundle %s written (model version %s)", out, version)
    return ExportResult(path=out, version=version, parity=parity, agreement=agreement, plans=plans_out, skipped=tuple(skipped),
                        signed_by=signed_by, open_world={k: v for k, v in open_world.items() if k != "curves"})


def _open_world(config: ExportConfig, run: dict, stage: Path, models: dict, spec, hierarchy, merged, version) -> dict:
    """Temperatures, the open-set rule and the report PNGs (denarius.export.open_world)."""
    from denarius.engine.manifest import read_manifest
    from denarius.export.open_world import (
        drop_training_images,
        fit_open_world,
        outside_catalogue,
        pair_logits,
        reliability_diagram,
        risk_coverage_plot,
    )

    assert config.calibrate_on is not None
    files = {m: stage / info.files["fp32"] for m, info in models.items()}
    names = {m: (info.input_name, info.output_name) for m, info in models.items()}
    records = read_manifest(config.calibrate_on)
    dropped = 0
    training = _load_records(Path(run["manifest"]) if run.get("manifest") else None, required=False)
    if training:
        records, dropped = drop_training_images(records, training)
    known = pair_logits(records, files=files, spec=spec, hierarchy=hierarchy, merged=merged, names=names, progress="held-out coins")
    unknown, outside_dropped = None, 0
    if config.unknown_manifest is not None:
        outside, outside_dropped = outside_catalogue(read_manifest(config.unknown_manifest), hierarchy, merged)
        if not outside:
            raise ConfigError(f"{config.unknown_manifest}: every coin has an emperor or RIC type of the catalogue; "
                              "generate coins outside it (denarius synth with another --seed)")
        unknown = pair_logits(outside, files=files, spec=spec, hierarchy=hierarchy, merged=merged, names=names, progress="unknown coins")
    result = fit_open_world(known, hierarchy, unknown=unknown, far=config.open_set_far, score=config.open_set_score,
                            seed=config.open_world_seed)
    report = result["calibration"]["report"]
    report.update({"manifest": str(config.calibrate_on), "dropped_training_images": dropped, "figure": "report/reliability.png"})
    reliability_diagram(result["curves"]["reliability"], report["ece"], stage / "report" / "reliability.png", title=f"bundle {version}")
    if result["open_set"] is not None:
        rule = result["open_set"]["report"]
        rule.update({"manifest": str(config.unknown_manifest), "dropped_in_catalogue": outside_dropped,
                     "figure": "report/risk_coverage.png"})
        risk_coverage_plot(result["curves"]["risk_coverage"], result["curves"]["aurocs"], stage / "report" / "risk_coverage.png",
                           chosen=result["open_set"]["score"], title=f"bundle {version}")
    return result


def _signing_key(path: Path | None):
    """The Ed25519 private key at ``path`` (cryptography's key object), or None."""
    if path is None:
        return None
    from denarius.engine.bundle_signing import load_private_key

    return load_private_key(path)


def _export_int8(task, fp32, stage, files, images, spec, config, agreement):
    """Quantise one model; returns the (held-out images, labels) used for its report."""
    from denarius.export.quantize import measure_agreement, preprocess_images, quantize_int8, split_calibration

    if len(images) < 2:
        raise ConfigError(f"--int8: the calibration manifest has {len(images)} {TASKS[task]} photographs; at least 2 are needed")
    q = config.quantize
    calibration, evaluation = split_calibration(
        images, calibration_size=q.calibration_size, evaluation_size=q.evaluation_size, seed=q.seed
    )
    files["int8"] = f"{task}.int8.onnx"
    _, used = quantize_int8(fp32, stage / files["int8"], calibration_sources=calibration.sources, spec=spec, config=q)
    held, kept = preprocess_images(evaluation.sources, spec, progress=f"{task}: held-out images")
    if not len(held):
        raise ConfigError(f"--int8: none of the {len(evaluation)} held-out {TASKS[task]} photographs could be read")
    labels = evaluation.labels[kept]
    report = measure_agreement(fp32, stage / files["int8"], held, labels=labels, variant="int8", calibration_images=used)
    agreement[task]["int8"] = report.to_dict()
    # The same calibration again with uint8 activations: the file ort-cpu runs (faster u8s8
    # kernels on x86); the symmetric file above stays for TensorRT.
    files["int8-cpu"] = f"{task}.int8-cpu.onnx"
    cpu_config = replace(q, unsigned_activations=True)
    _, used = quantize_int8(fp32, stage / files["int8-cpu"], calibration_sources=calibration.sources, spec=spec, config=cpu_config)
    report = measure_agreement(fp32, stage / files["int8-cpu"], held, labels=labels, variant="int8-cpu", calibration_images=used)
    agreement[task]["int8-cpu"] = report.to_dict()
    return held, labels


def _needs_fp16_file(config: ExportConfig, trt_module) -> bool:
    if trt_module is None:
        return False
    from denarius.export.tensorrt import source_variant

    variant = source_variant(config.tensorrt_config.precision, trt_module.__version__, strongly_typed=config.tensorrt_config.strongly_typed)
    return variant == "fp16"


def _build_plans(task, stage, files, spec, config, trt_module) -> dict:
    from denarius.export.tensorrt import build_plan, device_compute_capability, plan_filename, plan_key, source_variant

    trt_config = config.tensorrt_config
    variant = source_variant(trt_config.precision, trt_module.__version__, strongly_typed=trt_config.strongly_typed)
    if variant not in files:
        raise ConfigError(f"a TensorRT {trt_config.precision} plan is built from the {variant} ONNX file; export with --{variant}")
    key = plan_key(device_compute_capability(), trt_module.__version__)
    name = plan_filename(task, trt_config.precision, key)
    build_plan(stage / files[variant], stage / name, input_size=spec.crop, config=trt_config)
    return {key: name}
