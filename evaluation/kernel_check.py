"""The GPU check of the landmark kernels: CUDA against the NumPy reference, and their speed.

Command line: ``denarius kernel-check [--out DIR] [--size 224] [--batch 8] [--repeats 20] [--require-cuda]``
(``python -m denarius.apps.cli kernel-check ...`` is the same; tools/gpu_check.sh runs it from
a checkout that is not installed).

Cases: 11x11 and 21x21 windows (stride 3) and SLIC superpixels (about 100) of a coin
photograph (``skimage.data.coins()``, resized), at ``size`` px. For each case, random masks
x (B, K), images in [0, 255] (B, H, W, 3) and pixel gradients (B, H, W, 3) go through
:class:`~denarius.engine.landmarks.optimizer.NumpyOps` and :class:`~denarius.engine.landmarks.cuda.CudaOps`:
``compose``, ``adjoint`` and ``projected_step``.

- error: max |cuda - numpy| / max |numpy| per operation; the check fails above 1e-5.
- time: median wall time per call over ``repeats`` calls after one warm-up, host arrays in
  and out (as the optimiser calls them, so transfers are included), and the ratio
  numpy / cuda.

Without pycuda or a CUDA device the NumPy half still runs and ``cuda`` says why it was
skipped. ``tools/gpu_check.sh`` runs the check on a GPU machine after building pycuda.
"""

from __future__ import annotations

import platform
import time

import numpy as np

from denarius.engine.landmarks.api import single_threaded_blas
from denarius.engine.landmarks.optimizer import NumpyOps
from denarius.engine.landmarks.regions import Regions, superpixel_regions, window_regions

__all__ = ["TOLERANCE", "OPERATIONS", "cases", "run_check", "table"]

TOLERANCE = 1e-5  # max |cuda - numpy| relative to max |numpy|
OPERATIONS = ("compose", "adjoint", "projected_step")


def coin_image(size: int) -> np.ndarray:
    """(size, size, 3) uint8: the centre square of scikit-image's coins photograph, as RGB."""
    import cv2
    from skimage import data

    grey = data.coins()
    side = min(grey.shape)
    top, left = (grey.shape[0] - side) // 2, (grey.shape[1] - side) // 2
    square = cv2.resize(grey[top : top + side, left : left + side], (size, size), interpolation=cv2.INTER_AREA)
    return np.repeat(square[..., None], 3, axis=-1)


def cases(size: int) -> dict[str, Regions]:
    """The regions the check runs on: windows 11 and 21 (stride 3), about 100 superpixels."""
    return {
        "windows-11": window_regions(size, size, size=11, stride=3),
        "windows-21": window_regions(size, size, size=21, stride=3),
        "superpixels": superpixel_regions(coin_image(size), segments=100),
    }


def _inputs(regions: Regions, batch: int, rng: np.random.Generator) -> dict:
    shape = (batch, regions.height, regions.width, 3)
    return {
        "images": rng.uniform(0, 255, shape).astype(np.float32),
        "x": rng.random((batch, regions.count)).astype(np.float32),
        "grad": rng.standard_normal(shape).astype(np.float32),
        "step_grad": rng.standard_normal((batch, regions.count)).astype(np.float32),
        "feasible": np.arange(batch) % 2 == 0,
        "eta": np.full(batch, 0.1, np.float32),
    }


def _call(ops, operation: str, regions: Regions, inputs: dict) -> np.ndarray:
    if operation == "compose":
        return ops.compose(regions, inputs["images"], inputs["x"])
    if operation == "adjoint":
        return ops.adjoint(regions, inputs["images"], inputs["grad"])
    return ops.projected_step(inputs["x"], inputs["step_grad"], inputs["feasible"], lam=1.0, eta=inputs["eta"])


def _median_ms(function, repeats: int) -> float:
    function()  # warm-up: compilation, caches, first transfers
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return round(1000.0 * float(np.median(times)), 4)


def run_check(*, size: int = 224, batch: int = 8, repeats: int = 20, seed: int = 0) -> dict:
    """Compare and time NumPy and (when available) CUDA masking operations.

    Returns:
        ``{"config", "machine", "cuda": {"available", "skipped"?}, "cases": {case:
        {"regions": K, operation: {"numpy_ms", "cuda_ms"?, "numpy_vs_cuda"?, "max_relative_error"?}}},
        "passed": bool | None}`` (None: CUDA did not run).
    """
    from denarius.engine.landmarks.cuda import CudaOps, cuda_available

    rng = np.random.default_rng(seed)
    cuda = None
    result: dict = {
        "config": {"size": size, "batch": batch, "repeats": repeats, "seed": seed, "tolerance": TOLERANCE},
        "machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version()},
        "cuda": {"available": cuda_available()},
        "cases": {},
    }
    if result["cuda"]["available"]:
        cuda = CudaOps()
        import pycuda.driver as drv

        result["machine"]["gpu"] = drv.Device(0).name()
    else:
        result["cuda"]["skipped"] = "pycuda is not installed or no CUDA device is visible"
    errors = []
    with single_threaded_blas():  # as the optimiser runs NumPy
        for case, regions in cases(size).items():
            inputs = _inputs(regions, batch, rng)
            row: dict = {"regions": regions.count}
            for operation in OPERATIONS:
                expected = _call(NumpyOps, operation, regions, inputs)
                entry = {"numpy_ms": _median_ms(lambda op=operation, r=regions, x=inputs: _call(NumpyOps, op, r, x), repeats)}
                if cuda is not None:
                    got = _call(cuda, operation, regions, inputs)
                    scale = max(float(np.abs(expected).max()), 1e-30)
                    entry["max_relative_error"] = float(np.abs(got - expected).max()) / scale
                    entry["cuda_ms"] = _median_ms(lambda op=operation, r=regions, x=inputs: _call(cuda, op, r, x), repeats)
                    entry["numpy_vs_cuda"] = round(entry["numpy_ms"] / max(entry["cuda_ms"], 1e-9), 2)
                    errors.append(entry["max_relative_error"])
                row[operation] = entry
            result["cases"][case] = row
    result["passed"] = None if cuda is None else bool(max(errors) <= TOLERANCE)
    return result


def table(result: dict) -> str:
    """A Markdown table of one check."""
    lines = [
        f"landmark kernels at {result['config']['size']} px, {result['config']['batch']} masks, "
        f"median of {result['config']['repeats']} calls; GPU: {result['machine'].get('gpu', 'none')}",
        "",
        "| case | K | operation | NumPy ms | CUDA ms | NumPy / CUDA | max relative error |",
        "|---|---|---|---|---|---|---|",
    ]
    for case, row in result["cases"].items():
        for operation in OPERATIONS:
            e = row[operation]
            lines.append(
                f"| {case} | {row['regions']} | {operation} | {e['numpy_ms']} | {e.get('cuda_ms', '-')} | "
                f"{e.get('numpy_vs_cuda', '-')} | {e.get('max_relative_error', '-')} |"
            )
    if "skipped" in result["cuda"]:
        lines += ["", f"CUDA skipped: {result['cuda']['skipped']}"]
    else:
        verdict = "PASSED: every error is" if result["passed"] else "FAILED: some error is not"
        lines += ["", f"{verdict} <= {TOLERANCE}"]
    return "\n".join(lines) + "\n"
