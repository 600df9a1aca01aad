// The strided batched SGEMM of kernels/gemm.cu (both tiles, f32 and the tensor-core paths TF32
// and BF16) on the CPU through shim.h against a double-precision product of the operands rounded
// as each precision stages them: plain and transposed operand views, with and without a row bias
// and a residual laid out as C (C starts as NaN where it is written: it must never be read), sizes
// off the tile edges, one batch stride and two (`outer`
// repeats of `batch` matrices, the repeats further apart than the batch spans); at f32 the two
// tiles must also give the same bits. Built and run by tests/kernel_emulation.rs; exits 1 on
// any mismatch.
#include "shim.h"
#include "gemm.cu"
#include "check.h"

#include <cstdio>
#include <cstring>
#include <random>

struct Case {
    int m, n, k, batch;
    bool a_t, b_t;  // A stored k-major (transposed view), B stored n-major
    bool bias;      // f32's row bias and residual, or neither; the tensor-core paths run both
    int outer = 1;  // repeats of the batch at the outer strides
};

int main() {
    std::mt19937 rng(7);
    std::normal_distribution<float> nd;
    const Case cases[] = {{5, 7, 3, 1, false, false, false},    {70, 33, 19, 2, true, false, false},
                          {33, 70, 40, 3, false, true, true},  {64, 64, 16, 1, true, true, false},
                          {65, 31, 17, 2, false, false, true}, {1, 100, 9, 1, true, false, false},
                          {33, 40, 24, 3, true, false, false, 2},
                          {20, 70, 9, 2, false, true, true, 3}};
    // The entry points by precision (kF32, kTf32, kBf16) and tile (32, 64).
    using Sgemm = decltype(&sgemm_strided);
    const Sgemm kernels[3][2] = {{sgemm_strided_32, sgemm_strided},
                                 {sgemm_strided_32_tf32, sgemm_strided_tf32},
                                 {sgemm_strided_32_bf16, sgemm_strided_bf16}};
    int bad = 0;
    for (const Case& c : cases) {
        // A_z (m × k): element (i, p) at i·a_rs + p·a_cs; likewise B_z (k × n).
        const int a_rs = c.a_t ? 1 : c.k, a_cs = c.a_t ? c.m : 1;
        const int b_rs = c.b_t ? 1 : c.n, b_cs = c.b_t ? c.k : 1;
        const long long a_bs = (long long)c.m * c.k, b_bs = (long long)c.k * c.n,
                        c_bs = (long long)c.m * c.n;
        // Matrix (zo, zi) at zi·bs + zo·os; the gaps between repeats are never written.
        const long long a_os = a_bs * c.batch + 5, b_os = b_bs * c.batch + 3,
                        c_os = c_bs * c.batch + 7;
        const int count = c.batch * c.outer;
        std::vector<float> a(a_os * c.outer), b(b_os * c.outer), c0(c_os * c.outer), bias(c.m),
            res(c_os * c.outer);
        for (auto* v : {&a, &b, &c0, &bias, &res})
            for (auto& e : *v)
                e = nd(rng);
        // A·B (+ bias[i]) (+ the residual) in double, rounded to f32 once.
        auto reference = [&](const std::vector<float>& a, const std::vector<float>& b, bool with_bias) {
            const bool with_res = with_bias;  // the bias cases also add the residual
            std::vector<float> want = c0;  // the gaps keep their values
            for (int z = 0; z < count; ++z) {
                const int zo = z / c.batch, zi = z % c.batch;
                const long long ao = zi * a_bs + zo * a_os, bo = zi * b_bs + zo * b_os,
                                co = zi * c_bs + zo * c_os;
                for (int i = 0; i < c.m; ++i)
                    for (int j = 0; j < c.n; ++j) {
                        double acc = 0;
                        for (int p = 0; p < c.k; ++p)
                            acc += (double)a[ao + i * a_rs + p * a_cs] * b[bo + p * b_rs + j * b_cs];
                        const long long o = co + (long long)i * c.n + j;
                        want[o] = (float)(acc + (with_bias ? (double)bias[i] : 0.0) +
                                          (with_res ? (double)res[o] : 0.0));
                    }
            }
            return want;
        };
        for (int prec : {kF32, kTf32, kBf16}) {
            // The operands as the kernel stages them (the zero padding stays zero).
            const std::vector<float> aq = rounded(prec, a), bq = rounded(prec, b);
            for (bool with_bias : prec == kF32 ? std::vector<bool>{c.bias} : std::vector{false, true}) {
                const std::vector<float> want = reference(aq, bq, with_bias),
                                         unrounded = reference(a, b, with_bias);
                const float* row_bias = with_bias ? bias.data() : nullptr;
                const float* residual = with_bias ? res.data() : nullptr;
                std::vector<float> tile32;  // the 32 tile's output, for the f32 bit comparison
                for (int tile : {32, 64}) {
                    std::vector<float> out = c0;
                    // NaN where C is written (it must not be read), not the gaps.
                    for (int z = 0; z < count; ++z)
                        std::fill_n(out.begin() + (z % c.batch) * c_bs + (z / c.batch) * c_os,
                                    c_bs, NAN);
                    const dim3 grid{(unsigned)((c.n + tile - 1) / tile),
                                    (unsigned)((c.m + tile - 1) / tile), (unsigned)count};
                    launch(grid, {256, 1, 1}, [&] {
                        kernels[prec][tile == 64](c.m, c.n, c.k, a.data(), a_rs, a_cs, b.data(),
                                                  b_rs, b_cs, out.data(), c.n, row_bias, residual, a_bs, b_bs,
                                                  c_bs, c.batch, a_os, b_os, c_os);
                    });
                    std::printf("sgemm %s %dx%dx%d batch %d x %d a_t %d b_t %d bias+residual %d tile %d",
                                prec_name(prec), c.m, c.n, c.k, c.batch, c.outer, c.a_t, c.b_t,
                                (int)with_bias, tile);
                    bad += !verdict(prec, out, want, unrounded);
                    // At f32 both tiles add each output's terms in the same order: the same bits.
                    if (prec == kF32 && tile == 32) tile32 = out;
                    if (prec == kF32 && tile == 64) {
                        const bool same = std::memcmp(out.data(), tile32.data(),
                                                      out.size() * sizeof(float)) == 0;
                        std::printf("   tile 64 %s tile 32\n",
                                    same ? "same bits as" : "BITS DIFFER from");
                        bad += !same;
                    }
                }
            }
        }
    }
    std::printf("%s\n", bad ? "FAILURES" : "ALL OK");
    return bad != 0;
}
