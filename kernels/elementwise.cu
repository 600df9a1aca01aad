// Small memory-bound ops of the UNet and the samplers; reference: src/backend/cpu/elementwise.rs.
// All but sum_sq_per_item, residual_norm_coef and dot_per_item are 1-D: grid = ceil(len / 256), block = 256, one element per thread.
// Total lengths must fit in an int (the Rust side checks every size with i32::try_from).
#include "common.cuh"

// h[i] += v[i / hw], len = nc·hw: one bias per (image, channel) plane.
extern "C" __global__ void add_channel_bias(float* h, const float* v, int nc, int hw) {
    const int i = flat_index();
    if (i < nc * hw) h[i] += v[i / hw];
}

extern "C" __global__ void add_assign(float* a, const float* b, int len) {
    const int i = flat_index();
    if (i < len) a[i] += b[i];
}

// out = ca·a + cb·b, each product rounded before the sum, as the CPU does.
extern "C" __global__ void lincomb(const float* a, float ca, const float* b, float cb, float* out,
                                   int len) {
    const int i = flat_index();
    if (i < len) out[i] = __fadd_rn(__fmul_rn(ca, a[i]), __fmul_rn(cb, b[i]));
}

// x0 = (x − s1m·eps) / sab with an IEEE division: the samplers compare x0 across backends.
extern "C" __global__ void predict_x0(const float* x, const float* eps, float sab, float s1m,
                                      float* out, int len) {
    const int i = flat_index();
    if (i < len) out[i] = __fdiv_rn(__fsub_rn(x[i], __fmul_rn(s1m, eps[i])), sab);
}

extern "C" __global__ void clamp_inplace(float* x, float lo, float hi, int len) {
    const int i = flat_index();
    if (i < len) x[i] = clamp_nan(x[i], lo, hi);
}

// The gradient of clamp: d passes where lo ≤ ref ≤ hi (bounds included, as PyTorch), else 0.
extern "C" __global__ void clamp_vjp(const float* ref, float lo, float hi, float* d, int len) {
    const int i = flat_index();
    if (i < len) {
        const float r = ref[i];
        if (r < lo || r > hi) d[i] = 0.0f;
    }
}

// Nearest ×2: y (planes, 2h, 2w) from x (planes, h, w); one thread per output, len = planes·4hw.
extern "C" __global__ void upsample2x(const float* x, float* y, int planes, int h, int w) {
    const int i = flat_index();
    const int hw = h * w, w2 = 2 * w;
    if (i >= planes * 4 * hw) return;
    const int p = i / (4 * hw), r = i - p * 4 * hw;
    const int oy = r / w2, ox = r - oy * w2;
    y[i] = x[p * hw + (oy / 2) * w + ox / 2];
}

// Adjoint of upsample2x: each input pixel sums its 2×2 block, in the CPU's order
// ((r0 + r0+1) + r1) + r1+1. One thread per input pixel, len = planes·hw.
extern "C" __global__ void upsample2x_vjp(const float* dy, float* dx, int planes, int h, int w) {
    const int i = flat_index();
    const int hw = h * w;
    if (i >= planes * hw) return;
    const int p = i / hw, r = i - p * hw;
    const int y = r / w, x = r - y * w;
    const float* g = dy + p * 4 * hw;
    const int r0 = 2 * y * 2 * w + 2 * x, r1 = (2 * y + 1) * 2 * w + 2 * x;
    dx[i] = g[r0] + g[r0 + 1] + g[r1] + g[r1 + 1];
}

// out (n, la+lb) = [a (n, la), b (n, lb)] per image; la = ca·hw, lb = cb·hw.
extern "C" __global__ void concat_channels(const float* a, const float* b, float* out, int n,
                                           int la, int lb) {
    const int i = flat_index();
    const int l = la + lb;
    if (i >= n * l) return;
    const int img = i / l, r = i - img * l;
    out[i] = r < la ? a[img * la + r] : b[img * lb + (r - la)];
}

// Inverse of concat_channels: x (n, la+lb) into a (n, la) and b (n, lb).
extern "C" __global__ void split_channels(const float* x, float* a, float* b, int n, int la,
                                          int lb) {
    const int i = flat_index();
    const int l = la + lb;
    if (i >= n * l) return;
    const int img = i / l, r = i - img * l;
    if (r < la)
        a[img * la + r] = x[i];
    else
        b[img * lb + (r - la)] = x[i];
}

// b[o] + Σ_k act(x[row][k])·w[o][k], act = SiLU when silu_input, on lane 0 of the warp (the
// other lanes hold partial sums): lane l sums k = l, l + 32, ... with fmaf, then the lanes'
// partial sums meet in a shuffle tree, so the reads of a row of w are coalesced. The whole warp
// must call it (the shuffles).
__device__ __forceinline__ float linear_value(const float* x, const float* w, const float* b,
                                              int row, int o, int fin, int silu_input) {
    const int lane = threadIdx.x % kWarp;
    const float* xr = x + (long long)row * fin;
    const float* wr = w + (long long)o * fin;
    float acc = 0.0f;
    for (int k = lane; k < fin; k += kWarp) {
        const float v = silu_input ? silu(xr[k]) : xr[k];
        acc = fmaf(wr[k], v, acc);
    }
#pragma unroll
    for (int off = kWarp / 2; off > 0; off >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, off);
    return __fadd_rn(b[o], acc);
}

// out[i][o] = linear_value(i, o): the time-embedding layers. One warp per output (grid =
// ceil(32·n·fout / 256)). The CPU sums in k order, so results agree to a few ulp, not bit for
// bit.
extern "C" __global__ void linear(const float* x, const float* w, const float* b, float* out,
                                  int n, int fin, int fout, int silu_input) {
    const int o_flat = flat_index() / kWarp;  // uniform across the warp (kBlock % 32 == 0)
    if (o_flat >= n * fout) return;
    const int row = o_flat / fout, o = o_flat - row * fout;
    const float acc = linear_value(x, w, b, row, o, fin, silu_input);
    if (threadIdx.x % kWarp == 0) out[o_flat] = acc;
}

// Output buffers of one linear_split launch: out[j] takes columns start[j] .. start[j + 1] of
// the stacked weight's outputs as an (n, start[j + 1] − start[j]) matrix.
constexpr int kMaxSplits = 32;
struct SplitOutputs {
    float* out[kMaxSplits];
    int start[kMaxSplits + 1];
    int count;
};

// linear over columns start[0] .. start[count] of a stacked weight (w, b: all fout of them),
// each column written to its own output buffer: every ResBlock's time projection in one
// launch, with `linear`'s bits. One warp per output (grid = ceil(32·n·cols / 256)).
extern "C" __global__ void linear_split(const float* x, const float* w, const float* b,
                                        SplitOutputs outs, int n, int fin, int silu_input) {
    const int first = outs.start[0], cols = outs.start[outs.count] - first;
    const int o_flat = flat_index() / kWarp;
    if (o_flat >= n * cols) return;
    const int row = o_flat / cols, o = first + o_flat - row * cols;
    const float acc = linear_value(x, w, b, row, o, fin, silu_input);
    if (threadIdx.x % kWarp != 0) return;
    int j = 0;
    while (o >= outs.start[j + 1]) ++j;
    const int width = outs.start[j + 1] - outs.start[j];
    outs.out[j][(long long)row * width + (o - outs.start[j])] = acc;
}

// out[item] = Σ x² over one item of per_item values, accumulated in double.
// grid = n (one block per item), block = 256.
// Σ x² over item blockIdx.x of per_item values in double, returned to every thread of the block.
__device__ __forceinline__ double item_sum_sq(const float* x, int per_item, double* scratch) {
    const float* xi = x + (long long)blockIdx.x * per_item;
    double acc = 0.0;
    for (int j = threadIdx.x; j < per_item; j += blockDim.x) {
        const double v = xi[j];
        acc += v * v;
    }
    return block_sum(acc, scratch);
}

extern "C" __global__ void sum_sq_per_item(const float* x, double* out, int per_item) {
    __shared__ double scratch[kBlock / kWarp];
    const double total = item_sum_sq(x, per_item, scratch);
    if (threadIdx.x == 0) out[blockIdx.x] = total;
}

// The published DPS step's coefficients for lincomb_per_item, on the device: coef[item] = 1 and
// coef[n + item] = −ζ/‖r_item‖ rounded to f32 (0 where ‖r_item‖ = 0), n = gridDim.x, the norm
// from sum_sq_per_item's sum (the same code, so the same bits as that sum downloaded and
// finished on the host by residual_norm_step in src/backend/mod.rs). grid = n, block = 256.
extern "C" __global__ void residual_norm_coef(const float* r, float* coef, int per_item,
                                              double zeta) {
    __shared__ double scratch[kBlock / kWarp];
    const double norm = sqrt(item_sum_sq(r, per_item, scratch));
    if (threadIdx.x != 0) return;
    coef[blockIdx.x] = 1.0f;
    coef[gridDim.x + blockIdx.x] = norm > 0.0 ? (float)(-zeta / norm) : 0.0f;
}

// out[item] = Σ a·b over one item of per_item values, accumulated in double (each product of two
// floats is exact in double). grid = n (one block per item), block = 256.
extern "C" __global__ void dot_per_item(const float* a, const float* b, double* out,
                                        int per_item) {
    __shared__ double scratch[kBlock / kWarp];
    const long long off = (long long)blockIdx.x * per_item;
    const float* ai = a + off;
    const float* bi = b + off;
    double acc = 0.0;
    for (int j = threadIdx.x; j < per_item; j += blockDim.x) acc += (double)ai[j] * (double)bi[j];
    const double total = block_sum(acc, scratch);
    if (threadIdx.x == 0) out[blockIdx.x] = total;
}

// out = ca[item]·a + cb[item]·b with item = i / per_item; coef holds ca[0..n) then cb[0..n).
// Each product rounded before the sum, as the CPU. 1-D over len = n·per_item.
extern "C" __global__ void lincomb_per_item(const float* a, const float* b, const float* coef,
                                            float* out, int n, int per_item) {
    const int i = flat_index();
    if (i >= n * per_item) return;
    const int item = i / per_item;
    out[i] = __fadd_rn(__fmul_rn(coef[item], a[i]), __fmul_rn(coef[n + item], b[i]));
}
