// Strided, batched single-precision GEMM; reference: src/backend/cpu/gemm.rs.
//
// C_z = A_z·B_z (+ row_bias[i] on row i) (+ residual_z) for z = blockIdx.z, with A_z = a + zi·a_bs + zo·a_os (element (i, p)
// at i·a_rs + p·a_cs), B_z likewise, C_z = c + zi·c_bs + zo·c_os row-major with row stride c_rs,
// where z = zo·inner + zi: a batch of `inner` matrices at one stride (the heads of an image)
// repeated at another (the images). inner = batch and zero outer strides: one stride.
// Any strides, so transposed views need no copy. C is only written (it may hold NaN poison);
// row_bias (m values, the same for every matrix of the batch) may be null. The bias is added
// with fmaf(1, bias, acc), one rounding: the bits of a C filled with the bias and accumulated
// into with beta 1, as the attention projections did before (no separate fill launch). Then,
// when `residual` (laid out as C: same strides) is not null, its element is added, rounded: the
// bits of an add_assign after the GEMM (the attention block's skip connection). Offsets inside one matrix must fit in an int; batch offsets are 64-bit.
//
// Launch: grid = (ceil(n/T), ceil(m/T), batch), block = 256, T = 64 (sgemm_strided) or 32
// (sgemm_strided_32: four times the blocks for the small products of batch 1). Each block owns a
// T×T tile of C; each thread a (T/16)×(T/16) sub-tile (rows ty·T/16.., columns tx + 16·c)
// accumulated in f32 with fmaf in increasing k order, so both tiles give the same bits.
// K is staged through shared memory 16 at a time, the next chunk's global loads issued into
// registers before the current chunk's products.
// The _tf32 / _bf16 entry points take the tensor-core path of tensor_core.cuh: operands rounded
// to TF32 / BF16 as they are staged, warp MMAs with f32 accumulators, then the same store.
#include "common.cuh"
#include "tensor_core.cuh"

#include <type_traits>

namespace {

constexpr int TK = 16;  // K chunk staged per step
// Row pad of the shared tiles: staging along p writes down a column, and a 68-float row
// (still 16-byte aligned for the float4 reads) turns that 16-way bank conflict into 2-way.
constexpr int PAD = 4;

struct NoTile {};  // stands in for tc::TcTile on the f32 path

template <int T, int P>
__device__ __forceinline__ void sgemm_tile(int m, int n, int k, const float* a, int a_rs,
                                           int a_cs, const float* b, int b_rs, int b_cs,
                                           float* c, int c_rs, const float* row_bias,
                                           const float* residual, long long a_bs,
                                           long long b_bs, long long c_bs, int inner,
                                           long long a_os, long long b_os, long long c_os) {
    constexpr int R = T / 16;               // rows and columns per thread
    constexpr int PER = T * TK / kBlock;    // values of each operand a thread stages
    static_assert(PER * kBlock == T * TK, "the tile stages evenly");
    // k-major tiles: As[p][i], Bs[p][j], so the inner loop reads a row of each.
    using Tiles = tc::SharedTiles<T, T, P, PAD>;
    constexpr int OP_PAD = Tiles::kPad;
    __shared__ __align__(32) Tiles sh;
    auto& As = sh.op.a;
    auto& Bs = sh.op.b;

    if (inner < 1) return;
    const int zo = (int)blockIdx.z / inner, zi = (int)blockIdx.z - zo * inner;
    a += zi * a_bs + zo * a_os;
    b += zi * b_bs + zo * b_os;
    c += zi * c_bs + zo * c_os;
    if (residual != nullptr) residual += zi * c_bs + zo * c_os;
    const int i0 = blockIdx.y * T, j0 = blockIdx.x * T;
    const int tid = threadIdx.x;
    const int tx = tid % 16, ty = tid / 16;

    // Staging map, chosen per operand so that neighbouring threads read neighbouring addresses:
    // along p when the operand is contiguous along p (a_cs == 1 / b_rs == 1), else along i / j.
    const bool a_along_p = (a_cs == 1);
    const bool b_along_p = (b_rs == 1) && (b_cs != 1);

    float acc[R][R];
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
        for (int q = 0; q < R; ++q) acc[r][q] = 0.0f;
    std::conditional_t<P == kF32, NoTile, tc::TcTile<T, T, P>> tile;
    if constexpr (P != kF32) tile.zero();

    // Element s of this thread's share of a K chunk: its place (row or column, term) in the
    // staged tiles.
    auto a_at = [&](int s, int& ai, int& ap) {
        const int e = tid + s * kBlock;  // over the T×16 tile
        ai = a_along_p ? e / TK : e % T;
        ap = a_along_p ? e % TK : e / T;
    };
    auto b_at = [&](int s, int& bj, int& bp) {
        const int e = tid + s * kBlock;
        bj = b_along_p ? e / TK : e % T;
        bp = b_along_p ? e % TK : e / T;
    };
    // The next chunk's values are loaded into registers before the current chunk's products
    // (software pipelining, as the conv's narrow tiles do) and staged after them.
    float a_reg[PER], b_reg[PER];
    auto load = [&](int p0) {
#pragma unroll
        for (int s = 0; s < PER; ++s) {
            int ai, ap, bj, bp;
            a_at(s, ai, ap);
            b_at(s, bj, bp);
            const int gi = i0 + ai, gp = p0 + ap, gj = j0 + bj, gq = p0 + bp;
            a_reg[s] = (gi < m && gp < k) ? a[gi * a_rs + gp * a_cs] : 0.0f;
            b_reg[s] = (gj < n && gq < k) ? b[gq * b_rs + gj * b_cs] : 0.0f;
        }
    };

    if (k > 0) load(0);
    for (int p0 = 0; p0 < k; p0 += TK) {
#pragma unroll
        for (int s = 0; s < PER; ++s) {
            int ai, ap, bj, bp;
            a_at(s, ai, ap);
            b_at(s, bj, bp);
            As[ap][ai] = tc::to_operand<P>(a_reg[s]);
            Bs[bp][bj] = tc::to_operand<P>(b_reg[s]);
        }
        __syncthreads();
        if (p0 + TK < k) load(p0 + TK);  // in flight during the products below
        if constexpr (P == kF32) {
#pragma unroll
            for (int p = 0; p < TK; ++p) {
                // Rows ty·R..: a broadcast read. Columns tx + 16·q of B: conflict-free.
                float ar[R], br[R];
#pragma unroll
                for (int r = 0; r < R; ++r) ar[r] = As[p][ty * R + r];
#pragma unroll
                for (int q = 0; q < R; ++q) br[q] = Bs[p][tx + 16 * q];
#pragma unroll
                for (int r = 0; r < R; ++r)
#pragma unroll
                    for (int q = 0; q < R; ++q) acc[r][q] = fmaf(ar[r], br[q], acc[r][q]);
            }
        } else {
            tile.template mma_chunk<TK>(&As[0][0], T + OP_PAD, &Bs[0][0], T + OP_PAD);
        }
        __syncthreads();
    }
    if constexpr (P != kF32) {
        // The fragments' owners are opaque: go through shared memory to this thread's outputs.
        auto& Cs = sh.c;  // overlays As, Bs: the loop's last barrier freed them
        tile.store(&Cs[0][0], Tiles::kLdc);
        __syncthreads();
#pragma unroll
        for (int r = 0; r < R; ++r)
#pragma unroll
            for (int q = 0; q < R; ++q) acc[r][q] = Cs[ty * R + r][tx + 16 * q];
    }

#pragma unroll
    for (int r = 0; r < R; ++r) {
        const int i = i0 + ty * R + r;
        if (i >= m) continue;
#pragma unroll
        for (int q = 0; q < R; ++q) {
            const int j = j0 + tx + 16 * q;
            if (j >= n) continue;
            float* cp = c + i * c_rs + j;
            float v = row_bias == nullptr ? acc[r][q] : fmaf(1.0f, __ldg(row_bias + i), acc[r][q]);
            if (residual != nullptr) v = __fadd_rn(v, __ldg(residual + i * c_rs + j));
            *cp = v;
        }
    }
}

}  // namespace

// _32: 32×32 tiles; _tf32 / _bf16: the tensor-core path. Every entry point takes the same
// arguments.
#define DIFFRECON_SGEMM(NAME, T, P)                                                          \
    extern "C" __global__ void __launch_bounds__(kBlock)                                     \
        NAME(int m, int n, int k, const float* a, int a_rs, int a_cs, const float* b,        \
             int b_rs, int b_cs, float* c, int c_rs, const float* row_bias,                   \
             const float* residual, long long a_bs,                                           \
             long long b_bs, long long c_bs, int inner, long long a_os, long long b_os,      \
             long long c_os) {                                                               \
        sgemm_tile<T, P>(m, n, k, a, a_rs, a_cs, b, b_rs, b_cs, c, c_rs, row_bias, residual,  \
                         a_bs, b_bs, c_bs, inner, a_os, b_os, c_os);                         \
    }
DIFFRECON_SGEMM(sgemm_strided, 64, kF32)
DIFFRECON_SGEMM(sgemm_strided_32, 32, kF32)
DIFFRECON_SGEMM(sgemm_strided_tf32, 64, kTf32)
DIFFRECON_SGEMM(sgemm_strided_32_tf32, 32, kTf32)
DIFFRECON_SGEMM(sgemm_strided_bf16, 64, kBf16)
DIFFRECON_SGEMM(sgemm_strided_32_bf16, 32, kBf16)
