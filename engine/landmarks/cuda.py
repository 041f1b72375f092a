"""pycuda launchers for engine/kernels/landmarks.cu; same methods as ``NumpyOps``.

pycuda is imported only when :class:`CudaOps` is built. The context is the device's
primary context (``pycuda.autoprimaryctx``), the one onnxruntime's CUDA provider and
TensorRT use, so buffers and kernels share it with them. Without pycuda or a GPU,
:func:`cuda_available` says False and callers keep :class:`~denarius.engine.landmarks.optimizer.NumpyOps`.

Inputs and outputs are host NumPy arrays (the optimiser's network calls take host arrays);
the kernels themselves are batched over masks and checked against the NumPy reference.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from denarius.engine.errors import BackendUnavailable, InputError
from denarius.engine.landmarks.regions import LabelRegions, Regions, WindowRegions

__all__ = ["KERNEL_SOURCE", "cuda_available", "CudaOps"]

logger = logging.getLogger(__name__)

KERNEL_SOURCE = Path(__file__).resolve().parents[1] / "kernels" / "landmarks.cu"
_BLOCK = 256  # threads per block; a power of two (block_sum needs it)
_MAX_GRID = 65535


def cuda_available() -> bool:
    """True when pycuda imports and a CUDA device can be used."""
    try:
        import pycuda.autoprimaryctx  # noqa: F401  (creates/retains the primary context)
        import pycuda.driver as drv

        return drv.Device.count() > 0
    except Exception:  # noqa: BLE001 - any failure means "no CUDA here"
        return False


def _grid(total: int) -> tuple[int, int, int]:
    return (max(1, min(_MAX_GRID, (int(total) + _BLOCK - 1) // _BLOCK)), 1, 1)


class CudaOps:
    """Mask composition, adjoint and projected update on the GPU.

    Raises:
        BackendUnavailable: pycuda is not installed or no CUDA device is visible.
    """

    name = "cuda"

    def __init__(self) -> None:
        try:
            import pycuda.autoprimaryctx  # noqa: F401
            import pycuda.gpuarray as gpuarray
            from pycuda.compiler import SourceModule
        except Exception as error:
            raise BackendUnavailable(f"CUDA landmark kernels need pycuda and a GPU ({error}); use the NumPy ops") from error
        self._gpu = gpuarray
        self._module = SourceModule(KERNEL_SOURCE.read_text(), no_extern_c=True, options=["-O3"])
        self._kernels = {
            name: self._module.get_function(name)
            for name in (
                "compose_windows", "compose_labels", "weighted_dot", "window_sums_rows", "window_sums_cols", "label_sums", "projected_step")
        }
        self._cache: dict[int, tuple] = {}

    # ---------------------------------------------------------------- helpers

    def _upload(self, array: np.ndarray, dtype) -> Any:  # a pycuda GPUArray (pycuda has no types)
        return self._gpu.to_gpu(np.ascontiguousarray(array, dtype=dtype))

    def _geometry(self, regions: Regions) -> tuple:
        """Device copies of the region arrays, cached per regions object."""
        key = id(regions)
        cached = self._cache.get(key)
        if cached is not None and cached[0] is regions:
            return cached[1]
        coverage = self._upload(regions.coverage, np.float32)
        arrays: tuple[Any, ...]
        if isinstance(regions, WindowRegions):
            arrays = (coverage, self._upload(regions.ys, np.int32), self._upload(regions.xs, np.int32))
        elif isinstance(regions, LabelRegions):
            order, offsets = regions.sorted_pixels()
            arrays = (coverage, self._upload(regions.labels, np.int32), self._upload(order, np.int32), self._upload(offsets, np.int32))
        else:
            raise InputError(f"unknown region type {type(regions).__name__}")
        if len(self._cache) > 8:
            self._cache.clear()
        self._cache[key] = (regions, arrays)
        return arrays

    @staticmethod
    def _images(regions: Regions, images: np.ndarray, batch: int) -> np.ndarray:
        images = np.asarray(images, np.float32)
        if images.shape[-3:] != (regions.height, regions.width, 3):
            raise InputError(f"images of shape {images.shape} do not match regions of size {(regions.height, regions.width)}")
        return np.ascontiguousarray(np.broadcast_to(images, (batch, regions.height, regions.width, 3)))

    # ---------------------------------------------------------------- operations

    def compose(self, regions: Regions, images: np.ndarray, x: np.ndarray) -> np.ndarray:
        """(B, H, W, 3) float32 f_I(x); see :func:`denarius.engine.landmarks.composition.compose`."""
        x = np.atleast_2d(np.asarray(x, np.float32))
        batch, height, width = x.shape[0], regions.height, regions.width
        if x.shape[1] != regions.count:
            raise InputError(f"masks must be (B, {regions.count}), got {x.shape}")
        images_gpu = self._upload(self._images(regions, images, batch), np.float32)
        x_gpu = self._upload(x, np.float32)
        out = self._gpu.empty((batch, height, width, 3), np.float32)
        geometry = self._geometry(regions)
        total = batch * height * width
        if isinstance(regions, WindowRegions):
            coverage, ys, xs = geometry
            ny, nx = regions.grid
            self._kernels["compose_windows"](
                images_gpu, x_gpu, coverage, ys, xs, np.int32(ny), np.int32(nx), np.int32(regions.size), np.int32(regions.stride),
                np.int32(batch), np.int32(height), np.int32(width), out, block=(_BLOCK, 1, 1), grid=_grid(total),
            )
        else:
            coverage, labels, _, _ = geometry
            self._kernels["compose_labels"](
                images_gpu, x_gpu, coverage, labels, np.int32(regions.count), np.int32(batch), np.int32(height), np.int32(width), out,
                block=(_BLOCK, 1, 1), grid=_grid(total),
            )
        return out.get()

    def adjoint(self, regions: Regions, images: np.ndarray, grad: np.ndarray) -> np.ndarray:
        """(B, K) float32 d loss / d x; see :func:`denarius.engine.landmarks.composition.adjoint`."""
        grad = np.asarray(grad, np.float32)
        if grad.ndim == 3:
            grad = grad[None]
        batch, height, width = grad.shape[0], regions.height, regions.width
        images_gpu = self._upload(self._images(regions, images, batch), np.float32)
        grad_gpu = self._upload(grad, np.float32)
        geometry = self._geometry(regions)
        coverage = geometry[0]
        h = self._gpu.empty((batch, height, width), np.float32)
        total = batch * height * width
        self._kernels["weighted_dot"](
            images_gpu, grad_gpu, coverage, np.int32(batch), np.int32(height), np.int32(width), h, block=(_BLOCK, 1, 1), grid=_grid(total)
        )
        out = self._gpu.empty((batch, regions.count), np.float32)
        if isinstance(regions, WindowRegions):
            _, ys, xs = geometry
            ny, nx = regions.grid
            rows = self._gpu.empty((batch, height, nx), np.float32)
            self._kernels["window_sums_rows"](
                h, xs, np.int32(nx), np.int32(regions.size), np.int32(batch), np.int32(height), np.int32(width), rows,
                block=(_BLOCK, 1, 1), grid=_grid(batch * height * nx),
            )
            self._kernels["window_sums_cols"](
                rows, ys, np.int32(ny), np.int32(nx), np.int32(regions.size), np.int32(batch), np.int32(height), out,
                block=(_BLOCK, 1, 1), grid=_grid(batch * ny * nx),
            )
        else:
            _, _, order, offsets = geometry
            self._kernels["label_sums"](
                h, order, offsets, np.int32(regions.count), np.int32(batch), np.int64(height * width), out,
                block=(_BLOCK, 1, 1), grid=(max(1, min(_MAX_GRID, batch * regions.count)), 1, 1),
            )
        return out.get()

    def projected_step(self, x: np.ndarray, grad: np.ndarray, feasible: np.ndarray, *, lam: float, eta: np.ndarray) -> np.ndarray:
        """Fused update; see :meth:`denarius.engine.landmarks.optimizer.NumpyOps.projected_step`."""
        x_gpu = self._upload(x, np.float32)
        batch, regions = x_gpu.shape
        grad_gpu = self._upload(grad, np.float32)
        feasible_gpu = self._upload(np.asarray(feasible, bool).astype(np.int32), np.int32)
        eta_gpu = self._upload(np.broadcast_to(np.asarray(eta, np.float32), (batch,)), np.float32)
        self._kernels["projected_step"](
            x_gpu, grad_gpu, feasible_gpu, eta_gpu, np.float32(lam), np.int32(batch), np.int32(regions),
            block=(_BLOCK, 1, 1), grid=(max(1, min(_MAX_GRID, batch)), 1, 1),
        )
        return x_gpu.get()
