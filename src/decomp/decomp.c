/* Low-rank decomposition of conv inputs: the paper's light SVD, the
 * batch-shared basis by subspace iteration, the exact SVD reference, the
 * SVD-channel entropy and the rank policies. */
#include "asymml/decomp.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* Float partial sums over runs of 256, added in double: accurate and
 * vectorizable. */
static double sumsq_range(const float *a, size_t i, size_t end) {
    double s = 0;
    for (; i < end; i += 256) {
        size_t e = i + 256 < end ? i + 256 : end;
        float f = 0.f;
        for (size_t j = i; j < e; j++) f += a[j] * a[j];
        s += f;
    }
    return s;
}

double am_sumsq(const float *a, size_t n) {
    if (n <= (1 << 16)) return sumsq_range(a, 0, n);
    /* Each thread a contiguous range (whole runs of 256), the ranges' sums
     * added in order: the same result from run to run at a thread count. */
    enum { MAXT = 256 };
    double part[MAXT] = {0};
    int used = 1;
#pragma omp parallel
    {
        const int nt = omp_get_num_threads() < MAXT ? omp_get_num_threads() : MAXT, t = omp_get_thread_num();
        const size_t runs = (n + 255) / 256, per = (runs + (size_t)nt - 1) / (size_t)nt;
#pragma omp single
        used = nt;
        if (t < nt) {
            size_t b = (size_t)t * per * 256, e = b + per * 256;
            part[t] = b < n ? sumsq_range(a, b, e < n ? e : n) : 0;
        }
    }
    double s = 0;
    for (int t = 0; t < used; t++) s += part[t];
    return s;
}

static am_status check_dims(int B, int C, int N, int r) {
    if (B < 1 || C < 1 || N < 1 || r < 1 || r > C || C > (1 << 16) || N > (1 << 26))
        return am_fail(AM_EINVAL, "decomposition: bad sizes (B %d, C %d, N %d, r %d)", B, C, N, r);
    return AM_OK;
}

am_status am_light_svd(float *X, int C, int N, int r, int T, float *U, float *V) {
    AM_TRY(check_dims(1, C, N, r));
    if (!X || !U || !V || T < 1 || T > 100) return am_fail(AM_EINVAL, "light SVD: bad argument");
    /* eps relative to the energy of X, as ALGORITHM.md requires. */
    const float eps = (float)(1e-6 * am_sumsq(X, (size_t)C * N) + 1e-30);
    float *ucol = malloc(sizeof(float) * (size_t)C);
    if (!ucol) return am_fail(AM_ENOMEM, "light SVD: out of memory");
    for (int i = 0; i < r; i++) {
        float *v = V + (size_t)i * N;
        /* Start v from the channel (row) of largest norm. */
        int best = 0;
        double bn = -1;
        for (int c = 0; c < C; c++) {
            double n2 = am_sumsq(X + (size_t)c * N, (size_t)N);
            if (n2 > bn) bn = n2, best = c;
        }
        memcpy(v, X + (size_t)best * N, sizeof(float) * (size_t)N);
        float *u = U + i; /* column i of U, stride r */
        for (int t = 0; t < T; t++) {
            /* u = X v / (v.v + eps) */
            float vv = cblas_sdot(N, v, 1, v, 1) + eps;
            cblas_sgemv(CblasRowMajor, CblasNoTrans, C, N, 1.f / vv, X, N, v, 1, 0.f, ucol, 1);
            /* v = X^T u / (u.u + eps) */
            float uu = cblas_sdot(C, ucol, 1, ucol, 1) + eps;
            cblas_sgemv(CblasRowMajor, CblasTrans, C, N, 1.f / uu, X, N, ucol, 1, 0.f, v, 1);
        }
        for (int c = 0; c < C; c++) u[(size_t)c * r] = ucol[c];
        /* Deflate: X -= u v^T. */
        cblas_sger(CblasRowMajor, C, N, -1.f, ucol, 1, v, 1, X, N);
    }
    free(ucol);
    return AM_OK;
}

/* Which columns of [X_1 ... X_B] the shared basis is computed from: all of
 * them up to AM_BASIS_COLS(C); beyond that, cps runs of L contiguous pixels
 * per sample, spread evenly over each sample. The basis of a C-dimensional
 * subspace needs many more columns than C, not all of a 224x224 batch. */
static void sample_plan(int B, int C, int N, int *L, int *cps) {
    const size_t want = AM_BASIS_COLS(C);
    if ((size_t)B * N <= want) {
        *L = N, *cps = 1;
        return;
    }
    int l = N < 256 ? N : 256;
    size_t per = (want + (size_t)B * l - 1) / ((size_t)B * l);
    int maxc = N / l;
    *L = l;
    *cps = per < 1 ? 1 : per > (size_t)maxc ? maxc : (int)per;
}

/* Xs (C x cols), P (cols x r) and Z (C x r). */
size_t am_shared_basis_workspace(int B, int C, int N, int r) {
    int L, cps;
    sample_plan(B, C, N, &L, &cps);
    size_t cols = (size_t)B * cps * L;
    return am_align_up(sizeof(float) * (size_t)C * cols) / sizeof(float) +
           am_align_up(sizeof(float) * cols * r) / sizeof(float) + (size_t)C * r;
}

/* Cholesky QR twice, in double, on A (C x r, row-major), T the same
 * size and G r x r scratch: G = A^T A = R^T R, A <- A R^-1 (into T, then
 * back into A), then again on the result, which the second pass makes
 * orthonormal to double's precision where the first left it near enough
 * (columns' condition number up to about 1e8). The same Q as
 * Householder's with R's diagonal positive. Returns 0 with Q in A, or 1
 * where it cannot vouch for the result (a Cholesky failed, the columns are
 * near dependent, or the second R is not near I): Householder's QR then.
 * Level-3 calls instead of LAPACK's unblocked Householder steps at these
 * ranks; R^-1 by dtrtri and a GEMM (OpenBLAS's dtrsm for this shape was
 * slower than the whole Householder QR). G's row-major upper triangle is
 * LAPACK's column-major lower: no transposes. */
static int cholesky_qr2(double *A, double *T, int C, int r, double *G) {
    double *in = A, *out = T;
    for (int pass = 0; pass < 2; pass++) {
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, r, C, 1.0, in, r, 0.0, G, r);
        if (LAPACKE_dpotrf_work(LAPACK_COL_MAJOR, 'L', r, G, r) != 0) return 1;
        double lo = INFINITY, hi = 0;
        for (int j = 0; j < r; j++) {
            const double d = G[(size_t)j * r + j];
            lo = d < lo ? d : lo, hi = d > hi ? d : hi;
            if (pass && !(fabs(d - 1.0) < 1e-6)) return 1;
        }
        if (!(lo > 1e-6 * hi)) return 1; /* a direction under 1e-6 of the largest: Householder's completes it */
        if (LAPACKE_dtrtri_work(LAPACK_COL_MAJOR, 'L', 'N', r, G, r) != 0) return 1;
        for (int i = 1; i < r; i++)
            for (int j = 0; j < i; j++) G[(size_t)i * r + j] = 0.0; /* R^-1 is upper triangular */
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, C, r, r, 1.0, in, r, G, r, 0.0, out, r);
        double *t = in;
        in = out, out = t;
    }
    return 0; /* two passes: the result is back in A */
}

/* Householder's QR in double (LAPACK) of Q (C x r, row-major), in place,
 * each column's sign set so that R's diagonal is >= 0; where the columns
 * are dependent it still completes them to r orthonormal columns. */
static am_status householder(float *Q, int C, int r) {
    double *T = malloc(sizeof(double) * ((size_t)C * r + 2 * (size_t)r));
    if (!T) return am_fail(AM_ENOMEM, "orthonormalize: out of memory");
    double *tau = T + (size_t)C * r, *sign = tau + r;
    /* Column-major, a column at a time: the other order wrote r values C
     * doubles apart, at C = 512 all in one cache set. */
    for (int j = 0; j < r; j++)
        for (int c = 0; c < C; c++) T[(size_t)j * C + c] = Q[(size_t)c * r + j];
    /* LAPACK's own calls (the _work forms): LAPACKE's would scan for NaN
     * again (checked by the caller) and allocate on every call. */
    double q1 = 0, q2 = 0, *w = NULL;
    lapack_int info = LAPACKE_dgeqrf_work(LAPACK_COL_MAJOR, C, r, T, C, tau, &q1, -1);
    if (info == 0) info = LAPACKE_dorgqr_work(LAPACK_COL_MAJOR, C, r, r, T, C, tau, &q2, -1);
    lapack_int lw = (lapack_int)(q1 > q2 ? q1 : q2);
    if (lw < r) lw = r;
    if (info == 0 && !(w = malloc(sizeof(double) * (size_t)lw))) {
        free(T);
        return am_fail(AM_ENOMEM, "orthonormalize: out of memory");
    }
    if (info == 0) info = LAPACKE_dgeqrf_work(LAPACK_COL_MAJOR, C, r, T, C, tau, w, lw);
    for (int j = 0; j < r; j++) sign[j] = T[(size_t)j * C + j] < 0 ? -1.0 : 1.0;
    if (info == 0) info = LAPACKE_dorgqr_work(LAPACK_COL_MAJOR, C, r, r, T, C, tau, w, lw);
    free(w);
    if (info != 0) {
        free(T);
        return am_fail(AM_ENUM, "orthonormalize: LAPACK QR failed (%d)", (int)info);
    }
    for (int j = 0; j < r; j++)
        for (int c = 0; c < C; c++) Q[(size_t)c * r + j] = (float)(sign[j] * T[(size_t)j * C + c]);
    free(T);
    return AM_OK;
}

/* Orthonormal columns for Q (C x r, row-major) spanning what its columns
 * span, R's diagonal >= 0 (the Gram-Schmidt convention, so that a
 * warm-started basis keeps its orientation): Cholesky QR twice where it
 * vouches for its result, else Householder's, which also completes
 * dependent columns to r orthonormal ones. */
static am_status orthonormalize(float *Q, int C, int r) {
    /* A non-finite product comes from a non-finite input: say so, rather
     * than what LAPACK makes of it. */
    for (size_t i = 0; i < (size_t)C * r; i++)
        if (!isfinite(Q[i]))
            return am_fail(AM_ENUM, "decomposition: the layer's input is not finite (has the training diverged? a "
                                    "lower --lr, or --clip, may help)");
    double *A = malloc(sizeof(double) * (2 * (size_t)C * r + (size_t)r * r));
    if (!A) return am_fail(AM_ENOMEM, "orthonormalize: out of memory");
    for (size_t i = 0; i < (size_t)C * r; i++) A[i] = Q[i];
    const int fallback = cholesky_qr2(A, A + (size_t)C * r, C, r, A + 2 * (size_t)C * r);
    if (!fallback)
        for (size_t i = 0; i < (size_t)C * r; i++) Q[i] = (float)A[i];
    free(A);
    return fallback ? householder(Q, C, r) : AM_OK;
}

/* Channel c's energy over the runs q of X. */
static double run_energy(const float *X, int C, const am_runs *q, int c) {
    double e = 0;
    for (int b = 0; b < q->B; b++)
        for (int k = 0; k < q->cps; k++)
            e += am_sumsq(X + ((size_t)b * C + c) * q->N + (size_t)k * q->stride + q->off, (size_t)q->L);
    return e;
}

/* The cold start: U = the r channels of largest energy over the runs. */
static am_status cold_start(const float *X, int C, const am_runs *q, int r, float *U) {
    double *en = calloc((size_t)C, sizeof(double));
    char *used = calloc((size_t)C, 1);
    if (!en || !used) {
        free(en), free(used);
        return am_fail(AM_ENOMEM, "shared basis: out of memory");
    }
    for (int c = 0; c < C; c++) en[c] = run_energy(X, C, q, c);
    memset(U, 0, sizeof(float) * (size_t)C * r);
    for (int j = 0; j < r; j++) {
        int best = -1;
        for (int c = 0; c < C; c++)
            if (!used[c] && (best < 0 || en[c] > en[best])) best = c;
        used[best] = 1;
        U[(size_t)best * r + j] = 1.f;
    }
    free(en), free(used);
    return AM_OK;
}

/* Xs (C x per) = the runs q of X side by side. */
static void gather(const float *X, int C, const am_runs *q, float *Xs) {
    const size_t per = (size_t)q->B * q->cps * q->L;
#pragma omp parallel for schedule(static) if ((size_t)C * per > 65536)
    for (int c = 0; c < C; c++)
        for (int b = 0; b < q->B; b++)
            for (int k = 0; k < q->cps; k++)
                memcpy(Xs + (size_t)c * per + ((size_t)b * q->cps + k) * q->L,
                       X + ((size_t)b * C + c) * q->N + (size_t)k * q->stride + q->off, sizeof(float) * (size_t)q->L);
}

/* Z = Xs (Xs^T U), the columns in place (q over X) where the AVX-512 step
 * takes them, else gathered in Xs (P: per x r scratch): in one pass
 * (subspace512.c, subspace.c) where that was measured faster, else as two
 * GEMMs. The GEMMs are called one at a time: OpenBLAS 0.3.21's OpenMP
 * build gave wrong results when called from several threads at once (seen
 * here), so their parallelism is OpenBLAS's own. Forming the Gram matrix
 * Xs Xs^T once (a SYRK) instead was measured: slower at 11 of 13 VGG16
 * layer shapes (3x32x32 batch 32, 3x224x224 batch 8), within 5% at the
 * two others. */
static am_status product(const float *Xc, const am_runs *q, const float *Xs, int C, int per, int r, const float *U,
                         float *P, float *Z) {
    if (am_subspace_runs_fits(C, r)) return am_subspace_runs(Xc, C, q, r, U, Z);
    if (am_subspace_fits(C, r)) return am_subspace_product(Xs, C, per, r, U, Z);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, per, r, C, 1.f, Xs, per, U, r, 0.f, P, r);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, C, r, per, 1.f, Xs, per, P, r, 0.f, Z, r);
    return AM_OK;
}

am_status am_shared_basis(const float *X, int B, int C, int N, int r, int iters, int warm, float *U,
                          float *work, size_t work_n) {
    AM_TRY(check_dims(B, C, N, r));
    if (!X || !U || iters < 1 || iters > 100) return am_fail(AM_EINVAL, "shared basis: bad argument");
    if (!work || work_n < am_shared_basis_workspace(B, C, N, r))
        return am_fail(AM_EINVAL, "shared basis: workspace too small");
    int L, cps;
    sample_plan(B, C, N, &L, &cps);
    const int per = B * cps * L; /* columns */
    float *Xs = work, *P = Xs + am_align_up(sizeof(float) * (size_t)C * per) / sizeof(float);
    float *Z = P + am_align_up(sizeof(float) * (size_t)per * r) / sizeof(float);
    /* The AVX-512 step reads runs of 16 pixels or more where they lie;
     * otherwise the columns are gathered into one C x per matrix first. */
    const am_runs runs = {B, N, L, cps, N / cps, (N / cps - L) / 2}, all = {1, per, per, 1, per, 0};
    const int inplace = am_subspace_runs_fits(C, r) && L >= 16;
    if (!inplace) gather(X, C, &runs, Xs);
    const float *Xc = inplace ? X : Xs;
    const am_runs *q = inplace ? &runs : &all;
    if (!warm) AM_TRY(cold_start(Xc, C, q, r, U));
    /* Small problems run on one thread: waking the others for BLAS calls
     * this small costs more than it saves (measured at C 512: 2.1 -> 1.4 ms
     * with 512 columns, 1.6 -> 0.8 ms with 128). */
    const int serial = (size_t)C * per <= ((size_t)1 << 18);
    if (serial) am_blas_serial(1);
    am_status st = AM_OK;
    for (int it = 0; it < iters && st == AM_OK; it++) {
        st = product(Xc, q, Xs, C, per, r, U, P, Z);
        if (st != AM_OK) break;
        memcpy(U, Z, sizeof(float) * (size_t)C * r);
        st = orthonormalize(U, C, r);
    }
    if (serial) am_blas_serial(0);
    return st;
}

/* The lower triangle of the Gram matrix, in double, of [X_1 ... X_B]'s
 * rows (C x C, cols 0) or of its columns (B*N x B*N, cols 1). */
static void gram(const float *X, int B, int C, int N, int cols, double *G) {
    if (!cols) {
        for (int b = 0; b < B; b++) {
            const float *Xb = X + (size_t)b * C * N;
            for (int i = 0; i < C; i++)
                for (int j = 0; j <= i; j++) {
                    double d = 0;
                    const float *a = Xb + (size_t)i * N, *c = Xb + (size_t)j * N;
                    for (int k = 0; k < N; k++) d += (double)a[k] * c[k];
                    G[(size_t)i * C + j] += d;
                }
        }
        return;
    }
    const size_t M = (size_t)B * N;
    for (size_t i = 0; i < M; i++)
        for (size_t j = 0; j <= i; j++) {
            const float *a = X + (i / N) * (size_t)C * N + i % N, *c = X + (j / N) * (size_t)C * N + j % N;
            double d = 0;
            for (int ch = 0; ch < C; ch++) d += (double)a[(size_t)ch * N] * c[(size_t)ch * N];
            G[i * M + j] = d;
        }
}

am_status am_exact_basis(const float *X, int B, int C, int N, int r, float *U, float *s) {
    AM_TRY(check_dims(B, C, N, U ? r : 1));
    if (!X || !s) return am_fail(AM_EINVAL, "exact SVD: bad argument");
    /* The eigenvalues of G = sum_b X_b X_b^T are the squared singular values
     * of [X_1 ... X_B]; so are those of its column Gram, the smaller when
     * B*N < C, which serves when no vectors are asked for. */
    const int cols = !U && (size_t)B * N < (size_t)C;
    const int M = cols ? B * N : C;
    double *G = calloc((size_t)M * M + M, sizeof(double));
    if (!G) return am_fail(AM_ENOMEM, "exact SVD: out of memory");
    double *w = G + (size_t)M * M;
    gram(X, B, C, N, cols, G);
    lapack_int info = LAPACKE_dsyevd(LAPACK_ROW_MAJOR, U ? 'V' : 'N', 'L', M, G, M, w);
    if (info != 0) {
        free(G);
        return am_fail(AM_ENUM, "exact SVD: LAPACK dsyevd failed (info %d)", (int)info);
    }
    /* Ascending eigenvalues: reverse into descending singular values. */
    for (int j = 0; j < C; j++) {
        double e = j < M ? w[M - 1 - j] : 0;
        s[j] = (float)(e > 0 ? sqrt(e) : 0);
    }
    if (U)
        for (int j = 0; j < r; j++)
            for (int c = 0; c < C; c++) U[(size_t)c * r + j] = (float)G[(size_t)c * C + (C - 1 - j)];
    free(G);
    return AM_OK;
}

size_t am_project_workspace(int B, int C, int N, int r) { return N < 256 ? (size_t)B * N * (size_t)(C + r) : 0; }

am_status am_project(const float *X, int B, int C, int N, int r, const float *U, float *V, float *R) {
    return am_project_ws(X, B, C, N, r, U, V, R, NULL, 0);
}

am_status am_project_ws(const float *X, int B, int C, int N, int r, const float *U, float *V, float *R, float *work,
                        size_t work_n) {
    AM_TRY(check_dims(B, C, N, r));
    if (!X || !U || !V) return am_fail(AM_EINVAL, "project: bad argument");
    if (N < 256) {
        /* Small planes: gather the batch into one C x B*N matrix, project it
         * with two GEMMs, scatter back (two tiny GEMMs per sample cost more
         * in calls than in arithmetic). */
        const size_t BN = (size_t)B * N;
        const int own = !work || work_n < am_project_workspace(B, C, N, r);
        float *Xc = own ? am_aligned_alloc(sizeof(float) * BN * (size_t)(C + r)) : work;
        if (!Xc) return am_fail(AM_ENOMEM, "project: out of memory");
        float *Vc = Xc + BN * C;
#pragma omp parallel for schedule(static) if (BN * C > 65536)
        for (int c = 0; c < C; c++)
            for (int b = 0; b < B; b++)
                memcpy(Xc + c * BN + (size_t)b * N, X + ((size_t)b * C + c) * N, sizeof(float) * (size_t)N);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r, (int)BN, C, 1.f, U, r, Xc, (int)BN, 0.f, Vc, (int)BN);
        if (R) cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, C, (int)BN, r, -1.f, U, r, Vc, (int)BN, 1.f, Xc, (int)BN);
#pragma omp parallel for schedule(static) if (BN * C > 65536)
        for (int b = 0; b < B; b++) {
            for (int j = 0; j < r; j++)
                memcpy(V + ((size_t)b * r + j) * N, Vc + j * BN + (size_t)b * N, sizeof(float) * (size_t)N);
            if (R)
                for (int c = 0; c < C; c++)
                    memcpy(R + ((size_t)b * C + c) * N, Xc + c * BN + (size_t)b * N, sizeof(float) * (size_t)N);
        }
        if (own) am_aligned_free(Xc);
        return AM_OK;
    }
    /* Large planes: two GEMMs per sample over the whole plane. Blocks that
     * stay in cache would read X once, but each block's GEMM is too small
     * for OpenBLAS to spread over its threads (it runs those of at most 2^18
     * multiply-adds on one), and the calls cannot run side by side (see
     * am_shared_basis): whole planes keep every core busy. */
    for (int b = 0; b < B; b++) {
        const float *Xb = X + (size_t)b * C * N;
        float *Vb = V + (size_t)b * r * N, *Rb = R ? R + (size_t)b * C * N : NULL;
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r, N, C, 1.f, U, r, Xb, N, 0.f, Vb, N);
        if (!Rb) continue;
        if (Rb != Xb) am_copy_floats(Rb, Xb, (size_t)C * N);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, C, N, r, -1.f, U, r, Vb, N, 1.f, Rb, N);
    }
    return AM_OK;
}

double am_svd_entropy(const float *s, int n) {
    double sum = 0, q = 0;
    for (int i = 0; i < n; i++) sum += s[i] > 0 ? s[i] : 0;
    if (!(sum > 0)) return 0;
    for (int i = 0; i < n; i++) {
        double p = (s[i] > 0 ? s[i] : 0) / sum;
        q += p * p;
    }
    return q >= 1 ? 0 : -log2(q);
}

double am_energy_kept(const float *s, int n, int r) {
    double tot = 0, top = 0;
    for (int i = 0; i < n; i++) {
        double e = (double)s[i] * s[i];
        tot += e;
        if (i < r) top += e;
    }
    return tot > 0 ? top / tot : 1.0;
}

int am_rank_pick(am_rank_policy p, double value, const float *s, int C) {
    int r = 1;
    switch (p) {
    case AM_RANK_RATIO: r = (int)ceil(value * C - 1e-9); break;
    case AM_RANK_FIXED:
    case AM_RANK_LIST: r = (int)value; break;
    case AM_RANK_ENTROPY: r = s ? (int)ceil(pow(2.0, am_svd_entropy(s, C)) - 1e-9) : 1; break;
    case AM_RANK_ENERGY:
        r = C;
        if (s)
            for (int k = 1; k <= C; k++)
                if (1.0 - am_energy_kept(s, C, k) < value) {
                    r = k;
                    break;
                }
        break;
    }
    return r < 1 ? 1 : r > C ? C : r;
}
