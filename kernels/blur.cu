// The blur operator K of the inverse problem and its adjoint; reference: src/backend/cpu/blur.rs.
// Single-channel 2-D cross-correlation of each (h, w) plane with a k×k kernel (k odd), zero
// padding, same size, centre k/2; the adjoint Kᵀ uses the kernel flipped in both axes.
//
// Launch (all three kernels): grid = (ceil(w/16), ceil(h/16), planes), block = (16, 16), one
// thread per output pixel. The sum runs over ky then kx, skips zero taps and rounds each
// product and sum on its own (no FMA), exactly as the CPU loop: results match it bit for bit.
// The kernel taps are uniform across the block (broadcast loads); neighbouring pixels share
// their input rows through L1, which is all a 64×64 image needs.
#include "common.cuh"

namespace {

// (K x)[y][x] of one plane, or (Kᵀ x)[y][x] when adjoint.
__device__ __forceinline__ float blur_at(const float* __restrict__ img,
                                         const float* __restrict__ kern, int h, int w, int k,
                                         bool adjoint, int y, int x) {
    const int c = k / 2;
    float s = 0.0f;
    for (int ky = 0; ky < k; ++ky) {
        const int iy = y + ky - c;
        if (iy < 0 || iy >= h) continue;
        for (int kx = 0; kx < k; ++kx) {
            const int ix = x + kx - c;
            if (ix < 0 || ix >= w) continue;
            const int tap = adjoint ? (k - 1 - ky) * k + (k - 1 - kx) : ky * k + kx;
            const float kv = __ldg(kern + tap);
            if (kv != 0.0f) s = __fadd_rn(s, __fmul_rn(kv, __ldg(img + iy * w + ix)));
        }
    }
    return s;
}

struct Pixel {
    int x, y;
    long long plane_off;  // offset of this plane
    bool live;
};

__device__ __forceinline__ Pixel this_pixel(int planes, int h, int w) {
    Pixel p;
    p.x = blockIdx.x * blockDim.x + threadIdx.x;
    p.y = blockIdx.y * blockDim.y + threadIdx.y;
    p.plane_off = (long long)blockIdx.z * h * w;
    p.live = p.x < w && p.y < h && (int)blockIdx.z < planes;
    return p;
}

}  // namespace

// y = K(x), or Kᵀ(x) when adjoint != 0.
extern "C" __global__ void blur(const float* __restrict__ x, const float* __restrict__ kern,
                                float* __restrict__ y, int planes, int h, int w, int k,
                                int adjoint) {
    const Pixel p = this_pixel(planes, h, w);
    if (!p.live) return;
    y[p.plane_off + p.y * w + p.x] = blur_at(x + p.plane_off, kern, h, w, k, adjoint != 0, p.y, p.x);
}

// out = K(x) − yref: the data-fit residual, in one pass.
extern "C" __global__ void blur_sub(const float* __restrict__ x, const float* __restrict__ kern,
                                    const float* __restrict__ yref, float* __restrict__ out,
                                    int planes, int h, int w, int k) {
    const Pixel p = this_pixel(planes, h, w);
    if (!p.live) return;
    const long long i = p.plane_off + p.y * w + p.x;
    out[i] = __fsub_rn(blur_at(x + p.plane_off, kern, h, w, k, false, p.y, p.x), yref[i]);
}

// out = clamp(xp − tau·Kᵀ(r), −1, 1): DiffPIR's gradient step on ½‖Kx − y‖², in one pass.
// The CPU computes 1·xp + (−tau)·Kᵀr, which rounds to the same value as xp − tau·Kᵀr.
extern "C" __global__ void blur_t_step(const float* __restrict__ r, const float* __restrict__ kern,
                                       const float* __restrict__ xp, float tau,
                                       float* __restrict__ out, int planes, int h, int w, int k) {
    const Pixel p = this_pixel(planes, h, w);
    if (!p.live) return;
    const long long i = p.plane_off + p.y * w + p.x;
    const float g = blur_at(r + p.plane_off, kern, h, w, k, true, p.y, p.x);
    out[i] = clamp_nan(__fsub_rn(xp[i], __fmul_rn(tau, g)), -1.0f, 1.0f);
}
