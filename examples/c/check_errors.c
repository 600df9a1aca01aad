/* Bad arguments from C get the right status and message (run by tests/c_abi.rs). */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "diffrecon.h"

static int failures = 0;

/* The call returned `want` and the last error contains `part`. */
static void expect(const char *what, diffrecon_status got, diffrecon_status want, const char *part) {
    const char *msg = diffrecon_last_error();
    if (got != want || strstr(msg, part) == NULL) {
        printf("FAIL %s: status %d (want %d), message \"%s\" (want \"%s\")\n", what, got, want, msg, part);
        failures++;
    } else {
        printf("ok   %s: %s\n", what, msg);
    }
}

int main(void) {
    diffrecon_operator *op = NULL, *ct = NULL;
    diffrecon_sampler *s = NULL, *det = NULL;
    diffrecon_model *model = NULL;
    float y[64 * 64], x[64 * 64];
    size_t shape[4];
    for (int i = 0; i < 64 * 64; i++) y[i] = 0.1f * (float)(i % 7);

    if (strlen(diffrecon_version()) == 0) { puts("FAIL empty version"); failures++; }
    expect("out NULL", diffrecon_operator_motion(9, 20.0, NULL), DIFFRECON_INVALID_ARGUMENT, "out-parameter is NULL");
    expect("even kernel", diffrecon_operator_motion(8, 20.0, &op), DIFFRECON_INVALID_ARGUMENT, "odd");
    expect("motion", diffrecon_operator_motion(9, 20.0, &op), DIFFRECON_OK, "");
    expect("factor 0", diffrecon_operator_downsample(0, &ct), DIFFRECON_INVALID_ARGUMENT, "--factor");
    expect("box outside", diffrecon_operator_inpaint_box(64, 64, 60, 0, 10, 10, &ct), DIFFRECON_INVALID_ARGUMENT, "inside");
    expect("mask NULL", diffrecon_operator_inpaint_mask(64, 64, NULL, &ct), DIFFRECON_INVALID_ARGUMENT, "mask buffer is NULL");
    expect("ct", diffrecon_operator_ct(64, 64, 30, 0, 180.0, &ct), DIFFRECON_OK, "");
    expect("unknown sampler", diffrecon_sampler_new("ddpm", &s), DIFFRECON_INVALID_ARGUMENT, "unknown sampler 'ddpm'");
    expect("sampler name NULL", diffrecon_sampler_new(NULL, &s), DIFFRECON_INVALID_ARGUMENT, "sampler name is NULL");
    expect("sampler", diffrecon_sampler_new("diffpir-pnp", &s), DIFFRECON_OK, "");
    expect("foreign parameter", diffrecon_sampler_set(s, "tau", 0.5), DIFFRECON_INVALID_ARGUMENT, "no parameter 'tau'");
    expect("NaN parameter", diffrecon_sampler_set(s, "lambda", NAN), DIFFRECON_INVALID_ARGUMENT, "finite");
    expect("fractional steps", diffrecon_sampler_set(s, "steps", 2.5), DIFFRECON_INVALID_ARGUMENT, "whole number");
    expect("bad skip", diffrecon_sampler_set_skip(s, "cubic"), DIFFRECON_INVALID_ARGUMENT, "unknown skip");
    expect("steps", diffrecon_sampler_set(s, "steps", 2), DIFFRECON_OK, "");
    expect("missing weights", diffrecon_model_load("/nonexistent/w.safetensors", "cpu", NULL, &model), DIFFRECON_IO, "cannot open");
    expect("unknown device", diffrecon_model_load(NULL, "gpu", NULL, &model), DIFFRECON_INVALID_ARGUMENT, "unknown device 'gpu'");
    expect("unknown precision", diffrecon_model_load(NULL, "cpu", "fp8", &model), DIFFRECON_INVALID_ARGUMENT, "unknown precision");
    expect("absent GPU", diffrecon_model_load(NULL, "cuda:63", NULL, &model), DIFFRECON_DEVICE, "cannot run");
    expect("model", diffrecon_model_load(NULL, "cpu", NULL, &model), DIFFRECON_OK, "");
    expect("model NULL", diffrecon_reconstruct(NULL, op, s, y, 1, 64, 64, 0, 1, x, 64 * 64, NULL, NULL, NULL),
           DIFFRECON_INVALID_ARGUMENT, "model handle is NULL");
    expect("y NULL", diffrecon_reconstruct(model, op, s, NULL, 1, 64, 64, 0, 1, x, 64 * 64, NULL, NULL, NULL),
           DIFFRECON_INVALID_ARGUMENT, "measurement buffer is NULL");
    expect("short output", diffrecon_reconstruct(model, op, s, y, 1, 64, 64, 0, 1, x, 100, NULL, NULL, NULL),
           DIFFRECON_INVALID_ARGUMENT, "holds 100 floats but the result has 4096");
    expect("sinogram shape", diffrecon_reconstruct(model, ct, s, y, 1, 64, 64, 0, 1, x, 64 * 64, NULL, NULL, NULL),
           DIFFRECON_INVALID_ARGUMENT, "30");
    expect("diffpir", diffrecon_sampler_new("diffpir", &det), DIFFRECON_OK, "");
    expect("samples of a deterministic sampler", diffrecon_reconstruct(model, op, det, y, 1, 64, 64, 0, 3, x, 64 * 64, NULL, NULL, NULL),
           DIFFRECON_INVALID_ARGUMENT, "deterministic");
    y[5] = NAN;
    expect("NaN measurement", diffrecon_reconstruct(model, op, s, y, 1, 64, 64, 0, 1, x, 64 * 64, NULL, NULL, NULL),
           DIFFRECON_INVALID_ARGUMENT, "non-finite");
    expect("NaN image", diffrecon_simulate(op, y, 1, 64, 64, 0.01, 0, x, 64 * 64), DIFFRECON_INVALID_ARGUMENT, "non-finite");
    expect("missing npy", diffrecon_npy_read("/nonexistent/y.npy", NULL, 0, shape), DIFFRECON_IO, "cannot read");
    expect("unwritable npy", diffrecon_npy_write("/nonexistent/x.npy", x, 1, 64, 64), DIFFRECON_IO, "cannot write");
    y[5] = 0.0f;
    expect("simulate", diffrecon_simulate(op, y, 1, 64, 64, 0.01, 0, x, 64 * 64), DIFFRECON_OK, "");
    if (diffrecon_last_error()[0] != '\0') { puts("FAIL last error not cleared"); failures++; }
    diffrecon_model_free(model); diffrecon_sampler_free(s); diffrecon_sampler_free(det); diffrecon_operator_free(op); diffrecon_operator_free(ct);
    diffrecon_model_free(NULL); diffrecon_operator_free(NULL); diffrecon_sampler_free(NULL);
    printf("%d failure(s)\n", failures);
    return failures != 0;
}
