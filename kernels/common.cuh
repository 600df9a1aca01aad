// Shared helpers for the kernels under kernels/. Every kernel mirrors an op of the CPU backend
// (src/backend/cpu/), which is the reference: where the CPU rounds each product and sum on
// its own (Rust never contracts a*b+c into an FMA), the kernels use the explicit
// round-to-nearest intrinsics (__fmul_rn, __fadd_rn, ...) so that nvcc cannot fuse them either.
#pragma once

// Threads per block of the 1-D elementwise kernels and of the per-block reductions.
constexpr int kBlock = 256;
constexpr int kWarp = 32;

// Flat index of this thread in a 1-D launch (grid = ceil(len / kBlock), block = kBlock).
__device__ __forceinline__ int flat_index() {
    return blockIdx.x * blockDim.x + threadIdx.x;
}

// SiLU(z) = z · sigmoid(z), in the CPU's order: z * (1 / (1 + exp(-z))). expf is the accurate
// libdevice exp (≤ 2 ulp); the CPU uses its own polynomial (≤ 2e-7 relative), so results agree to
// a few ulp rather than bit for bit.
__device__ __forceinline__ float silu(float z) {
    const float s = __fdiv_rn(1.0f, __fadd_rn(1.0f, expf(-z)));
    return __fmul_rn(z, s);
}

// d silu(z) / dz = s·(1 + z·(1 − s)), s = sigmoid(z), in the CPU's order (math.rs, silu_grad),
// each operation rounded on its own (no FMA).
__device__ __forceinline__ float silu_grad(float z) {
    const float s = __fdiv_rn(1.0f, __fadd_rn(1.0f, expf(-z)));
    return __fmul_rn(s, __fadd_rn(1.0f, __fmul_rn(z, __fsub_rn(1.0f, s))));
}

// GroupNorm's per-element step, y = x·scale + shift (rounded product, then sum: no FMA, as the
// CPU) and SiLU when `silu`: group_norm_fwd's output and the conv's fold of it (conv.cu, `norm`)
// both call this, so the conv gathers the bits the norm would have written.
__device__ __forceinline__ float norm_affine(float x, float scale, float shift, bool silu_out) {
    const float z = __fadd_rn(__fmul_rn(x, scale), shift);
    return silu_out ? silu(z) : z;
}

// clamp that lets NaN through, as Rust's f32::clamp does (fminf/fmaxf would replace it).
__device__ __forceinline__ float clamp_nan(float v, float lo, float hi) {
    return v < lo ? lo : (v > hi ? hi : v);
}

__device__ __forceinline__ double warp_sum(double v) {
#pragma unroll
    for (int off = kWarp / 2; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}

// Sum of v over the whole block, returned to every thread. `scratch` holds one double per warp
// (at least blockDim.x / 32). The leading __syncthreads makes back-to-back calls with the same
// scratch safe. blockDim.x must be a multiple of 32 and every thread must call it.
__device__ __forceinline__ double block_sum(double v, double* scratch) {
    const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
    const int nwarps = blockDim.x / kWarp;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    double total = 0.0;
    // Every thread adds the per-warp sums in the same order: all get the same bits.
    for (int w = 0; w < nwarps; ++w) total += scratch[w];
    return total;
}
