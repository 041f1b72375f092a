"""CUDA landmark kernels (engine/kernels/landmarks.cu).

Three levels, each skipped with a reason when its tool is missing:
1. ``nvcc --ptx`` compiles the file (CI has nvcc, no GPU).
2. The same source compiled as C++ by g++ under a tiny CUDA emulation (one std::thread per
   CUDA thread, a std::barrier for __syncthreads) and run on CPU: the kernels' indexing,
   bounds and reductions are checked against the NumPy reference without a GPU.
3. On a machine with pycuda and a GPU, CudaOps against NumPy.
"""

from __future__ import annotations

import ctypes
import json
import shutil
import subprocess

import numpy as np
import pytest

from denarius.engine.landmarks import composition
from denarius.engine.landmarks.cuda import KERNEL_SOURCE
from denarius.engine.landmarks.optimizer import NumpyOps
from denarius.engine.landmarks.regions import LabelRegions, window_regions

RTOL = 1e-5


def test_kernels_compile_with_nvcc(tmp_path):
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc not on PATH")
    out = tmp_path / "landmarks.ptx"
    result = subprocess.run([nvcc, "--ptx", "-arch=sm_80", "-o", str(out), str(KERNEL_SOURCE)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    ptx = out.read_text()
    for name in (
        "compose_windows", "compose_labels", "weighted_dot", "window_sums_rows", "window_sums_cols", "label_sums", "projected_step",
    ):
        assert f".entry {name}(" in ptx


EMULATION = r"""
#include <algorithm>
#include <barrier>
#include <cmath>
#include <thread>
#include <vector>
struct dim3 { unsigned x = 1, y = 1, z = 1; };
static thread_local dim3 threadIdx, blockIdx;
static dim3 blockDim, gridDim;
static std::barrier<>* emu_barrier = nullptr;
#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
#define __restrict__
inline void __syncthreads() { emu_barrier->arrive_and_wait(); }
using std::max;
using std::min;
template <typename Kernel, typename... Args>
void emu_launch(unsigned grid, unsigned block, Kernel kernel, Args... args) {
    gridDim.x = grid;
    blockDim.x = block;
    for (unsigned b = 0; b < grid; ++b) {  // blocks one after another: __shared__ = static is safe
        std::barrier<> barrier(block);
        emu_barrier = &barrier;
        std::vector<std::thread> threads;
        for (unsigned t = 0; t < block; ++t)
            threads.emplace_back([=] { blockIdx.x = b; threadIdx.x = t; kernel(args...); });
        for (auto& thread : threads) thread.join();
    }
}
"""

WRAPPERS = r"""
#include "landmarks.cu"
#define U unsigned
extern "C" {
void run_compose_windows(U g, U b, const float* im, const float* x, const float* cov, const int* ys, const int* xs,
                         int ny, int nx, int size, int stride, int batch, int h, int w, float* out) {
    emu_launch(g, b, compose_windows, im, x, cov, ys, xs, ny, nx, size, stride, batch, h, w, out);
}
void run_compose_labels(U g, U b, const float* im, const float* x, const float* cov, const int* labels, int k,
                        int batch, int h, int w, float* out) {
    emu_launch(g, b, compose_labels, im, x, cov, labels, k, batch, h, w, out);
}
void run_weighted_dot(U g, U b, const float* im, const float* grad, const float* cov, int batch, int h, int w, float* out) {
    emu_launch(g, b, weighted_dot, im, grad, cov, batch, h, w, out);
}
void run_window_sums_rows(U g, U b, const float* hh, const int* xs, int nx, int size, int batch, int h, int w, float* rows) {
    emu_launch(g, b, window_sums_rows, hh, xs, nx, size, batch, h, w, rows);
}
void run_window_sums_cols(U g, U b, const float* rows, const int* ys, int ny, int nx, int size, int batch, int h, float* out) {
    emu_launch(g, b, window_sums_cols, rows, ys, ny, nx, size, batch, h, out);
}
void run_label_sums(U g, U b, const float* hh, const int* order, const int* offsets, int k, int batch, long long pixels, float* out) {
    emu_launch(g, b, label_sums, hh, order, offsets, k, batch, pixels, out);
}
void run_projected_step(U g, U b, float* x, const float* grad, const int* feasible, const float* eta, float lam, int batch, int k) {
    emu_launch(g, b, projected_step, x, grad, feasible, eta, lam, batch, k);
}
}
"""


@pytest.fixture(scope="module")
def emulated(tmp_path_factory):
    gxx = shutil.which("g++")
    if gxx is None:
        pytest.skip("g++ not on PATH (needed to run the kernels under CPU emulation)")
    root = tmp_path_factory.mktemp("cuda_emu")
    (root / "emu.h").write_text(EMULATION)
    (root / "landmarks.cu").write_text(KERNEL_SOURCE.read_text())
    (root / "wrappers.cpp").write_text(WRAPPERS)
    library = root / "libemu.so"
    result = subprocess.run(
        [gxx, "-std=c++20", "-O1", "-shared", "-fPIC", "-pthread", "-include", str(root / "emu.h"),
         "-o", str(library), str(root / "wrappers.cpp")],
        capture_output=True, text=True, timeout=180,
    )
    if result.returncode != 0 and "barrier" in result.stderr:
        pytest.skip(f"g++ lacks C++20 <barrier>: {result.stderr[:200]}")
    assert result.returncode == 0, result.stderr
    return ctypes.CDLL(str(library))


def _ptr(array: np.ndarray):
    return array.ctypes.data_as(ctypes.c_void_p)


class EmulatedOps:
    """CudaOps' launch sequence, run by the CPU emulation (small grids exercise grid-stride)."""

    def __init__(self, lib, grid=3, block=32):
        self.lib, self.grid, self.block = lib, grid, block

    def compose(self, regions, images, x):
        x = np.ascontiguousarray(np.atleast_2d(x), np.float32)
        batch, h, w = x.shape[0], regions.height, regions.width
        images = np.ascontiguousarray(np.broadcast_to(np.asarray(images, np.float32), (batch, h, w, 3)))
        cov = np.ascontiguousarray(regions.coverage, np.float32)
        out = np.full((batch, h, w, 3), np.nan, np.float32)
        if hasattr(regions, "ys"):
            ys, xs = (np.ascontiguousarray(a, np.int32) for a in (regions.ys, regions.xs))
            ny, nx = regions.grid
            self.lib.run_compose_windows(self.grid, self.block, _ptr(images), _ptr(x), _ptr(cov), _ptr(ys), _ptr(xs),
                                         ny, nx, regions.size, regions.stride, batch, h, w, _ptr(out))
        else:
            labels = np.ascontiguousarray(regions.labels, np.int32)
            self.lib.run_compose_labels(
                self.grid, self.block, _ptr(images), _ptr(x), _ptr(cov), _ptr(labels), regions.count, batch, h, w, _ptr(out))
        return out

    def adjoint(self, regions, images, grad):
        grad = np.ascontiguousarray(grad, np.float32)
        batch, h, w = grad.shape[0], regions.height, regions.width
        images = np.ascontiguousarray(np.broadcast_to(np.asarray(images, np.float32), (batch, h, w, 3)))
        cov = np.ascontiguousarray(regions.coverage, np.float32)
        hh = np.full((batch, h, w), np.nan, np.float32)
        self.lib.run_weighted_dot(self.grid, self.block, _ptr(images), _ptr(grad), _ptr(cov), batch, h, w, _ptr(hh))
        out = np.full((batch, regions.count), np.nan, np.float32)
        if hasattr(regions, "ys"):
            ys, xs = (np.ascontiguousarray(a, np.int32) for a in (regions.ys, regions.xs))
            ny, nx = regions.grid
            rows = np.full((batch, h, nx), np.nan, np.float32)
            self.lib.run_window_sums_rows(self.grid, self.block, _ptr(hh), _ptr(xs), nx, regions.size, batch, h, w, _ptr(rows))
            self.lib.run_window_sums_cols(self.grid, self.block, _ptr(rows), _ptr(ys), ny, nx, regions.size, batch, h, _ptr(out))
        else:
            order, offsets = regions.sorted_pixels()
            self.lib.run_label_sums(self.grid, self.block, _ptr(hh), _ptr(order), _ptr(offsets), regions.count, batch,
                                    ctypes.c_longlong(h * w), _ptr(out))
        return out

    def projected_step(self, x, grad, feasible, *, lam, eta):
        x = np.array(x, np.float32, order="C")
        grad = np.ascontiguousarray(grad, np.float32)
        feasible = np.ascontiguousarray(np.asarray(feasible, bool).astype(np.int32))
        eta = np.ascontiguousarray(np.broadcast_to(np.asarray(eta, np.float32), (x.shape[0],)))
        self.lib.run_projected_step(self.grid, self.block, _ptr(x), _ptr(grad), _ptr(feasible), _ptr(eta),
                                    ctypes.c_float(lam), x.shape[0], x.shape[1])
        return x


def _regions_cases(rng):
    labels = rng.integers(0, 7, size=(19, 23)).astype(np.int32)
    labels[0, 0] = 6  # make sure the last label occurs
    return {
        "windows-5-3": window_regions(19, 23, size=5, stride=3),  # last stride partial on both axes
        "windows-11-3": window_regions(24, 24, size=11, stride=3),
        "windows-4-4": window_regions(16, 20, size=4, stride=4),  # exact tiling
        "labels": LabelRegions(labels, 8),  # label 7 empty
    }


@pytest.mark.parametrize("case", ["windows-5-3", "windows-11-3", "windows-4-4", "labels"])
def test_emulated_kernels_match_numpy(emulated, case):
    rng = np.random.default_rng(1)
    regions = _regions_cases(rng)[case]
    ops = EmulatedOps(emulated)
    batch = 2
    images = rng.uniform(0, 255, (batch, regions.height, regions.width, 3)).astype(np.float32)
    x = rng.random((batch, regions.count)).astype(np.float32)
    grad = rng.standard_normal((batch, regions.height, regions.width, 3)).astype(np.float32)

    expected = NumpyOps.compose(regions, images, x)
    got = ops.compose(regions, images, x)
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=RTOL * np.abs(expected).max())

    expected = NumpyOps.adjoint(regions, images, grad)
    got = ops.adjoint(regions, images, grad)
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=RTOL * np.abs(expected).max())

    g = rng.standard_normal((batch, regions.count)).astype(np.float32)
    feasible = np.array([True, False])
    eta = np.array([0.1, 0.05], np.float32)
    expected = NumpyOps.projected_step(x, g, feasible, lam=1.0, eta=eta)
    got = ops.projected_step(x, g, feasible, lam=1.0, eta=eta)
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=1e-6)


def test_emulated_projected_step_zero_direction_leaves_mask(emulated):
    ops = EmulatedOps(emulated, grid=1, block=64)
    x = np.full((1, 100), 0.3, np.float32)
    out = ops.projected_step(x, np.zeros((1, 100), np.float32), np.array([False]), lam=1.0, eta=np.array([0.5], np.float32))
    np.testing.assert_array_equal(out, x)


@pytest.mark.gpu
@pytest.mark.parametrize("case", ["windows-11", "windows-21", "superpixels"])
def test_cuda_ops_match_numpy(case):
    from denarius.engine.landmarks.cuda import CudaOps, cuda_available
    from denarius.engine.landmarks.regions import superpixel_regions

    if not cuda_available():
        pytest.skip("needs pycuda and a CUDA device")
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
    if case == "superpixels":
        regions = superpixel_regions(image, segments=100)
    else:
        regions = window_regions(224, 224, size=int(case.split("-")[1]), stride=3)
    ops = CudaOps()
    batch = 4
    x = rng.random((batch, regions.count)).astype(np.float32)
    grad = rng.standard_normal((batch, 224, 224, 3)).astype(np.float32)
    expected = composition.compose(regions, image, x)
    np.testing.assert_allclose(ops.compose(regions, image, x), expected, rtol=RTOL, atol=RTOL * np.abs(expected).max())
    expected = composition.adjoint(regions, image, grad)
    np.testing.assert_allclose(ops.adjoint(regions, image, grad), expected, rtol=RTOL, atol=RTOL * np.abs(expected).max())


def test_gpu_check_script_runs_every_step_and_keeps_the_logs(tmp_path):
    """tools/gpu_check.sh on a machine without a GPU: each step runs and leaves its log."""
    import os
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    carry, out = tmp_path / "carry", tmp_path / "out"
    carry.mkdir()
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    done = subprocess.run(["bash", str(root / "tools" / "gpu_check.sh"), str(carry), str(out)], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)
    if shutil.which("nvidia-smi") is None:
        assert done.returncode != 0 and "== environment\n   FAILED" in done.stdout
    for step in ("environment", "pycuda_build", "kernel_check", "gpu_tests", "landmark_gpu"):
        assert f"== {step}" in done.stdout and (out / f"{step}.log").is_file()
    assert "no pycuda-*.tar.gz in" in (out / "pycuda_build.log").read_text()  # says how to prepare the folder
    result = json.loads((out / "kernel_check.json").read_text())
    assert set(result["cases"]) == {"windows-11", "windows-21", "superpixels"}
