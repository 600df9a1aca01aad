// 2-D convolution forward (cross-correlation, NCHW, square k×k kernel, zero padding, any
// stride) plus bias; reference: conv2d in src/backend/cpu/conv.rs.
//
// Launch: grid = (ceil(ho·wo / 64), ceil(cout / 16), n), block = 256. A block computes 64 output
// pixels × 16 output channels of image blockIdx.z. Thread t owns pixel t % 64 and the 4 channels
// 4·(t / 64)..+3: each input value it loads feeds 4 FMAs, and the 64 threads of a channel
// group read neighbouring pixels (coalesced) while their weight reads are shared-memory
// broadcasts. The block's weights are staged in shared memory chunk by chunk over cin.
//
// The weight stage holds WS_TAPS (cin, ky, kx) taps for the 16 channels, so a chunk is
// WS_TAPS / k² input channels: 43 for k = 3, 8 for k = 7, 392 for k = 1. Kernels with
// k² > WS_TAPS (k > 19) are not supported: the kernel returns without writing anything.
// k = 1 and k = 3 (every conv of the UNet) get unrolled inner loops; other k a generic loop.
//
// Three entry points share the code and differ only in the epilogue, the term added to the
// f32 accumulator (which starts from the bias) just before the store, one rounded add:
//   conv2d_fwd       y = conv(x) + bias
//   conv2d_fwd_chan  y = conv(x) + bias + v[img][co]         (v: n × cout; a ResBlock's conv1
//                                                            with the time-embedding add)
//   conv2d_fwd_res   y = conv(x) + bias + r[img][co][pixel]  (r: the output's shape; a
//                                                            ResBlock's conv2 with the residual)
// as the CPU's conv2d followed by add_channel_bias / add_assign.
#include "common.cuh"

namespace {

constexpr int PIX = 64;           // output pixels per block
constexpr int COUT_TILE = 16;     // output channels per block
constexpr int CO_PER_THREAD = 4;  // output channels per thread
constexpr int WS_TAPS = 392;      // = 8·7², the weight stage: 392·16 floats = 25 KB
static_assert(PIX * (COUT_TILE / CO_PER_THREAD) == kBlock, "one thread per (pixel, group)");

// What the epilogue adds (a template argument: the plain conv carries no extra code).
constexpr int EPI_NONE = 0;     // nothing
constexpr int EPI_CHANNEL = 1;  // extra[img·cout + co]
constexpr int EPI_RESIDUAL = 2; // extra[(img·cout + co)·npix + pix], same index as y

// Accumulates one input channel into acc: K is the kernel size when known at compile time
// (loops unrolled), or 0 to use the runtime k.
template <int K>
__device__ __forceinline__ void conv_channel(const float* __restrict__ xp, const float* ws_ci,
                                             int k_rt, int h, int wd, int iy0, int ix0,
                                             float acc[CO_PER_THREAD]) {
    const int k = K > 0 ? K : k_rt;
#pragma unroll
    for (int ky = 0; ky < k; ++ky) {
        const int iy = iy0 + ky;
        if (iy < 0 || iy >= h) continue;
        const float* row = xp + iy * wd;
#pragma unroll
        for (int kx = 0; kx < k; ++kx) {
            const int ix = ix0 + kx;
            if (ix < 0 || ix >= wd) continue;
            const float v = __ldg(row + ix);
            const float4 wv = *reinterpret_cast<const float4*>(ws_ci + (ky * k + kx) * COUT_TILE);
            acc[0] = fmaf(v, wv.x, acc[0]);
            acc[1] = fmaf(v, wv.y, acc[1]);
            acc[2] = fmaf(v, wv.z, acc[2]);
            acc[3] = fmaf(v, wv.w, acc[3]);
        }
    }
}

template <int K, int EPI>
__device__ __forceinline__ void conv_block(const float* __restrict__ x,
                                           const float* __restrict__ w,
                                           const float* __restrict__ bias,
                                           const float* __restrict__ extra, float* __restrict__ y,
                                           float* ws, int cin, int h, int wd, int cout, int k_rt,
                                           int stride, int pad, int ho, int wo) {
    const int k = K > 0 ? K : k_rt;
    const int kk = k * k;
    const int npix = ho * wo;
    const int tid = threadIdx.x;
    const int pix = blockIdx.x * PIX + tid % PIX;
    const int cg = tid / PIX;  // channel group: channels co0 + 4·cg .. +3
    const int co0 = blockIdx.y * COUT_TILE;
    const int img = blockIdx.z;
    const bool live = pix < npix;

    const int oy = live ? pix / wo : 0, ox = live ? pix - (pix / wo) * wo : 0;
    const int iy0 = oy * stride - pad, ix0 = ox * stride - pad;

    float acc[CO_PER_THREAD];
#pragma unroll
    for (int q = 0; q < CO_PER_THREAD; ++q) {
        const int co = co0 + cg * CO_PER_THREAD + q;
        acc[q] = co < cout ? bias[co] : 0.0f;
    }

    const float* ximg = x + (long long)img * cin * h * wd;
    const int ci_chunk = WS_TAPS / kk;
    for (int ci0 = 0; ci0 < cin; ci0 += ci_chunk) {
        const int nci = min(ci_chunk, cin - ci0);
        // Stage ws[(ci·k² + tap)·16 + co] = w[co0 + co][ci0 + ci][tap], zero past cout.
        // Neighbouring threads write neighbouring co (no bank conflict); their global reads
        // are k²·cin apart, but the whole weight tensor is small and stays in L1/L2.
        const int n_stage = nci * kk * COUT_TILE;
        for (int e = tid; e < n_stage; e += kBlock) {
            const int co = e % COUT_TILE, tap = e / COUT_TILE;  // tap = ci·k² + ky·k + kx
            ws[e] = (co0 + co < cout) ? __ldg(w + ((long long)(co0 + co) * cin + ci0) * kk + tap)
                                      : 0.0f;
        }
        __syncthreads();
        if (live) {
            for (int ci = 0; ci < nci; ++ci) {
                conv_channel<K>(ximg + (long long)(ci0 + ci) * h * wd,
                                ws + ci * kk * COUT_TILE + cg * CO_PER_THREAD, k, h, wd, iy0, ix0,
                                acc);
            }
        }
        __syncthreads();
    }

    if (!live) return;
    float* yimg = y + (long long)img * cout * npix;
#pragma unroll
    for (int q = 0; q < CO_PER_THREAD; ++q) {
        const int co = co0 + cg * CO_PER_THREAD + q;
        if (co >= cout) continue;
        const long long yi = (long long)co * npix + pix;  // within image img
        float v = acc[q];
        if (EPI == EPI_CHANNEL) v = __fadd_rn(v, __ldg(extra + (long long)img * cout + co));
        if (EPI == EPI_RESIDUAL) v = __fadd_rn(v, __ldg(extra + (long long)img * cout * npix + yi));
        yimg[yi] = v;
    }
}

template <int EPI>
__device__ __forceinline__ void conv_dispatch(const float* __restrict__ x,
                                              const float* __restrict__ w,
                                              const float* __restrict__ bias,
                                              const float* __restrict__ extra,
                                              float* __restrict__ y, float* ws, int n, int cin,
                                              int h, int wd, int cout, int k, int stride, int pad,
                                              int ho, int wo) {
    // Out of the stage's range (or nonsense): write nothing rather than out of bounds.
    if (k < 1 || k * k > WS_TAPS || (int)blockIdx.z >= n) return;
    switch (k) {
        case 1:
            conv_block<1, EPI>(x, w, bias, extra, y, ws, cin, h, wd, cout, k, stride, pad, ho,
                               wo);
            break;
        case 3:
            conv_block<3, EPI>(x, w, bias, extra, y, ws, cin, h, wd, cout, k, stride, pad, ho,
                               wo);
            break;
        default:
            conv_block<0, EPI>(x, w, bias, extra, y, ws, cin, h, wd, cout, k, stride, pad, ho,
                               wo);
            break;
    }
}

}  // namespace

extern "C" __global__ void __launch_bounds__(kBlock)
    conv2d_fwd(const float* __restrict__ x, const float* __restrict__ w,
               const float* __restrict__ bias, float* __restrict__ y, int n, int cin, int h,
               int wd, int cout, int k, int stride, int pad, int ho, int wo) {
    __shared__ __align__(16) float ws[WS_TAPS * COUT_TILE];
    conv_dispatch<EPI_NONE>(x, w, bias, nullptr, y, ws, n, cin, h, wd, cout, k, stride, pad, ho,
                            wo);
}

// v: (n, cout), one value per (image, output channel), added to every pixel of that plane.
extern "C" __global__ void __launch_bounds__(kBlock)
    conv2d_fwd_chan(const float* __restrict__ x, const float* __restrict__ w,
                    const float* __restrict__ bias, const float* __restrict__ v,
                    float* __restrict__ y, int n, int cin, int h, int wd, int cout, int k,
                    int stride, int pad, int ho, int wo) {
    __shared__ __align__(16) float ws[WS_TAPS * COUT_TILE];
    conv_dispatch<EPI_CHANNEL>(x, w, bias, v, y, ws, n, cin, h, wd, cout, k, stride, pad, ho,
                               wo);
}

// r: (n, cout, ho, wo), the output's shape, added elementwise; must not alias y.
extern "C" __global__ void __launch_bounds__(kBlock)
    conv2d_fwd_res(const float* __restrict__ x, const float* __restrict__ w,
                   const float* __restrict__ bias, const float* __restrict__ r,
                   float* __restrict__ y, int n, int cin, int h, int wd, int cout, int k,
                   int stride, int pad, int ho, int wo) {
    __shared__ __align__(16) float ws[WS_TAPS * COUT_TILE];
    conv_dispatch<EPI_RESIDUAL>(x, w, bias, r, y, ws, n, cin, h, wd, cout, k, stride, pad, ho,
                                wo);
}

// ---------------------------------------------------------------------------------------------
// Backward data (the input-VJP): dx = convᵀ(dy); reference: conv2d_vjp_input in
// src/backend/cpu/conv.rs. The weight-VJP is never needed.
//
// The forward reads input pixel iy = oy·stride + ky − pad (likewise ix) for output pixel oy and
// tap ky. The VJP reads the same relation the other way: input pixel iy receives dy at every
// output oy in 0..ho whose tap ky = iy + pad − oy·stride lies in 0..k. `reaching_outputs` gives
// that range of oy (two divisions per thread and axis, none in the loops) and the loops recover
// ky from the same equation, so the kernel is the forward's transpose by construction.
//
// Gather formulation, one thread per dx element, no atomics and no shared memory:
//   dx[img][ci][iy][ix] = Σ_(oy,ox) Σ_co dy[img][co][oy][ox] · w[co][ci][ky][kx]
// co innermost (f32, fmaf). An element that no output reads (possible when h + 2·pad − k is not a
// multiple of stride) gets 0.
//
// Launch: grid = (ceil(h·wd / 256), cin, n), block = 256: (ci, img) are uniform over a block,
// so every weight read is a broadcast; neighbouring threads own neighbouring ix and read
// neighbouring dy. Any k ≥ 1 works (the Rust side keeps the forward's k ≤ 19 limit).

namespace {

// The outputs o in [lo, hi] (empty when lo > hi) that read input i: o·stride + kq − pad == i
// with 0 ≤ kq < k and 0 ≤ o < n_out. With s = i + pad = o·stride + kq (s ≥ 0):
// kq ≥ 0 ⇔ o ≤ s / stride, and kq ≤ k − 1 ⇔ o ≥ ceil((s − k + 1) / stride).
struct OutRange {
    int lo, hi;
};

__device__ __forceinline__ OutRange reaching_outputs(int i, int k, int stride, int pad,
                                                     int n_out) {
    const unsigned s = (unsigned)(i + pad), st = (unsigned)stride;
    const int first = (int)s - (k - 1);  // smallest o·stride allowed by kq ≤ k − 1
    OutRange r;
    r.lo = first <= 0 ? 0 : (int)(((unsigned)first + st - 1) / st);
    r.hi = min((int)(s / st), n_out - 1);
    return r;
}

}  // namespace

// No __launch_bounds__: with (256) ptxas 13.0 spills this kernel at 32-40 registers, without it
// it takes 40 registers and spills nothing (sm_80 and sm_90). It is launched with 256 threads.
extern "C" __global__ void conv2d_bwd_data(const float* __restrict__ dy,
                                           const float* __restrict__ w, float* __restrict__ dx,
                                           int n, int cin, int h, int wd, int cout, int k,
                                           int stride, int pad, int ho, int wo) {
    const int pix = blockIdx.x * kBlock + threadIdx.x;  // iy·wd + ix
    const int ci = blockIdx.y, img = blockIdx.z;
    if (pix >= h * wd || ci >= cin || img >= n || k < 1 || stride < 1 || pad < 0) return;
    const int iy = pix / wd, ix = pix - (pix / wd) * wd;
    const int kk = k * k;
    const int npix_out = ho * wo;
    const float* dyimg = dy + (long long)img * cout * npix_out;
    // w[co][ci][tap] = w[(co·cin + ci)·k² + tap]: the co stride is cin·k² (the Rust side
    // checks that the weight's size fits an int).
    const float* wci = w + ci * kk;
    const int w_co_stride = cin * kk;
    const OutRange ry = reaching_outputs(iy, k, stride, pad, ho);
    const OutRange rx = reaching_outputs(ix, k, stride, pad, wo);

    float acc = 0.0f;
    for (int oy = ry.lo; oy <= ry.hi; ++oy) {
        const int ky = iy + pad - oy * stride;  // in 0..k by the range
        for (int ox = rx.lo; ox <= rx.hi; ++ox) {
            const int kx = ix + pad - ox * stride;
            const float* dyp = dyimg + oy * wo + ox;  // dy[img][co][oy][ox], from co = 0
            const float* wp = wci + ky * k + kx;      // w[co][ci][ky][kx], from co = 0
            for (int co = 0; co < cout; ++co, dyp += npix_out, wp += w_co_stride)
                acc = fmaf(__ldg(dyp), __ldg(wp), acc);
        }
    }
    dx[((long long)img * cin + ci) * h * wd + pix] = acc;
}
