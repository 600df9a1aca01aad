// Super-resolution's operator (shared/OPERATORS.md, `downsample`); reference:
// src/backend/cpu/downsample.rs. The mean of each non-overlapping f × f block of (planes, h, w)
// (h, w divisible by f) and its adjoint, each value copied into its block divided by f².
//
// Launch: block = (16, 16); grid = (ceil(w/f/16), ceil(h/f/16), planes) for downsample (one
// thread per block mean), (ceil(w/16), ceil(h/16), planes) for downsample_adjoint (one thread
// per full-size pixel). The CPU's arithmetic (f64 sum, rows then columns; one rounding), so the
// outputs match it bit for bit.
#include "common.cuh"

// y (planes, h/f, w/f) = block means of x (planes, h, w).
extern "C" __global__ void downsample(const float* __restrict__ x, float* __restrict__ y,
                                      int planes, int h, int w, int f) {
    const int ho = h / f, wo = w / f;
    const int bj = blockIdx.x * blockDim.x + threadIdx.x, bi = blockIdx.y * blockDim.y + threadIdx.y;
    if (bj >= wo || bi >= ho || (int)blockIdx.z >= planes) return;
    const float* img = x + (long long)blockIdx.z * h * w;
    double acc = 0.0;
    for (int a = 0; a < f; ++a)
        for (int b = 0; b < f; ++b) acc = __dadd_rn(acc, (double)__ldg(img + (bi * f + a) * w + bj * f + b));
    y[((long long)blockIdx.z * ho + bi) * wo + bj] = (float)__ddiv_rn(acc, (double)(f * f));
}

// x (planes, h, w) = the adjoint of downsample applied to y (planes, h/f, w/f).
extern "C" __global__ void downsample_adjoint(const float* __restrict__ y, float* __restrict__ x,
                                              int planes, int h, int w, int f) {
    const int j = blockIdx.x * blockDim.x + threadIdx.x, i = blockIdx.y * blockDim.y + threadIdx.y;
    if (j >= w || i >= h || (int)blockIdx.z >= planes) return;
    const int ho = h / f, wo = w / f;
    const float v = __ldg(y + ((long long)blockIdx.z * ho + i / f) * wo + j / f);
    x[((long long)blockIdx.z * h + i) * w + j] = __fdiv_rn(v, (float)(f * f));
}
