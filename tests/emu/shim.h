// A CPU emulation of the CUDA execution model, enough to run a kernel's index logic without a
// GPU: blocks run one after another on one std::thread per CUDA thread; __syncthreads is
// a barrier over the block's threads and __shared__ is `static` (one block lives at a time).
// Arithmetic intrinsics map to plain C++ (no FMA contraction guarantees): the harnesses compare
// against double-precision references with a tolerance, not bit for bit. __shfl_xor_sync
// exchanges values between the 32 threads of a warp through a per-warp barrier, so every lane
// of the warp must reach it (a lane missing from the collective hangs the harness, as it would
// be undefined on the GPU).
//
// WMMA (nvcuda::wmma, below): the subset tensor_core.cuh uses, TF32 m16n16k8 and BF16 m16n16k16
// with f32 accumulators; tests/emu/wmma_shim.cpp checks it. The real fragment layout is opaque,
// so every emulated thread holds the whole tile: load_matrix_sync reads all of it, mma_sync
// computes D = A·B + C in f32 (k increasing, one rounding per term, as fmaf), and
// store_matrix_sync writes it from lane 0 of each warp only, so that the 32 identical copies do
// not race. WMMA's documented preconditions abort with a message on stderr: a 256-bit (32-byte)
// aligned pointer, ldm a multiple of 16 bytes (8 elements of 16 bits, 4 floats). TF32 operands
// lose their low 13 mantissa bits when loaded, as the hardware ignores them, so a kernel that
// skips __float_to_tf32 truncates instead of rounding.
// Not checked: that a WMMA call is reached by the whole warp, converged, and with the same
// arguments in every lane; each emulated thread runs it on its own.
//
// Planted bugs, to show that the harnesses fail (never set by tests/kernel_emulation.rs):
//   -DDIFFRECON_PLANT_TF32_NO_ROUND    __float_to_tf32 returns its argument unchanged
//   -DDIFFRECON_PLANT_BF16_TRUNCATE    __float2bfloat16_rn truncates instead of rounding
//   -DDIFFRECON_PLANT_IGNORE_LAYOUT    load_matrix_sync reads col_major tiles as row_major
//   -DDIFFRECON_PLANT_WAIT_ONE_SHORT   cp_async_wait<N> waits for one group fewer than asked
#pragma once
#include <atomic>
#include <barrier>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <functional>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>
struct float4 {
    float x, y, z, w;
};
struct float2 {
    float x, y;
};
struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};
inline thread_local dim3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;
inline std::barrier<>* g_bar = nullptr;
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))
#define __restrict__ __restrict
#define __launch_bounds__(...)
inline void __syncthreads() { g_bar->arrive_and_wait(); }
template <class T>
inline T __ldg(const T* p) {
    return *p;
}
template <class T>
inline T __ldcg(const T* p) {
    return *p;
}
// Blocks run one after another, so a fence has nothing to order; the atomic is a real one (the
// threads of a block run concurrently).
inline void __threadfence() {}
inline unsigned atomicAdd(unsigned* p, unsigned v) {
    return std::atomic_ref<unsigned>(*p).fetch_add(v);
}
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fsqrt_rn(float a) { return std::sqrt(a); }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dsub_rn(double a, double b) { return a - b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __ddiv_rn(double a, double b) { return a / b; }
// One warp's exchange slots and the barrier its lanes meet at (launch sets them up per block).
struct WarpExchange {
    explicit WarpExchange(unsigned lanes) : bar(lanes) {}
    std::barrier<> bar;
    alignas(8) unsigned char slot[32][8];
};
inline std::vector<std::unique_ptr<WarpExchange>> g_warps;
template <class T>
inline T __shfl_xor_sync(unsigned, T v, int lane_mask) {
    static_assert(sizeof(T) <= 8);
    const unsigned tid = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    WarpExchange& w = *g_warps[tid / 32];
    const unsigned lane = tid % 32, from = lane ^ (unsigned)lane_mask;
    std::memcpy(w.slot[lane], &v, sizeof(T));
    w.bar.arrive_and_wait();
    T out = v;
    if (from < 32)
        std::memcpy(&out, w.slot[from], sizeof(T));
    w.bar.arrive_and_wait();  // every lane has read before the next exchange writes
    return out;
}
using std::max;
using std::min;

// BF16 as cuda_bf16.h has it, less its operators: 16 bits (the high half of an f32), trivially
// default-constructible (it sits in unions in shared memory), converted only explicitly.
struct __nv_bfloat16 {
    uint16_t bits;
};
static_assert(sizeof(__nv_bfloat16) == 2 && std::is_trivial_v<__nv_bfloat16>);
// Round to nearest even; NaN stays NaN (the canonical 0x7fff, as cuda_bf16.h gives).
inline __nv_bfloat16 __float2bfloat16_rn(float f) {
    uint32_t u = std::bit_cast<uint32_t>(f);
    if (std::isnan(f))
        return {0x7fff};
#if defined(DIFFRECON_PLANT_BF16_TRUNCATE)
    return {(uint16_t)(u >> 16)};
#endif
    u += 0x7fffu + ((u >> 16) & 1u);  // a carry into the exponent is the rounding up
    return {(uint16_t)(u >> 16)};
}
inline float __bfloat162float(__nv_bfloat16 h) {
    return std::bit_cast<float>((uint32_t)h.bits << 16);
}

namespace nvcuda::wmma {

// Tags, incomplete as in mma.h: they only name things.
struct matrix_a;
struct matrix_b;
struct accumulator;
struct row_major;
struct col_major;
namespace precision {
struct tf32;
}
enum layout_t { mem_row_major, mem_col_major };

// cvt.rna.tf32.f32: round to nearest, ties away from zero, to 10 explicit mantissa bits (the low
// 13 bits become 0); Inf and NaN unchanged.
inline float __float_to_tf32(float f) {
#if defined(DIFFRECON_PLANT_TF32_NO_ROUND)
    return f;
#endif
    if (!std::isfinite(f))
        return f;
    const uint32_t u = std::bit_cast<uint32_t>(f);
    return std::bit_cast<float>((u + 0x1000u) & ~0x1fffu);  // sign-magnitude: ties away
}

namespace emu {

// What a fragment of element type T stores (tf32 values live in floats).
template <class T>
struct Storage {
    using type = T;
};
template <>
struct Storage<precision::tf32> {
    using type = float;
};

// The shapes the kernels use (mma.h has more): TF32 m16n16k8, BF16 m16n16k16, f32 accumulators.
template <class T, int M, int N, int K>
constexpr bool kShape = false;
template <>
constexpr bool kShape<precision::tf32, 16, 16, 8> = true;
template <>
constexpr bool kShape<__nv_bfloat16, 16, 16, 16> = true;
template <int M, int N, int K>
constexpr bool kAccShape = kShape<precision::tf32, M, N, K> || kShape<__nv_bfloat16, M, N, K>;

template <class Use, int M, int N, int K>
constexpr int kRows = std::is_same_v<Use, matrix_b> ? K : M;
template <class Use, int M, int N, int K>
constexpr int kCols = std::is_same_v<Use, matrix_a> ? K : N;

[[noreturn]] inline void fail(const char* fn, const char* what, const void* p, unsigned ldm) {
    static std::mutex m;
    // One message, after the harness's lines so far; then the process ends.
    std::lock_guard<std::mutex> lock(m);
    std::fflush(stdout);
    std::fprintf(stderr, "shim: wmma::%s: %s (ptr %p, ldm %u, threadIdx.x %u, blockIdx %u,%u,%u)\n",
                 fn, what, p, ldm, threadIdx.x, blockIdx.x, blockIdx.y, blockIdx.z);
    std::abort();
}

// WMMA's preconditions on a load or store: a 256-bit aligned pointer and ldm a multiple of 16
// bytes (8 elements of a 16-bit type, 4 of a 32-bit one).
inline void check(const char* fn, const void* p, unsigned ldm, unsigned elem_bytes) {
    if (reinterpret_cast<uintptr_t>(p) % 32 != 0)
        fail(fn, "the pointer is not 256-bit (32-byte) aligned", p, ldm);
    if (ldm % (16 / elem_bytes) != 0)
        fail(fn,
             elem_bytes == 2 ? "ldm is not a multiple of 8 (16-bit elements)"
                             : "ldm is not a multiple of 4 (32-bit elements)",
             p, ldm);
}

// This thread's lane in its warp (threads numbered x fastest, as CUDA does).
inline unsigned lane() {
    return ((threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x) % 32;
}

inline float to_float(float v) { return v; }
inline float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

}  // namespace emu

// The whole M×K (matrix_a), K×N (matrix_b) or M×N (accumulator) tile, row by row in x[]
// whatever the layout: x[r * cols + c] is element (r, c).
template <class Use, int M, int N, int K, class T, class Layout = void>
struct fragment {
    static constexpr bool kOperand = std::is_same_v<Use, matrix_a> || std::is_same_v<Use, matrix_b>;
    static_assert(kOperand || std::is_same_v<Use, accumulator>, "use: matrix_a, _b, accumulator");
    static_assert(!kOperand || emu::kShape<T, M, N, K>,
                  "operands: tf32 m16n16k8 or bf16 m16n16k16 (the emulated shapes)");
    static_assert(!kOperand || std::is_same_v<Layout, row_major> ||
                      std::is_same_v<Layout, col_major>,
                  "an operand fragment needs a row_major or col_major layout");
    static_assert(kOperand || (std::is_same_v<T, float> && std::is_void_v<Layout> &&
                               emu::kAccShape<M, N, K>),
                  "accumulators: float, no layout, a shape of the operands");
    using element_type = T;
    using storage_element_type = typename emu::Storage<T>::type;
    static constexpr int num_elements = emu::kRows<Use, M, N, K> * emu::kCols<Use, M, N, K>;
    storage_element_type x[num_elements];
};

template <class Use, int M, int N, int K, class T, class L>
inline void fill_fragment(fragment<Use, M, N, K, T, L>& a,
                          const typename fragment<Use, M, N, K, T, L>::storage_element_type& v) {
    for (auto& e : a.x)
        e = v;
}

// Operands only (tf32 from const float*, bf16 from const __nv_bfloat16*): element (r, c) of the
// tile is p[r * ldm + c] (row_major) or p[r + c * ldm] (col_major).
template <class Use, int M, int N, int K, class T, class L>
inline void load_matrix_sync(fragment<Use, M, N, K, T, L>& a,
                             const typename emu::Storage<T>::type* p, unsigned ldm) {
    static_assert(!std::is_same_v<Use, accumulator>, "accumulator loads are not emulated");
    using S = typename emu::Storage<T>::type;
    emu::check("load_matrix_sync", p, ldm, sizeof(S));
    constexpr int rows = emu::kRows<Use, M, N, K>, cols = emu::kCols<Use, M, N, K>;
    bool row = std::is_same_v<L, row_major>;
#if defined(DIFFRECON_PLANT_IGNORE_LAYOUT)
    row = true;
#endif
    for (int r = 0; r < rows; ++r)
        for (int c = 0; c < cols; ++c) {
            S v = p[row ? r * ldm + c : r + c * ldm];
            if constexpr (std::is_same_v<T, precision::tf32>)
                if (!std::isnan(v))  // the tensor core reads 10 mantissa bits: truncation
                    v = std::bit_cast<float>(std::bit_cast<uint32_t>(v) & ~0x1fffu);
            a.x[r * cols + c] = v;
        }
}

// D = A·B + C, each element accumulated in f32 from C in increasing k. d may be c. The products
// of operands of at most 11 significant bits are exact in f32 (barring underflow), so a·b + acc
// rounds once, as fmaf would, at a fraction of the cost of the library fmaf (32 lanes each
// compute the whole tile).
template <int M, int N, int K, class T, class LA, class LB>
inline void mma_sync(fragment<accumulator, M, N, K, float>& d,
                     const fragment<matrix_a, M, N, K, T, LA>& a,
                     const fragment<matrix_b, M, N, K, T, LB>& b,
                     const fragment<accumulator, M, N, K, float>& c) {
    float af[M * K], bf[K * N], out[M * N];
    for (int e = 0; e < M * K; ++e)
        af[e] = emu::to_float(a.x[e]);
    for (int e = 0; e < K * N; ++e)
        bf[e] = emu::to_float(b.x[e]);
    for (int e = 0; e < M * N; ++e)
        out[e] = c.x[e];
    for (int i = 0; i < M; ++i)
        for (int p = 0; p < K; ++p)
            for (int j = 0; j < N; ++j)
                out[i * N + j] += af[i * K + p] * bf[p * N + j];
    for (int e = 0; e < M * N; ++e)
        d.x[e] = out[e];
}

// Writes the tile, element (i, j) at p[i * ldm + j] (mem_row_major) or p[i + j * ldm]
// (mem_col_major), from lane 0 of the warp only: every lane holds the same copy.
template <int M, int N, int K>
inline void store_matrix_sync(float* p, const fragment<accumulator, M, N, K, float>& a,
                              unsigned ldm, layout_t layout) {
    emu::check("store_matrix_sync", p, ldm, sizeof(float));
    if (emu::lane() != 0)
        return;
    for (int i = 0; i < M; ++i)
        for (int j = 0; j < N; ++j)
            p[layout == mem_row_major ? i * ldm + j : i + j * ldm] = a.x[i * N + j];
}

}  // namespace nvcuda::wmma

// cp.async (kernels/async_copy.cuh), emulated strictly: a copy reads its source when issued but
// lands in shared memory only when a cp_async_wait of the issuing thread retires its group; until
// then the destination holds NaN, so a kernel that reads a stage before waiting for it, or issues
// into a stage another thread still reads, computes NaN. A block that ends with copies still in
// flight aborts (its data would never be read).
struct AsyncCopies {
    std::vector<std::pair<float*, float>> open;                   // issued since the last commit
    std::vector<std::vector<std::pair<float*, float>>> committed;  // oldest first
    bool empty() const {
        if (!open.empty())
            return false;
        for (auto& g : committed)
            if (!g.empty())
                return false;
        return true;
    }
};
inline thread_local AsyncCopies t_async;
inline void cp_async_f32(float* dst, const float* src, bool valid) {
    t_async.open.push_back({dst, valid ? *src : 0.0f});
    *dst = NAN;
}
inline void cp_async_commit() {
    t_async.committed.push_back(std::move(t_async.open));
    t_async.open.clear();
}
template <int N>
inline void cp_async_wait() {
#if defined(DIFFRECON_PLANT_WAIT_ONE_SHORT)
    constexpr int kLeft = N + 1;  // leaves the group the kernel is about to read in flight
#else
    constexpr int kLeft = N;
#endif
    while (t_async.committed.size() > (size_t)kLeft) {
        for (auto [dst, v] : t_async.committed.front())
            *dst = v;
        t_async.committed.erase(t_async.committed.begin());
    }
}

// Runs f as a grid of blocks: nt threads (one per CUDA thread of a block) are started once per
// launch and walk the blocks in order together, with a barrier between blocks, because the
// `static` shared arrays belong to one block at a time.
inline void launch(dim3 grid, dim3 block, std::function<void()> f) {
    gridDim = grid;
    blockDim = block;
    const unsigned nt = block.x * block.y * block.z;
    std::barrier<> bar(nt);
    g_bar = &bar;
    g_warps.clear();
    for (unsigned first = 0; first < nt; first += 32)
        g_warps.push_back(std::make_unique<WarpExchange>(std::min(32u, nt - first)));
    std::vector<std::thread> ts;
    for (unsigned t = 0; t < nt; ++t)
        ts.emplace_back([&, t] {
            threadIdx = {t % block.x, (t / block.x) % block.y, t / (block.x * block.y)};
            for (unsigned bz = 0; bz < grid.z; ++bz)
                for (unsigned by = 0; by < grid.y; ++by)
                    for (unsigned bx = 0; bx < grid.x; ++bx) {
                        blockIdx = {bx, by, bz};
                        f();
                        if (!t_async.empty()) {
                            fprintf(stderr, "cp.async: a block ended with copies in flight\n");
                            abort();
                        }
                        t_async = {};
                        bar.arrive_and_wait();  // the block is done before the next starts
                    }
        });
    for (auto& th : ts)
        th.join();
}
