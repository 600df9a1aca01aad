// The strided batched SGEMM of kernels/gemm.cu (both tiles) on the CPU through shim.h against a
// double-precision product: plain and transposed operand views, beta 0 (C starts as NaN and
// must not be read) and beta 1, sizes off the tile edges. Built and run by
// tests/kernel_emulation.rs; exits 1 on any mismatch.
#include "shim.h"
#include "gemm.cu"
#include <cstdio>
#include <random>

struct Case {
    int m, n, k, batch;
    bool a_t, b_t;  // A stored k-major (transposed view), B stored n-major
    float beta;
};

int main() {
    std::mt19937 rng(7);
    std::normal_distribution<float> nd;
    const Case cases[] = {{5, 7, 3, 1, false, false, 0.0f},  {70, 33, 19, 2, true, false, 0.0f},
                          {33, 70, 40, 3, false, true, 1.0f}, {64, 64, 16, 1, true, true, 0.0f},
                          {65, 31, 17, 2, false, false, 1.0f}, {1, 100, 9, 1, true, false, 0.0f}};
    int bad = 0;
    for (const Case& c : cases) {
        // A_z (m × k): element (i, p) at i·a_rs + p·a_cs; likewise B_z (k × n).
        const int a_rs = c.a_t ? 1 : c.k, a_cs = c.a_t ? c.m : 1;
        const int b_rs = c.b_t ? 1 : c.n, b_cs = c.b_t ? c.k : 1;
        const long long a_bs = (long long)c.m * c.k, b_bs = (long long)c.k * c.n,
                        c_bs = (long long)c.m * c.n;
        std::vector<float> a(a_bs * c.batch), b(b_bs * c.batch), c0(c_bs * c.batch);
        for (auto* v : {&a, &b, &c0})
            for (auto& e : *v) e = nd(rng);
        std::vector<float> want(c0.size());
        for (int z = 0; z < c.batch; ++z)
            for (int i = 0; i < c.m; ++i)
                for (int j = 0; j < c.n; ++j) {
                    double acc = 0;
                    for (int p = 0; p < c.k; ++p)
                        acc += (double)a[z * a_bs + i * a_rs + p * a_cs] *
                               b[z * b_bs + p * b_rs + j * b_cs];
                    const long long o = z * c_bs + (long long)i * c.n + j;
                    want[o] = (float)(acc + (c.beta != 0.0f ? c.beta * c0[o] : 0.0));
                }
        for (int tile : {32, 64}) {
            std::vector<float> out = c0;
            if (c.beta == 0.0f) std::fill(out.begin(), out.end(), NAN);
            const dim3 grid{(unsigned)((c.n + tile - 1) / tile), (unsigned)((c.m + tile - 1) / tile),
                            (unsigned)c.batch};
            launch(grid, {256, 1, 1}, [&] {
                auto f = tile == 64 ? sgemm_strided : sgemm_strided_32;
                f(c.m, c.n, c.k, a.data(), a_rs, a_cs, b.data(), b_rs, b_cs, out.data(), c.n,
                  c.beta, a_bs, b_bs, c_bs);
            });
            double num = 0, den = 0;
            for (size_t i = 0; i < out.size(); ++i) {
                const double d = (double)out[i] - want[i];
                num += std::isnan(out[i]) ? 1e30 : d * d;
                den += (double)want[i] * want[i];
            }
            const double e = std::sqrt(num / std::max(den, 1e-30));
            const bool ok = e < 1e-5;
            bad += !ok;
            std::printf("sgemm %dx%dx%d batch %d a_t %d b_t %d beta %g tile %d: %.2e %s\n", c.m,
                        c.n, c.k, c.batch, c.a_t, c.b_t, c.beta, tile, e, ok ? "ok" : "FAIL");
        }
    }
    std::printf("%s\n", bad ? "FAILURES" : "ALL OK");
    return bad != 0;
}
