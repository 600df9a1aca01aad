// The DiffPIR prior step fused into one pass; reference: the first half of step() in
// src/samplers/diffpir.rs, which the CPU runs as predict_x0, clamp, then lincomb (ddim_step).
//
// x0 = clamp((x − s1m·eps) / sab, −1, 1), xp = sab_next·x0 + s1m_next·eps, with every product
// and sum rounded on its own and an IEEE division, as the CPU: bit-identical to the three ops.
// 1-D launch: grid = ceil(len / 256), block = 256.
#include "common.cuh"

extern "C" __global__ void diffpir_prior(const float* __restrict__ x, const float* __restrict__ eps,
                                         float sab, float s1m, float sab_next, float s1m_next,
                                         float* __restrict__ xp, int len) {
    const int i = flat_index();
    if (i >= len) return;
    const float e = eps[i];
    const float x0 = clamp_nan(__fdiv_rn(__fsub_rn(x[i], __fmul_rn(s1m, e)), sab), -1.0f, 1.0f);
    xp[i] = __fadd_rn(__fmul_rn(sab_next, x0), __fmul_rn(s1m_next, e));
}
