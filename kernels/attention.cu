// Multi-head self-attention core: ctx = softmax(scale·qᵀk)·v per head; reference: attend in
// src/backend/cpu/attention.rs (the in/out projections are GEMMs on the Rust side).
//
// Per image b = blockIdx.z, qkv + b·3c·t is (3c × t), channel-major: q rows [0, c), k rows
// [c, 2c), v rows [2c, 3c); head h = blockIdx.y uses rows h·d..(h+1)·d of each, d = c / heads.
// ctx + b·c·t is (c × t): ctx[(h·d + e)·t + i] = Σ_j softmax_j(scale·q_i·k_j)·v_j[e],
// scale = 1/sqrt(d).
//
// Launch: grid = (ceil(t/64), heads, n), block = 64, no dynamic shared memory. One thread per
// query, flash-style: K and V stream through shared memory a tile of keys at a time, and an
// online softmax (running max m, running sum l) rescales the accumulator as the max grows.
// Keys are taken 8 at a time so that the rescale costs one exp per 8 keys, not one per key.
//
// One extern "C" kernel dispatches on d to three instantiations, each keeping q and the
// accumulator in registers (fully unrolled, no local memory):
//   d ≤ 32:  32 dims per thread, tiles of 64 keys   (d = 32 exactly: no padding)
//   d ≤ 64:  64 dims per thread, tiles of 64 keys   (d = 64 exactly: no padding)
//   d ≤ 128: four threads per query, 32 dims each, partial dots joined with two shuffles; the
//            block does its 64 queries in four rounds of 16, tiles of 16 keys (a fallback:
//            it streams K and V once per round).
// ptxas reports 255 registers and no spills for the kernel: it spends spare registers hoisting
// the d ≤ 64 path's shared-memory loads (capped at 168, that path alone still does not spill).
// Smaller d is zero-padded up to the instantiation's width (zero q and k rows add nothing).
// d > 128 is not supported: the kernel returns without writing (the caller must check).
#include "common.cuh"

namespace {

constexpr int QB = 64;     // queries per block = blockDim.x
constexpr int KGROUP = 8;  // keys per online-softmax update
constexpr int D_MAX = 128;
// Shared buffer, in floats, large enough for every instantiation (K and V tiles).
constexpr int SMEM_FLOATS = 2 * QB * QB;

// DH: dims per thread; TPQ: threads per query (1, 2 or 4); KT: keys per shared tile.
template <int DH, int TPQ, int KT>
__device__ __forceinline__ void attend(const float* __restrict__ qh, const float* __restrict__ kh,
                                       const float* __restrict__ vh, float* __restrict__ out,
                                       int d, int t, float scale, float* sm) {
    constexpr int ROWS = DH * TPQ;                           // rows of a staged tile
    // With TPQ threads per query, part p of a tile (its rows p·DH..) is shifted by p·SKEW floats
    // so that the TPQ different rows a warp reads at once fall in different banks.
    constexpr int SKEW = TPQ > 1 ? kWarp / TPQ : 0;
    constexpr int TILE = ROWS * KT + SKEW * (TPQ - 1);       // floats per staged tile
    constexpr int QPR = QB / TPQ;                            // queries per round
    static_assert(2 * TILE <= SMEM_FLOATS, "tiles fit the shared buffer");
    static_assert(KT % KGROUP == 0 && KGROUP == 8, "key groups are two float4 reads");
    static_assert(KT % 4 == 0 && SKEW % 4 == 0 && TILE % 4 == 0, "float4 reads stay aligned");

    float* ks = sm;
    float* vs = sm + TILE;
    const int tid = threadIdx.x;
    const int part = tid % TPQ;  // which DH dims of its query this thread owns
    const int e0 = part * DH;
    // Row r of a tile starts at row_off(r), skewed by SKEW per part.
    auto row_off = [](int r) { return r * KT + (r / DH) * SKEW; };
    // This thread's DH rows: row_off(e0 + e) = (its part's start) + e·KT.
    const float* kmine = ks + part * (DH * KT + SKEW);
    const float* vmine = vs + part * (DH * KT + SKEW);

#pragma unroll 1  // rounds run one after another: unrolling them only adds register pressure
    for (int round = 0; round < TPQ; ++round) {
        const int i = blockIdx.x * QB + round * QPR + tid / TPQ;
        const bool live = i < t;

        float q[DH], acc[DH];
#pragma unroll
        for (int e = 0; e < DH; ++e) {
            q[e] = (live && e0 + e < d) ? qh[(long long)(e0 + e) * t + i] : 0.0f;
            acc[e] = 0.0f;
        }
        float m = -INFINITY, l = 0.0f;

        for (int j0 = 0; j0 < t; j0 += KT) {
            const int nk = min(KT, t - j0);
            __syncthreads();  // the previous tile (or round) is no longer being read
            // Stage rows [0, ROWS) × keys [0, KT): coalesced along keys, zero past d and t.
            for (int x = tid; x < ROWS * KT; x += QB) {
                const int r = x / KT, jj = x % KT;
                const bool in = r < d && jj < nk;
                const long long g = (long long)r * t + j0 + jj;
                ks[row_off(r) + jj] = in ? kh[g] : 0.0f;
                vs[row_off(r) + jj] = in ? vh[g] : 0.0f;
            }
            __syncthreads();

            for (int jg = 0; jg < nk; jg += KGROUP) {
                float s[KGROUP];
#pragma unroll
                for (int u = 0; u < KGROUP; ++u) s[u] = 0.0f;
#pragma unroll
                for (int e = 0; e < DH; ++e) {
                    const float* kr = kmine + e * KT + jg;
                    const float4 k0 = *reinterpret_cast<const float4*>(kr);
                    const float4 k1 = *reinterpret_cast<const float4*>(kr + 4);
                    s[0] = fmaf(q[e], k0.x, s[0]);
                    s[1] = fmaf(q[e], k0.y, s[1]);
                    s[2] = fmaf(q[e], k0.z, s[2]);
                    s[3] = fmaf(q[e], k0.w, s[3]);
                    s[4] = fmaf(q[e], k1.x, s[4]);
                    s[5] = fmaf(q[e], k1.y, s[5]);
                    s[6] = fmaf(q[e], k1.z, s[6]);
                    s[7] = fmaf(q[e], k1.w, s[7]);
                }
                // Join the partial dots of a query's TPQ threads (neighbouring lanes).
#pragma unroll
                for (int off = 1; off < TPQ; off <<= 1)
#pragma unroll
                    for (int u = 0; u < KGROUP; ++u) s[u] += __shfl_xor_sync(0xffffffffu, s[u], off);
                // Keys past t score −inf (weight 0). Key jg is always valid, so mx is finite.
                float mx = m;
#pragma unroll
                for (int u = 0; u < KGROUP; ++u) {
                    s[u] = (jg + u < nk) ? s[u] * scale : -INFINITY;
                    mx = fmaxf(mx, s[u]);
                }
                const float corr = expf(m - mx);  // 0 on the first group (m = −inf)
                m = mx;
                float p[KGROUP];
                float psum = 0.0f;
#pragma unroll
                for (int u = 0; u < KGROUP; ++u) {
                    p[u] = expf(s[u] - mx);
                    psum += p[u];
                }
                l = fmaf(l, corr, psum);
#pragma unroll
                for (int e = 0; e < DH; ++e) {
                    const float* vr = vmine + e * KT + jg;
                    const float4 v0 = *reinterpret_cast<const float4*>(vr);
                    const float4 v1 = *reinterpret_cast<const float4*>(vr + 4);
                    float a = acc[e] * corr;
                    a = fmaf(p[0], v0.x, a);
                    a = fmaf(p[1], v0.y, a);
                    a = fmaf(p[2], v0.z, a);
                    a = fmaf(p[3], v0.w, a);
                    a = fmaf(p[4], v1.x, a);
                    a = fmaf(p[5], v1.y, a);
                    a = fmaf(p[6], v1.z, a);
                    a = fmaf(p[7], v1.w, a);
                    acc[e] = a;
                }
            }
        }

        if (live) {
            const float inv = 1.0f / l;
#pragma unroll
            for (int e = 0; e < DH; ++e)
                if (e0 + e < d) out[(long long)(e0 + e) * t + i] = acc[e] * inv;
        }
    }
}

}  // namespace

extern "C" __global__ void __launch_bounds__(QB)
    attention_fwd(const float* __restrict__ qkv, float* __restrict__ ctx, int c, int t,
                  int heads) {
    __shared__ __align__(16) float sm[SMEM_FLOATS];
    const int d = c / heads;
    if (d < 1 || d > D_MAX) return;
    const int h = blockIdx.y, b = blockIdx.z;
    const float* qh = qkv + (long long)b * 3 * c * t + (long long)h * d * t;
    const float* kh = qh + (long long)c * t;
    const float* vh = kh + (long long)c * t;
    float* out = ctx + (long long)b * c * t + (long long)h * d * t;
    const float scale = 1.0f / sqrtf((float)d);
    if (d <= 32)
        attend<32, 1, 64>(qh, kh, vh, out, d, t, scale, sm);
    else if (d <= 64)
        attend<64, 1, 64>(qh, kh, vh, out, d, t, scale, sm);
    else
        attend<32, 4, 16>(qh, kh, vh, out, d, t, scale, sm);
}

// ---------------------------------------------------------------------------------------------
// Attention input-VJP: the two row kernels between its GEMMs; reference: attend_vjp and
// softmax_scaled in src/backend/cpu/attention.rs. The Rust side (attention_vjp in
// src/backend/cuda/mod.rs) recomputes qkv, then per image and head (GEMMs batched over heads):
//   S = qᵀk (t × t) → attn_softmax_rows → P;   dP = dctxᵀv → attn_softmax_vjp_rows → dS;
//   dv = dctx·P,  dq = k·dSᵀ,  dk = q·dS.
// Both kernels: grid = (rows), block = 256, one block per row of t values (a query's scores
// over all keys), row r at r·t. Each thread walks j = threadIdx.x, += 256 in every pass and
// reads back only the values it wrote itself, so passes need no barrier beyond the reductions'.

namespace {

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int off = kWarp / 2; off > 0; off >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
    return v;
}

// Max of v over the block, returned to every thread; `scratch` holds one float per warp.
// The leading __syncthreads makes reuse of the scratch safe, as block_sum's.
__device__ __forceinline__ float block_max(float v, float* scratch) {
    const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    float m = -INFINITY;
    for (int w = 0; w < (int)blockDim.x / kWarp; ++w) m = fmaxf(m, scratch[w]);
    return m;
}

}  // namespace

// In place: row ← softmax(scale·row), as the CPU's softmax_scaled: max = max(row)·scale,
// e_j = exp(row_j·scale − max) (rounded product, then difference), sum (here in double),
// inv = 1/sum, row_j = e_j·inv.
extern "C" __global__ void __launch_bounds__(kBlock)
    attn_softmax_rows(float* __restrict__ p, int t, float scale) {
    __shared__ float fscratch[kBlock / kWarp];
    __shared__ double dscratch[kBlock / kWarp];
    float* row = p + (long long)blockIdx.x * t;

    float mx = -INFINITY;
    for (int j = threadIdx.x; j < t; j += kBlock) mx = fmaxf(mx, row[j]);
    const float m = __fmul_rn(block_max(mx, fscratch), scale);

    double sum = 0.0;
    for (int j = threadIdx.x; j < t; j += kBlock) {
        const float e = expf(__fsub_rn(__fmul_rn(row[j], scale), m));
        row[j] = e;
        sum += (double)e;
    }
    const float inv = __fdiv_rn(1.0f, (float)block_sum(sum, dscratch));
    for (int j = threadIdx.x; j < t; j += kBlock) row[j] = __fmul_rn(row[j], inv);
}

// In place on ds, which holds dP on entry: ds_j ← scale·p_j·(dP_j − Σ_j' dP_j'·p_j'), the
// softmax backward with the score scale folded in, in the CPU's order ((scale·p)·(dP − dot));
// the dot is accumulated in double and rounded to float (the CPU sums in f32).
extern "C" __global__ void __launch_bounds__(kBlock)
    attn_softmax_vjp_rows(const float* __restrict__ p, float* __restrict__ ds, int t,
                          float scale) {
    __shared__ double dscratch[kBlock / kWarp];
    const float* prow = p + (long long)blockIdx.x * t;
    float* drow = ds + (long long)blockIdx.x * t;

    double dot = 0.0;
    for (int j = threadIdx.x; j < t; j += kBlock) dot += (double)drow[j] * (double)prow[j];
    const float d = (float)block_sum(dot, dscratch);
    for (int j = threadIdx.x; j < t; j += kBlock)
        drow[j] = __fmul_rn(__fmul_rn(scale, prow[j]), __fsub_rn(drow[j], d));
}
