/* The asymml command's front end: the only code that prints. One file per
 * command (train.c with resume.c, eval.c, bench.c, analyze.c, info.c, seal.c,
 * log.c, import.c, quantize.c, infer.c, precompute.c), the option table (opts.c), the execution-mode options
 * (mode.c), where the trusted side runs and its accelerator (tee.c), the
 * privacy statements (privacy.c), the run log (runlog.c) and small helpers
 * (util.c). Exit codes: 0 success, 1 failure at run time, 2 bad usage. */
#ifndef ASYMML_CLI_H
#define ASYMML_CLI_H

#include <stdio.h>

#include "asymml/asymml.h"

#define EXIT_RUNTIME 1
#define EXIT_USAGE 2

/* ---- util.c ---- */
/* One line on stderr, "asymml: ...", and the code. */
__attribute__((format(printf, 2, 3))) int die(int code, const char *fmt, ...);
/* The library's last error as that line; names the trusted memory limit
 * when it was the cause. */
int lib_fail(const char *what);
double now_s(void);
double peak_rss_mib(void);
/* Strict numbers: the whole string, in range; 0 (with the line) if not. */
int arg_int(const char *opt, const char *s, long lo, long hi, int *out);
int arg_float(const char *opt, const char *s, double lo, double hi, float *out);
int arg_double(const char *opt, const char *s, double lo, double hi, double *out);
int arg_shape(const char *opt, const char *s, am_shape *out); /* "C,H,W" */
/* The description of --model NAME (the zoo) or --model-file PATH (malloc'ed). */
int describe(const char *name, const char *file, am_shape in, int classes, char **out);
int make_model(const char *name, const char *file, am_shape in, int classes, am_model **m);
int load_data(am_data_kind kind, const char *dir, const char *split, int limit, am_dataset *d);
/* The checkpoint at *path (a file, or a folder's newest that reads; what it
 * skipped is warned of, "DOING the one read instead"); *path then names
 * the file read, held in used (cap bytes). */
int load_checkpoint(const char **path, const char *doing, am_checkpoint *ck, char *used, size_t cap);
/* "1 image", "3 images". */
const char *plural(long n, const char *one, const char *many);
/* The folder path is in ("." for a bare name, "/" at the root) into dir;
 * returns its last component. */
const char *dir_of(const char *path, char *dir, size_t cap);

/* ---- opts.c: the option tables ---- */
enum {
    OPT_RUN = 1, /* defines the run: with --resume it comes from the checkpoint */
};
typedef struct cli_opt {
    const char *name; /* without the leading -- */
    const char *arg;  /* its value's name for the help, NULL for a flag */
    int id;
    unsigned flags;
    const char *help; /* lines after the first start with \n */
} cli_opt;
/* Tables end with an entry whose name is NULL. */
typedef int (*cli_handler)(void *ctx, const cli_opt *o, const char *arg); /* 0, or an exit code */
/* Parses argv (argv[0] is the command's name) against the tables; --help
 * prints the usage (usage line first, then each option) and returns -1.
 * Returns 0 or an exit code; *first_run receives the first OPT_RUN option
 * given (may be NULL). Arguments that are not options are refused unless
 * rest is given: *rest then receives the index of the first. */
int cli_parse(const char *cmd, const char *usage, int argc, char **argv, const cli_opt *const *tables, cli_handler h,
              void *ctx, const cli_opt **first_run, int *rest);

/* ---- mode.c: the execution mode, shared by train, eval and bench ---- */
typedef struct cli_mode {
    am_asym_cfg asym;
    int noise_seed_set;
    const char *noise_opt; /* the first of --clip, --sigma, --noise-seed, --protect-grads given */
    int process;         /* --tee process */
    int cuda;            /* --accel cuda */
    int overlap;         /* --overlap: -1 auto, 0 off, 1 on */
    int shm_mib, reply_timeout_s, verify;
    const char *key, *accel_user, *record;
    unsigned record_first, record_last; /* --record-steps (0 and UINT_MAX: every step) */
    int threads;         /* --threads (0: all cores, or the run's on resume) */
    int gpu_only_ok;     /* the command runs gpu-only mode (bench) */
    int quantized_ok;    /* the command runs the fixed-point modes, quantized and slalom (inference only) */
} cli_mode;
extern const cli_opt cli_mode_opts[]; /* their ids are 100 and up; commands use ids below */
void cli_mode_init(cli_mode *m);
/* Handles one of cli_mode_opts: 0 or an exit code. */
int cli_mode_option(cli_mode *m, const cli_opt *o, const char *arg);
/* Checks the options together; draws the secret noise key (new runs). */
int cli_mode_check(cli_mode *m, int draw_key);
/* The rank policy and basis, in words. */
void cli_plan_words(const am_asym_cfg *a, char *buf, size_t n);
/* "plan: 8p - 4s ..." */
void cli_print_plan(FILE *f, const am_model *m);

/* ---- tee.c: where the trusted side runs, and its accelerator ---- */
typedef struct cli_tee cli_tee;
/* --tee process, first of all: non-dumpable, no inherited descriptors, no
 * preloaded libraries, passive OpenMP waiting (the process starts itself
 * again for that), memory locked; then the key. Inproc: the key only. */
int tee_begin(const cli_mode *m);
/* The accelerator the model is given (NULL for tee-only and lowrank-only
 * runs): in one process the CPU backend; with --tee process the server,
 * started now. */
int tee_open(const cli_mode *m, int need_accel, const char *data_dir, cli_tee **out);
am_backend *tee_backend(cli_tee *t);
/* Where the accelerator is and how each process is confined, in words
 * (after tee_lockdown). */
void tee_words(const cli_tee *t, char *buf, size_t n);
/* --tee process: the lock-down, once the checkpoint directory (fd, or -1;
 * dir_what says what it holds) and the log are open and the server started. */
int tee_lockdown(cli_tee *t, int ckdir_fd, const char *dir_what);
/* Says goodbye to the server and reaps it: an exit code (0 if it ended
 * well). After a failure (failed set) it is stopped, and its end is not
 * reported again. Frees t. */
int tee_close(cli_tee *t, int failed);

/* ---- privacy.c: what the program says about privacy ---- */
/* At the start: what crosses and what is known to leak from it (training:
 * gradients and weight updates too). */
void cli_privacy_start(FILE *f, const am_model *m, const am_asym_cfg *a, int process, int training);
/* At the end: (epsilon, delta) for mu2 (am_dp_mu2 sums) with its scope and
 * the signal-to-noise statement; releases: per sample. */
void cli_privacy_end(FILE *f, const am_model *m, const am_asym_cfg *a, double mu2, long releases, long coupling,
                     double delta, const char *whose);
/* How many conv layers are split. */
int cli_split_layers(const am_model *m);
/* The smallest input of a split layer, in floats per sample (0: none). */
long cli_smallest_release(const am_model *m);

/* ---- runlog.c: the run's log (JSON lines; sealed with a key) ---- */
typedef struct cli_log cli_log;
/* Opens path for appending (created with mode 0600, never through a
 * link); sealed records under run_id when a key is set. */
int cli_log_open(const char *path, const uint8_t *run_id, cli_log **out);
__attribute__((format(printf, 2, 3))) void cli_log_line(cli_log *l, const char *fmt, ...);
int cli_log_close(cli_log *l, const char *path); /* 0 or an exit code */

/* ---- fixed.c: what quantize, infer and precompute share ---- */
/* The checkpoint's model with its weights, folded (am_model_fold_bn) when
 * fold, at batch B. *out is the caller's to free even on failure. */
int cli_checkpoint_model(const am_checkpoint *ck, int fold, int B, am_model **out);
/* n whole batches of the training split, in order, set the fixed-point
 * scales (am_model_calibrate). */
int cli_calibrate(am_model *m, const am_dataset *tr, const am_checkpoint *ck, int B, int n);
/* How many whole batches of B --calib's images make (*nb; the training
 * set may have fewer): an error if not one. */
int cli_calib_batches(const char *cmd, int calib, const am_dataset *tr, int B, int *nb);

/* ---- the commands ---- */
/* bench --layers (cli/bench_layers.c): this machine's limits, and a
 * training step's trusted time per kind and per conv layer against them. */
typedef struct bench_limits {
    double bw, flops; /* bytes/s of a triad, FLOP/s of sgemm */
} bench_limits;
void bench_limits_measure(bench_limits *lim);
/* Median seconds of m's training step (mode 0) or inference pass (1) over
 * steps after warm (t, acc: scratch of steps); out: the step, the time the
 * TEE waited for the accelerator, its mean compute (cli/bench.c). */
int bench_time_steps(am_model *m, am_sgd *opt, am_tensor *x, const int32_t *lab, am_rng *r, int mode, int steps,
                     int warm, double *t, double *acc, double out[3], double *sgd_s, const char *label);
/* A fixed-point mode's inference passes (quantized, slalom: the model
 * folded and calibrated on x); *pre_s: slalom's precomputation a batch
 * (cli/bench_slalom.c). */
int bench_fixed(am_model *m, am_mode mode, am_backend *be, am_tensor *x, int steps, int warm, double *t, double *ac,
                double out[3], double *pre_s, const char *label);
void bench_layers(am_model *m, int steps, double sgd_s, const bench_limits *lim);
/* bench's trusted working set and modelled SGX1 paging (cli/bench_sgx.c). */
typedef struct bench_sgx_cfg {
    double epc_mib, ghz;
} bench_sgx_cfg;
typedef struct bench_sgx {
    double ws_train, ws_infer;       /* bytes */
    double swaps_train, swaps_infer; /* per step */
    double add_train[3], add_infer[3]; /* seconds of swaps per step: low, central, high */
} bench_sgx;
double bench_clock_ghz(void);
int bench_sgx_model(am_model *m, am_sgd *opt, const bench_sgx_cfg *c, bench_sgx *out);
void bench_sgx_print(const char *name, const char *mode, const bench_sgx_cfg *c, const bench_sgx *s, double train,
                     double infer);

int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_analyze(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_seal(int argc, char **argv);
int cmd_keygen(int argc, char **argv);
int cmd_log(int argc, char **argv);
int cmd_import(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_infer(int argc, char **argv);
int cmd_precompute(int argc, char **argv);

#endif
