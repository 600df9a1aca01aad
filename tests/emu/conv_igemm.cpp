// The implicit-GEMM conv kernels of kernels/conv.cu (forward with its three epilogues, and
// backward data: the 32 and 64 tiles at f32 and on the tensor-core paths TF32 and BF16, and the
// wide cp.async tiles 64×128 and 128×128 at f32 and 64×128 at TF32 and BF16, which must also
// give the 32/64 tiles' bits) run on the CPU through shim.h against a double-precision direct
// convolution of the operands rounded as each precision stages them; each forward tile's _gn
// twin (the GroupNorm fold) must give its plain tile's bits on group_norm_fwd's output. Built
// and run by tests/kernel_emulation.rs; exits 1 on any mismatch. Outputs start as NaN, so an
// element no block writes fails.
// shim.h first: it defines the CUDA vocabulary conv.cu is written in.
#include "shim.h"
#include "conv.cu"
#include "groupnorm.cu"
#include "check.h"

#include <cstdio>
#include <cstring>
#include <map>
#include <random>

// Calls f(x index, w index, y index) for every (output, tap) pair whose input lies inside the
// image: the index map both references walk, the forward reading x and the transpose writing it.
template <class F>
static void for_each_tap(int n, int cin, int h, int wd, int cout, int k, int s, int p, int ho,
                         int wo, F f) {
    for (int i = 0; i < n; i++)
        for (int co = 0; co < cout; co++)
            for (int oy = 0; oy < ho; oy++)
                for (int ox = 0; ox < wo; ox++)
                    for (int ci = 0; ci < cin; ci++)
                        for (int ky = 0; ky < k; ky++)
                            for (int kx = 0; kx < k; kx++) {
                                const int iy = oy * s - p + ky, ix = ox * s - p + kx;
                                if (iy < 0 || iy >= h || ix < 0 || ix >= wd)
                                    continue;
                                f(((i * cin + ci) * h + iy) * wd + ix,
                                  ((co * cin + ci) * k + ky) * k + kx,
                                  ((i * cout + co) * ho + oy) * wo + ox);
                            }
}

// The forward convolution, accumulated in double: y = conv(x) + b.
static void ref_fwd(const std::vector<float>& x, const std::vector<float>& w,
                    const std::vector<float>& b, std::vector<float>& y, int n, int cin, int h,
                    int wd, int cout, int k, int s, int p, int ho, int wo) {
    std::vector<double> acc(y.size());
    for (size_t j = 0; j < y.size(); j++)
        acc[j] = b[(j / (ho * wo)) % cout];
    for_each_tap(n, cin, h, wd, cout, k, s, p, ho, wo,
                 [&](int xi, int wi, int yi) { acc[yi] += (double)x[xi] * w[wi]; });
    for (size_t j = 0; j < y.size(); j++)
        y[j] = acc[j];
}

// Its transpose (the input-VJP): every output's products scattered back, in double.
static void ref_bwd(const std::vector<float>& dy, const std::vector<float>& w,
                    std::vector<float>& dx, int n, int cin, int h, int wd, int cout, int k, int s,
                    int p, int ho, int wo) {
    std::vector<double> acc(dx.size(), 0.0);
    for_each_tap(n, cin, h, wd, cout, k, s, p, ho, wo,
                 [&](int xi, int wi, int yi) { acc[xi] += (double)dy[yi] * w[wi]; });
    for (size_t j = 0; j < dx.size(); j++)
        dx[j] = acc[j];
}

// a and b hold the same bits (both computed); prints a line saying so against `what`.
static bool same_bits(const std::vector<float>& a, const std::vector<float>& b,
                      const char* what = "the 32/64 tiles") {
    const bool same = a.size() == b.size() && !b.empty() &&
                      std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
    printf("   %s %s\n", same ? "same bits as" : "BITS DIFFER from", what);
    return same;
}

// Split-K's tile counters must come back zeroed (the next launch reuses them).
static bool counters_zeroed(const std::vector<unsigned>& c) {
    for (unsigned v : c)
        if (v != 0) {
            printf("   FAIL: tile counters not reset\n");
            return false;
        }
    return true;
}

// Images, channels, size, kernel, stride and padding.
struct Case {
    int n, cin, h, wd, cout, k, s, p;
};

using Fwd = decltype(&conv2d_igemm_64);

// One forward tile: its plain and its _gn (norm-folding) entry point, and (columns, rows).
struct FoldTile {
    Fwd plain, gn;
    dim3 tile;
};

// A GroupNorm (+SiLU) folded into the forward's gather (NormFold): the _gn entry point's conv of
// x must give the bits of the plain one's conv of group_norm_fwd(x), for each forward tile of
// one precision, with and without SiLU,
// unsplit with no epilogue and the channel add, and split 3 ways with the residual (finished in
// the kernel). Returns the failures.
static int fold_checks(int prec, const Case& c, const std::vector<FoldTile>& kernels,
                       const std::vector<float>& x, const std::vector<float>& w,
                       const std::vector<float>& b, const std::vector<float>& v,
                       const std::vector<float>& r, std::mt19937& rng) {
    const int ho = (c.h + 2 * c.p - c.k) / c.s + 1, wo = (c.wd + 2 * c.p - c.k) / c.s + 1;
    const int hw = c.h * c.wd;
    int groups = 1;
    for (int g : {4, 3, 2})
        if (c.cin % g == 0) {
            groups = g;
            break;
        }
    std::normal_distribution<float> nd;
    std::vector<float> gamma(c.cin), beta(c.cin);
    for (auto& e : gamma) e = 1.0f + 0.3f * nd(rng);
    for (auto& e : beta) e = 0.5f * nd(rng);
    // x shifted and scaled per channel, so that the norm has something to undo.
    std::vector<float> xs(x.size());
    for (size_t i = 0; i < x.size(); i++) xs[i] = 3.0f * x[i] + (float)((i / hw) % c.cin) - 2.0f;
    int bad = 0;
    for (int silu : {0, 1}) {
        std::vector<float> xn(x.size(), NAN), ss(2 * c.n * c.cin, NAN);
        const dim3 gg{(unsigned)groups, (unsigned)c.n, 1};
        launch(gg, {256, 1, 1}, [&] {
            group_norm_fwd(xs.data(), gamma.data(), beta.data(), xn.data(), c.cin, hw, groups,
                           silu);
        });
        launch(gg, {256, 1, 1}, [&] {
            group_norm_scale_shift(xs.data(), gamma.data(), beta.data(), ss.data(), c.cin, hw,
                                   groups);
        });
        const int out_len = c.n * c.cout * ho * wo;
        for (auto [plain, gn, tile] : kernels)
            for (auto [split, epi] : {std::pair{1, 0}, {1, 1}, {3, 2}}) {
                const dim3 g{(unsigned)((c.n * ho * wo + tile.x - 1) / tile.x),
                             (unsigned)((c.cout + tile.y - 1) / tile.y), (unsigned)split};
                const float* extra = epi == 1 ? v.data() : epi == 2 ? r.data() : b.data();
                auto run = [&](Fwd kernel, const std::vector<float>& in, const float* norm) {
                    std::vector<float> y(out_len, NAN), part(split * out_len, NAN);
                    std::vector<unsigned> done(g.x * g.y, 0);
                    launch(g, {256, 1, 1}, [&] {
                        kernel(in.data(), w.data(), b.data(), extra, epi, norm, silu, y.data(),
                               c.n, c.cin, c.h, c.wd, c.cout, c.k, c.s, c.p, ho, wo, split,
                               part.data(), done.data());
                    });
                    return y;
                };
                printf("fold %s n%d %d->%d k%d s%d p%d groups%d silu%d tile%ux%u split%d epi%d:",
                       prec_name(prec), c.n, c.cin, c.cout, c.k, c.s, c.p, groups, silu, tile.y,
                       tile.x, split, epi);
                bad += !same_bits(run(gn, xs, ss.data()), run(plain, xn, nullptr),
                                  "the unfolded norm's");
            }
    }
    return bad;
}

int main() {
    std::mt19937 rng(1);
    std::normal_distribution<float> nd;
    // k 1, 3 and 5, stride 1 and 2, odd and even sizes, sizes whose last rows no output reads,
    // and K over several 16-term chunks.
    const Case cases[] = {{2, 3, 13, 11, 5, 3, 1, 1}, {1, 17, 16, 16, 33, 3, 2, 1},
                          {2, 8, 9, 7, 20, 1, 1, 0},  {1, 5, 11, 13, 7, 3, 2, 1},
                          {1, 4, 11, 9, 3, 5, 1, 2},  {2, 9, 11, 7, 4, 1, 2, 0},
                          {2, 3, 12, 9, 5, 3, 2, 0},  {1, 70, 8, 8, 40, 3, 1, 1},
                          {2, 20, 12, 12, 136, 3, 1, 1}, {1, 130, 9, 9, 24, 3, 1, 1}};
    // The entry points by precision (kF32, kTf32, kBf16) and tile (32, 64).
    using Bwd = decltype(&conv2d_bwd_igemm_64);
    const Fwd fwd_kernels[3][2] = {{conv2d_igemm_32, conv2d_igemm_64},
                                   {conv2d_igemm_32_tf32, conv2d_igemm_64_tf32},
                                   {conv2d_igemm_32_bf16, conv2d_igemm_64_bf16}};
    const Fwd fwd_gn[3][2] = {{conv2d_igemm_32_gn, conv2d_igemm_64_gn},
                              {conv2d_igemm_32_tf32_gn, conv2d_igemm_64_tf32_gn},
                              {conv2d_igemm_32_bf16_gn, conv2d_igemm_64_bf16_gn}};
    const Bwd bwd_kernels[3][2] = {{conv2d_bwd_igemm_32, conv2d_bwd_igemm_64},
                                   {conv2d_bwd_igemm_32_tf32, conv2d_bwd_igemm_64_tf32},
                                   {conv2d_bwd_igemm_32_bf16, conv2d_bwd_igemm_64_bf16}};
    // (split, tile, epilogue): every epilogue at both tiles unsplit, and the split paths (8
    // slices leave some slices empty on the small-K cases).
    const int fwd_runs[][3] = {{1, 32, 0}, {1, 32, 1}, {1, 32, 2}, {1, 64, 0}, {1, 64, 1},
                               {1, 64, 2}, {3, 32, 1}, {3, 64, 2}, {8, 32, 0}};
    const int bwd_runs[][2] = {{1, 32}, {1, 64}, {3, 64}, {8, 32}};
    // The wide tiles (rows × 128 columns), each run as above at split 1 (every epilogue), 3 and
    // 8, and compared bit for bit with the 32/64 tiles' output of the same precision, split and
    // epilogue: f32 at 64 and 128 rows, TF32 and BF16 at 64 (nullptr: no such entry point).
    const Fwd wide_fwd[3][2] = {{conv2d_igemm_64x128, conv2d_igemm_128},
                                {conv2d_igemm_64x128_tf32, nullptr},
                                {conv2d_igemm_64x128_bf16, nullptr}};
    const Fwd wide_fwd_gn[3][2] = {{conv2d_igemm_64x128_gn, conv2d_igemm_128_gn},
                                   {conv2d_igemm_64x128_tf32_gn, nullptr},
                                   {conv2d_igemm_64x128_bf16_gn, nullptr}};
    const Bwd wide_bwd[3][2] = {{conv2d_bwd_igemm_64x128, conv2d_bwd_igemm_128},
                                {conv2d_bwd_igemm_64x128_tf32, nullptr},
                                {conv2d_bwd_igemm_64x128_bf16, nullptr}};
    const int wide_rows[2] = {64, 128};
    const int wide_fwd_runs[][2] = {{1, 0}, {1, 1}, {1, 2}, {3, 2}, {8, 0}};  // (split, epi)
    const int wide_bwd_splits[] = {1, 3, 8};
    int bad = 0;
    for (auto c : cases) {
        int ho = (c.h + 2 * c.p - c.k) / c.s + 1, wo = (c.wd + 2 * c.p - c.k) / c.s + 1;
        std::vector<float> x(c.n * c.cin * c.h * c.wd), w(c.cout * c.cin * c.k * c.k), b(c.cout),
            v(c.n * c.cout), r(c.n * c.cout * ho * wo), dy(r.size());
        for (auto* vec : {&x, &w, &b, &v, &r, &dy})
            for (auto& e : *vec)
                e = nd(rng);
        // y plus the epilogue's term: v per (image, channel), or the residual r.
        auto with_epi = [&](std::vector<float> y, int epi) {
            for (size_t o = 0; o < y.size(); o++) {
                if (epi == 1)
                    y[o] += v[o / (ho * wo)];
                if (epi == 2)
                    y[o] += r[o];
            }
            return y;
        };
        // The references from the f32 operands; those of a precision's own rounding follow.
        std::vector<float> want_f32(r.size()), dxw_f32(x.size());
        ref_fwd(x, w, b, want_f32, c.n, c.cin, c.h, c.wd, c.cout, c.k, c.s, c.p, ho, wo);
        ref_bwd(dy, w, dxw_f32, c.n, c.cin, c.h, c.wd, c.cout, c.k, c.s, c.p, ho, wo);
        for (int prec : {kF32, kTf32, kBf16}) {
            // The 32/64 tiles' outputs at this precision by (split, epilogue), for the wide
            // tiles' bit comparison.
            std::map<int, std::vector<float>> narrow_fwd, narrow_bwd;
            // The operands as the kernel stages them (the gather's zero padding stays zero).
            const std::vector<float> xq = rounded(prec, x), wq = rounded(prec, w),
                                     dyq = rounded(prec, dy);
            std::vector<float> want(r.size()), dxw(x.size());
            ref_fwd(xq, wq, b, want, c.n, c.cin, c.h, c.wd, c.cout, c.k, c.s, c.p, ho, wo);
            ref_bwd(dyq, wq, dxw, c.n, c.cin, c.h, c.wd, c.cout, c.k, c.s, c.p, ho, wo);
            for (auto run : fwd_runs) {
                const int split = run[0], tile = run[1], epi = run[2];
                std::vector<float> y(want.size(), NAN), part(split * want.size(), NAN);
                int N = c.n * ho * wo;
                dim3 g{(unsigned)((N + tile - 1) / tile), (unsigned)((c.cout + tile - 1) / tile),
                       (unsigned)split};
                const float* extra = epi == 1 ? v.data() : epi == 2 ? r.data() : b.data();
                // Split: the partial sums, then conv2d_splitk_reduce (no tile counters).
                launch(g, {256, 1, 1}, [&] {
                    fwd_kernels[prec][tile == 64](x.data(), w.data(), b.data(), extra, epi, nullptr, 0,
                                                  y.data(), c.n, c.cin, c.h, c.wd, c.cout, c.k, c.s,
                                                  c.p, ho, wo, split, part.data(), nullptr);
                });
                if (split > 1) {
                    int total = (int)want.size();
                    launch({(unsigned)((total + 255) / 256), 1, 1}, {256, 1, 1}, [&] {
                        conv2d_splitk_reduce(part.data(), b.data(), extra, epi, y.data(), split,
                                             c.cout, ho * wo, total);
                    });
                    // The same with tile counters: the last slice's block finishes the tile.
                    std::vector<float> y2(want.size(), NAN), part2(part.size(), NAN);
                    std::vector<unsigned> done(g.x * g.y, 0);
                    launch(g, {256, 1, 1}, [&] {
                        fwd_kernels[prec][tile == 64](x.data(), w.data(), b.data(), extra, epi, nullptr, 0,
                                                      y2.data(), c.n, c.cin, c.h, c.wd, c.cout,
                                                      c.k, c.s, c.p, ho, wo, split, part2.data(),
                                                      done.data());
                    });
                    printf("fwd %s split%d tile%d epi%d in-kernel finish:", prec_name(prec), split,
                           tile, epi);
                    bad += !same_bits(y2, y, "conv2d_splitk_reduce's") + !counters_zeroed(done);
                }
                printf("fwd %s n%d %d->%d k%d s%d p%d %dx%d split%d tile%d epi%d", prec_name(prec),
                       c.n, c.cin, c.cout, c.k, c.s, c.p, c.h, c.wd, split, tile, epi);
                bad += !verdict(prec, y, with_epi(want, epi), with_epi(want_f32, epi));
                narrow_fwd[split * 3 + epi] = y;
            }
            for (int t = 0; t < 2; t++)
                for (auto run : wide_fwd_runs) {
                    if (wide_fwd[prec][t] == nullptr)
                        continue;
                    const int split = run[0], epi = run[1];
                    std::vector<float> y(want.size(), NAN), part(split * want.size(), NAN);
                    int N = c.n * ho * wo;
                    dim3 g{(unsigned)((N + 127) / 128),
                           (unsigned)((c.cout + wide_rows[t] - 1) / wide_rows[t]), (unsigned)split};
                    const float* extra = epi == 1 ? v.data() : epi == 2 ? r.data() : b.data();
                    // Split-K finished in the kernel (tile counters): compared below with the
                    // narrow tiles' conv2d_splitk_reduce.
                    std::vector<unsigned> done(g.x * g.y, 0);
                    launch(g, {256, 1, 1}, [&] {
                        wide_fwd[prec][t](x.data(), w.data(), b.data(), extra, epi, nullptr, 0, y.data(), c.n,
                                          c.cin, c.h, c.wd, c.cout, c.k, c.s, c.p, ho, wo, split,
                                          part.data(), done.data());
                    });
                    bad += !counters_zeroed(done);
                    printf("fwd %s n%d %d->%d k%d s%d p%d %dx%d split%d tile%dx128 epi%d",
                           prec_name(prec), c.n, c.cin, c.cout, c.k, c.s, c.p, c.h, c.wd, split,
                           wide_rows[t], epi);
                    bad += !verdict(prec, y, with_epi(want, epi), with_epi(want_f32, epi));
                    bad += !same_bits(y, narrow_fwd[split * 3 + epi]);
                }
            for (auto run : bwd_runs) {
                const int split = run[0], tile = run[1];
                std::vector<float> dx(x.size(), NAN), part(split * x.size(), NAN);
                int N = c.n * c.h * c.wd;
                dim3 g{(unsigned)((N + tile - 1) / tile), (unsigned)((c.cin + tile - 1) / tile),
                       (unsigned)split};
                launch(g, {256, 1, 1}, [&] {
                    bwd_kernels[prec][tile == 64](dy.data(), w.data(), dx.data(), c.n, c.cin, c.h,
                                                  c.wd, c.cout, c.k, c.s, c.p, ho, wo, split,
                                                  part.data(), nullptr);
                });
                if (split > 1) {
                    int total = (int)x.size();
                    launch({(unsigned)((total + 255) / 256), 1, 1}, {256, 1, 1}, [&] {
                        conv2d_splitk_reduce(part.data(), nullptr, nullptr, 0, dx.data(), split,
                                             c.cin, c.h * c.wd, total);
                    });
                    std::vector<float> dx2(x.size(), NAN), part2(part.size(), NAN);
                    std::vector<unsigned> done(g.x * g.y, 0);
                    launch(g, {256, 1, 1}, [&] {
                        bwd_kernels[prec][tile == 64](dy.data(), w.data(), dx2.data(), c.n, c.cin,
                                                      c.h, c.wd, c.cout, c.k, c.s, c.p, ho, wo,
                                                      split, part2.data(), done.data());
                    });
                    printf("bwd %s split%d tile%d in-kernel finish:", prec_name(prec), split, tile);
                    bad += !same_bits(dx2, dx, "conv2d_splitk_reduce's") + !counters_zeroed(done);
                }
                printf("bwd %s n%d %d->%d k%d s%d p%d %dx%d split%d tile%d", prec_name(prec), c.n,
                       c.cin, c.cout, c.k, c.s, c.p, c.h, c.wd, split, tile);
                bad += !verdict(prec, dx, dxw, dxw_f32);
                narrow_bwd[split] = dx;
            }
            for (int t = 0; t < 2; t++)
                for (int split : wide_bwd_splits) {
                    if (wide_bwd[prec][t] == nullptr)
                        continue;
                    std::vector<float> dx(x.size(), NAN), part(split * x.size(), NAN);
                    int N = c.n * c.h * c.wd;
                    dim3 g{(unsigned)((N + 127) / 128),
                           (unsigned)((c.cin + wide_rows[t] - 1) / wide_rows[t]), (unsigned)split};
                    std::vector<unsigned> done(g.x * g.y, 0);
                    launch(g, {256, 1, 1}, [&] {
                        wide_bwd[prec][t](dy.data(), w.data(), dx.data(), c.n, c.cin, c.h, c.wd,
                                          c.cout, c.k, c.s, c.p, ho, wo, split, part.data(),
                                          done.data());
                    });
                    bad += !counters_zeroed(done);
                    printf("bwd %s n%d %d->%d k%d s%d p%d %dx%d split%d tile%dx128",
                           prec_name(prec), c.n, c.cin, c.cout, c.k, c.s, c.p, c.h, c.wd, split,
                           wide_rows[t]);
                    bad += !verdict(prec, dx, dxw, dxw_f32);
                    bad += !same_bits(dx, narrow_bwd[split]);
                }
            // Every forward tile at this precision.
            std::vector<FoldTile> fold_kernels = {
                {fwd_kernels[prec][0], fwd_gn[prec][0], {32, 32, 1}},
                {fwd_kernels[prec][1], fwd_gn[prec][1], {64, 64, 1}}};
            for (int t = 0; t < 2; t++)
                if (wide_fwd[prec][t] != nullptr)
                    fold_kernels.push_back(
                        {wide_fwd[prec][t], wide_fwd_gn[prec][t],
                         {128, (unsigned)wide_rows[t], 1}});
            bad += fold_checks(prec, c, fold_kernels, x, w, b, v, r, rng);
        }
    }
    printf("%s\n", bad ? "FAILURES" : "ALL OK");
    return bad != 0;
}
