// The time-embedding linear kernels of kernels/elementwise.cu on the CPU through shim.h:
// `linear_split` (every ResBlock's time projection from one stacked weight, each column into its
// own buffer) must give `linear`'s bits on the stacked weight, in one launch and in launches over
// consecutive groups of splits (as the backend launches more than kMaxSplits), and write nothing
// outside its buffers; `linear` must sit within a few ulp of a double-precision product. fin off
// a multiple of the warp, widths of one and of several warps. Built and run by
// tests/kernel_emulation.rs; exits 1 on any mismatch.
#include "shim.h"
#include "elementwise.cu"

#include <cstring>
#include <random>

static int g_bad = 0;

static void launch_warps(long long outputs, std::function<void()> f) {
    const unsigned threads = (unsigned)(outputs * kWarp);
    launch(dim3((threads + 255) / 256, 1, 1), dim3(256, 1, 1), f);
}

int main() {
    std::mt19937 rng(11);
    std::normal_distribution<float> nd;
    const int n = 3, fin = 45;
    const std::vector<int> widths = {1, 32, 7, 64, 5};
    int fout = 0;
    for (int w : widths) fout += w;
    std::vector<float> x(n * fin), w((size_t)fout * fin), b(fout);
    for (auto* v : {&x, &w, &b})
        for (auto& e : *v) e = nd(rng);
    for (int silu_input = 0; silu_input < 2; ++silu_input) {
        std::vector<float> full(n * fout, NAN);
        launch_warps((long long)n * fout, [&] {
            linear(x.data(), w.data(), b.data(), full.data(), n, fin, fout, silu_input);
        });
        // Against a double-precision product, the error relative to Σ|terms| (a sum's
        // condition): the warp's sum order and f32 rounding, so a few ulp of it.
        double worst = 0;
        for (int i = 0; i < n; ++i)
            for (int o = 0; o < fout; ++o) {
                double acc = b[o], size = std::fabs(b[o]);
                for (int k = 0; k < fin; ++k) {
                    const double v = x[i * fin + k];
                    const double t = (double)w[o * fin + k] * (silu_input ? v / (1.0 + std::exp(-v)) : v);
                    acc += t;
                    size += std::fabs(t);
                }
                worst = std::max(worst, std::fabs(full[i * fout + o] - acc) / size);
            }
        const bool close = worst < 1e-6;
        std::printf("linear silu=%d against double: worst error %.2e of the terms' size %s\n",
                    silu_input, worst, close ? "ok" : "FAIL");
        g_bad += !close;
        // linear_split in one launch, and in two launches (splits 0..2 and 2..5).
        for (int first_launch : {(int)widths.size(), 2}) {
            std::vector<std::vector<float>> outs;
            for (int wd : widths) outs.emplace_back(n * wd + 1, NAN);  // one guard value each
            int start = 0;
            for (int j0 = 0; j0 < (int)widths.size();) {
                const int j1 = j0 == 0 ? first_launch : (int)widths.size();
                SplitOutputs table{};
                table.count = j1 - j0;
                table.start[0] = start;
                for (int j = j0; j < j1; ++j) {
                    table.out[j - j0] = outs[j].data();
                    table.start[j - j0 + 1] = table.start[j - j0] + widths[j];
                }
                const int cols = table.start[table.count] - start;
                launch_warps((long long)n * cols, [&] {
                    linear_split(x.data(), w.data(), b.data(), table, n, fin, silu_input);
                });
                start += cols;
                j0 = j1;
            }
            int differ = 0, col = 0;
            for (size_t j = 0; j < widths.size(); ++j) {
                for (int i = 0; i < n; ++i)
                    for (int c = 0; c < widths[j]; ++c)
                        differ += std::memcmp(&outs[j][i * widths[j] + c], &full[i * fout + col + c],
                                              sizeof(float)) != 0;
                differ += !std::isnan(outs[j][n * widths[j]]);  // the guard stays unwritten
                col += widths[j];
            }
            std::printf("linear_split silu=%d, %s: %s\n", silu_input,
                        first_launch == (int)widths.size() ? "one launch" : "two launches",
                        differ == 0 ? "linear's bits, bit for bit ok" : "FAIL");
            g_bad += differ != 0;
        }
    }
    std::printf(g_bad == 0 ? "ALL OK\n" : "%d FAILED\n", g_bad);
    return g_bad == 0 ? 0 : 1;
}
