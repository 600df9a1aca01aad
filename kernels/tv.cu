// The two fused updates of the Chambolle–Pock TV solver; reference: src/backend/cpu/tv.rs (the
// loop body of baselines::total_variation), on every (h, w) plane of a batch. Gradient: forward
// differences with a Neumann boundary; its adjoint minus the divergence.
//
// Launch (both): block = (16, 16), grid = (ceil(w/16), ceil(h/16), planes), one thread per
// pixel. Each thread writes only its own pixel and reads only arrays the kernel does not write,
// so there is no race. The CPU's operations in its order, each rounded on its own (sqrt, the
// divisions and the clamp as Rust's): the outputs match it bit for bit.
#include "common.cuh"

// p ← proj_{|p| ≤ lam}(p + step·∇x̄), pointwise on the pair (px, py).
extern "C" __global__ void tv_dual_update(const float* __restrict__ xbar, float step, float lam,
                                          float* __restrict__ px, float* __restrict__ py,
                                          int planes, int h, int w) {
    const int j = blockIdx.x * blockDim.x + threadIdx.x, i = blockIdx.y * blockDim.y + threadIdx.y;
    if (j >= w || i >= h || (int)blockIdx.z >= planes) return;
    const long long o = ((long long)blockIdx.z * h + i) * w + j;
    const float v = __ldg(xbar + o);
    const float gx = j + 1 < w ? __fsub_rn(__ldg(xbar + o + 1), v) : 0.0f;
    const float gy = i + 1 < h ? __fsub_rn(__ldg(xbar + o + w), v) : 0.0f;
    const float a = __fadd_rn(px[o], __fmul_rn(step, gx)), b = __fadd_rn(py[o], __fmul_rn(step, gy));
    // Rust's f32::max(NaN, 1) is 1, as fmaxf's.
    const float scale = fmaxf(__fdiv_rn(__fsqrt_rn(__fadd_rn(__fmul_rn(a, a), __fmul_rn(b, b))), lam), 1.0f);
    px[o] = __fdiv_rn(a, scale);
    py[o] = __fdiv_rn(b, scale);
}

// x_new = clamp(x − step·(atq + ∇ᵀp), −1, 1); xbar = 2·x_new − x; x = x_new. atq = Aᵀq.
extern "C" __global__ void tv_primal_update(const float* __restrict__ atq, const float* __restrict__ px,
                                            const float* __restrict__ py, float step,
                                            float* __restrict__ x, float* __restrict__ xbar,
                                            int planes, int h, int w) {
    const int j = blockIdx.x * blockDim.x + threadIdx.x, i = blockIdx.y * blockDim.y + threadIdx.y;
    if (j >= w || i >= h || (int)blockIdx.z >= planes) return;
    const long long o = ((long long)blockIdx.z * h + i) * w + j;
    float gtp = 0.0f;  // (∇ᵀp)[o], the terms in the CPU's order
    if (j + 1 < w) gtp = __fsub_rn(gtp, __ldg(px + o));
    if (j > 0) gtp = __fadd_rn(gtp, __ldg(px + o - 1));
    if (i + 1 < h) gtp = __fsub_rn(gtp, __ldg(py + o));
    if (i > 0) gtp = __fadd_rn(gtp, __ldg(py + o - w));
    const float old = x[o];
    const float next = clamp_nan(__fsub_rn(old, __fmul_rn(step, __fadd_rn(__ldg(atq + o), gtp))), -1.0f, 1.0f);
    xbar[o] = __fsub_rn(__fmul_rn(2.0f, next), old);
    x[o] = next;
}
