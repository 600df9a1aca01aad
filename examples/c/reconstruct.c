/* Reconstruct a motion-blurred measurement with published DiffPIR and the bundled prior.
 *   cc examples/c/reconstruct.c -Iinclude -Ltarget/release -ldiffrecon -o reconstruct
 *   LD_LIBRARY_PATH=target/release ./reconstruct y.npy x.npy [steps] [seed]           */
#include <stdio.h>
#include <stdlib.h>
#include "diffrecon.h"

#define CHECK(call) do { if ((call) != DIFFRECON_OK) { \
    fprintf(stderr, "%s: %s\n", #call, diffrecon_last_error()); return 1; } } while (0)

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: %s Y.npy OUT.npy [STEPS] [SEED]\n", argv[0]); return 2; }
    diffrecon_model *model; diffrecon_operator *op; diffrecon_sampler *sampler;
    size_t shape[4], h, w;
    CHECK(diffrecon_model_load(NULL, NULL, NULL, &model));   /* bundled prior, device auto, f32 */
    CHECK(diffrecon_operator_motion(9, 20.0, &op));                /* 9-pixel blur at 20° */
    CHECK(diffrecon_sampler_new("diffpir-pnp", &sampler));
    CHECK(diffrecon_sampler_set(sampler, "steps", argc > 3 ? atof(argv[3]) : 40));
    CHECK(diffrecon_npy_read(argv[1], NULL, 0, shape));            /* size query: {n, 1, rows, cols} */
    float *y = malloc(shape[0] * shape[2] * shape[3] * sizeof *y);
    CHECK(diffrecon_npy_read(argv[1], y, shape[0] * shape[2] * shape[3], shape));
    CHECK(diffrecon_operator_image_size(op, shape[2], shape[3], &h, &w));
    float *x = malloc(shape[0] * h * w * sizeof *x);
    diffrecon_cg_report cg;
    CHECK(diffrecon_reconstruct(model, op, sampler, y, shape[0], shape[2], shape[3],
                                argc > 4 ? strtoull(argv[4], NULL, 10) : 0, 1,
                                x, shape[0] * h * w, NULL, NULL, &cg));
    CHECK(diffrecon_npy_write(argv[2], x, shape[0], h, w));
    printf("diffrecon %s: %zu slice(s), %zu CG solves, worst residual %.2e\n",
           diffrecon_version(), shape[0], cg.solves, cg.rel_residual);
    free(x); free(y);
    diffrecon_sampler_free(sampler); diffrecon_operator_free(op); diffrecon_model_free(model);
    return 0;
}
