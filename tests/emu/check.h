// What the harnesses share: the operand rounding of the tensor-core paths, for their references,
// and the verdict on one output. The rounding is written apart from the shim's (frexp/ldexp
// arithmetic on doubles, not bit tricks), so that the two check each other (wmma_shim.cpp).
#pragma once
#include "shim.h"
#include "common.cuh"
#include "tensor_core.cuh"  // the precision codes kF32, kTf32, kBf16

#include <cfloat>
#include <cmath>
#include <cstdio>
#include <vector>

// v to `bits` significant bits (the leading one included) within f32's exponent range, the
// scaled significand rounded to an integer by `to_int` (std::round: ties away from zero,
// std::nearbyint: ties to even, std::trunc: toward zero); below FLT_MIN the grid keeps the spacing
// it has at FLT_MIN. Zero, Inf and NaN pass unchanged; a value that rounds past FLT_MAX becomes
// Inf.
inline float round_sig(float v, int bits, double (*to_int)(double)) {
    if (v == 0.0f || !std::isfinite(v))
        return v;
    // |v| = m·2^e with m in [0.5, 1), e at least FLT_MIN's -125; |v|·2^(bits − e) < 2^bits is
    // exact in double.
    int e;
    std::frexp(v, &e);
    e = std::max(e, -125);
    const double r = to_int(std::ldexp((double)v, bits - e));
    const double out = std::ldexp(r, e - bits);
    return std::fabs(out) > FLT_MAX ? std::copysign(INFINITY, v) : (float)out;
}

// TF32 (cvt.rna.tf32.f32): 10 explicit mantissa bits, ties away. BF16: 7 bits, ties to even.
inline float round_tf32(float v) {
    return round_sig(v, 11, [](double s) { return std::round(s); });
}
inline float round_bf16(float v) {
    return round_sig(v, 8, [](double s) { return std::nearbyint(s); });
}

// An operand as a kernel of precision `prec` stages it.
inline float round_operand(int prec, float v) {
    return prec == kTf32 ? round_tf32(v) : prec == kBf16 ? round_bf16(v) : v;
}
inline std::vector<float> rounded(int prec, std::vector<float> v) {
    for (auto& e : v)
        e = round_operand(prec, e);
    return v;
}

inline const char* prec_name(int prec) {
    return prec == kTf32 ? "tf32" : prec == kBf16 ? "bf16" : "f32";
}

// ‖a − b‖ / ‖b‖, or 1e9 when a holds a NaN (an output no block wrote).
inline double relerr(const std::vector<float>& a, const std::vector<float>& b) {
    double num = 0, den = 0;
    for (size_t i = 0; i < a.size(); i++) {
        double d = a[i] - b[i];
        if (std::isnan(a[i]))
            return 1e9;
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return std::sqrt(num / std::max(den, 1e-30));
}

// Ends the line the caller started with its verdict on `out`, and returns whether it passes:
// within 1e-5 (relative L2) of `want`, the double reference on operands rounded as the kernel's
// precision rounds them; on the tensor-core paths also farther than a rounding error from
// `unrounded`, the reference on the f32 operands (TF32 moves them by up to 2^-11 relative, BF16
// by 2^-8, f32 accumulation leaves ~1e-7), so that a kernel that stays in f32 fails.
inline bool verdict(int prec, const std::vector<float>& out, const std::vector<float>& want,
                    const std::vector<float>& unrounded) {
    const double e = relerr(out, want);
    const bool close = e < 1e-5;
    if (prec == kF32) {
        std::printf(": %.2e %s\n", e, close ? "ok" : "FAIL");
        return close;
    }
    const double far = relerr(out, unrounded), far_min = prec == kTf32 ? 1e-6 : 1e-5;
    const bool rounded = far > far_min;
    std::printf(": %.2e, from f32 operands %.2e (> %.0e) %s\n", e, far, far_min,
                close && rounded ? "ok" : "FAIL");
    return close && rounded;
}
