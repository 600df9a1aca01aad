// A CPU emulation of the CUDA execution model, enough to run a kernel's index logic without a
// GPU: blocks run one after another on one std::thread per CUDA thread; __syncthreads is
// a barrier over the block's threads and __shared__ is `static` (one block lives at a time).
// Arithmetic intrinsics map to plain C++ (no FMA contraction guarantees): the harnesses compare
// against double-precision references with a tolerance, not bit for bit. Warp shuffles are not
// emulated (stubbed to compile common.cuh); a kernel that needs them is out of scope here.
#pragma once
#include <cmath>
#include <barrier>
#include <thread>
#include <vector>
#include <functional>
struct float4 { float x, y, z, w; };
struct float2 { float x, y; };
struct dim3 { unsigned x = 1, y = 1, z = 1; };
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
template <class T> inline T __ldg(const T* p) { return *p; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
template <class T> inline T __shfl_xor_sync(unsigned, T v, int) { return v; }
using std::min; using std::max;
// Runs f as a grid of blocks: nt threads (one per CUDA thread of a block) are started once per
// launch and walk the blocks in order together, with a barrier between blocks, because the
// `static` shared arrays belong to one block at a time.
inline void launch(dim3 grid, dim3 block, std::function<void()> f) {
    gridDim = grid;
    blockDim = block;
    const unsigned nt = block.x * block.y * block.z;
    std::barrier<> bar(nt);
    g_bar = &bar;
    std::vector<std::thread> ts;
    for (unsigned t = 0; t < nt; ++t)
        ts.emplace_back([&, t] {
            threadIdx = {t % block.x, (t / block.x) % block.y, t / (block.x * block.y)};
            for (unsigned bz = 0; bz < grid.z; ++bz)
                for (unsigned by = 0; by < grid.y; ++by)
                    for (unsigned bx = 0; bx < grid.x; ++bx) {
                        blockIdx = {bx, by, bz};
                        f();
                        bar.arrive_and_wait();  // the block is done before the next starts
                    }
        });
    for (auto& th : ts) th.join();
}
