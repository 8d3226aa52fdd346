/* The decomposition against the exact SVD, the rank policies, the one-pass
 * projection and subspace step against the GEMMs they replace, and folding
 * a basis into conv weights and back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "asymml/asymml.h"
#include "trusted/fold.h"
#include "trusted/verify.h"

static am_rng rng;

/* A low-rank-plus-noise batch, like a conv layer's input: channels are
 * mixtures of a few patterns. */
static float *lowrankish(int B, int C, int N, int rank, float noise) {
    float *X = malloc(sizeof(float) * (size_t)B * C * N);
    float *P = malloc(sizeof(float) * (size_t)rank * N), *M = malloc(sizeof(float) * (size_t)C * rank);
    for (int i = 0; i < rank * N; i++) P[i] = am_rng_normal(&rng);
    for (int i = 0; i < C * rank; i++) M[i] = am_rng_normal(&rng) / (float)(1 + i % rank);
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++)
            for (int n = 0; n < N; n++) {
                float v = noise * am_rng_normal(&rng);
                for (int k = 0; k < rank; k++) v += M[c * rank + k] * P[k * N + n] * (1.f + 0.1f * b);
                X[((size_t)b * C + c) * N + n] = v;
            }
    free(P);
    free(M);
    return X;
}

/* U (C x r, row-major) has orthonormal columns, to tol. */
static void assert_orthonormal(const float *U, int C, int r, double tol) {
    for (int i = 0; i < r; i++)
        for (int j = 0; j < r; j++) {
            double d = 0;
            for (int c = 0; c < C; c++) d += (double)U[c * r + i] * U[c * r + j];
            assert_true(fabs(d - (i == j)) < tol);
        }
}

static void t_decomposition(void **st) {
    (void)st;
    const int B = 4, C = 32, N = 49, r = 4;
    float *X = lowrankish(B, C, N, 6, 0.05f);
    float s[32], Ue[32 * 4];
    assert_int_equal(am_exact_basis(X, B, C, N, r, Ue, s), AM_OK);
    for (int i = 1; i < C; i++) assert_true(s[i] <= s[i - 1] * (1 + 1e-6f));
    double total = am_sumsq(X, (size_t)B * C * N), exact_kept = am_energy_kept(s, C, r);
    /* Exact singular values agree with the projection on the exact basis. */
    float *V = malloc(sizeof(float) * B * r * N), *R = malloc(sizeof(float) * B * C * N);
    assert_int_equal(am_project(X, B, C, N, r, Ue, V, R), AM_OK);
    assert_true(fabs(1 - am_sumsq(R, (size_t)B * C * N) / total - exact_kept) < 1e-4);
    /* Shared basis by subspace iteration: orthonormal, and within 2% of the
     * exact energy after 2 iterations from the largest channels. */
    float U[32 * 4];
    size_t wn = am_shared_basis_workspace(B, C, N, r);
    float *work = am_aligned_alloc(wn * sizeof(float));
    assert_int_equal(am_shared_basis(X, B, C, N, r, 2, 0, U, work, wn), AM_OK);
    assert_orthonormal(U, C, r, 1e-4);
    assert_int_equal(am_project(X, B, C, N, r, U, V, R), AM_OK);
    double shared_kept = 1 - am_sumsq(R, (size_t)B * C * N) / total;
    print_message("energy kept at r=%d: exact %.4f, shared basis %.4f\n", r, exact_kept, shared_kept);
    assert_true(shared_kept >= exact_kept - 0.02 && shared_kept <= exact_kept + 1e-4);
    /* X = U V + R exactly (up to rounding). */
    for (size_t i = 0; i < (size_t)C * N; i++) {
        double v = R[i];
        for (int k = 0; k < r; k++) v += (double)U[(i / N) * r + k] * V[k * N + i % N];
        assert_true(fabs(v - X[i]) < 1e-4 * (1 + fabs(X[i])));
    }
    /* Light SVD (Algorithm 1) per sample, T = 2: within 5% of each sample's
     * exact energy at the same rank (ALGORITHM.md: 3-9% of the residual on
     * a trained VGG11; these matrices are easier). */
    for (int b = 0; b < B; b++) {
        float *Xb = X + (size_t)b * C * N, Rb[32 * 49], Ub[32 * 4], Vb[4 * 49], sb[32];
        memcpy(Rb, Xb, sizeof Rb);
        assert_int_equal(am_light_svd(Rb, C, N, r, 2, Ub, Vb), AM_OK);
        assert_int_equal(am_exact_basis(Xb, 1, C, N, 1, NULL, sb), AM_OK);
        double tb = am_sumsq(Xb, (size_t)C * N), kept = 1 - am_sumsq(Rb, (size_t)C * N) / tb;
        double ek = am_energy_kept(sb, C, r);
        assert_true(kept >= ek - 0.05 && kept <= ek + 1e-4);
        for (size_t i = 0; i < (size_t)C * N; i++) {
            double v = Rb[i];
            for (int k = 0; k < r; k++) v += (double)Ub[(i / N) * r + k] * Vb[k * N + i % N];
            assert_true(fabs(v - Xb[i]) < 1e-4 * (1 + fabs(Xb[i])));
        }
    }
    /* Inputs of rank below r (here 2, and a zero batch): the basis is
     * still r orthonormal columns, and X = U V + R exactly. Well
     * conditioned inputs take Cholesky QR, these Householder's. */
    for (int z = 0; z < 2; z++) {
        float *Xd = lowrankish(B, C, N, 2, 0.f);
        if (z) memset(Xd, 0, sizeof(float) * (size_t)B * C * N);
        for (int warm = 0; warm < 2; warm++) {
            assert_int_equal(am_shared_basis(Xd, B, C, N, r, 2, warm, U, work, wn), AM_OK);
            assert_orthonormal(U, C, r, 1e-5);
            assert_int_equal(am_project(Xd, B, C, N, r, U, V, R), AM_OK);
            for (size_t i = 0; i < (size_t)C * N; i++) {
                double v = R[i];
                for (int k = 0; k < r; k++) v += (double)U[(i / N) * r + k] * V[k * N + i % N];
                assert_true(fabs(v - Xd[i]) < 1e-4 * (1 + fabs(Xd[i])));
            }
        }
        free(Xd);
    }
    /* Fewer pixels than channels: the values alone come from the smaller
     * (column) Gram matrix and agree with the full eigensolver's. */
    {
        const int Cw = 32, Nw = 3, Bw = 2;
        float *Xw = lowrankish(Bw, Cw, Nw, 6, 0.05f), sv[32], sf[32], Uf[32];
        assert_int_equal(am_exact_basis(Xw, Bw, Cw, Nw, 1, NULL, sv), AM_OK);
        assert_int_equal(am_exact_basis(Xw, Bw, Cw, Nw, 1, Uf, sf), AM_OK);
        for (int j = 0; j < Cw; j++) assert_true(fabsf(sv[j] - sf[j]) < 1e-4f * (1 + sf[0]));
        for (int j = Bw * Nw; j < Cw; j++) assert_true(sv[j] == 0.f);
        free(Xw);
    }
    /* Entropy and rank policies. */
    float flat[4] = {1, 1, 1, 1}, one[4] = {1, 0, 0, 0};
    assert_true(fabs(am_svd_entropy(flat, 4) - 2.0) < 1e-12);
    assert_true(fabs(am_svd_entropy(one, 4)) < 1e-12);
    assert_int_equal(am_rank_pick(AM_RANK_RATIO, 1.0 / 16, NULL, 64), 4);
    assert_int_equal(am_rank_pick(AM_RANK_RATIO, 1.0 / 16, NULL, 3), 1);
    assert_int_equal(am_rank_pick(AM_RANK_FIXED, 5, NULL, 3), 3);
    assert_int_equal(am_rank_pick(AM_RANK_ENTROPY, 0, flat, 4), 4);
    float geo[4] = {8, 4, 2, 1};
    /* energies 64 16 4 1: residual shares 21/85, 5/85 = 5.9%, 1/85 = 1.2% */
    assert_int_equal(am_rank_pick(AM_RANK_ENERGY, 0.05, geo, 4), 3);
    assert_int_equal(am_rank_pick(AM_RANK_ENERGY, 0.06, geo, 4), 2);
    assert_int_equal(am_shared_basis(X, B, C, N, 0, 2, 0, U, work, wn), AM_EINVAL);
    assert_int_equal(am_shared_basis(X, B, C, N, r, 2, 0, U, work, 4), AM_EINVAL);
    /* A diverged input is named as such, not as LAPACK's complaint. */
    X[5] = NAN;
    assert_int_equal(am_shared_basis(X, B, C, N, r, 2, 0, U, work, wn), AM_ENUM);
    assert_non_null(strstr(am_last_error(), "not finite"));
    am_aligned_free(work);
    free(V);
    free(R);
    free(X);
}

/* The one-pass projection against the GEMMs' (am_project), with the
 * energies against sums of squares: planes with and without a partial
 * block of 16 pixels, or only one; ranks and channel counts that are not
 * multiples of the register tiles; r = C; samples over 4 MiB, which go
 * through gathered tiles, the last one partial and ending in a partial
 * block. */
static void t_project_fused(void **st) {
    (void)st;
    const int shapes[][4] = {{2, 8, 16, 4}, {3, 7, 23, 3}, {2, 5, 5, 5}, {4, 64, 49, 4}, {2, 33, 196, 13},
                             {1, 512, 16, 32}, {2, 16, 1, 1}, {2, 130, 64, 9}, {4, 64, 300, 8},
                             {2, 64, 16411, 5}, {1, 130, 8070, 9}};
    for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++) {
        const int B = shapes[t][0], C = shapes[t][1], N = shapes[t][2], r = shapes[t][3];
        const size_t xn = (size_t)B * C * N, vn = (size_t)B * r * N;
        float *X = lowrankish(B, C, N, 3, 0.1f), *U = malloc(sizeof(float) * (size_t)C * r);
        float *V = malloc(sizeof(float) * vn), *R = malloc(sizeof(float) * xn);
        float *V2 = malloc(sizeof(float) * vn), *R2 = malloc(sizeof(float) * xn);
        for (int i = 0; i < C * r; i++) U[i] = am_rng_normal(&rng) / sqrtf((float)C);
        assert_int_equal(am_project(X, B, C, N, r, U, V, R), AM_OK);
        double er = 1, ev = 2; /* added to */
        assert_int_equal(am_project_fused(X, B, C, N, r, U, V2, R2, &er, &ev), AM_OK);
        for (size_t i = 0; i < vn; i++) assert_true(fabsf(V[i] - V2[i]) < 1e-5f * (1 + fabsf(V[i])));
        for (size_t i = 0; i < xn; i++) assert_true(fabsf(R[i] - R2[i]) < 1e-5f * (1 + fabsf(X[i])));
        assert_true(fabs(er - 1 - am_sumsq(R2, xn)) <= 1e-5 * am_sumsq(R2, xn) + 1e-9);
        assert_true(fabs(ev - 2 - am_sumsq(V2, vn)) <= 1e-5 * am_sumsq(V2, vn) + 1e-9);
        /* Again: the same bits (the last shape runs on every thread). */
        double er2 = 1, ev2 = 2;
        assert_int_equal(am_project_fused(X, B, C, N, r, U, V, R, &er2, &ev2), AM_OK);
        assert_true(er2 == er && ev2 == ev);
        assert_memory_equal(R, R2, sizeof(float) * xn);
        free(X), free(U), free(V), free(R), free(V2), free(R2);
    }
    /* The subspace step X X^T U in one pass against the two GEMMs it
     * replaces: full and partial blocks of 16 columns, odd channel counts. */
    const int sub[][3] = {{16, 40, 8}, {33, 16, 8}, {17, 7, 16}, {130, 100, 16}, {64, 1000, 8}, {80, 1000, 16}};
    for (size_t t = 0; t < sizeof sub / sizeof sub[0]; t++) {
        const int C = sub[t][0], N = sub[t][1], r = sub[t][2];
        assert_true(am_subspace_fits(C, r));
        float *X = lowrankish(1, C, N, 3, 0.1f), *U = malloc(sizeof(float) * (size_t)C * r);
        float *P = malloc(sizeof(float) * (size_t)N * r), *Z = malloc(sizeof(float) * (size_t)C * r),
              *Z2 = malloc(sizeof(float) * (size_t)C * r);
        for (int i = 0; i < C * r; i++) U[i] = am_rng_normal(&rng) / sqrtf((float)C);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, N, r, C, 1.f, X, N, U, r, 0.f, P, r);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, C, r, N, 1.f, X, N, P, r, 0.f, Z, r);
        assert_int_equal(am_subspace_product(X, C, N, r, U, Z2), AM_OK);
        double zmax = 0;
        for (int i = 0; i < C * r; i++) zmax = fmax(zmax, fabsf(Z[i]));
        for (int i = 0; i < C * r; i++) assert_true(fabsf(Z[i] - Z2[i]) < 1e-5 * zmax * sqrt((double)N));
        free(X), free(U), free(P), free(Z), free(Z2);
    }
    assert_false(am_subspace_fits(64, 4));
    assert_false(am_subspace_fits(8, 16));
    float x = 0;
    double e = 0;
    assert_int_equal(am_subspace_product(&x, 1, 1, 4, &x, &x), AM_EINVAL);
    assert_int_equal(am_project_fused(&x, 1, 1, 1, 2, &x, &x, &x, &e, &e), AM_EINVAL);
    assert_int_equal(am_project_fused(&x, 1, 1, 1, 1, &x, &x, NULL, &e, &e), AM_EINVAL);
}

/* The AVX-512 subspace step over runs read in place (am_subspace_runs)
 * against X X^T U summed in double over the same columns: runs of 1 to 300
 * pixels (partial vectors, several runs a chunk, several chunks a run),
 * several runs a sample, ranks 4 to 64. Every pixel outside the runs is
 * NaN: reading one (a wrong mask or offset) makes Z NaN. The same bits on
 * a second call; on 1 thread within rounding of 2 threads'. */
static void t_subspace_runs(void **st) {
    (void)st;
    float x = 0;
    am_runs one = {1, 1, 1, 1, 1, 0};
    if (!am_subspace_runs_fits(64, 4)) { /* no AVX-512 here: refused */
        assert_int_equal(am_subspace_runs(&x, 64, &one, 4, &x, &x), AM_EINVAL);
        return;
    }
    assert_false(am_subspace_runs_fits(64, 6));
    assert_false(am_subspace_runs_fits(66, 4));
    assert_false(am_subspace_runs_fits(8, 12));
    assert_false(am_subspace_runs_fits(128, 68));
    /* B, C, N, L, cps, stride, off, r */
    const int cs[][8] = {{2, 4, 40, 40, 1, 40, 0, 4},     {3, 8, 300, 70, 2, 150, 40, 8},
                         {2, 16, 1000, 300, 3, 333, 10, 12}, {1, 64, 20, 17, 1, 20, 3, 64},
                         {5, 32, 513, 257, 1, 513, 128, 32}, {40, 8, 16, 16, 1, 16, 0, 4},
                         {10, 16, 9, 1, 2, 4, 3, 16},        {7, 32, 64, 20, 3, 21, 1, 16},
                         {32, 64, 1024, 256, 1, 1024, 384, 4}};
    for (size_t t = 0; t < sizeof cs / sizeof cs[0]; t++) {
        const int B = cs[t][0], C = cs[t][1], N = cs[t][2], r = cs[t][7];
        const am_runs q = {B, N, cs[t][3], cs[t][4], cs[t][5], cs[t][6]};
        const size_t n = (size_t)B * C * N;
        float *X = lowrankish(B, C, N, 3, 0.1f), *U = malloc(sizeof(float) * (size_t)C * r);
        float *Z = malloc(sizeof(float) * (size_t)C * r), *Z2 = malloc(sizeof(float) * (size_t)C * r);
        char *in = calloc((size_t)N, 1);
        for (int k = 0; k < q.cps; k++) memset(in + (size_t)k * q.stride + q.off, 1, (size_t)q.L);
        for (size_t i = 0; i < n; i++)
            if (!in[i % N]) X[i] = NAN;
        for (int i = 0; i < C * r; i++) U[i] = am_rng_normal(&rng) / sqrtf((float)C);
        assert_int_equal(am_subspace_runs(X, C, &q, r, U, Z), AM_OK);
        double zmax = 0, *ref = calloc((size_t)C * r, sizeof(double)), *v = malloc(sizeof(double) * (size_t)r);
        for (int b = 0; b < B; b++)
            for (int p = 0; p < N; p++) {
                if (!in[p]) continue;
                const float *col = X + (size_t)b * C * N + p;
                for (int j = 0; j < r; j++) {
                    v[j] = 0;
                    for (int c = 0; c < C; c++) v[j] += (double)U[c * r + j] * col[(size_t)c * N];
                }
                for (int c = 0; c < C; c++)
                    for (int j = 0; j < r; j++) ref[c * r + j] += col[(size_t)c * N] * v[j];
            }
        for (int i = 0; i < C * r; i++) zmax = fmax(zmax, fabs(ref[i]));
        for (int i = 0; i < C * r; i++) assert_true(fabs(Z[i] - ref[i]) < 1e-5 * zmax);
        assert_int_equal(am_subspace_runs(X, C, &q, r, U, Z2), AM_OK);
        assert_memory_equal(Z, Z2, sizeof(float) * (size_t)C * r);
        const int nt = am_get_threads();
        am_set_threads(1);
        assert_int_equal(am_subspace_runs(X, C, &q, r, U, Z2), AM_OK);
        am_set_threads(nt);
        for (int i = 0; i < C * r; i++) assert_true(fabs(Z2[i] - ref[i]) < 1e-5 * zmax);
        free(X), free(U), free(Z), free(Z2), free(in), free(ref), free(v);
    }
    /* Runs that reach past a sample's plane, and bad arguments. */
    am_runs past = {1, 16, 10, 2, 8, 0};
    assert_int_equal(am_subspace_runs(&x, 4, &past, 4, &x, &x), AM_EINVAL);
    past = (am_runs){1, 16, 10, 1, 0, 7};
    assert_int_equal(am_subspace_runs(&x, 4, &past, 4, &x, &x), AM_EINVAL);
    assert_int_equal(am_subspace_runs(NULL, 4, &one, 4, &x, &x), AM_EINVAL);
    past = (am_runs){1 << 20, 16, 2, 1 << 20, 0, 0}; /* overlapping runs, 2^41 columns */
    assert_int_equal(am_subspace_runs(&x, 4, &past, 4, &x, &x), AM_EINVAL);
    assert_int_equal(am_subspace_runs(&x, 4, &one, 6, &x, &x), AM_EINVAL);
}

/* Folding a basis into 3x3 (and 1x1) weights and unfolding the gradient
 * back, against the sums written out: the 3x3 path by register blocks of 8,
 * then 4, then single basis vectors; with AVX-512, blocks of 32 and a
 * masked last block of 16 or fewer, over basis vectors and (unfolding)
 * input channels. */
static void t_fold(void **st) {
    (void)st;
    const int cases[][4] = {{5, 16, 8, 9}, {3, 20, 12, 9}, {4, 17, 13, 9}, {2, 64, 32, 9},
                            {6, 16, 4, 9}, {5, 12, 3, 1}, {3, 40, 48, 9}, {2, 33, 20, 9}};
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        const int K = cases[t][0], C = cases[t][1], r = cases[t][2], kk = cases[t][3];
        const size_t wn = (size_t)K * C * kk, pn = (size_t)K * r * kk;
        float *W = malloc(sizeof(float) * wn), *U = malloc(sizeof(float) * (size_t)C * r);
        float *Wp = malloc(sizeof(float) * pn), *dW = malloc(sizeof(float) * wn);
        float *Wt = malloc(sizeof(float) * FOLD_FLOATS), *M = malloc(sizeof(float) * FOLD_FLOATS);
        for (size_t i = 0; i < wn; i++) W[i] = am_rng_normal(&rng);
        for (int i = 0; i < C * r; i++) U[i] = am_rng_normal(&rng);
        am_fold_chunked(W, U, K, C, r, kk, Wt, M, Wp);
        for (int k = 0; k < K; k++)
            for (int j = 0; j < r; j++)
                for (int q = 0; q < kk; q++) {
                    double s = 0;
                    for (int c = 0; c < C; c++) s += (double)U[c * r + j] * W[((size_t)k * C + c) * kk + q];
                    assert_true(fabs(Wp[((size_t)k * r + j) * kk + q] - s) < 1e-4 * (1 + sqrt((double)C)));
                }
        /* dW = U dW' per output channel, written, then added. */
        for (int add = 0; add < 2; add++) {
            for (size_t i = 0; i < wn; i++) dW[i] = add ? 1.f : -7.f;
            am_stack_grad(Wp, K, r, kk, 0, M);
            am_unfold(U, M, 1, K, C, r, kk, Wt, dW, add);
            for (int k = 0; k < K; k++)
                for (int c = 0; c < C; c++)
                    for (int q = 0; q < kk; q++) {
                        double s = add ? 1 : 0;
                        for (int j = 0; j < r; j++) s += (double)U[c * r + j] * Wp[((size_t)k * r + j) * kk + q];
                        assert_true(fabs(dW[((size_t)k * C + c) * kk + q] - s) < 1e-3 * (1 + fabs(s)));
                    }
        }
        /* dW = U dW' + src in one pass: the unfold then am_merge_reply, to
         * the bit, and a value that is not finite reported wherever it is
         * (the last block, masked or not, included). */
        float *src = malloc(sizeof(float) * wn), *ref = malloc(sizeof(float) * wn);
        for (size_t i = 0; i < wn; i++) src[i] = am_rng_normal(&rng), dW[i] = -7.f;
        am_unfold(U, M, 1, K, C, r, kk, Wt, ref, 0);
        assert_int_equal(am_merge_reply(ref, src, K, C, (size_t)kk, NULL, 1, NULL, NULL, NULL), 0);
        assert_int_equal(am_unfold_merge(U, M, K, C, r, kk, Wt, dW, src), 0);
        assert_memory_equal(dW, ref, sizeof(float) * wn);
        const size_t at[] = {0, wn / 2, wn - 1};
        for (size_t i = 0; i < sizeof at / sizeof at[0]; i++) {
            const float keep = src[at[i]];
            src[at[i]] = i == 1 ? NAN : INFINITY;
            assert_int_equal(am_unfold_merge(U, M, K, C, r, kk, Wt, dW, src), 1);
            src[at[i]] = keep;
        }
        free(W), free(U), free(Wp), free(dW), free(Wt), free(M), free(src), free(ref);
    }
}

int main(int argc, char **argv) {
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    am_rng_seed(&rng, 2024);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_decomposition),
        cmocka_unit_test(t_project_fused),
        cmocka_unit_test(t_subspace_runs),
        cmocka_unit_test(t_fold),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
