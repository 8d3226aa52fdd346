/* End to end on real data: the LeNet-style CNN trained on a subset of
 * Debian's Fashion-MNIST (dataset-fashion-mnist) must reach a stated test
 * accuracy. No time limit: it asserts an outcome, not a speed. Skipped, with
 * the reason, where the data is not installed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "asymml/asymml.h"
#include "untrusted/cpu_backend.h"

#define DATA "/usr/share/datasets/fashion-mnist"

/* The trained model m in fixed point (8-bit weights, 8-bit activations,
 * calibrated on the first 1000 training images): its test accuracy. */
static double quantized_acc(am_model *m, const am_dataset *tr, const am_dataset *te) {
    am_model *q;
    assert_int_equal(am_model_fold_bn(m, &q, NULL), AM_OK);
    assert_int_equal(am_model_set_batch(q, 100), AM_OK);
    am_asym_cfg c = am_asym_defaults();
    c.mode = AM_MODE_QUANTIZED;
    assert_int_equal(am_model_set_asym(q, &c, NULL), AM_OK);
    float mean[1], sd[1], *x = malloc(sizeof(float) * 100 * 28 * 28);
    int32_t lab[100];
    uint32_t idx[100];
    assert_int_equal(am_dataset_stats(tr, mean, sd), AM_OK);
    for (int k = 0; k < 10; k++) {
        for (int b = 0; b < 100; b++) idx[b] = (uint32_t)(k * 100 + b);
        assert_int_equal(am_dataset_batch(tr, idx, 100, mean, sd, x, lab), AM_OK);
        am_tensor t = {am_shape4(100, 1, 28, 28), x};
        assert_int_equal(am_model_calibrate(q, &t), AM_OK);
    }
    double acc;
    assert_int_equal(am_evaluate(q, te, mean, sd, 100, NULL, &acc, NULL), AM_OK);
    free(x);
    am_model_free(q);
    return acc;
}

/* Test accuracy of LeNet trained in a mode on the first 8000 training images
 * for 2 epochs, on the first 3000 test images; *qacc (unless NULL): its
 * accuracy in fixed point. */
static double lenet_acc(am_mode mode, double *qacc) {
    am_dataset tr, te;
    if (am_dataset_load(AM_DATA_IDX, DATA, "train", &tr)) fail_msg("%s", am_last_error());
    if (am_dataset_load(AM_DATA_IDX, DATA, "test", &te)) fail_msg("%s", am_last_error());
    assert_int_equal(tr.n, 60000);
    assert_int_equal(te.n, 10000);
    am_dataset_truncate(&tr, 8000);
    am_dataset_truncate(&te, 3000);
    char desc[4096];
    assert_int_equal(am_zoo_describe("lenet", am_shape4(1, 1, 28, 28), 10, desc, sizeof desc), AM_OK);
    am_train_cfg c = {.epochs = 2, .batch = 64, .lr = 0.05f, .momentum = 0.9f, .wd = 5e-4f,
                      .sched = AM_SCHED_COSINE, .step_size = 1, .gamma = 0.1f, .seed = 1};
    c.asym = am_asym_defaults(); /* rank ratio 1/16: LeNet's second conv keeps rank 1 of 16 */
    c.asym.mode = mode;
    am_trainer *t;
    am_backend *be;
    assert_int_equal(am_cpu_backend_create(&be), AM_OK);
    am_trainer_io io = {&tr, &te, be};
    assert_int_equal(am_trainer_create(&c, desc, &io, &t), AM_OK);
    while (!am_trainer_done(t)) assert_int_equal(am_trainer_step(t, NULL), AM_OK);
    double acc, loss;
    assert_int_equal(am_trainer_evaluate(t, &te, &acc, &loss), AM_OK);
    print_message("lenet, 8000 images, 2 epochs, %s: test accuracy %.4f on 3000\n", am_mode_name(mode), acc);
    if (qacc) {
        *qacc = quantized_acc(am_trainer_model(t), &tr, &te);
        print_message("quantized (8-bit weights and activations): %.4f\n", *qacc);
    }
    am_trainer_free(t);
    be->vt->destroy(be);
    am_dataset_free(&tr);
    am_dataset_free(&te);
    return acc;
}

static int have_data(void) {
    if (access(DATA "/train-images-idx3-ubyte.gz", R_OK) && access(DATA "/train-images-idx3-ubyte", R_OK)) {
        print_message("skipped: %s not installed (Debian package dataset-fashion-mnist)\n", DATA);
        return 0;
    }
    return 1;
}

static void t_lenet_subset(void **st) {
    (void)st;
    if (!have_data()) skip();
    /* 8000 images for 2 epochs reach about 0.85; 0.78 leaves room for a
     * different seed or BLAS, and a broken engine lands far below. */
    double q, acc = lenet_acc(AM_MODE_TEE_ONLY, &q);
    assert_true(acc >= 0.78);
    /* Fixed point within half a point of the float model (issue 16). */
    assert_true(fabs(q - acc) <= 0.005);
}

/* The paper's ablation: dropping the residual (lowrank-only) costs accuracy
 * that asymml mode, which adds it back from the accelerator, keeps. */
static void t_lowrank_ablation(void **st) {
    (void)st;
    if (!have_data()) skip();
    double full = lenet_acc(AM_MODE_ASYMML, NULL), low = lenet_acc(AM_MODE_LOWRANK_ONLY, NULL);
    assert_true(full >= 0.78);
    assert_true(full - low >= 0.01);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(t_lenet_subset), cmocka_unit_test(t_lowrank_ablation)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
