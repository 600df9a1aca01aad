// The per-slice scalars of the conjugate-gradient proximal solve (published DiffPIR), kept on
// the device so the CG loop never waits for the host; reference: the loop of
// src/samplers/cg.rs (same formulas, same order, f64 scalars rounded to f32 coefficients).
// The vector work (blur, Kᵀ, per-item dot / Σr², per-item lincomb) uses the existing kernels;
// the coefficient arrays hold [1 … 1 | c_0 … c_{n−1}] as lincomb_per_item reads them.
// One thread per slice: grid = ceil(n / 256), block = 256. State per slice (double):
// rr (current ‖r‖²), bb (‖b‖²), curv (dᵀA d), rr_new, done (0 or 1), iters. μ comes in and the
// statistics go out as buffers, so a whole solve is device work (capturable as a graph).
#include "common.cuh"

// The coefficient arrays' ones and their starting c's: coef_mu = [1 | μ], coef_x = coef_r =
// coef_dir = [1 | 0] (each 2n floats).
extern "C" __global__ void cg_coefs(const float* mu, float* coef_mu, float* coef_x,
                                    float* coef_r, float* coef_dir, int n) {
    const int i = flat_index();
    if (i >= n) return;
    coef_mu[i] = coef_x[i] = coef_r[i] = coef_dir[i] = 1.0f;
    coef_mu[n + i] = mu[i];
    coef_x[n + i] = coef_r[n + i] = coef_dir[n + i] = 0.0f;
}

// done = converged at the start (‖r0‖² ≤ tol²·‖b‖²), iters = 0.
extern "C" __global__ void cg_init(const double* rr, const double* bb, double* done,
                                   double* iters, double tol2, int n) {
    const int i = flat_index();
    if (i >= n) return;
    done[i] = rr[i] <= tol2 * bb[i] ? 1.0 : 0.0;
    iters[i] = 0.0;
}

// α = rr / curv for slices still running (0 when frozen or when the curvature is not
// positive): coef_x gets +α, coef_r gets −α.
extern "C" __global__ void cg_alpha(const double* rr, const double* curv, const double* done,
                                    float* coef_x, float* coef_r, int n) {
    const int i = flat_index();
    if (i >= n) return;
    const float a = (done[i] != 0.0 || curv[i] <= 0.0) ? 0.0f : (float)(rr[i] / curv[i]);
    coef_x[n + i] = a;
    coef_r[n + i] = -a;
}

// β = rr_new / rr (0 when frozen or rr = 0) into coef_dir; then, for running slices, count the
// iteration, take rr_new, and freeze on convergence or a non-positive curvature.
extern "C" __global__ void cg_beta(double* rr, const double* rr_new, const double* bb,
                                   const double* curv, double* done, double* iters,
                                   float* coef_dir, double tol2, int n) {
    const int i = flat_index();
    if (i >= n) return;
    const bool frozen = done[i] != 0.0;
    coef_dir[n + i] = (frozen || rr[i] == 0.0) ? 0.0f : (float)(rr_new[i] / rr[i]);
    if (!frozen) {
        iters[i] += 1.0;
        rr[i] = rr_new[i];
        done[i] = (rr[i] <= tol2 * bb[i] || curv[i] <= 0.0) ? 1.0 : 0.0;
    }
}

// The statistics per slice as CG_STATS = 3 floats: iterations, final ‖r‖², ‖b‖².
extern "C" __global__ void cg_stats(const double* iters, const double* rr, const double* bb,
                                    float* stats, int n) {
    const int i = flat_index();
    if (i >= n) return;
    stats[3 * i] = (float)iters[i];
    stats[3 * i + 1] = (float)rr[i];
    stats[3 * i + 2] = (float)bb[i];
}
