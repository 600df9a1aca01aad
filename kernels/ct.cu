// Sparse-view parallel-beam CT (shared/OPERATORS.md, `ct`); reference: src/backend/cpu/ct.rs.
// Joseph's projector, its exact adjoint and the Ram-Lak filter, on (planes, H, W) images and
// (planes, V, D) sinograms. `angles` holds V (cos θ, sin θ) pairs of f32, interleaved, from
// CtGeometry::angles.
//
// Launch: block = (16, 16); grid = (ceil(D/16), ceil(V/16), planes) for ct_project and
// ct_ramp_filter (one thread per (plane, view, bin)), (ceil(W/16), ceil(H/16), planes) for
// ct_backproject (one thread per (plane, pixel)).
//
// Every operation is the CPU's, in its order and rounding (f32 ray geometry with the _rn
// intrinsics so that nvcc fuses nothing; sums in f64 over the same terms in the same order), so
// the outputs match the CPU bit for bit. The back-projection is a gather, without atomics: each
// pixel recomputes, for the few bins around its own detector coordinate, the forward's
// fractional column (or row) with the forward's expression, so it visits exactly the (ray,
// weight) pairs the projector visits, in the CPU scatter's order (views, then bins ascending).
#include "common.cuh"

namespace {

constexpr double kPi = 3.141592653589793238462643383279502884;

struct CtView {
    float cos, sin;
    bool per_row;   // |cos θ| ≥ |sin θ|: one sample per image row, else one per column
    double weight;  // 1/|cos θ| or 1/|sin θ|
};

__device__ __forceinline__ CtView load_view(const float* __restrict__ angles, int k) {
    CtView v;
    v.cos = __ldg(angles + 2 * k);
    v.sin = __ldg(angles + 2 * k + 1);
    v.per_row = fabsf(v.cos) >= fabsf(v.sin);
    v.weight = __ddiv_rn(1.0, (double)fabsf(v.per_row ? v.cos : v.sin));
    return v;
}

// (n − 1)/2, exact.
__device__ __forceinline__ float half_of(int n) { return __fmul_rn(__fsub_rn((float)n, 1.0f), 0.5f); }

// Where ray s crosses the row at height y: (s − y·sin)/cos + (W − 1)/2.
__device__ __forceinline__ float column_at(float s, float y, const CtView& v, float half_w) {
    return __fadd_rn(__fdiv_rn(__fsub_rn(s, __fmul_rn(y, v.sin)), v.cos), half_w);
}

// Where ray s crosses the column at abscissa x: (H − 1)/2 − (s − x·cos)/sin.
__device__ __forceinline__ float row_at(float s, float x, const CtView& v, float half_h) {
    return __fsub_rn(half_h, __fdiv_rn(__fsub_rn(s, __fmul_rn(x, v.cos)), v.sin));
}

struct Cell {
    int x, y;
    long long plane;
    bool live;
};

// Thread (x, y) of plane blockIdx.z in a (rows, cols) grid of outputs.
__device__ __forceinline__ Cell this_cell(int planes, int rows, int cols) {
    Cell c;
    c.x = blockIdx.x * blockDim.x + threadIdx.x;
    c.y = blockIdx.y * blockDim.y + threadIdx.y;
    c.plane = blockIdx.z;
    c.live = c.x < cols && c.y < rows && (int)blockIdx.z < planes;
    return c;
}

__device__ __forceinline__ double add_product(double acc, float a, float b) {
    return __dadd_rn(acc, __dmul_rn((double)a, (double)b));  // the product is exact in f64
}

}  // namespace

// sino (planes, V, D) = the Joseph projection of x (planes, H, W).
extern "C" __global__ void ct_project(const float* __restrict__ x, const float* __restrict__ angles,
                                      float* __restrict__ sino, int planes, int h, int w,
                                      int views, int detectors) {
    const Cell t = this_cell(planes, views, detectors);
    if (!t.live) return;
    const CtView v = load_view(angles, t.y);
    const float half_h = half_of(h), half_w = half_of(w);
    const float s = __fsub_rn((float)t.x, half_of(detectors));
    const float* img = x + t.plane * h * w;
    double acc = 0.0;
    if (v.per_row) {
        for (int i = 0; i < h; ++i) {
            const float c = column_at(s, __fsub_rn(half_h, (float)i), v, half_w);
            const float j0f = floorf(c), frac = __fsub_rn(c, j0f);
            const int j0 = (int)j0f;
            if (j0 >= 0 && j0 < w) acc = add_product(acc, __fsub_rn(1.0f, frac), __ldg(img + i * w + j0));
            if (j0 + 1 >= 0 && j0 + 1 < w) acc = add_product(acc, frac, __ldg(img + i * w + j0 + 1));
        }
    } else {
        for (int j = 0; j < w; ++j) {
            const float r = row_at(s, __fsub_rn((float)j, half_w), v, half_h);
            const float i0f = floorf(r), frac = __fsub_rn(r, i0f);
            const int i0 = (int)i0f;
            if (i0 >= 0 && i0 < h) acc = add_product(acc, __fsub_rn(1.0f, frac), __ldg(img + i0 * w + j));
            if (i0 + 1 >= 0 && i0 + 1 < h) acc = add_product(acc, frac, __ldg(img + (i0 + 1) * w + j));
        }
    }
    sino[(t.plane * views + t.y) * detectors + t.x] = (float)__dmul_rn(acc, v.weight);
}

// x (planes, H, W) = the adjoint of ct_project applied to sino (planes, V, D).
//
// Pixel (i, j) lies at detector coordinate u = x_j cos θ + y_i sin θ. In exact arithmetic a
// bin b samples it only if |b − (u + (D − 1)/2)| ≤ |cos θ| (or |sin θ|) ≤ 1, so the bins
// ⌊bc⌋ − 1 … ⌊bc⌋ + 1 around bc = u + (D − 1)/2 hold all of them; one more on each side covers
// the f32 rounding of both bc and the forward's crossing (≪ 1 bin at the capped sizes).
extern "C" __global__ void ct_backproject(const float* __restrict__ sino,
                                          const float* __restrict__ angles, float* __restrict__ x,
                                          int planes, int h, int w, int views, int detectors) {
    const Cell t = this_cell(planes, h, w);
    if (!t.live) return;
    const int i = t.y, j = t.x;
    const float half_h = half_of(h), half_w = half_of(w), half_d = half_of(detectors);
    const float yi = __fsub_rn(half_h, (float)i), xj = __fsub_rn((float)j, half_w);
    const float* s_plane = sino + t.plane * views * detectors;
    double acc = 0.0;
    for (int k = 0; k < views; ++k) {
        const CtView v = load_view(angles, k);
        const float bc = __fadd_rn(__fadd_rn(__fmul_rn(xj, v.cos), __fmul_rn(yi, v.sin)), half_d);
        const int b_lo = max((int)floorf(bc) - 2, 0), b_hi = min((int)floorf(bc) + 2, detectors - 1);
        for (int b = b_lo; b <= b_hi; ++b) {
            const float s = __fsub_rn((float)b, half_d);
            // The forward's crossing for this ray at this pixel's row (column), and whether the
            // projector visits this pixel as the lower (weight 1 − frac) or upper (frac) one.
            const float p = v.per_row ? column_at(s, yi, v, half_w) : row_at(s, xj, v, half_h);
            const int here = v.per_row ? j : i;
            const float p0f = floorf(p), frac = __fsub_rn(p, p0f);
            const int p0 = (int)p0f;
            if (p0 != here && p0 + 1 != here) continue;
            const float wt = p0 == here ? __fsub_rn(1.0f, frac) : frac;
            const double scaled = __dmul_rn((double)__ldg(s_plane + k * detectors + b), v.weight);
            acc = __dadd_rn(acc, __dmul_rn((double)wt, scaled));
        }
    }
    x[(t.plane * h + i) * w + j] = (float)acc;
}

// out (planes, V, D) = each view's row of s convolved with the Ram-Lak kernel (h[0] = 1/4,
// h[n] = −1/(πn)² for odd n, 0 for even n), zero padded, same size; the taps in the CPU's f64.
extern "C" __global__ void ct_ramp_filter(const float* __restrict__ s, float* __restrict__ out,
                                          int planes, int views, int detectors) {
    const Cell t = this_cell(planes, views, detectors);
    if (!t.live) return;
    const float* row = s + (t.plane * views + t.y) * detectors;
    double acc = 0.0;
    for (int bp = 0; bp < detectors; ++bp) {
        const int n = abs(t.x - bp);
        if (n != 0 && n % 2 == 0) continue;
        double tap = 0.25;
        if (n != 0) {
            const double a = __dmul_rn(kPi, (double)n);
            tap = -__ddiv_rn(1.0, __dmul_rn(a, a));
        }
        acc = __dadd_rn(acc, __dmul_rn(tap, (double)__ldg(row + bp)));
    }
    out[(t.plane * views + t.y) * detectors + t.x] = (float)acc;
}
