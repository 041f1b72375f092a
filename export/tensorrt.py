"""TensorRT plans from the bundle's ONNX files (used only where ``tensorrt`` is importable).

A plan is specific to one GPU architecture and one TensorRT version, so the bundle stores
plans keyed by both: ``plan_key((8, 9), "10.3.0") == "sm89-trt10.3.0"``, file
``{model}.{precision}.{key}.plan``. The engine refuses a plan whose key is not its own.

TensorRT 10 vs 11:
  * 10.x builds "weakly typed" networks by default: an fp32 ONNX plus ``BuilderFlag.FP16``
    lets the builder pick fp16 kernels; the QDQ INT8 file plus ``BuilderFlag.INT8`` gives
    INT8. ``strongly_typed=True`` (10.x) instead takes precision from the file itself.
  * 11.x removed the precision flags: every network is strongly typed, so precision comes
    from the ONNX file - the fp16 file for fp16, the QDQ file for INT8.

The optimisation profile covers the dynamic batch axis (min / opt / max); a persistent
timing cache file makes rebuilds fast; the workspace memory pool is capped. ONNX parser
errors are raised with every message the parser gave (BundleError), never printed and
dropped.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from denarius.engine.errors import BackendUnavailable, BundleError, ConfigError

__all__ = [
    "TensorRTConfig",
    "PRECISIONS",
    "tensorrt_available",
    "require_tensorrt",
    "plan_key",
    "parse_plan_key",
    "plan_filename",
    "source_variant",
    "device_compute_capability",
    "build_plan",
]

logger = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8")
_VERSION = r"\d+(?:\.[0-9A-Za-z]+)*"
_MISSING = (
    "TensorRT is not available here (`import tensorrt` failed: {error}); install the gpu extra "
    "(pip install 'denarius[gpu]', NVIDIA driver + CUDA needed) on a machine with an NVIDIA GPU, "
    "or use the onnxruntime backends (ort-cpu, ort-cuda), which need no plan"
)


@dataclass(frozen=True)
class TensorRTConfig:
    """How plans are built.

    Attributes:
        precision: "fp32", "fp16" or "int8" (int8 needs the bundle's QDQ INT8 file).
        min_batch, opt_batch, max_batch: optimisation profile of the dynamic batch axis;
            1 <= min <= opt <= max.
        workspace_mib: cap of the builder's workspace memory pool, MiB.
        timing_cache: file that persists tactic timings across builds (None: no cache).
        strongly_typed: TensorRT 10 only; None = weak typing with precision flags (10.x)
            and strong typing (11.x, where it is the only mode).
    """

    precision: str = "fp16"
    min_batch: int = 1
    opt_batch: int = 8
    max_batch: int = 32
    workspace_mib: int = 2048
    timing_cache: Path | None = None
    strongly_typed: bool | None = None

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ConfigError(f"TensorRT precision {self.precision!r} is not one of {list(PRECISIONS)}")
        for name in ("min_batch", "opt_batch", "max_batch", "workspace_mib"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be an int >= 1, got {value!r}")
        if not self.min_batch <= self.opt_batch <= self.max_batch:
            raise ConfigError(
                f"the batch profile needs min <= opt <= max, got {self.min_batch} / {self.opt_batch} / {self.max_batch}"
            )
        if self.timing_cache is not None:
            object.__setattr__(self, "timing_cache", Path(self.timing_cache))


def tensorrt_available() -> bool:
    """True when ``import tensorrt`` works."""
    try:
        import tensorrt  # noqa: F401
    except Exception:  # noqa: BLE001 - ImportError, or a broken CUDA install raising OSError
        return False
    return True


def require_tensorrt():
    """The ``tensorrt`` module, or BackendUnavailable saying why not and what to do."""
    try:
        import tensorrt
    except Exception as exc:
        raise BackendUnavailable(_MISSING.format(error=f"{type(exc).__name__}: {exc}")) from exc
    return tensorrt


def plan_key(compute_capability: tuple[int, int], trt_version: str) -> str:
    """Bundle key of a plan: ``sm{major}{minor}-trt{version}``, e.g. ``sm90-trt10.3.0``."""
    major, minor = compute_capability
    if not (isinstance(major, int) and isinstance(minor, int) and major >= 1 and minor >= 0):
        raise ConfigError(f"compute capability must be two ints (major >= 1, minor >= 0), got {compute_capability!r}")
    version = str(trt_version).strip()
    # tensorrt.__version__ as is ("10.3.0", "10.0.1.post1"): the engine builds the same key.
    if not re.fullmatch(_VERSION, version):
        raise ConfigError(f"TensorRT version must look like '10.3.0', got {trt_version!r}")
    return f"sm{major}{minor}-trt{version}"


def parse_plan_key(key: str) -> tuple[tuple[int, int], str]:
    """Inverse of :func:`plan_key`: ``"sm89-trt10.3.0" -> ((8, 9), "10.3.0")``.

    Compute capability majors are single digits up to 9 and then two (10.0 = ``sm100``); the
    minor is always one digit, so the last digit of the ``sm`` number is the minor.
    """
    match = re.fullmatch(rf"sm(\d+)(\d)-trt({_VERSION})", key)
    if not match:
        raise ConfigError(f"{key!r} is not a plan key (expected e.g. 'sm89-trt10.3.0')")
    return (int(match.group(1)), int(match.group(2))), match.group(3)


def plan_filename(model: str, precision: str, key: str) -> str:
    """File name of a plan inside the bundle, e.g. ``emperor.fp16.sm89-trt10.3.0.plan``."""
    return f"{model}.{precision}.{key}.plan"


def _major(version: str) -> int:
    return int(str(version).split(".")[0])


def source_variant(precision: str, trt_version: str, *, strongly_typed: bool | None = None) -> str:
    """Which ONNX variant of the bundle a plan is built from.

    ``int8`` always needs the QDQ file. ``fp16`` needs the fp16 file when the network is
    strongly typed (TensorRT 11, or 10 with ``strongly_typed=True``); a weakly typed
    TensorRT 10 build takes the fp32 file and the FP16 flag.
    """
    if precision == "int8":
        return "int8"
    if precision == "fp16":
        strong = _major(trt_version) >= 11 or bool(strongly_typed)
        return "fp16" if strong else "fp32"
    return "fp32"


def device_compute_capability(device: int = 0) -> tuple[int, int]:
    """Compute capability of a CUDA device, via pycuda, torch or nvidia-smi (first that works).

    Raises:
        BackendUnavailable: no CUDA device can be queried.
    """
    try:
        import pycuda.driver as cuda

        cuda.init()
        return tuple(cuda.Device(device).compute_capability())  # type: ignore[return-value]
    except Exception:  # noqa: BLE001 - not installed, or no driver
        pass
    try:
        import torch

        if torch.cuda.is_available():
            return tuple(torch.cuda.get_device_capability(device))  # type: ignore[return-value]
    except Exception:  # noqa: BLE001
        pass
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=compute_cap", "--format=csv,noheader", f"--id={device}"],
            capture_output=True, text=True, timeout=20, check=True,
        ).stdout.strip()
        major, minor = out.splitlines()[0].split(".")
        return int(major), int(minor)
    except Exception as exc:
        raise BackendUnavailable(
            f"cannot find the compute capability of CUDA device {device} (pycuda, torch and nvidia-smi all failed: {exc}); "
            "TensorRT plans are built on the GPU they will run on"
        ) from exc


def _make_logger(trt):
    """A ``tensorrt.ILogger`` that forwards to ``logging`` and keeps the error messages."""

    class Forwarding(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity, msg):
            if severity in (trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR):
                self.errors.append(str(msg))
                logger.error("TensorRT: %s", msg)
            elif severity == trt.ILogger.Severity.WARNING:
                logger.warning("TensorRT: %s", msg)
            elif severity == trt.ILogger.Severity.INFO:
                logger.debug("TensorRT: %s", msg)

    return Forwarding()


def _parser_errors(parser) -> list[str]:
    messages = []
    for i in range(parser.num_errors):
        error = parser.get_error(i)
        parts = [str(error.desc())]
        node = error.node()
        if node is not None and node >= 0:
            where = f"node {node}"
            for attribute in ("node_name", "node_operator"):  # TensorRT >= 10 only
                getter = getattr(error, attribute, None)
                if getter is not None and getter():
                    where += f" {getter()}"
            parts.append(f"({where})")
        parts.append(f"[{error.code()}]")
        messages.append(" ".join(parts))
    return messages


def build_plan(
    onnx_path: str | Path,
    out_path: str | Path,
    *,
    input_size: int,
    config: TensorRTConfig = TensorRTConfig(),
    input_name: str = "image",
) -> Path:
    """Build and write a serialised TensorRT engine (plan) for one ONNX classifier.

    Args:
        onnx_path: the ONNX variant chosen by :func:`source_variant` for this TensorRT.
        out_path: plan file to write.
        input_size: S of the (N, 3, S, S) input; N ranges over the config's batch profile.
        config: precision, profile, workspace, timing cache.

    Returns:
        ``out_path``.

    Raises:
        BackendUnavailable: tensorrt is not importable.
        ConfigError: a precision flag this TensorRT does not have (e.g. weak typing on 11.x).
        BundleError: the ONNX parser failed (all its messages) or the build failed
            (TensorRT's logged errors).
    """
    trt = require_tensorrt()
    onnx_path, out_path = Path(onnx_path), Path(out_path)
    version = str(trt.__version__)
    major = _major(version)
    strong = major >= 11 or bool(config.strongly_typed)
    trt_logger = _make_logger(trt)
    builder = trt.Builder(trt_logger)

    flags = 0
    if strong and major < 11:
        flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
        if flag is None:
            raise ConfigError(f"TensorRT {version} has no strongly typed networks; build with strongly_typed=False")
        flags |= 1 << int(flag)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, trt_logger)
    if not parser.parse_from_file(str(onnx_path)):
        messages = _parser_errors(parser) or trt_logger.errors or ["the parser gave no message"]
        raise BundleError(f"TensorRT {version} cannot parse {onnx_path.name}: " + "; ".join(messages))

    builder_config = builder.create_builder_config()
    builder_config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, config.workspace_mib << 20)
    if not strong:  # TensorRT 10 weak typing: precision by builder flags
        if config.precision in ("fp16", "int8"):
            builder_config.set_flag(trt.BuilderFlag.FP16)
        if config.precision == "int8":
            builder_config.set_flag(trt.BuilderFlag.INT8)  # explicit quantisation from the QDQ file

    profile = builder.create_optimization_profile()
    shape = (3, input_size, input_size)
    profile.set_shape(input_name, (config.min_batch, *shape), (config.opt_batch, *shape), (config.max_batch, *shape))
    builder_config.add_optimization_profile(profile)

    cache_bytes = b""
    if config.timing_cache is not None and config.timing_cache.is_file():
        cache_bytes = config.timing_cache.read_bytes()
    timing_cache = builder_config.create_timing_cache(cache_bytes)
    if not builder_config.set_timing_cache(timing_cache, ignore_mismatch=False):
        logger.warning("TensorRT rejected the timing cache %s (other GPU/version?); starting a fresh one", config.timing_cache)
        builder_config.set_timing_cache(builder_config.create_timing_cache(b""), ignore_mismatch=False)

    logger.info(
        "building TensorRT %s plan for %s: %s, batch %d/%d/%d, workspace %d MiB, %s typing",
        version, onnx_path.name, config.precision, config.min_batch, config.opt_batch, config.max_batch,
        config.workspace_mib, "strong" if strong else "weak",
    )
    serialized = builder.build_serialized_network(network, builder_config)
    if serialized is None:
        detail = "; ".join(trt_logger.errors) or "no error was logged"
        raise BundleError(f"TensorRT {version} failed to build a plan from {onnx_path.name}: {detail}")

    if config.timing_cache is not None:
        config.timing_cache.parent.mkdir(parents=True, exist_ok=True)
        temporary = config.timing_cache.with_suffix(config.timing_cache.suffix + ".tmp")
        temporary.write_bytes(memoryview(builder_config.get_timing_cache().serialize()))
        os.replace(temporary, config.timing_cache)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_bytes(memoryview(serialized))
    logger.info("wrote %s (%.1f MiB)", out_path, out_path.stat().st_size / 2**20)
    return out_path
