// The tensor-core path shared by the implicit-GEMM conv (conv.cu) and the SGEMM (gemm.cu):
// operand rounding at staging time and a block tile of C computed with warp MMAs (WMMA).
//
// Both kernels stage K in chunks of 16 through shared memory in the same layout:
//   As[p][i] = A(m0 + i, k0 + p)   (A column-major, leading dimension BM + pad)
//   Bs[p][j] = B(k0 + p, n0 + j)   (B row-major,    leading dimension BN + pad)
// The f32 path reads them with per-thread FMAs; the tensor-core path (TcTile below) reads the
// same tiles as 16×16 fragments. Values are rounded to the operand type as they are staged
// (TF32: round to nearest, ties away, 10 mantissa bits, as cvt.rna.tf32.f32; BF16: round to
// nearest even), so every warp reading a value sees the same rounded operand; products of such
// operands are exact in f32 and accumulate in f32. The CPU backend's emulation (src/precision.rs)
// rounds the same operands, so on the same inputs the two differ only in summation order (and the
// tensor cores' accumulation); through a network, later roundings amplify that.
//
// Precision codes (template argument P): kF32 (no tensor cores), kTf32, kBf16.
// Without nvcc (the CPU emulation in tests/emu/shim.h) the WMMA API comes from the shim.
#pragma once
#include "common.cuh"

#if defined(__CUDACC__)
#include <cuda_bf16.h>
#include <mma.h>
#endif

constexpr int kF32 = 0;
constexpr int kTf32 = 1;
constexpr int kBf16 = 2;

namespace tc {

namespace wmma = nvcuda::wmma;

// The staged operand type and its shared-row pad. The pad keeps every fragment pointer 32-byte
// aligned and the leading dimension a multiple of 16 bytes (WMMA's rules) while breaking the
// bank conflicts of the column-wise staging writes.
template <int P> struct Operand {
    using T = float;
    static constexpr int kPad = 4;
};
template <> struct Operand<kBf16> {
    using T = __nv_bfloat16;
    static constexpr int kPad = 8;
};

template <int P> __device__ __forceinline__ typename Operand<P>::T to_operand(float v) {
    if constexpr (P == kTf32) return wmma::__float_to_tf32(v);
    else if constexpr (P == kBf16) return __float2bfloat16_rn(v);
    else return v;
}

// One MMA's K depth and the fragment element type per precision.
template <int P> struct Shape;
template <> struct Shape<kTf32> {
    static constexpr int kK = 8;
    using Elem = wmma::precision::tf32;
};
template <> struct Shape<kBf16> {
    static constexpr int kK = 16;
    using Elem = __nv_bfloat16;
};

// The shared memory of one BM×BN block tile staged 16 K terms at a time: the operand tiles
// (As, Bs as above; row pad `pad` on the f32 path), and on the tensor-core path the C tile
// (row-major, leading dimension BN + 4) that the accumulators go through after the K loop. C
// reuses the operands' space: the K loop has finished with them by then.
template <int BM, int BN, int P, int F32_PAD> struct SharedTiles {
    using T = typename Operand<P>::T;
    static constexpr int kPad = P == kF32 ? F32_PAD : Operand<P>::kPad;
    static constexpr int kLdc = BN + 4;
    union {
        struct {
            T a[16][BM + kPad];
            T b[16][BN + kPad];
        } op;
        float c[P == kF32 ? 1 : BM][kLdc];
    };
};

constexpr int kFrag = 16;  // fragment edge (M and N)
constexpr int kWarps = 8;  // warps of a 256-thread block

// A BM×BN tile of C as 16×16 accumulator fragments spread over the block's 8 warps: fragment f
// (row f / (BN/16), column f % (BN/16)) belongs to warp f % 8. A 64×64 tile gives each warp two
// fragments; a 32×32 tile has four, so warps 4..7 only stage operands. Accumulators start at 0.
template <int BM, int BN, int P> struct TcTile {
    static constexpr int kFn = BN / kFrag;
    static constexpr int kFrags = (BM / kFrag) * kFn;
    static constexpr int kPerWarp = (kFrags + kWarps - 1) / kWarps;
    static constexpr int kK = Shape<P>::kK;
    using Elem = typename Shape<P>::Elem;
    using T = typename Operand<P>::T;
    static_assert(BM % kFrag == 0 && BN % kFrag == 0, "whole fragments");

    wmma::fragment<wmma::accumulator, kFrag, kFrag, kK, float> acc[kPerWarp];

    __device__ __forceinline__ int frag(int s) const {
        return (int)(threadIdx.x / kWarp) + s * kWarps;
    }

    __device__ __forceinline__ void zero() {
#pragma unroll
        for (int s = 0; s < kPerWarp; ++s) wmma::fill_fragment(acc[s], 0.0f);
    }

    // Accumulates one staged chunk of DEPTH K terms: As/Bs as above with leading dimensions
    // lda = BM + pad, ldb = BN + pad. Warp-uniform: a warp without fragments skips it.
    template <int DEPTH>
    __device__ __forceinline__ void mma_chunk(const T* As, int lda, const T* Bs, int ldb) {
        static_assert(DEPTH % kK == 0, "a chunk is whole MMA steps");
#pragma unroll
        for (int s = 0; s < kPerWarp; ++s) {
            const int f = frag(s);
            if (f >= kFrags) continue;
            const int fm = f / kFn, fn = f % kFn;
#pragma unroll
            for (int p = 0; p < DEPTH; p += kK) {
                wmma::fragment<wmma::matrix_a, kFrag, kFrag, kK, Elem, wmma::col_major> a;
                wmma::fragment<wmma::matrix_b, kFrag, kFrag, kK, Elem, wmma::row_major> b;
                wmma::load_matrix_sync(a, As + p * lda + fm * kFrag, lda);
                wmma::load_matrix_sync(b, Bs + p * ldb + fn * kFrag, ldb);
                wmma::mma_sync(acc[s], a, b, acc[s]);
            }
        }
    }

    // Writes the tile to Cs (row-major, leading dimension ldc, a multiple of 4) so that any
    // thread can then read any element; the caller synchronises before reading.
    __device__ __forceinline__ void store(float* Cs, int ldc) const {
#pragma unroll
        for (int s = 0; s < kPerWarp; ++s) {
            const int f = frag(s);
            if (f >= kFrags) continue;
            const int fm = f / kFn, fn = f % kFn;
            wmma::store_matrix_sync(Cs + fm * kFrag * ldc + fn * kFrag, acc[s], ldc,
                                    wmma::mem_row_major);
        }
    }
};

}  // namespace tc
