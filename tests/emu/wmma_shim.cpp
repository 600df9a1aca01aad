// The WMMA emulation of shim.h against what CUDA documents, before the conv and SGEMM harnesses
// rely on it: __float_to_tf32 and __float2bfloat16_rn against check.h's rounding (special values,
// exact ties, random bit patterns), TF32 loads truncating, every operand layout and both store
// layouts of TF32 and BF16 tiles against a double product (nothing outside the tile read or
// written), and a broken precondition (alignment, ldm) ending the process with a message. Built
// and run by tests/kernel_emulation.rs; exits 1 on any mismatch.
#include "shim.h"
#include "check.h"

#include <csignal>
#include <cstdio>
#include <random>
#include <string>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

namespace wmma = nvcuda::wmma;

static float from_bits(uint32_t u) { return std::bit_cast<float>(u); }
static uint32_t to_bits(float f) { return std::bit_cast<uint32_t>(f); }
static double value(float v) { return v; }
static double value(__nv_bfloat16 v) { return __bfloat162float(v); }
static bool same(float a, float b) {
    return std::isnan(a) ? std::isnan(b) : to_bits(a) == to_bits(b);
}

// Both conversions against check.h, and a few results spelled out (the ties), so that neither
// implementation only agrees with the other. Returns the number of mismatches.
static int check_rounding() {
    std::vector<float> vals = {0.0f,   -0.0f,     1.0f,     -1.0f,   INFINITY, -INFINITY,
                               NAN,    FLT_MAX,   -FLT_MAX, FLT_MIN, -FLT_MIN, FLT_TRUE_MIN,
                               1e-40f, -3.3e-39f, 0.1f,     -2.7f,   65504.f,  3.4e38f};
    // Ties: TF32 drops 13 bits, BF16 16; mantissa ..0|1000.. and ..1|1000.., both signs,
    // normal and subnormal.
    for (uint32_t hi : {0x3f800000u, 0x3f802000u, 0x3f810000u, 0x00002000u, 0x00010000u})
        for (uint32_t sign : {0u, 0x80000000u})
            for (uint32_t half : {0x1000u, 0x8000u})
                vals.push_back(from_bits((hi | half) ^ sign));
    std::mt19937 rng(3);
    for (int i = 0; i < (1 << 20); ++i)
        vals.push_back(from_bits((uint32_t)rng()));
    int bad = 0;
    for (float v : vals) {
        bad += !same(wmma::__float_to_tf32(v), round_tf32(v));
        bad += !same(__bfloat162float(__float2bfloat16_rn(v)), round_bf16(v));
    }
    // 1 + 2^-11 (TF32 tie) goes away from zero; 1 + 2^-8 and 1 + 3·2^-8 (BF16 ties) to even.
    bad += to_bits(wmma::__float_to_tf32(from_bits(0x3f801000u))) != 0x3f802000u;
    bad += to_bits(wmma::__float_to_tf32(from_bits(0xbf801000u))) != 0xbf802000u;
    bad += __float2bfloat16_rn(from_bits(0x3f808000u)).bits != 0x3f80;
    bad += __float2bfloat16_rn(from_bits(0x3f818000u)).bits != 0x3f82;
    bad += __float2bfloat16_rn(from_bits(0xbf818000u)).bits != 0xbf82;
    bad += !std::isnan(__bfloat162float(__float2bfloat16_rn(NAN)));
    std::printf("rounding: %zu values, %d mismatches %s\n", vals.size(), bad, bad ? "FAIL" : "ok");
    return bad;
}

// Layout L's offset of element (r, c) of a tile with leading dimension ld.
template <class L>
static int at(int r, int c, int ld) {
    return std::is_same_v<L, wmma::row_major> ? r * ld + c : r + c * ld;
}

// D = A·B + A·B + 0.5 for a 16×16 tile by one warp, A stored in layout LA, B in LB, D stored in
// `out` order, against a double product. The buffers hold NaN around the tiles (a read outside
// spreads it) and a sentinel around D's (a write outside shows). TF32 operands are rounded
// first: a load truncates the rest. Returns whether it matches.
template <class Elem, class LA, class LB>
static bool check_mma(wmma::layout_t out) {
    constexpr bool bf16 = std::is_same_v<Elem, __nv_bfloat16>;
    constexpr int K = bf16 ? 16 : 8;
    constexpr unsigned ld = 24, ldc = 20;  // padded past 16: elements outside the tiles
    using S = typename wmma::fragment<wmma::matrix_a, 16, 16, K, Elem, LA>::storage_element_type;
    auto store = [](float v) {
        if constexpr (bf16)
            return __float2bfloat16_rn(v);
        else
            return round_tf32(v);
    };
    alignas(32) static S a[16 * ld], b[16 * ld];
    alignas(32) static float d[16 * ldc];
    std::fill(a, a + 16 * ld, store(NAN));
    std::fill(b, b + 16 * ld, store(NAN));
    std::fill(d, d + 16 * ldc, -7.0f);
    std::mt19937 rng(5);
    std::normal_distribution<float> nd;
    std::vector<double> av(16 * K), bv(K * 16);
    for (int i = 0; i < 16; ++i)
        for (int p = 0; p < K; ++p) {
            a[at<LA>(i, p, ld)] = store(nd(rng));
            av[i * K + p] = value(a[at<LA>(i, p, ld)]);
        }
    for (int p = 0; p < K; ++p)
        for (int j = 0; j < 16; ++j) {
            b[at<LB>(p, j, ld)] = store(nd(rng));
            bv[p * 16 + j] = value(b[at<LB>(p, j, ld)]);
        }
    launch({1, 1, 1}, {32, 1, 1}, [&] {
        wmma::fragment<wmma::matrix_a, 16, 16, K, Elem, LA> fa;
        wmma::fragment<wmma::matrix_b, 16, 16, K, Elem, LB> fb;
        wmma::fragment<wmma::accumulator, 16, 16, K, float> acc;
        wmma::fill_fragment(acc, 0.5f);
        wmma::load_matrix_sync(fa, a, ld);
        wmma::load_matrix_sync(fb, b, ld);
        wmma::mma_sync(acc, fa, fb, acc);
        wmma::mma_sync(acc, fa, fb, acc);
        wmma::store_matrix_sync(d, acc, ldc, out);
    });
    // D's buffer: 16 runs (rows, or columns) of ldc, the last ldc − 16 of each outside the tile.
    double num = 0, den = 0;
    int outside = 0;
    for (int major = 0; major < 16; ++major)
        for (int minor = 0; minor < (int)ldc; ++minor) {
            const float got = d[major * ldc + minor];
            if (minor >= 16) {
                outside += got != -7.0f;
                continue;
            }
            const int r = out == wmma::mem_row_major ? major : minor, c = major + minor - r;
            double want = 0.5;
            for (int p = 0; p < K; ++p)
                want += 2.0 * av[r * K + p] * bv[p * 16 + c];
            num += std::isnan(got) ? 1e30 : (got - want) * (got - want);
            den += want * want;
        }
    const double e = std::sqrt(num / den);
    const bool ok = e < 1e-6 && outside == 0;
    std::printf("mma %s A %s B %s D %s: %.2e, %d written outside %s\n", bf16 ? "bf16" : "tf32",
                std::is_same_v<LA, wmma::row_major> ? "row" : "col",
                std::is_same_v<LB, wmma::row_major> ? "row" : "col",
                out == wmma::mem_row_major ? "row" : "col", e, outside, ok ? "ok" : "FAIL");
    return ok;
}

// A TF32 load keeps 10 mantissa bits by truncation: what the tensor core does with a value the
// kernel did not round.
static bool check_tf32_truncates() {
    alignas(32) static float a[16 * 8];
    std::mt19937 rng(9);
    std::normal_distribution<float> nd;
    for (auto& v : a)
        v = nd(rng);
    wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fa;
    wmma::load_matrix_sync(fa, a, 8);
    int bad = 0;
    for (int e = 0; e < 16 * 8; ++e)
        bad += !same(fa.x[e], round_sig(a[e], 11, [](double s) { return std::trunc(s); }));
    std::printf("tf32 load truncates: %d mismatches %s\n", bad, bad ? "FAIL" : "ok");
    return bad == 0;
}

// Runs f in a child process: true when it dies of SIGABRT with `expect` on stderr.
static bool aborts(const char* what, const char* expect, void (*f)()) {
    int fd[2];
    if (pipe(fd) != 0)
        return false;
    std::fflush(stdout);
    const pid_t pid = fork();
    if (pid == 0) {
        const rlimit no_core{0, 0};  // an expected abort leaves no core file
        setrlimit(RLIMIT_CORE, &no_core);
        dup2(fd[1], 2);
        f();
        _exit(0);
    }
    close(fd[1]);
    std::string err;
    char buf[256];
    for (ssize_t n; (n = read(fd[0], buf, sizeof buf)) > 0;)
        err.append(buf, n);
    close(fd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    const bool ok =
        WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT && err.find(expect) != std::string::npos;
    if (!err.empty() && err.back() == '\n')
        err.pop_back();
    std::printf("%s: [%s] %s\n", what, err.c_str(), ok ? "ok" : "FAIL");
    return ok;
}

alignas(32) static float g_f[64 * 8];
alignas(32) static __nv_bfloat16 g_h[64 * 16];

int main() {
    int bad = check_rounding();
    bad += !check_tf32_truncates();
    using R = wmma::row_major;
    using C = wmma::col_major;
    using T = wmma::precision::tf32;
    using H = __nv_bfloat16;
    for (auto out : {wmma::mem_row_major, wmma::mem_col_major}) {
        bad += !check_mma<T, R, R>(out) + !check_mma<T, R, C>(out) + !check_mma<T, C, R>(out) +
               !check_mma<T, C, C>(out);
        bad += !check_mma<H, R, R>(out) + !check_mma<H, R, C>(out) + !check_mma<H, C, R>(out) +
               !check_mma<H, C, C>(out);
    }
    bad += !aborts("tf32 load, pointer 16 bytes off", "not 256-bit", [] {
        wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::col_major> f;
        wmma::load_matrix_sync(f, g_f + 4, 16);
    });
    bad += !aborts("tf32 load, ldm 18", "ldm is not a multiple of 4", [] {
        wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major> f;
        wmma::load_matrix_sync(f, g_f, 18);
    });
    bad += !aborts("bf16 load, pointer 16 bytes off", "not 256-bit", [] {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> f;
        wmma::load_matrix_sync(f, g_h + 8, 16);
    });
    bad += !aborts("bf16 load, ldm 20", "ldm is not a multiple of 8", [] {
        wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> f;
        wmma::load_matrix_sync(f, g_h, 20);
    });
    bad += !aborts("store, pointer 16 bytes off", "not 256-bit", [] {
        wmma::fragment<wmma::accumulator, 16, 16, 8, float> f;
        wmma::fill_fragment(f, 0.0f);
        wmma::store_matrix_sync(g_f + 4, f, 16, wmma::mem_row_major);
    });
    bad += !aborts("store, ldm 18", "ldm is not a multiple of 4", [] {
        wmma::fragment<wmma::accumulator, 16, 16, 16, float> f;
        wmma::fill_fragment(f, 0.0f);
        wmma::store_matrix_sync(g_f, f, 18, wmma::mem_col_major);
    });
    std::printf("%s\n", bad ? "FAILURES" : "ALL OK");
    return bad != 0;
}
