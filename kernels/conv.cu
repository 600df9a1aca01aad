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
#include "async_copy.cuh"
#include "tensor_core.cuh"

#include <type_traits>

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

// ---------------------------------------------------------------------------------------------
// Implicit GEMM: the forward and the backward-data conv as one tiled SGEMM whose B operand is
// gathered from the image on the fly (no im2col buffer). The direct kernels above keep one
// block per (64 pixels, 16 channels, image): at batch 1 the UNet's 16×16 and 32×32 levels give
// 64-128 blocks of long serial loops (0.1-0.25 ms per conv on an H200); here a block owns a
// BM×BN tile of C and the K loop is shared by the tile, as in sgemm_strided (kernels/gemm.cu).
//
//   forward        C (cout × n·ho·wo) = W (cout × cin·k²) · X̃ (cin·k² × n·ho·wo) + bias (+ epilogue)
//                  X̃[(ci, ky, kx)][(img, oy, ox)] = x[img][ci][oy·s − pad + ky][ox·s − pad + kx]
//   backward data  C (cin × n·h·w) = W̃ (cin × cout·k²) · D̃ (cout·k² × n·h·w)
//                  W̃[ci][(co, ky, kx)] = w[co][ci][ky][kx],
//                  D̃[(co, ky, kx)][(img, iy, ix)] = dy[img][co][oy][ox] where oy·s = iy + pad − ky
//                  (and likewise ox), 0 where no such output exists (the forward's transpose).
//
// Every output sums its K terms in increasing K order with fmaf from its initial value (the bias
// for the forward, 0 for the backward), so both tiles give the same bits and, unsplit, the
// forward gives the direct kernel's bits except for the sign of an exact zero (a padded tap adds
// 0·w instead of being skipped; H200 run 2, before split-K, showed equal errors for both).
// Split-K (k_split > 1; another summation order, so not the direct kernel's bits) cuts K into
// k_split slices of whole 16-term chunks, each summed from 0 by its own block, and
// conv2d_splitk_reduce adds the slices to the bias in order.
// The Rust side derives the tile from the whole batch but k_split from one image's shape only,
// so a slice of a batch gets the bits it gets alone.
//
// Launch: grid = (ceil(N / BN), ceil(M / BM), k_split), block = 256; BM = BN = 64 (4×4 outputs
// per thread) or 32 (2×2) for small problems, or the wide tiles below (BM × BN = 64 × 128 at
// every precision, 128 × 128 at f32), chosen on the Rust side by how many blocks fill the GPU.
// Precision (the _tf32 / _bf16 entry points, tensor_core.cuh): the same staging, with operands
// rounded to TF32 or BF16 as they are staged and each chunk multiplied by warp MMAs (WMMA) with
// f32 accumulators from 0; the tile then goes through shared memory to the same epilogue, which
// adds the bias first. The split-K rule and the batch-independence argument are unchanged.
// K is staged 16 at a time; the next chunk's global loads are issued before the current chunk's
// FMAs (register prefetch). Columns are (image, pixel) pairs flattened, so a batch adds blocks.

namespace {

constexpr int IG_BK = 16;   // K chunk per stage
constexpr int IG_PAD = 4;   // shared row pad (keeps 16-byte alignment, breaks bank conflicts)
constexpr int IG_TX = 16;   // threads along N; 256 / 16 = 16 along M

enum class ConvMode { Forward, BackwardData };

// The geometry both modes share; "in" is what the gather reads (x, or dy for the backward),
// "out" the plane C's columns walk (y's pixels, or dx's).
struct ConvGeom {
    int n, cin, h, wd, cout, k, stride, pad, ho, wo;
};

// Splits a K index into (channel, ky, kx); K_ = k at compile time (1, 3) or 0 for runtime k.
template <int K_>
__device__ __forceinline__ void split_tap(int kq, int k, int& c, int& ky, int& kx) {
    const int kk = K_ > 0 ? K_ * K_ : k * k;
    const int kd = K_ > 0 ? K_ : k;
    c = kq / kk;
    const int tap = kq - c * kk;
    ky = tap / kd;
    kx = tap - ky * kd;
}

// The GEMM view of one conv block (both tile families): M rows of C (output channels), N
// columns ((image, pixel) pairs), K terms; "in" is what the gather reads (x, or dy for the
// backward), "out" the plane C's columns walk. The block's share of K is slice blockIdx.z of
// k_split in whole 16-term chunks (a slice past the end is empty and writes zeros): every tile
// takes the same slices, which is what keeps their bits equal.
struct ConvGemm {
    bool fwd;
    int k, kk, M, N, K, in_c, in_h, in_w, out_w, out_pix, k_begin, k_end;
};

template <ConvMode MODE, int K_>
__device__ __forceinline__ ConvGemm conv_gemm(const ConvGeom& g, int k_split) {
    ConvGemm c;
    c.fwd = MODE == ConvMode::Forward;
    c.k = K_ > 0 ? K_ : g.k;
    c.kk = c.k * c.k;
    c.M = c.fwd ? g.cout : g.cin;
    c.in_c = c.fwd ? g.cin : g.cout;
    c.in_h = c.fwd ? g.h : g.ho;
    c.in_w = c.fwd ? g.wd : g.wo;
    c.out_w = c.fwd ? g.wo : g.wd;
    c.out_pix = (c.fwd ? g.ho : g.h) * c.out_w;
    c.N = g.n * c.out_pix;
    c.K = c.in_c * c.kk;
    const int k_chunk = ((c.K + k_split - 1) / k_split + IG_BK - 1) / IG_BK * IG_BK;
    c.k_begin = blockIdx.z * k_chunk;
    c.k_end = min(c.K, c.k_begin + k_chunk);
    return c;
}

// Stands in for tc::TcTile on the f32 path (never used there).
struct NoTile {};

// Where a block tile's outputs go: C's sizes, the split and the epilogue.
struct OutputSink {
    float* __restrict__ out;
    float* __restrict__ partial;
    const float* __restrict__ extra;
    int epi, M, N, out_pix, k_split;
    bool fwd;
    const float* __restrict__ bias;   // split-K's finish adds it (nullptr: the backward, 0)
    unsigned* __restrict__ tiles_done;  // split-K: slices done per tile, or nullptr

    // Output (row m, column cq), both in range: under split-K a partial sum (finish_split or
    // conv2d_splitk_reduce adds the bias and the epilogue), else v plus the epilogue's term.
    __device__ __forceinline__ void put(int m, int cq, float v) const {
        const int img = cq / out_pix, pix = cq - img * out_pix;
        const long long oi = ((long long)img * M + m) * out_pix + pix;
        if (k_split > 1) {
            partial[(long long)blockIdx.z * N * M + oi] = v;
            return;
        }
        out[oi] = with_epilogue(v, img, m, oi);
    }

    __device__ __forceinline__ float with_epilogue(float v, int img, int m, long long oi) const {
        if (fwd && epi == EPI_CHANNEL) v = __fadd_rn(v, __ldg(extra + (long long)img * M + m));
        if (fwd && epi == EPI_RESIDUAL) v = __fadd_rn(v, __ldg(extra + oi));
        return v;
    }

    // Split-K with tiles_done: after its put()s, every thread of the block calls this; the block
    // that completes its tile's slices last (counted in tiles_done[tile], which it then resets
    // to 0 for the next launch) adds the slices' partial sums to the bias in slice order, applies
    // the epilogue and writes the outputs: conv2d_splitk_reduce's arithmetic, without its launch.
    // The thread's outputs are rows row_of(r), r < TM, by columns col_of(q), q < TN (those in
    // range are the ones it put). The loops stay rolled: unrolled, this rarely taken path was
    // TM·TN copies of the slice loop in every instantiation (the sm_90 cubin grew 2.4 → 9.0 MB).
    template <int TM, int TN, class Row, class Col>
    __device__ __forceinline__ void finish_split(Row row_of, Col col_of) const {
        if (k_split <= 1 || tiles_done == nullptr) return;
        __shared__ int last;
        __threadfence();  // this thread's partial sums before the block's count
        __syncthreads();
        const unsigned tile = blockIdx.y * gridDim.x + blockIdx.x;
        if (threadIdx.x == 0) last = atomicAdd(tiles_done + tile, 1u) == (unsigned)k_split - 1;
        __syncthreads();
        if (!last) return;
        __threadfence();  // the other slices' counts before their sums, read below
#pragma unroll 1
        for (int r = 0; r < TM; ++r) {
            const int m = row_of(r);
#pragma unroll 1
            for (int q = 0; q < TN; ++q) {
                const int cq = col_of(q);
                if (m >= M || cq >= N) continue;
                const int img = cq / out_pix, pix = cq - img * out_pix;
                const long long oi = ((long long)img * M + m) * out_pix + pix;
                float v = bias != nullptr ? __ldg(bias + m) : 0.0f;
                for (int z = 0; z < k_split; ++z)
                    v = __fadd_rn(v, __ldcg(partial + (long long)z * N * M + oi));
                out[oi] = with_epilogue(v, img, m, oi);
            }
        }
        if (threadIdx.x == 0) tiles_done[tile] = 0;
    }
};

// Where operand A's element (row gm, term gq) lives: w[gm][gq] for the forward, w[co][gm][tap]
// with gq = (co, tap) for the backward. The caller checks gm < M and gq < K.
template <ConvMode MODE>
__device__ __forceinline__ const float* weight_at(const float* __restrict__ w, int gm, int gq,
                                                  int K, int kk, int cin) {
    if (MODE == ConvMode::Forward) return w + (long long)gm * K + gq;
    const int co = gq / kk, tap = gq - co * kk;
    return w + ((long long)co * cin + gm) * kk + tap;
}

// One column of C: an (image, pixel) pair of the plane the columns walk, where its gather reads.
struct Column {
    const float* img;  // the gathered tensor's image
    int y, x;          // the pixel
    bool live;         // inside the N columns
    int n;             // the image's index
};

__device__ __forceinline__ Column column_at(const float* __restrict__ in, int col, int N,
                                            int out_pix, int out_w, int in_plane) {
    const bool live = col < N;
    const int img = live ? col / out_pix : 0;
    const int pix = live ? col - img * out_pix : 0;
    return {in + (long long)img * in_plane, pix / out_w, pix - (pix / out_w) * out_w, live, img};
}

// Where operand B's element (term gq, column c) lives, or nullptr where it is zero (zero padding;
// for the backward, a tap no output reaches); `ch` is the gathered channel. The caller checks
// c.live and gq < K.
template <ConvMode MODE, int K_>
__device__ __forceinline__ const float* gather_at(const Column& c, int gq, int k,
                                                  const ConvGeom& g, int in_h, int in_w, int& ch) {
    int ky, kx;
    split_tap<K_>(gq, k, ch, ky, kx);
    if (MODE == ConvMode::Forward) {
        const int iy = c.y * g.stride - g.pad + ky, ix = c.x * g.stride - g.pad + kx;
        if (iy >= 0 && iy < in_h && ix >= 0 && ix < in_w)
            return c.img + ((long long)ch * in_h + iy) * in_w + ix;
    } else {
        const int sy = c.y + g.pad - ky, sx = c.x + g.pad - kx;  // = oy·s, ox·s
        if (sy >= 0 && sx >= 0) {
            const int oy = sy / g.stride, ox = sx / g.stride;
            if (oy * g.stride == sy && ox * g.stride == sx && oy < in_h && ox < in_w)
                return c.img + ((long long)ch * in_h + oy) * in_w + ox;
        }
    }
    return nullptr;
}

// A GroupNorm (+SiLU) folded into the forward's gather: the conv reads x and convolves
// norm_affine(x, scale, shift, silu) with (scale, shift) = ss[2·(img·cin + ch)..] from
// group_norm_scale_shift, the bits group_norm_fwd would have written; the zero padding stays
// zero (the norm's output is what is padded). Only the FOLD instances read it; the backward has
// none.
struct NormFold {
    const float* __restrict__ ss;
    bool silu;

    // The (scale, shift) of column c's image at channel ch.
    __device__ __forceinline__ const float* at(const Column& c, int in_c, int ch) const {
        return ss + 2 * ((long long)c.n * in_c + ch);
    }
};

template <ConvMode MODE, int BM, int BN, int K_, int P, bool FOLD>
__device__ __forceinline__ void conv_igemm(tc::SharedTiles<BM, BN, P, IG_PAD>& sh,
                                           const float* __restrict__ in,
                                           const float* __restrict__ w,
                                           const float* __restrict__ bias,
                                           const float* __restrict__ extra, int epi,
                                           const NormFold fold, float* __restrict__ out,
                                           const ConvGeom g,
                                           int k_split, float* __restrict__ partial,
                                           unsigned* __restrict__ tiles_done) {
    constexpr int TM = BM / (kBlock / IG_TX);  // rows per thread
    constexpr int TN = BN / IG_TX;             // columns per thread
    constexpr int A_PER = BM * IG_BK / kBlock;  // A values staged per thread
    constexpr int B_PER = BN * IG_BK / kBlock;  // B values staged per thread
    constexpr int B_KSTEP = kBlock / BN;        // K rows between a thread's B values
    static_assert(TM * (kBlock / IG_TX) == BM && TN * IG_TX == BN, "tile covers the block");
    static_assert(A_PER * kBlock == BM * IG_BK && B_PER * B_KSTEP == IG_BK, "staging map");

    using Tiles = tc::SharedTiles<BM, BN, P, IG_PAD>;
    constexpr int PAD = Tiles::kPad;
    auto& As = sh.op.a;
    auto& Bs = sh.op.b;

    const ConvGemm cg = conv_gemm<MODE, K_>(g, k_split);
    const bool fwd = cg.fwd;
    const int k = cg.k, kk = cg.kk, M = cg.M, N = cg.N, K = cg.K, in_c = cg.in_c;
    const int in_h = cg.in_h, in_w = cg.in_w, out_w = cg.out_w, out_pix = cg.out_pix;
    const int k_begin = cg.k_begin, k_end = cg.k_end;

    const int tid = threadIdx.x;
    const int tx = tid % IG_TX, ty = tid / IG_TX;
    const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;

    // This thread's B column (fixed for the whole K loop) and where its gather starts.
    const int bj = tid % BN;
    const int bk0 = tid / BN;
    const Column bcol = column_at(in, n0 + bj, N, out_pix, out_w, in_c * in_h * in_w);

    // Folding a norm, each B value travels with its channel's (scale, shift), loaded with it and
    // applied as it is staged; a padding zero gets (0, 0), and norm_affine(0, 0, 0) is +0.
    static_assert(!FOLD || MODE == ConvMode::Forward, "the backward folds nothing");
    float a_reg[A_PER], b_reg[B_PER], b_scale[B_PER] = {}, b_shift[B_PER] = {};
    auto load = [&](int k0) {
#pragma unroll
        for (int s = 0; s < A_PER; ++s) {
            const int e = tid + s * kBlock;
            const int am = e / IG_BK, aq = e % IG_BK;  // neighbouring threads: neighbouring K
            const int gm = m0 + am, gq = k0 + aq;
            const bool live = gm < M && gq < k_end;
            a_reg[s] = live ? __ldg(weight_at<MODE>(w, gm, gq, K, kk, g.cin)) : 0.0f;
        }
#pragma unroll
        for (int s = 0; s < B_PER; ++s) {
            const int gq = k0 + bk0 + s * B_KSTEP;
            int ch = 0;
            const float* p = bcol.live && gq < k_end
                                 ? gather_at<MODE, K_>(bcol, gq, k, g, in_h, in_w, ch)
                                 : nullptr;
            b_reg[s] = p != nullptr ? __ldg(p) : 0.0f;
            if constexpr (FOLD) {
                const float* ss = fold.at(bcol, in_c, ch);
                b_scale[s] = p != nullptr ? __ldg(ss) : 0.0f;
                b_shift[s] = p != nullptr ? __ldg(ss + 1) : 0.0f;
            }
        }
    };

    // The f32 path starts from the bias (unsplit forward); the tensor-core path from 0, with
    // the bias added in the epilogue.
    const bool bias_first = fwd && k_split == 1;
    float acc[TM][TN];
#pragma unroll
    for (int r = 0; r < TM; ++r) {
        const int m = m0 + ty * TM + r;
        const float init = (P == kF32 && bias_first && m < M) ? __ldg(bias + m) : 0.0f;
#pragma unroll
        for (int q = 0; q < TN; ++q) acc[r][q] = init;
    }
    std::conditional_t<P == kF32, NoTile, tc::TcTile<BM, BN, P>> tile;
    if constexpr (P != kF32) tile.zero();

    load(k_begin);
    for (int k0 = k_begin; k0 < k_end; k0 += IG_BK) {
#pragma unroll
        for (int s = 0; s < A_PER; ++s) {
            const int e = tid + s * kBlock;
            As[e % IG_BK][e / IG_BK] = tc::to_operand<P>(a_reg[s]);
        }
#pragma unroll
        for (int s = 0; s < B_PER; ++s) {
            const float v =
                FOLD ? norm_affine(b_reg[s], b_scale[s], b_shift[s], fold.silu) : b_reg[s];
            Bs[bk0 + s * B_KSTEP][bj] = tc::to_operand<P>(v);
        }
        __syncthreads();
        if (k0 + IG_BK < k_end) load(k0 + IG_BK);  // in flight during the products below
        if constexpr (P == kF32) {
#pragma unroll
            for (int p = 0; p < IG_BK; ++p) {
                float ar[TM], br[TN];
#pragma unroll
                for (int r = 0; r < TM; ++r) ar[r] = As[p][ty * TM + r];
#pragma unroll
                for (int q = 0; q < TN; ++q) br[q] = Bs[p][tx + IG_TX * q];
#pragma unroll
                for (int r = 0; r < TM; ++r)
#pragma unroll
                    for (int q = 0; q < TN; ++q) acc[r][q] = fmaf(ar[r], br[q], acc[r][q]);
            }
        } else {
            tile.template mma_chunk<IG_BK>(&As[0][0], BM + PAD, &Bs[0][0], BN + PAD);
        }
        __syncthreads();
    }
    if constexpr (P != kF32) {
        // The fragments' owners are opaque: go through shared memory to this thread's outputs
        // (the loop's last barrier freed the operand tiles that Cs overlays).
        auto& Cs = sh.c;
        tile.store(&Cs[0][0], Tiles::kLdc);
        __syncthreads();
#pragma unroll
        for (int r = 0; r < TM; ++r) {
            const int m = m0 + ty * TM + r;
            const float b = (bias_first && m < M) ? __ldg(bias + m) : 0.0f;
#pragma unroll
            for (int q = 0; q < TN; ++q) acc[r][q] = __fadd_rn(b, Cs[ty * TM + r][tx + IG_TX * q]);
        }
    }

    const OutputSink sink{out, partial, extra, epi, M, N, out_pix, k_split, fwd, bias, tiles_done};
    auto each_output = [&](auto f) {
#pragma unroll
        for (int q = 0; q < TN; ++q) {
            const int cq = n0 + tx + IG_TX * q;
#pragma unroll
            for (int r = 0; r < TM; ++r) {
                const int m = m0 + ty * TM + r;
                if (m < M && cq < N) f(m, cq, acc[r][q]);
            }
        }
    };
    each_output([&](int m, int cq, float v) { sink.put(m, cq, v); });
    sink.finish_split<TM, TN>([&](int r) { return m0 + ty * TM + r; },
                              [&](int q) { return n0 + tx + IG_TX * q; });
}

// Whether a launch's geometry is one the kernels compute (else they write nothing), and the
// kernel size as a compile-time constant: f(std::integral_constant<int, K_>) with K_ = 1, 3, or 0
// for any other k (read at run time).
__device__ __forceinline__ bool computable(const ConvGeom& g, int k_split) {
    return g.k >= 1 && g.stride >= 1 && g.pad >= 0 && k_split >= 1 && (int)blockIdx.z < k_split;
}

template <class F>
__device__ __forceinline__ void with_kernel_size(int k, F f) {
    if (k == 1) f(std::integral_constant<int, 1>{});
    else if (k == 3) f(std::integral_constant<int, 3>{});
    else f(std::integral_constant<int, 0>{});
}

template <ConvMode MODE, int BM, int BN, int P, bool FOLD>
__device__ __forceinline__ void conv_igemm_dispatch(const float* __restrict__ in,
                                                    const float* __restrict__ w,
                                                    const float* __restrict__ bias,
                                                    const float* __restrict__ extra, int epi,
                                                    const NormFold fold,
                                                    float* __restrict__ out, const ConvGeom& g,
                                                    int k_split, float* __restrict__ partial,
                                                    unsigned* __restrict__ tiles_done) {
    if (!computable(g, k_split)) return;
    // Declared here, once for the three kernel-size instantiations below.
    __shared__ __align__(32) tc::SharedTiles<BM, BN, P, IG_PAD> sh;
    with_kernel_size(g.k, [&](auto kc) {
        conv_igemm<MODE, BM, BN, decltype(kc)::value, P, FOLD>(sh, in, w, bias, extra, epi, fold,
                                                               out, g, k_split, partial,
                                                               tiles_done);
    });
}

// The wide tiles (_128: 128×128 at f32; _64x128: 64 rows × 128 columns, also at TF32 and BF16)
// for problems that fill the GPU with them: each thread computes TM × TN = (BM / 16) × (BN / 16)
// outputs (8 × 8 or 4 × 8), its rows in runs of 4 that lie 64 apart (row 64·a + 4·ty + r;
// columns likewise with tx), so that it reads its operands as float4 from shared memory, one
// read per 4 FMAs for the 8 × 8 tile against one per 2 for the 64-tile's 4 × 4. Operands are staged by cp.async
// (async_copy.cuh) in IGW_STAGES shared buffers: the copies of chunk c + 1 are in flight while
// chunk c is multiplied, with one barrier per chunk. The padding zeros come from the copy's
// zero-fill. Every output adds its K terms in increasing K order with fmaf from the same initial
// value and the split-K slices are the same, so these tiles give the 32 and 64 tiles' bits.
constexpr int IGW_STAGES = 2;  // 128×128: 2 × 16.9 KB of static shared memory (3 would pass 48 KB)
constexpr int IGW_RUN = 4;     // a thread's rows (and columns) in runs of 4, one float4 each
constexpr int IGW_RUN_GAP = 64;  // 16 threads × 4: the runs of one thread lie 64 apart

// The stages, and on the tensor-core paths the C tile the accumulators go through after the K
// loop (row-major, leading dimension BN + 4, over the stages' space: 33.8 KB at 64 × 128).
// cp.async copies raw f32, which TF32 rounds in place.
template <int BM, int BN, int P> struct PipeTiles {
    static constexpr int kLdc = BN + 4;
    union {
        struct {
            float a[IGW_STAGES][IG_BK][BM + IG_PAD];
            float b[IGW_STAGES][IG_BK][BN + IG_PAD];
        } op;
        float c[P == kF32 ? 1 : BM][kLdc];
    };
};

// BF16 also converts each landed stage into 16-bit tiles of its own (h.a, h.b, one per stage:
// 13.3 KB more at 64 × 128, 38.9 KB in all), which the warps' MMAs read.
template <int BM, int BN> struct PipeTiles<BM, BN, kBf16> {
    static constexpr int kLdc = BN + 4;
    static constexpr int kHPad = tc::Operand<kBf16>::kPad;
    using H = tc::Operand<kBf16>::T;
    union {
        struct {
            float a[IGW_STAGES][IG_BK][BM + IG_PAD];
            float b[IGW_STAGES][IG_BK][BN + IG_PAD];
            struct {
                H a[IGW_STAGES][IG_BK][BM + kHPad];
                H b[IGW_STAGES][IG_BK][BN + kHPad];
            } h;
        } op;
        float c[BM][kLdc];
    };
};

template <ConvMode MODE, int BM, int BN, int K_, int P, bool FOLD>
__device__ __forceinline__ void conv_igemm_wide(PipeTiles<BM, BN, P>& sh,
                                                const float* __restrict__ in,
                                                const float* __restrict__ w,
                                                const float* __restrict__ bias,
                                                const float* __restrict__ extra, int epi,
                                                const NormFold fold, float* __restrict__ out,
                                                const ConvGeom g,
                                                int k_split, float* __restrict__ partial,
                                                unsigned* __restrict__ tiles_done) {
    constexpr int TM = BM / IG_TX, TN = BN / IG_TX;  // 16 × 16 threads
    constexpr int A_PER = BM * IG_BK / kBlock, B_PER = BN * IG_BK / kBlock;
    constexpr int B_KSTEP = kBlock / BN;
    static_assert(TM % IGW_RUN == 0 && TN % IGW_RUN == 0 && IG_TX * IGW_RUN == IGW_RUN_GAP, "runs");
    static_assert(A_PER * kBlock == BM * IG_BK && B_PER * B_KSTEP == IG_BK, "staging map");
    static_assert((BM + IG_PAD) % 4 == 0 && (BN + IG_PAD) % 4 == 0, "float4 rows");

    const ConvGemm cg = conv_gemm<MODE, K_>(g, k_split);
    const bool fwd = cg.fwd;
    const int k = cg.k, kk = cg.kk, M = cg.M, N = cg.N, K = cg.K, in_c = cg.in_c;
    const int in_h = cg.in_h, in_w = cg.in_w, out_w = cg.out_w, out_pix = cg.out_pix;
    const int k_begin = cg.k_begin, k_end = cg.k_end;
    const int chunks = k_end > k_begin ? (k_end - k_begin + IG_BK - 1) / IG_BK : 0;

    const int tid = threadIdx.x;
    const int tx = tid % IG_TX, ty = tid / IG_TX;
    const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
    auto row = [&](int r) { return (r / IGW_RUN) * IGW_RUN_GAP + ty * IGW_RUN + r % IGW_RUN; };
    auto col = [&](int q) { return (q / IGW_RUN) * IGW_RUN_GAP + tx * IGW_RUN + q % IGW_RUN; };

    const int bj = tid % BN, bk0 = tid / BN;
    const Column bcol = column_at(in, n0 + bj, N, out_pix, out_w, in_c * in_h * in_w);
    // Chunk k0 into stage st; an element outside the operands is a zero-fill from a valid address.
    auto issue = [&](int st, int k0) {
#pragma unroll
        for (int s = 0; s < A_PER; ++s) {
            const int e = tid + s * kBlock;
            const int am = e / IG_BK, aq = e % IG_BK;  // neighbouring threads: neighbouring K
            const int gm = m0 + am, gq = k0 + aq;
            const bool live = gm < M && gq < k_end;
            cp_async_f32(&sh.op.a[st][aq][am],
                         live ? weight_at<MODE>(w, gm, gq, K, kk, g.cin) : w, live);
        }
#pragma unroll
        for (int s = 0; s < B_PER; ++s) {
            const int gq = k0 + bk0 + s * B_KSTEP;
            int ch;
            const float* p = bcol.live && gq < k_end
                                 ? gather_at<MODE, K_>(bcol, gq, k, g, in_h, in_w, ch)
                                 : nullptr;
            cp_async_f32(&sh.op.b[st][bk0 + s * B_KSTEP][bj], p != nullptr ? p : in,
                         p != nullptr);
        }
    };
    // Folding a norm: once chunk k0 has landed in stage st, each thread normalises the B values it
    // copied, finding their channels again (the copy cannot transform); the padding's zero-fill
    // stays zero. Before round_own: the norm's output is what TF32 rounds.
    static_assert(!FOLD || MODE == ConvMode::Forward, "the backward folds nothing");
    auto normalize_own = [&](int st, int k0) {
#pragma unroll
        for (int s = 0; s < B_PER; ++s) {
            const int gq = k0 + bk0 + s * B_KSTEP;
            int ch;
            if (!bcol.live || gq >= k_end ||
                gather_at<MODE, K_>(bcol, gq, k, g, in_h, in_w, ch) == nullptr)
                continue;
            const float* ss = fold.at(bcol, in_c, ch);
            float& v = sh.op.b[st][bk0 + s * B_KSTEP][bj];
            v = norm_affine(v, __ldg(ss), __ldg(ss + 1), fold.silu);
        }
    };
    // The tensor-core paths: each thread rounds the values it copied, once they have landed (its
    // own copies are visible to it after the wait; the barrier that follows publishes them), TF32
    // in place, BF16 into the stage's 16-bit tiles.
    auto round_own = [&](int st) {
#pragma unroll
        for (int s = 0; s < A_PER; ++s) {
            const int e = tid + s * kBlock;
            const int aq = e % IG_BK, am = e / IG_BK;
            float& v = sh.op.a[st][aq][am];
            if constexpr (P == kBf16) sh.op.h.a[st][aq][am] = tc::to_operand<P>(v);
            else v = tc::to_operand<P>(v);
        }
#pragma unroll
        for (int s = 0; s < B_PER; ++s) {
            const int bq = bk0 + s * B_KSTEP;
            float& v = sh.op.b[st][bq][bj];
            if constexpr (P == kBf16) sh.op.h.b[st][bq][bj] = tc::to_operand<P>(v);
            else v = tc::to_operand<P>(v);
        }
    };

    // The f32 path starts from the bias (unsplit forward); the TF32 path from 0, the bias added
    // after the loop, as conv_igemm does.
    const bool bias_first = fwd && k_split == 1;
    float acc[TM][TN];
#pragma unroll
    for (int r = 0; r < TM; ++r) {
        const int m = m0 + row(r);
        const float init = P == kF32 && bias_first && m < M ? __ldg(bias + m) : 0.0f;
#pragma unroll
        for (int q = 0; q < TN; ++q) acc[r][q] = init;
    }
    std::conditional_t<P == kF32, NoTile, tc::TcTile<BM, BN, P>> tile;
    if constexpr (P != kF32) tile.zero();

#pragma unroll
    for (int s = 0; s < IGW_STAGES - 1; ++s) {
        if (s < chunks) issue(s, k_begin + s * IG_BK);
        cp_async_commit();
    }
    for (int c = 0; c < chunks; ++c) {
        // Chunk c has landed (this thread's copies), and after the barrier everyone's; every
        // thread has also finished chunk c − 1, whose stage the next issue refills.
        const int st = c % IGW_STAGES;
        cp_async_wait<IGW_STAGES - 2>();
        if constexpr (FOLD) normalize_own(st, k_begin + c * IG_BK);
        if constexpr (P != kF32) round_own(st);
        __syncthreads();
        const int ahead = c + IGW_STAGES - 1;
        if (ahead < chunks) issue(ahead % IGW_STAGES, k_begin + ahead * IG_BK);
        cp_async_commit();
        if constexpr (P == kBf16) {
            constexpr int hpad = PipeTiles<BM, BN, P>::kHPad;
            tile.template mma_chunk<IG_BK>(&sh.op.h.a[st][0][0], BM + hpad, &sh.op.h.b[st][0][0],
                                           BN + hpad);
        } else if constexpr (P == kTf32) {
            tile.template mma_chunk<IG_BK>(&sh.op.a[st][0][0], BM + IG_PAD, &sh.op.b[st][0][0],
                                           BN + IG_PAD);
        } else {
#pragma unroll
            for (int p = 0; p < IG_BK; ++p) {
                float ar[TM], br[TN];
#pragma unroll
                for (int r = 0; r < TM; r += IGW_RUN) {
                    const float4 v = *reinterpret_cast<const float4*>(&sh.op.a[st][p][row(r)]);
                    ar[r] = v.x, ar[r + 1] = v.y, ar[r + 2] = v.z, ar[r + 3] = v.w;
                }
#pragma unroll
                for (int q = 0; q < TN; q += IGW_RUN) {
                    const float4 v = *reinterpret_cast<const float4*>(&sh.op.b[st][p][col(q)]);
                    br[q] = v.x, br[q + 1] = v.y, br[q + 2] = v.z, br[q + 3] = v.w;
                }
#pragma unroll
                for (int r = 0; r < TM; ++r)
#pragma unroll
                    for (int q = 0; q < TN; ++q) acc[r][q] = fmaf(ar[r], br[q], acc[r][q]);
            }
        }
    }

    if constexpr (P != kF32) {
        // Every warp is done with the stages that Cs overlays; the fragments' owners are opaque,
        // so the tile goes through shared memory to this thread's outputs.
        __syncthreads();
        tile.store(&sh.c[0][0], PipeTiles<BM, BN, P>::kLdc);
        __syncthreads();
#pragma unroll
        for (int r = 0; r < TM; ++r) {
            const int m = m0 + row(r);
            const float b = bias_first && m < M ? __ldg(bias + m) : 0.0f;
#pragma unroll
            for (int q = 0; q < TN; ++q) acc[r][q] = __fadd_rn(b, sh.c[row(r)][col(q)]);
        }
    }

    const OutputSink sink{out, partial, extra, epi, M, N, out_pix, k_split, fwd, bias, tiles_done};
    auto each_output = [&](auto f) {
#pragma unroll
        for (int r = 0; r < TM; ++r) {
            const int m = m0 + row(r);
#pragma unroll
            for (int q = 0; q < TN; ++q) {
                const int cq = n0 + col(q);
                if (m < M && cq < N) f(m, cq, acc[r][q]);
            }
        }
    };
    each_output([&](int m, int cq, float v) { sink.put(m, cq, v); });
    sink.finish_split<TM, TN>([&](int r) { return m0 + row(r); }, [&](int q) { return n0 + col(q); });
}

template <ConvMode MODE, int BM, int BN, int P, bool FOLD>
__device__ __forceinline__ void conv_igemm_wide_dispatch(const float* __restrict__ in,
                                                         const float* __restrict__ w,
                                                         const float* __restrict__ bias,
                                                         const float* __restrict__ extra,
                                                         int epi, const NormFold fold,
                                                         float* __restrict__ out,
                                                         const ConvGeom& g, int k_split,
                                                         float* __restrict__ partial,
                                                         unsigned* __restrict__ tiles_done) {
    if (!computable(g, k_split)) return;
    // 32-byte alignment: WMMA's fragment pointers (the stages' rows keep it, see kernels/README).
    __shared__ __align__(32) PipeTiles<BM, BN, P> sh;
    with_kernel_size(g.k, [&](auto kc) {
        conv_igemm_wide<MODE, BM, BN, decltype(kc)::value, P, FOLD>(
            sh, in, w, bias, extra, epi, fold, out, g, k_split, partial, tiles_done);
    });
}

}  // namespace

// Forward: y = conv(x) + bias, plus by `epi` (0 none, 1 per (image, channel) v, 2 residual r of
// y's shape, in `extra`, which is not read when epi = 0). _64: 64×64 tiles, _32: 32×32; _tf32 /
// _bf16: the tensor-core path (operands rounded to TF32 / BF16, f32 accumulation).
// Split-K: with k_split > 1, grid.z = k_split blocks share each tile's K range and write their
// partial sums to `partial` (k_split × n·cout·ho·wo). With `tiles_done` (grid.x·grid.y zeroed
// counters, left zeroed), the block that finishes a tile's slices last adds them to the bias in
// slice order and applies the epilogue; with tiles_done = nullptr, y is not written here and
// conv2d_splitk_reduce does that. k_split = 1: `partial` and `tiles_done` are not touched.
// norm (read by the _gn entry points only): group_norm_scale_shift's (n, cin, 2) scale and
// shift of x, folding that GroupNorm (and SiLU when norm_silu != 0) into the gather:
// y = conv(GN(x)) + bias + epilogue, with GN(x) never written (NormFold).
// Every forward entry point (both tile families) takes these arguments: BOUNDS is its
// (parenthesised) launch bounds, the rest the dispatch instance it runs.
#define DIFFRECON_CONV_FWD_ENTRY(NAME, BOUNDS, ...)                                               \
    extern "C" __global__ void __launch_bounds__ BOUNDS                                            \
        NAME(const float* __restrict__ x, const float* __restrict__ w,                             \
             const float* __restrict__ bias, const float* __restrict__ extra, int epi,             \
             const float* __restrict__ norm, int norm_silu, float* __restrict__ y, int n, int cin, \
             int h, int wd, int cout, int k, int stride, int pad, int ho, int wo, int k_split,     \
             float* __restrict__ partial, unsigned* __restrict__ tiles_done) {                     \
        const ConvGeom g{n, cin, h, wd, cout, k, stride, pad, ho, wo};                             \
        __VA_ARGS__(x, w, bias, extra, epi, NormFold{norm, norm_silu != 0}, y, g, k_split,         \
                    partial, tiles_done);                                                          \
    }
// Each forward tile comes twice: NAME ignores `norm`, NAME_gn folds it (its own entry point, so
// the fold's registers, 20–40 more, never cost the plain conv occupancy). The twins' bound of 2
// blocks per multiprocessor lets ptxas use up to 128 registers: left to itself it held the 64
// tile's twins at 80 and spilled.
#define DIFFRECON_CONV_IGEMM(NAME, BM, P)                                                          \
    DIFFRECON_CONV_FWD_ENTRY(NAME, (kBlock),                                                       \
                             conv_igemm_dispatch<ConvMode::Forward, BM, BM, P, false>)             \
    DIFFRECON_CONV_FWD_ENTRY(NAME##_gn, (kBlock, 2),                                               \
                             conv_igemm_dispatch<ConvMode::Forward, BM, BM, P, true>)
DIFFRECON_CONV_IGEMM(conv2d_igemm_64, 64, kF32)
DIFFRECON_CONV_IGEMM(conv2d_igemm_32, 32, kF32)
DIFFRECON_CONV_IGEMM(conv2d_igemm_64_tf32, 64, kTf32)
DIFFRECON_CONV_IGEMM(conv2d_igemm_32_tf32, 32, kTf32)
DIFFRECON_CONV_IGEMM(conv2d_igemm_64_bf16, 64, kBf16)
DIFFRECON_CONV_IGEMM(conv2d_igemm_32_bf16, 32, kBf16)

// The wide tiles, same arguments. MIN_BLOCKS = 2 caps registers at 128 (two blocks per
// multiprocessor); the 128×128 tiles would spill there (their epilogue operands), so they keep 1.
#define DIFFRECON_CONV_IGEMM_WIDE(NAME, BM, BN, P, MIN_BLOCKS)                                     \
    DIFFRECON_CONV_FWD_ENTRY(NAME, (kBlock, MIN_BLOCKS),                                           \
                             conv_igemm_wide_dispatch<ConvMode::Forward, BM, BN, P, false>)        \
    DIFFRECON_CONV_FWD_ENTRY(NAME##_gn, (kBlock, MIN_BLOCKS),                                      \
                             conv_igemm_wide_dispatch<ConvMode::Forward, BM, BN, P, true>)
DIFFRECON_CONV_IGEMM_WIDE(conv2d_igemm_128, 128, 128, kF32, 1)
DIFFRECON_CONV_IGEMM_WIDE(conv2d_igemm_64x128, 64, 128, kF32, 2)
DIFFRECON_CONV_IGEMM_WIDE(conv2d_igemm_64x128_tf32, 64, 128, kTf32, 2)
DIFFRECON_CONV_IGEMM_WIDE(conv2d_igemm_64x128_bf16, 64, 128, kBf16, 2)

// Backward data: dx = convᵀ(dy), the arguments of conv2d_bwd_data plus the split-K pair, for
// both tile families (BOUNDS and the dispatch instance as in the forward).
#define DIFFRECON_CONV_BWD_ENTRY(NAME, BOUNDS, ...)                                               \
    extern "C" __global__ void __launch_bounds__ BOUNDS                                            \
        NAME(const float* __restrict__ dy, const float* __restrict__ w, float* __restrict__ dx,    \
             int n, int cin, int h, int wd, int cout, int k, int stride, int pad, int ho,          \
             int wo, int k_split, float* __restrict__ partial,                                     \
             unsigned* __restrict__ tiles_done) {                                                  \
        const ConvGeom g{n, cin, h, wd, cout, k, stride, pad, ho, wo};                             \
        __VA_ARGS__(dy, w, nullptr, nullptr, 0, NormFold{nullptr, false}, dx, g, k_split, partial, \
                    tiles_done);                                                                   \
    }
#define DIFFRECON_CONV_BWD_IGEMM(NAME, BM, P)                                                      \
    DIFFRECON_CONV_BWD_ENTRY(NAME, (kBlock),                                                       \
                             conv_igemm_dispatch<ConvMode::BackwardData, BM, BM, P, false>)
DIFFRECON_CONV_BWD_IGEMM(conv2d_bwd_igemm_64, 64, kF32)
DIFFRECON_CONV_BWD_IGEMM(conv2d_bwd_igemm_32, 32, kF32)
DIFFRECON_CONV_BWD_IGEMM(conv2d_bwd_igemm_64_tf32, 64, kTf32)
DIFFRECON_CONV_BWD_IGEMM(conv2d_bwd_igemm_32_tf32, 32, kTf32)
DIFFRECON_CONV_BWD_IGEMM(conv2d_bwd_igemm_64_bf16, 64, kBf16)
DIFFRECON_CONV_BWD_IGEMM(conv2d_bwd_igemm_32_bf16, 32, kBf16)

#define DIFFRECON_CONV_BWD_IGEMM_WIDE(NAME, BM, BN, P, MIN_BLOCKS)                                 \
    DIFFRECON_CONV_BWD_ENTRY(NAME, (kBlock, MIN_BLOCKS),                                           \
                             conv_igemm_wide_dispatch<ConvMode::BackwardData, BM, BN, P, false>)
DIFFRECON_CONV_BWD_IGEMM_WIDE(conv2d_bwd_igemm_128, 128, 128, kF32, 1)
DIFFRECON_CONV_BWD_IGEMM_WIDE(conv2d_bwd_igemm_64x128, 64, 128, kF32, 2)
DIFFRECON_CONV_BWD_IGEMM_WIDE(conv2d_bwd_igemm_64x128_tf32, 64, 128, kTf32, 2)
DIFFRECON_CONV_BWD_IGEMM_WIDE(conv2d_bwd_igemm_64x128_bf16, 64, 128, kBf16, 2)

// out[i] = (bias[m] or 0) + partial[0][i] + ... + partial[k_split − 1][i] in that order, then the
// epilogue as above; i over the `total` = n·rows·pix outputs, m = (i / pix) % rows. One thread
// per output, grid = ceil(total / 256). bias == nullptr: start from 0 (the backward).
extern "C" __global__ void conv2d_splitk_reduce(const float* __restrict__ partial,
                                                const float* __restrict__ bias,
                                                const float* __restrict__ extra, int epi,
                                                float* __restrict__ out, int k_split, int rows,
                                                int pix, int total) {
    const int i = flat_index();
    if (i >= total) return;
    const int plane = i / pix;  // img·rows + m
    const int m = plane % rows;
    float v = bias != nullptr ? bias[m] : 0.0f;
    for (int z = 0; z < k_split; ++z) v = __fadd_rn(v, partial[(long long)z * total + i]);
    if (epi == EPI_CHANNEL) v = __fadd_rn(v, extra[plane]);
    if (epi == EPI_RESIDUAL) v = __fadd_rn(v, extra[i]);
    out[i] = v;
}
