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
