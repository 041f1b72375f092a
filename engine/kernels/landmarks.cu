// Mask composition, its adjoint and the fused projected update of the landmark optimiser,
// batched over B masks. The NumPy code in engine/landmarks/composition.py is the reference
// (tests/engine/test_kernels.py compares them); engine/landmarks/cuda.py launches these
// through pycuda.
//
// Layouts (all contiguous, row-major, float32 unless noted):
//   images   (B, H, W, 3)  crops in [0, 255], one per mask
//   x        (B, K)        masks; windows: k = j * nx + i (row j of ys, column i of xs)
//   coverage (H, W)        C = 1 / #regions covering the pixel, 0 where none
//   ys (ny), xs (nx)       int32 window starts (sorted; last one flush with the edge)
//   labels   (H, W)        int32 region of each pixel, in [0, K)
//   order (H*W), offsets (K+1)  int32 pixels grouped by label (CSR)
//
// Every kernel uses a grid-stride loop, so any grid size is correct; 64-bit indices
// guard against B * H * W * 3 overflowing int. Accumulation is in float (the reference
// uses float64; tests allow 1e-5 relative).

#define GRID_STRIDE(index, total) \
    for (long long index = (long long)blockIdx.x * blockDim.x + threadIdx.x; index < (total); \
         index += (long long)blockDim.x * gridDim.x)

// First window along an axis that can cover pixel p: the smallest regular index j with
// j * stride >= p - size + 1, clamped to the last window (which may be off the stride grid).
__device__ __forceinline__ int first_window(int p, int size, int stride, int n) {
    int lowest = p - size + 1;
    int j = lowest <= 0 ? 0 : (lowest + stride - 1) / stride;
    return j < n - 1 ? j : n - 1;
}

// Per-pixel mask weight m = C * sum of x over the windows covering the pixel.
__device__ __forceinline__ float window_weight(const float* __restrict__ xb, const int* __restrict__ ys,
                                               const int* __restrict__ xs, int ny, int nx, int size, int stride,
                                               int p, int q) {
    float acc = 0.0f;
    for (int j = first_window(p, size, stride, ny); j < ny && ys[j] <= p; ++j) {
        if (ys[j] + size <= p) continue;
        const float* row = xb + (long long)j * nx;
        for (int i = first_window(q, size, stride, nx); i < nx && xs[i] <= q; ++i) {
            if (xs[i] + size <= q) continue;
            acc += row[i];
        }
    }
    return acc;
}

// out[b, p, q, c] = images[b, p, q, c] * C[p, q] * sum_{windows k covering (p, q)} x[b, k]
extern "C" __global__ void compose_windows(const float* __restrict__ images, const float* __restrict__ x,
                                           const float* __restrict__ coverage, const int* __restrict__ ys,
                                           const int* __restrict__ xs, int ny, int nx, int size, int stride,
                                           int batch, int height, int width, float* __restrict__ out) {
    const long long pixels = (long long)height * width;
    GRID_STRIDE(index, (long long)batch * pixels) {
        const int b = (int)(index / pixels);
        const long long pixel = index - (long long)b * pixels;
        const int p = (int)(pixel / width);
        const int q = (int)(pixel - (long long)p * width);
        const float* xb = x + (long long)b * ny * nx;
        const float m = coverage[pixel] * window_weight(xb, ys, xs, ny, nx, size, stride, p, q);
        const float* src = images + index * 3;
        float* dst = out + index * 3;
        dst[0] = src[0] * m;
        dst[1] = src[1] * m;
        dst[2] = src[2] * m;
    }
}

// out[b, p, q, c] = images[b, p, q, c] * C[p, q] * x[b, labels[p, q]]
extern "C" __global__ void compose_labels(const float* __restrict__ images, const float* __restrict__ x,
                                          const float* __restrict__ coverage, const int* __restrict__ labels,
                                          int regions, int batch, int height, int width, float* __restrict__ out) {
    const long long pixels = (long long)height * width;
    GRID_STRIDE(index, (long long)batch * pixels) {
        const int b = (int)(index / pixels);
        const long long pixel = index - (long long)b * pixels;
        const int label = labels[pixel];
        const float value = (label >= 0 && label < regions) ? x[(long long)b * regions + label] : 0.0f;
        const float m = coverage[pixel] * value;
        const float* src = images + index * 3;
        float* dst = out + index * 3;
        dst[0] = src[0] * m;
        dst[1] = src[1] * m;
        dst[2] = src[2] * m;
    }
}

// First step of every adjoint: h[b, p, q] = C[p, q] * sum_c images[b, p, q, c] * grad[b, p, q, c]
extern "C" __global__ void weighted_dot(const float* __restrict__ images, const float* __restrict__ grad,
                                        const float* __restrict__ coverage, int batch, int height, int width,
                                        float* __restrict__ h) {
    const long long pixels = (long long)height * width;
    GRID_STRIDE(index, (long long)batch * pixels) {
        const long long pixel = index % pixels;
        const float* a = images + index * 3;
        const float* g = grad + index * 3;
        h[index] = coverage[pixel] * (a[0] * g[0] + a[1] * g[1] + a[2] * g[2]);
    }
}

// Windows adjoint, separable pass 1: rows[b, p, i] = sum_{q in [xs[i], xs[i] + size)} h[b, p, q]
extern "C" __global__ void window_sums_rows(const float* __restrict__ h, const int* __restrict__ xs, int nx,
                                            int size, int batch, int height, int width,
                                            float* __restrict__ rows) {
    GRID_STRIDE(index, (long long)batch * height * nx) {
        const int i = (int)(index % nx);
        const long long bp = index / nx;  // b * height + p
        const float* line = h + bp * width;
        const int start = xs[i];
        const int stop = min(start + size, width);
        float acc = 0.0f;
        for (int q = max(start, 0); q < stop; ++q) acc += line[q];
        rows[index] = acc;
    }
}

// Windows adjoint, separable pass 2: out[b, j, i] = sum_{p in [ys[j], ys[j] + size)} rows[b, p, i]
extern "C" __global__ void window_sums_cols(const float* __restrict__ rows, const int* __restrict__ ys, int ny,
                                            int nx, int size, int batch, int height,
                                            float* __restrict__ out) {
    GRID_STRIDE(index, (long long)batch * ny * nx) {
        const int i = (int)(index % nx);
        const long long bj = index / nx;
        const int j = (int)(bj % ny);
        const int b = (int)(bj / ny);
        const float* column = rows + (long long)b * height * nx + i;
        const int start = ys[j];
        const int stop = min(start + size, height);
        float acc = 0.0f;
        for (int p = max(start, 0); p < stop; ++p) acc += column[(long long)p * nx];
        out[index] = acc;
    }
}

// Sum of a block's values; blockDim.x must be a power of two <= 1024. All threads of the
// block must call it (it synchronises); every thread gets the total.
__device__ float block_sum(float value, float* shared) {
    const unsigned tid = threadIdx.x;
    shared[tid] = value;
    __syncthreads();
    for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
        if (tid < s) shared[tid] += shared[tid + s];
        __syncthreads();
    }
    const float total = shared[0];
    __syncthreads();  // shared may be reused right after
    return total;
}

// Label adjoint: out[b, k] = sum over pixels of region k of h[b, pixel]. One block per (b, k)
// (grid-stride over blocks), threads stride over the region's pixels: no atomics, and the
// same order every run.
extern "C" __global__ void label_sums(const float* __restrict__ h, const int* __restrict__ order,
                                      const int* __restrict__ offsets, int regions, int batch, long long pixels,
                                      float* __restrict__ out) {
    __shared__ float shared[1024];
    for (long long row = blockIdx.x; row < (long long)batch * regions; row += gridDim.x) {
        const int b = (int)(row / regions);
        const int k = (int)(row - (long long)b * regions);
        const float* hb = h + (long long)b * pixels;
        float acc = 0.0f;
        for (int n = offsets[k] + threadIdx.x; n < offsets[k + 1]; n += blockDim.x) acc += hb[order[n]];
        const float total = block_sum(acc, shared);
        if (threadIdx.x == 0) out[row] = total;
    }
}

// Fused projected update, one block per mask row (grid-stride over rows):
//   d = grad + lam * feasible[b];  x <- clamp(x - eta[b] * d / rms(d), 0, 1)
// rms(d) = sqrt(mean_k d_k^2); a row with d == 0 is left unchanged.
extern "C" __global__ void projected_step(float* __restrict__ x, const float* __restrict__ grad,
                                          const int* __restrict__ feasible, const float* __restrict__ eta,
                                          float lam, int batch, int regions) {
    __shared__ float shared[1024];
    for (int b = blockIdx.x; b < batch; b += gridDim.x) {
        const float shift = feasible[b] ? lam : 0.0f;
        const float* gb = grad + (long long)b * regions;
        float* xb = x + (long long)b * regions;
        float acc = 0.0f;
        for (int k = threadIdx.x; k < regions; k += blockDim.x) {
            const float d = gb[k] + shift;
            acc += d * d;
        }
        const float total = block_sum(acc, shared);
        const float rms = sqrtf(total / (float)regions);
        const float scale = rms > 0.0f ? eta[b] / rms : 0.0f;
        for (int k = threadIdx.x; k < regions; k += blockDim.x) {
            const float value = xb[k] - scale * (gb[k] + shift);
            xb[k] = fminf(fmaxf(value, 0.0f), 1.0f);
        }
    }
}
