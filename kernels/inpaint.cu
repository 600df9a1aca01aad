// Inpainting's operator (shared/OPERATORS.md, `inpaint`); reference: src/backend/cpu/inpaint.rs.
// y = x ⊙ m on every (h, w) plane, m one plane's 0/1 mask; the map is its own adjoint.
//
// Launch: block = (16, 16), grid = (ceil(w/16), ceil(h/16), planes), one thread per pixel.
#include "common.cuh"

extern "C" __global__ void inpaint_mask(const float* __restrict__ x, const float* __restrict__ m,
                                        float* __restrict__ y, int planes, int h, int w) {
    const int j = blockIdx.x * blockDim.x + threadIdx.x, i = blockIdx.y * blockDim.y + threadIdx.y;
    if (j >= w || i >= h || (int)blockIdx.z >= planes) return;
    const long long o = ((long long)blockIdx.z * h + i) * w + j;
    y[o] = __fmul_rn(__ldg(x + o), __ldg(m + i * w + j));
}
