// GroupNorm forward (affine, eps 1e-5, biased variance) with optional fused SiLU; reference:
// group_norm in src/backend/cpu/groupnorm.rs.
//
// Launch: grid = (groups, n), block = 256: one block per (group, image). Group g covers channels
// [g·c/groups, (g+1)·c/groups) × hw, a contiguous run of x. Mean, then Σ(x − mean)², both
// accumulated in double (two passes, as the CPU), then per channel scale = γ·rstd and
// shift = β − mean·γ·rstd computed in double and rounded to float, then y = x·scale + shift
// (rounded product, then sum: no FMA, as the CPU) and SiLU when silu != 0.
#include "common.cuh"

namespace {

constexpr double GN_EPS = 1e-5;
// Channels whose scale and shift are staged in shared memory at a time.
constexpr int CH_STAGE = kBlock;

}  // namespace

extern "C" __global__ void __launch_bounds__(kBlock)
    group_norm_fwd(const float* __restrict__ x, const float* __restrict__ gamma,
                   const float* __restrict__ beta, float* __restrict__ y, int c, int hw,
                   int groups, int silu_out) {
    __shared__ double scratch[kBlock / kWarp];
    __shared__ float s_scale[CH_STAGE];
    __shared__ float s_shift[CH_STAGE];

    const int g = blockIdx.x, img = blockIdx.y;
    const int c0 = (int)((long long)g * c / groups);
    const int c1 = (int)((long long)(g + 1) * c / groups);
    const int len = (c1 - c0) * hw;
    const long long base = ((long long)img * c + c0) * hw;
    const float* xg = x + base;
    float* yg = y + base;

    double sum = 0.0;
    for (int j = threadIdx.x; j < len; j += kBlock) sum += (double)xg[j];
    const double mean = block_sum(sum, scratch) / (double)len;

    double ssd = 0.0;
    for (int j = threadIdx.x; j < len; j += kBlock) {
        const double dv = (double)xg[j] - mean;
        ssd += dv * dv;
    }
    const double var = block_sum(ssd, scratch) / (double)len;
    const double rstd = 1.0 / sqrt(var + GN_EPS);

    for (int cb = c0; cb < c1; cb += CH_STAGE) {
        const int nch = min(CH_STAGE, c1 - cb);
        if ((int)threadIdx.x < nch) {
            const int ch = cb + threadIdx.x;
            const double gam = (double)gamma[ch];
            // The CPU's order: scale = γ·rstd, shift = β − (mean·γ)·rstd, no fused multiply-add.
            s_scale[threadIdx.x] = (float)__dmul_rn(gam, rstd);
            s_shift[threadIdx.x] =
                (float)__dsub_rn((double)beta[ch], __dmul_rn(__dmul_rn(mean, gam), rstd));
        }
        __syncthreads();
        const int off = (cb - c0) * hw;
        const int n_el = nch * hw;
        for (int j = threadIdx.x; j < n_el; j += kBlock) {
            const int lc = j / hw;
            const float z = __fadd_rn(__fmul_rn(xg[off + j], s_scale[lc]), s_shift[lc]);
            yg[off + j] = silu_out ? silu(z) : z;
        }
        __syncthreads();
    }
}
