#!/usr/bin/env bash
# The landmark kernels' GPU check, on a machine with a CUDA GPU and nvcc but no package
# registry. Run it from the repository root:
#
#   tools/gpu_check.sh [CARRY_DIR] [OUT_DIR]
#
# CARRY_DIR (default .gpu_carry) holds pycuda's source archive and the wheels it needs,
# fetched where a registry is reachable, e.g. `../shared/tools/offline-pycuda.sh .gpu_carry 3.12`.
# OUT_DIR defaults to $OUT, else ./gpu_check. Each step writes OUT_DIR/<step>.log:
#   environment    nvidia-smi, nvcc, numpy / OpenCV / onnxruntime versions and providers
#   pycuda_build   pycuda built from its sdist into /tmp/site (needs setuptools, wheel, numpy),
#                  without CURAND (the kernels do not use it) and linked against the
#                  driver's libcuda.so.1 when the toolkit has no libcuda.so to link with
#   kernel_check   python -m denarius.apps.cli kernel-check --require-cuda: CUDA kernels vs
#                  NumPy for windows 11/21 and superpixels, errors and timings
#                  (OUT_DIR/kernel_check.json)
#   gpu_tests      pytest -m gpu: CudaOps vs NumPy, the GPU backends
#   landmark_gpu   pytest -m gpu tests/engine/test_landmark_service.py: the landmark service on
#                  ort-cuda, its gradient graph on CUDA vs ort-cpu (<= 1e-4 relative per output),
#                  CudaOps chosen for the masking; the bundle is CARRY_DIR/bundle when present
#                  (a host without PyTorch cannot build the tests' tiny bundle), else the tiny one
# Every step runs even after a failure; the exit status is the first failing step's.
set -uo pipefail
carry=${1:-.gpu_carry}
out=${2:-${OUT:-gpu_check}}
mkdir -p "$out"
export PATH="/usr/local/cuda/bin:$PATH" PYTHONUNBUFFERED=1
status=0

step() {
    local name=$1
    shift
    echo "== $name"
    if "$@" >"$out/$name.log" 2>&1; then
        echo "   ok"
    else
        local code=$?
        echo "   FAILED (exit $code): $out/$name.log ends with"
        tail -n 15 "$out/$name.log" | sed 's/^/   | /'
        if [ "$status" -eq 0 ]; then status=$code; fi
    fi
}

build_pycuda() {
    # pycuda's build reads ~/.aksetup-defaults.py: no CURAND; a folder with libcuda.so for the
    # linker. HOME points at a scratch folder, so the caller's own defaults stay untouched.
    local libdir=/tmp/pycuda-libcuda home=/tmp/pycuda-home driver
    if ! ls "$carry"/pycuda-*.tar.gz >/dev/null 2>&1; then
        echo "no pycuda-*.tar.gz in $carry: prepare that folder where a package registry is reachable," \
            "with ../shared/tools/offline-pycuda.sh $carry 3.12"
        return 3
    fi
    mkdir -p "$libdir" "$home"
    driver=$(ldconfig -p | awk '/libcuda\.so\.1 /{print $NF; exit}')
    if [ -n "$driver" ]; then ln -sf "$driver" "$libdir/libcuda.so"; fi
    printf 'CUDA_ENABLE_CURAND = False\nCUDADRV_LIB_DIR = ["%s", "/usr/local/cuda/lib64/stubs", "/usr/local/cuda/lib64"]\n' \
        "$libdir" >"$home/.aksetup-defaults.py"
    echo "libcuda for the linker: ${driver:-none found by ldconfig}"
    HOME=$home python3 -m pip install --no-cache-dir --no-build-isolation --no-index --no-deps --target /tmp/site \
        "$carry"/*.whl "$carry"/pycuda-*.tar.gz
}

step environment bash -c 'nvidia-smi && nvcc --version && python3 -c "
import numpy, cv2, onnxruntime
print(\"numpy\", numpy.__version__, \"opencv\", cv2.__version__, \"onnxruntime\", onnxruntime.__version__)
print(\"providers\", onnxruntime.get_available_providers())"'
step pycuda_build build_pycuda
# The checkout seen as the installed namespace (denarius.engine = ./engine, ...) without pip:
# a folder of symbolic links, the layout the wheel installs (tools/namespace_view.py).
namespace=/tmp/denarius-namespace
python3 tools/namespace_view.py "$namespace" >/dev/null
export PYTHONPATH="/tmp/site:$namespace:$PWD${PYTHONPATH:+:$PYTHONPATH}"
step kernel_check python3 -m denarius.apps.cli kernel-check --out "$out" --require-cuda
step gpu_tests python3 -m pytest -q -p no:cacheprovider -m gpu tests/engine/test_kernels.py tests/engine/test_backends.py
landmark_gpu() {
    if [ -d "$carry/bundle" ]; then export DENARIUS_GPU_BUNDLE="$carry/bundle"; fi
    echo "bundle: ${DENARIUS_GPU_BUNDLE:-the tiny test bundle}"
    python3 -m pytest -q -p no:cacheprovider -m gpu -rs -s tests/engine/test_landmark_service.py
}
step landmark_gpu landmark_gpu
cat "$out/kernel_check.log"
exit "$status"
