// Asynchronous global → shared copies (cp.async, sm_80 and later), for kernels that stage the
// next K chunk while they multiply the current one.
//
//   cp_async_f32(dst, src, valid)  copy one float; with valid = false, write 0 and read nothing
//                                  (src must still be a valid global address)
//   cp_async_commit()              close this thread's group of copies issued since the last one
//   cp_async_wait<N>()             wait until at most the N newest groups are still in flight
//
// Copies are per thread: after the wait, a __syncthreads makes every thread's copies visible to
// the block. Without nvcc (the CPU emulation, tests/emu/shim.h) the shim defines the same three
// calls, delaying each copy until its wait.
#pragma once

#if defined(__CUDACC__)
__device__ __forceinline__ void cp_async_f32(float* dst, const float* src, bool valid) {
    const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(dst));
    const int bytes = valid ? 4 : 0;  // src-size 0: the 4 bytes are zero-filled
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(s), "l"(src), "r"(bytes)
                 : "memory");
}

__device__ __forceinline__ void cp_async_commit() {
    asm volatile("cp.async.commit_group;\n" ::: "memory");
}

template <int N>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}
#endif
