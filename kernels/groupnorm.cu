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

// Channels [c0, c1) of group blockIdx.x of image blockIdx.y; the group is a contiguous run of
// (c1 − c0)·hw values starting at `base`. Forward and VJP both index through this.
struct GroupSpan {
    int c0, c1, len;
    long long base;
};

__device__ __forceinline__ GroupSpan group_span(int c, int hw, int groups) {
    const int g = blockIdx.x, img = blockIdx.y;
    GroupSpan s;
    s.c0 = (int)((long long)g * c / groups);
    s.c1 = (int)((long long)(g + 1) * c / groups);
    s.len = (s.c1 - s.c0) * hw;
    s.base = ((long long)img * c + s.c0) * hw;
    return s;
}

// Mean and 1/sqrt(var + eps) of the group's len values (biased variance), as the CPU's `stats`:
// the mean, then Σ(x − mean)², two passes accumulated in double, block reductions. Every thread
// of the block must call it; every thread gets the same bits.
__device__ __forceinline__ void group_stats(const float* __restrict__ xg, int len,
                                            double* scratch, double& mean, double& rstd) {
    double sum = 0.0;
    for (int j = threadIdx.x; j < len; j += kBlock) sum += (double)xg[j];
    mean = block_sum(sum, scratch) / (double)len;

    double ssd = 0.0;
    for (int j = threadIdx.x; j < len; j += kBlock) {
        const double dv = (double)xg[j] - mean;
        ssd += dv * dv;
    }
    const double var = block_sum(ssd, scratch) / (double)len;
    rstd = 1.0 / sqrt(var + GN_EPS);
}

// Channel ch's scale = γ·rstd and shift = β − (mean·γ)·rstd in the CPU's order (no fused
// multiply-add), computed in double and rounded to float: y = x·scale + shift is the norm.
__device__ __forceinline__ void channel_affine(const float* __restrict__ gamma,
                                               const float* __restrict__ beta, int ch,
                                               double mean, double rstd, float& scale,
                                               float& shift) {
    const double gam = (double)gamma[ch];
    scale = (float)__dmul_rn(gam, rstd);
    shift = (float)__dsub_rn((double)beta[ch], __dmul_rn(__dmul_rn(mean, gam), rstd));
}

}  // namespace

extern "C" __global__ void __launch_bounds__(kBlock)
    group_norm_fwd(const float* __restrict__ x, const float* __restrict__ gamma,
                   const float* __restrict__ beta, float* __restrict__ y, int c, int hw,
                   int groups, int silu_out) {
    __shared__ double scratch[kBlock / kWarp];
    __shared__ float s_scale[CH_STAGE];
    __shared__ float s_shift[CH_STAGE];

    const GroupSpan sp = group_span(c, hw, groups);
    const int c0 = sp.c0, c1 = sp.c1;
    const float* xg = x + sp.base;
    float* yg = y + sp.base;

    double mean, rstd;
    group_stats(xg, sp.len, scratch, mean, rstd);

    for (int cb = c0; cb < c1; cb += CH_STAGE) {
        const int nch = min(CH_STAGE, c1 - cb);
        if ((int)threadIdx.x < nch) {
            channel_affine(gamma, beta, cb + threadIdx.x, mean, rstd, s_scale[threadIdx.x],
                           s_shift[threadIdx.x]);
        }
        __syncthreads();
        const int off = (cb - c0) * hw;
        const int n_el = nch * hw;
        for (int j = threadIdx.x; j < n_el; j += kBlock) {
            const int lc = j / hw;
            yg[off + j] = norm_affine(xg[off + j], s_scale[lc], s_shift[lc], silu_out != 0);
        }
        __syncthreads();
    }
}

// The norm as a conv's input fold (kernels/conv.cu, `norm`): only each (image, channel)'s
// scale and shift, ss[2·(img·c + ch)] and ss[2·(img·c + ch) + 1], group_norm_fwd's bits, so that
// the conv computes y = x·scale + shift (and SiLU) as it gathers x and never reads a normalised
// copy. Launch as group_norm_fwd.
extern "C" __global__ void __launch_bounds__(kBlock)
    group_norm_scale_shift(const float* __restrict__ x, const float* __restrict__ gamma,
                           const float* __restrict__ beta, float* __restrict__ ss, int c, int hw,
                           int groups) {
    __shared__ double scratch[kBlock / kWarp];
    const GroupSpan sp = group_span(c, hw, groups);
    double mean, rstd;
    group_stats(x + sp.base, sp.len, scratch, mean, rstd);
    float* ssi = ss + 2 * ((long long)blockIdx.y * c);
    for (int ch = sp.c0 + (int)threadIdx.x; ch < sp.c1; ch += kBlock)
        channel_affine(gamma, beta, ch, mean, rstd, ssi[2 * ch], ssi[2 * ch + 1]);
}

// GroupNorm input-VJP; reference: group_norm_vjp in src/backend/cpu/groupnorm.rs, step for step.
// dy is the gradient of the op's output (after SiLU when silu != 0).
//
// Launch: grid = (groups, n), block = 256, like the forward. The statistics are recomputed
// (group_stats, as the forward), then, with xhat = (x − mean)·rstd in double:
//   pass 1  g = dz·γ with dz = dy·silu'(z), z = (float)(xhat·γ + β)  (dz = dy without SiLU);
//           Σg and Σg·xhat in double (block reductions); g is stashed in dx rounded to float,
//           as the CPU stashes it in its output;
//   pass 2  dx = rstd·(g − mean(g) − xhat·mean(g·xhat)), in double, rounded to float.
// Both passes walk j = threadIdx.x, += 256: each thread reads back only the stash it wrote, so
// no barrier is needed between them. Every double operation is an explicit _rn intrinsic in
// the CPU's order (no FMA contraction).
extern "C" __global__ void __launch_bounds__(kBlock)
    group_norm_vjp(const float* __restrict__ x, const float* __restrict__ gamma,
                   const float* __restrict__ beta, const float* __restrict__ dy,
                   float* __restrict__ dx, int c, int hw, int groups, int silu_out) {
    __shared__ double scratch[kBlock / kWarp];

    const GroupSpan sp = group_span(c, hw, groups);
    const float* xg = x + sp.base;
    const float* dyg = dy + sp.base;
    float* dxg = dx + sp.base;

    double mean, rstd;
    group_stats(xg, sp.len, scratch, mean, rstd);

    double sum_g = 0.0, sum_gx = 0.0;
    for (int j = threadIdx.x; j < sp.len; j += kBlock) {
        const int ch = sp.c0 + j / hw;
        const double gam = (double)__ldg(gamma + ch);
        const double xhat = __dmul_rn(__dsub_rn((double)xg[j], mean), rstd);
        double dz = (double)dyg[j];
        if (silu_out) {
            const float z = (float)__dadd_rn(__dmul_rn(xhat, gam), (double)__ldg(beta + ch));
            dz = __dmul_rn(dz, (double)silu_grad(z));
        }
        const double gx = __dmul_rn(dz, gam);
        sum_g = __dadd_rn(sum_g, gx);
        sum_gx = __dadd_rn(sum_gx, __dmul_rn(gx, xhat));
        dxg[j] = (float)gx;  // the stash, read back by this same thread below
    }
    const double m = (double)sp.len;
    const double mean_g = block_sum(sum_g, scratch) / m;
    const double mean_gx = block_sum(sum_gx, scratch) / m;

    for (int j = threadIdx.x; j < sp.len; j += kBlock) {
        const double xhat = __dmul_rn(__dsub_rn((double)xg[j], mean), rstd);
        const double g = (double)dxg[j];
        dxg[j] = (float)__dmul_rn(rstd, __dsub_rn(__dsub_rn(g, mean_g), __dmul_rn(xhat, mean_gx)));
    }
}
