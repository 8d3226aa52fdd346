/* Checkpoints and the training loader: a run stopped, saved and resumed ends
 * bitwise equal to a run that never stopped; corrupt, truncated and foreign
 * files are refused with one-line errors; a failed write leaves the previous
 * file intact; the directory helpers keep the newest files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <signal.h>
#include <sys/resource.h>

#include <sodium.h>

#include "asymml/asymml.h"
#include "untrusted/cpu_backend.h"

static char dir[256];
static am_backend *g_be;

/* A trainer's inputs: the data, and the CPU backend as its accelerator. */
static am_trainer_io io_of(const am_dataset *train, const am_dataset *test) {
    am_trainer_io io = {train, test, g_be};
    return io;
}

/* Resumes the checkpoint at path. */
static am_status resume_at(const char *path, const am_trainer_io *io, am_trainer **out) {
    am_checkpoint ck;
    am_status st = am_checkpoint_read(path, &ck);
    if (st == AM_OK) st = am_trainer_resume(&ck, io, out);
    am_checkpoint_free(&ck);
    return st;
}

/* BatchNorm (running statistics), dropout (the RNG), augmentation (the
 * loader), momentum and a cosine schedule with warm-up: all the state there is. */
static const char *DESC = "input 1 8 8\nconv 4 k=3 p=1\nbn\nrelu\nmaxpool k=2\nflatten\n"
                          "dropout p=0.3\nlinear 16\nrelu\nlinear 4\n";

static am_train_cfg cfg(void) {
    am_train_cfg c = {.epochs = 3, .batch = 8, .lr = 0.05f, .momentum = 0.9f, .wd = 1e-3f,
                      .sched = AM_SCHED_COSINE, .step_size = 1, .gamma = 0.1f, .warmup = 2,
                      .seed = 77, .crop_pad = 2, .flip = 1};
    return c;
}

static void path_of(char *buf, const char *name) { snprintf(buf, 512, "%s/%s", dir, name); }

/* Two convs, so that asymml mode splits the second. */
static const char *DESC2 = "input 1 8 8\nconv 16 k=3 p=1\nbn\nrelu\nconv 32 k=3 p=1\nbn\nrelu\n"
                           "maxpool k=2\nflatten\ndropout p=0.3\nlinear 4\n";

/* Split layers of a trainer's model. */
static int splits(am_trainer *t) {
    int n = 0;
    for (int i = 0; i < am_model_num_convs(am_trainer_model(t)); i++) {
        am_split_info si;
        if (am_model_split_info(am_trainer_model(t), i, &si) == AM_OK) n += si.split;
    }
    return n;
}

/* A run stopped mid-epoch, saved and resumed ends bitwise as one that never
 * stopped; but with a secret noise key, every session draws fresh noise
 * (am_model_new_noise_session), so that the losses differ. */
static void resume_case(const char *desc, const am_asym_cfg *asym) {
    static const uint8_t zero[32];
    const int secret = asym && asym->sigma > 0.f && memcmp(asym->noise_key, zero, 32);
    am_dataset d;
    assert_int_equal(am_synthetic(43, 1, 8, 8, 4, 5, &d), AM_OK); /* 5 steps an epoch, 3 left over */
    am_train_cfg c = cfg();
    if (asym) c.asym = *asym;
    float straight[15], resumed[15];
    am_trainer *a;
    am_trainer_io io = io_of(&d, NULL);
    assert_int_equal(am_trainer_create(&c, desc, &io, &a), AM_OK);
    if (asym) assert_true(am_model_mode(am_trainer_model(a)) == AM_MODE_ASYMML && am_trainer_releases(a) == 0);
    am_step_info si;
    for (int i = 0; !am_trainer_done(a); i++) {
        assert_true(i < 15);
        assert_int_equal(am_trainer_step(a, &si), AM_OK);
        straight[i] = si.loss;
    }
    assert_int_equal(si.global_step, 15);
    /* Stop mid-epoch (step 7 = epoch 2, step 2), save, free, resume. */
    char p[512];
    path_of(p, "mid.amck");
    am_trainer *b;
    assert_int_equal(am_trainer_create(&c, desc, &io, &b), AM_OK);
    for (int i = 0; i < 7; i++) {
        assert_int_equal(am_trainer_step(b, &si), AM_OK);
        resumed[i] = si.loss;
    }
    assert_int_equal(am_trainer_save(b, p), AM_OK);
    uint64_t counter = am_model_noise_counter(am_trainer_model(b));
    am_trainer_free(b);
    assert_int_equal(resume_at(p, &io, &b), AM_OK);
    assert_int_equal(am_trainer_global_step(b), 7);
    /* The release counter goes on from where the run was. */
    assert_true(am_model_noise_counter(am_trainer_model(b)) == counter);
    if (asym) assert_true(counter == 7 * (uint64_t)splits(b)); /* 7 steps x split layers */
    /* Extended to 6 epochs, the cosine schedule at step 7 is higher. */
    assert_true(am_trainer_lr_at(b, 6) > am_trainer_lr_at(b, 3));
    /* A session that reached step 12 (epoch 3 begun) and whose checkpoints
     * after step 7 were lost: its third epoch counted once more; a lost
     * step in an epoch already begun adds nothing. */
    if (asym) {
        long before = am_trainer_releases(b);
        am_trainer_count_lost(b, 9);
        assert_int_equal(am_trainer_releases(b), before);
        am_trainer_count_lost(b, 12);
        assert_int_equal(am_trainer_releases(b), before + splits(b));
        am_trainer_free(b);
        assert_int_equal(resume_at(p, &io, &b), AM_OK);
    }
    for (int i = 7; i < 15; i++) {
        assert_int_equal(am_trainer_step(b, &si), AM_OK);
        resumed[i] = si.loss;
    }
    assert_true(am_trainer_done(b));
    /* 3 epochs begun and 1 resume (which may release an epoch's rest once
     * more), per split layer. */
    if (asym) assert_int_equal(am_trainer_releases(b), 4 * splits(b));
    if (secret) {
        assert_memory_not_equal(straight, resumed, sizeof straight);
    } else {
        assert_memory_equal(straight, resumed, sizeof straight);
        am_model *ma = am_trainer_model(a), *mb = am_trainer_model(b);
        assert_memory_equal(am_model_weights(ma), am_model_weights(mb), am_model_weights_len(ma) * sizeof(float));
        assert_memory_equal(am_model_buffers(ma), am_model_buffers(mb), am_model_buffers_len(ma) * sizeof(float));
        double acc_a, acc_b, la, lb;
        assert_int_equal(am_trainer_evaluate(a, &d, &acc_a, &la), AM_OK);
        assert_int_equal(am_trainer_evaluate(b, &d, &acc_b, &lb), AM_OK);
        assert_true(acc_a == acc_b && la == lb);
    }
    am_trainer_free(a);
    am_trainer_free(b);

    /* The same checkpoint on other data is refused: of another shape, or
     * fewer of the same images (another --limit-train), which would repeat
     * the run's noise on other samples. */
    am_dataset other;
    assert_int_equal(am_synthetic(40, 1, 10, 10, 4, 5, &other), AM_OK);
    am_trainer_io oio = io_of(&other, NULL);
    assert_int_equal(resume_at(p, &oio, &b), AM_EINVAL);
    assert_non_null(strstr(am_last_error(), "training data differ"));
    am_dataset_free(&other);
    assert_int_equal(am_synthetic(43, 1, 8, 8, 4, 5, &other), AM_OK);
    am_dataset_truncate(&other, 42);
    assert_int_equal(resume_at(p, &oio, &b), AM_EINVAL);
    am_dataset_free(&other);
    am_dataset_free(&d);
}

static void t_resume_bitwise(void **st) {
    (void)st;
    resume_case(DESC, NULL);
    /* asymml mode with DP noise: the bases and the noise stream resume too. */
    am_asym_cfg a = am_asym_defaults();
    a.clip = 5.f, a.sigma = 0.3f, a.noise_seed = 11;
    resume_case(DESC2, &a);
    /* With a secret noise key: the checkpoint keeps it, and the resumed
     * session draws fresh noise. */
    assert_int_equal(am_asym_secret_noise_key(&a), AM_OK);
    resume_case(DESC2, &a);
    /* Ranks and bases decided on the first batch (entropy, AUTO): resuming
     * replays the plan from the checkpoint. */
    a = am_asym_defaults();
    a.policy = AM_RANK_ENTROPY;
    a.basis = AM_BASIS_AUTO;
    resume_case(DESC2, &a);
    a.policy = AM_RANK_ENERGY;
    a.rank_value = 0.3;
    a.clip = 5.f, a.sigma = 0.3f;
    resume_case(DESC2, &a);
    a = am_asym_defaults();
    a.policy = AM_RANK_LIST;
    a.n_ranks = 1;
    a.ranks[0] = 5;
    a.basis = AM_BASIS_PER_SAMPLE;
    resume_case(DESC2, &a);
}

static uint8_t *slurp(const char *p, size_t *n) {
    FILE *f = fopen(p, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(*n);
    assert_int_equal(fread(b, 1, *n, f), *n);
    fclose(f);
    return b;
}

static void expect_bad(const uint8_t *b, size_t n, const char *needle) {
    am_checkpoint ck;
    am_status s = am_checkpoint_parse(b, n, &ck);
    assert_int_not_equal(s, AM_OK);
    assert_null(ck.desc);
    if (needle && !strstr(am_last_error(), needle)) fail_msg("'%s' lacks '%s'", am_last_error(), needle);
    assert_null(strchr(am_last_error(), '\n'));
}

static void t_bad_files(void **st) {
    (void)st;
    am_dataset d;
    assert_int_equal(am_synthetic(16, 1, 8, 8, 4, 5, &d), AM_OK);
    am_train_cfg c = cfg();
    am_trainer *t;
    am_trainer_io io = io_of(&d, NULL);
    assert_int_equal(am_trainer_create(&c, DESC, &io, &t), AM_OK);
    assert_int_equal(am_trainer_step(t, NULL), AM_OK);
    char p[512];
    path_of(p, "good.amck");
    assert_int_equal(am_trainer_save(t, p), AM_OK);
    size_t n;
    uint8_t *b = slurp(p, &n);
    am_checkpoint ck;
    assert_int_equal(am_checkpoint_parse(b, n, &ck), AM_OK);
    assert_string_equal(ck.desc, am_model_desc(am_trainer_model(t)));
    assert_int_equal(ck.global_step, 1);
    am_checkpoint_free(&ck);

    uint8_t *m = malloc(n + 8);
    for (size_t off = 0; off < n; off += n / 37 + 1) { /* any flipped byte is caught */
        memcpy(m, b, n);
        m[off] ^= 0x40;
        expect_bad(m, n, NULL);
    }
    memcpy(m, b, n);
    m[n / 2] ^= 1;
    expect_bad(m, n, "checksum");
    expect_bad(b, n - 1, "truncated");
    expect_bad(b, 10, "truncated");
    expect_bad(b, 0, "magic");
    memcpy(m, b, n);
    memset(m + n, 0, 8);
    expect_bad(m, n + 8, "trailing");
    memcpy(m, b, n);
    m[4] = 9;
    expect_bad(m, n, "version");
    memcpy(m, "PK\3\4", 4);
    expect_bad(m, n, "magic");
    free(m);

    /* A failed write (the file size limit, which binds root too) leaves the
     * file that was there, and no temporary file. */
    struct rlimit lim, small = {n / 2, RLIM_INFINITY};
    getrlimit(RLIMIT_FSIZE, &lim);
    small.rlim_max = lim.rlim_max;
    signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(am_trainer_step(t, NULL), AM_OK);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
    assert_int_equal(am_trainer_save(t, p), AM_EIO);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    size_t n2;
    uint8_t *b2 = slurp(p, &n2);
    assert_int_equal(n2, n);
    assert_memory_equal(b, b2, n);
    free(b2);
    DIR *dh = opendir(dir);
    struct dirent *e;
    while ((e = readdir(dh))) assert_null(strstr(e->d_name, ".tmp"));
    closedir(dh);

    /* A checkpoint named for another step than it holds (renamed) is refused. */
    char renamed[600];
    path_of(renamed, "ckpt-0000000005.amck");
    assert_int_equal(rename(p, renamed), 0);
    assert_int_equal(am_checkpoint_read(renamed, &ck), AM_EFORMAT);
    assert_non_null(strstr(am_last_error(), "not the step its name says"));
    unlink(renamed);
    free(b);

    /* Reading: missing file, a directory, an unwritable checkpoint directory. */
    assert_int_equal(am_checkpoint_read("/nonexistent/x.amck", &ck), AM_EIO);
    assert_int_equal(am_checkpoint_read(dir, &ck), AM_EIO);
    char under_file[600];
    snprintf(under_file, sizeof under_file, "%s/sub", p);
    am_ckdir cd;
    path_of(p, "good2.amck");
    assert_int_equal(am_trainer_save(t, p), AM_OK);
    assert_int_equal(am_ckdir_open(under_file, AM_CKDIR_WRITE, &cd), AM_EIO);
    am_trainer_free(t);
    am_dataset_free(&d);
}

static int exists(const char *sub, const char *name) {
    char p[1200];
    snprintf(p, sizeof p, "%s/%s", sub, name);
    return access(p, F_OK) == 0;
}

/* Saves ck as step `step` of run `run` (its first byte) in d, keeping keep. */
static void save_as(am_ckdir *d, am_checkpoint *ck, int run, int step, int keep) {
    ck->bind.run_id[0] = (uint8_t)run;
    ck->global_step = step;
    ck->epoch = step / 5, ck->step = step % 5;
    assert_int_equal(am_ckdir_save(d, ck, keep, NULL, 0), AM_OK);
}

/* A directory holds one run: a second writer is refused, naming the first;
 * pruning removes only the run's own; loading passes over what does not
 * read and says so; a new run moves another run's files aside. */
static void t_dir_helpers(void **st) {
    (void)st;
    char sub[512], p[600], name[64], skipped[1024];
    path_of(sub, "rot");
    am_ckdir d, d2;
    assert_int_equal(am_ckdir_open(sub, AM_CKDIR_WRITE, &d), AM_OK);
    struct stat sb;
    assert_int_equal(stat(sub, &sb), 0);
    assert_int_equal(sb.st_mode & 077, 0); /* created private */
    assert_int_equal(am_ckdir_latest(&d, name, sizeof name), AM_EIO);
    /* The lock: a second writer (another open file, as another process's) is refused. */
    assert_int_equal(am_ckdir_open(sub, AM_CKDIR_WRITE, &d2), AM_EIO);
    char pid[64];
    snprintf(pid, sizeof pid, "another asymml run (pid %ld)", (long)getpid());
    assert_non_null(strstr(am_last_error(), pid));
    assert_int_equal(am_ckdir_open(sub, AM_CKDIR_READ, &d2), AM_OK); /* readers are not */
    am_ckdir_close(&d2);

    am_dataset data;
    assert_int_equal(am_synthetic(43, 1, 8, 8, 4, 5, &data), AM_OK);
    am_train_cfg c = cfg();
    am_trainer_io io = io_of(&data, NULL);
    am_trainer *t;
    assert_int_equal(am_trainer_create(&c, DESC, &io, &t), AM_OK);
    am_checkpoint ck;
    am_trainer_snapshot(t, &ck);
    snprintf(p, sizeof p, "%s/ckpt-%010d.amck", sub, 99); /* says nothing: neither pruned nor read */
    fclose(fopen(p, "w"));
    snprintf(p, sizeof p, "%s/notes.txt", sub);
    fclose(fopen(p, "w"));
    save_as(&d, &ck, 2, 2, 10), save_as(&d, &ck, 2, 5, 10); /* another run's */
    for (int s = 1; s <= 10; s += 3) save_as(&d, &ck, 1, s, 2);
    assert_false(exists(sub, "ckpt-0000000001.amck") || exists(sub, "ckpt-0000000004.amck"));
    assert_true(exists(sub, "ckpt-0000000007.amck") && exists(sub, "ckpt-0000000010.amck"));
    assert_true(exists(sub, "ckpt-0000000002.amck") && exists(sub, "ckpt-0000000005.amck"));
    assert_true(exists(sub, "ckpt-0000000099.amck") && exists(sub, "notes.txt"));
    assert_int_equal(am_ckdir_prune(&d, ck.bind.run_id, 0), AM_EINVAL);
    /* A later file of the run that does not read (a byte changed) neither
     * takes the place of the checkpoint just saved nor goes. */
    save_as(&d, &ck, 1, 20, 10);
    snprintf(p, sizeof p, "%s/ckpt-%010d.amck", sub, 20);
    FILE *f = fopen(p, "r+b");
    fseek(f, -1, SEEK_END);
    int last = fgetc(f);
    fseek(f, -1, SEEK_END);
    fputc(last ^ 0xff, f);
    fclose(f);
    save_as(&d, &ck, 1, 13, 1);
    assert_true(exists(sub, "ckpt-0000000013.amck") && exists(sub, "ckpt-0000000020.amck"));
    assert_false(exists(sub, "ckpt-0000000010.amck"));
    save_as(&d, &ck, 1, 10, 10), save_as(&d, &ck, 1, 7, 10);
    unlink(p);
    snprintf(p, sizeof p, "%s/ckpt-%010d.amck", sub, 13);
    unlink(p);
    /* Whose: from the file's first bytes. */
    uint8_t run[AM_RUN_ID_BYTES] = {2};
    memcpy(run + 1, ck.bind.run_id + 1, sizeof run - 1);
    assert_int_equal(am_ckdir_newer(&d, run, 2, name, sizeof name), AM_OK);
    assert_string_equal(name, "ckpt-0000000099.amck"); /* does not say whose: may be run 2's */
    assert_int_equal(am_checkpoint_name_step(name), 99);
    assert_int_equal(am_checkpoint_name_step("ckpt-9999999999.amck"), -1);
    assert_int_equal(am_checkpoint_name_step("final.amck"), -1);
    /* The newest that reads; the one that does not, said, and its step. */
    am_checkpoint got;
    assert_int_equal(am_ckdir_load(&d, &got, name, sizeof name, skipped, sizeof skipped), AM_OK);
    assert_string_equal(name, "ckpt-0000000010.amck");
    assert_int_equal(got.global_step, 10);
    assert_int_equal(am_ckdir_newer(&d, got.bind.run_id, got.global_step, name, sizeof name), AM_OK);
    assert_int_equal(am_checkpoint_name_step(name), 99);
    assert_non_null(strstr(skipped, "ckpt-0000000099.amck"));
    am_checkpoint_free(&got);
    /* A new run: refused while other checkpoints are there; moved aside when told. */
    char where[256];
    int moved;
    assert_int_equal(am_ckdir_claim(&d, 0, where, sizeof where, &moved), AM_EINVAL);
    assert_non_null(strstr(am_last_error(), "holds 5 checkpoints of another run (the newest: ckpt-0000000099.amck)"));
    assert_int_equal(moved, 0);
    assert_true(exists(sub, "ckpt-0000000007.amck"));
    assert_int_equal(am_ckdir_claim(&d, 1, where, sizeof where, &moved), AM_OK);
    assert_int_equal(moved, 5);
    char hex[17];
    sodium_bin2hex(hex, sizeof hex, ck.bind.run_id, 8);
    snprintf(p, sizeof p, "run-%s/ckpt-0000000010.amck", hex);
    assert_true(exists(sub, p)); /* the file that does not say goes with the newest run that does */
    snprintf(p, sizeof p, "run-%s/ckpt-0000000099.amck", hex);
    assert_true(exists(sub, p));
    snprintf(p, sizeof p, "%s/run-%s/", sub, hex);
    assert_non_null(strstr(where, p));
    assert_int_equal(am_ckdir_latest(&d, name, sizeof name), AM_EIO);
    assert_int_equal(am_ckdir_claim(&d, 0, where, sizeof where, &moved), AM_OK);
    am_ckdir_close(&d);
    assert_int_equal(am_ckdir_open(sub, AM_CKDIR_WRITE, &d), AM_OK); /* the lock went with the first */
    am_ckdir_close(&d);
    am_trainer_free(t);
    am_dataset_free(&data);
}

static void t_loader(void **st) {
    (void)st;
    am_dataset d;
    assert_int_equal(am_synthetic(20, 3, 6, 5, 3, 9, &d), AM_OK);
    float mean[3], sd[3];
    assert_int_equal(am_dataset_stats(&d, mean, sd), AM_OK);
    am_loader_cfg lc = {4, 3, 2, 1};
    am_loader a, b;
    assert_int_equal(am_loader_init(&a, &d, &lc, mean, sd), AM_OK);
    assert_int_equal(am_loader_init(&b, &d, &lc, mean, sd), AM_OK);
    assert_int_equal(am_loader_steps_per_epoch(&a), 5);
    float xa[4 * 90], xb[4 * 90];
    int32_t la[4], lb[4];
    int seen[20] = {0};
    for (int s = 0; s < 5; s++) { /* epoch 0 visits every image once */
        assert_int_equal(am_loader_next(&a, xa, la), AM_OK);
        for (int i = 0; i < 4; i++) seen[a.perm[s * 4 + i]]++;
    }
    for (int i = 0; i < 20; i++) assert_int_equal(seen[i], 1);
    for (int s = 0; s < 3; s++) assert_int_equal(am_loader_next(&a, xa, la), AM_OK); /* epoch 1 step 3 */
    assert_int_equal(am_loader_seek(&b, 1, 2), AM_OK);
    assert_int_equal(am_loader_next(&b, xb, lb), AM_OK);
    assert_memory_equal(xa, xb, sizeof xa); /* same batch from (epoch, step) alone */
    assert_memory_equal(la, lb, sizeof la);
    assert_int_equal(am_loader_seek(&b, 0, 6), AM_EINVAL);
    am_loader_free(&a);
    am_loader_free(&b);
    lc.batch = 21;
    assert_int_equal(am_loader_init(&a, &d, &lc, mean, sd), AM_EINVAL);
    am_dataset_free(&d);
    assert_int_equal(am_synthetic(0, 1, 2, 2, 2, 1, &d), AM_EINVAL);
}

static void t_cifar(void **st) {
    (void)st;
    enum { REC10 = 3073, REC100 = 3074 };
    uint8_t *b = calloc(3, REC100);
    for (int i = 0; i < 3; i++) {
        b[i * REC10] = (uint8_t)(i * 4);
        b[i * REC10 + 1 + 1024] = (uint8_t)(50 + i); /* first green pixel */
    }
    am_dataset d = {0};
    assert_int_equal(am_cifar_parse(b, 3 * REC10, 0, "c10", &d), AM_OK);
    assert_int_equal(am_cifar_parse(b, 2 * REC10, 0, "c10b", &d), AM_OK); /* appends */
    assert_int_equal(d.n, 5);
    assert_int_equal(d.labels[2], 8);
    assert_int_equal(d.pixels[2 * 3072 + 1024], 52);
    assert_int_equal(am_cifar_parse(b, 3 * REC10 - 1, 0, "short", &d), AM_EFORMAT);
    assert_non_null(strstr(am_last_error(), "whole number"));
    b[REC10] = 10;
    assert_int_equal(am_cifar_parse(b, 3 * REC10, 0, "label", &d), AM_EFORMAT);
    assert_int_equal(am_cifar_parse(b, 3 * REC10, 1, "kind", &d), AM_EFORMAT); /* 9219 is not 3 CIFAR-100 records */
    assert_int_equal(d.n, 5);
    am_dataset_free(&d);
    memset(b, 0, 3 * REC100);
    b[1] = 99;
    b[REC100] = 19;
    assert_int_equal(am_cifar_parse(b, 3 * REC100, 1, "c100", &d), AM_OK);
    assert_int_equal(d.classes, 100);
    assert_int_equal(d.labels[0], 99);
    am_dataset_free(&d);
    b[0] = 20;
    assert_int_equal(am_cifar_parse(b, 3 * REC100, 1, "coarse", &d), AM_EFORMAT);
    free(b);
    am_data_kind k;
    assert_int_equal(am_data_kind_parse("cifar100", &k), AM_OK);
    assert_int_equal(k, AM_DATA_CIFAR100);
    assert_int_equal(am_data_kind_parse("imagenet", &k), AM_EINVAL);
    /* A missing folder, and a folder without the files, each said so. */
    assert_int_equal(am_dataset_load(AM_DATA_CIFAR10, "/nonexistent", "train", &d), AM_EIO);
    assert_non_null(strstr(am_last_error(), "/nonexistent: cannot open (No such file or directory)"));
    assert_int_equal(am_dataset_load(AM_DATA_CIFAR10, dir, "train", &d), AM_EIO);
    assert_non_null(strstr(am_last_error(), "no data_batch_1.bin"));
    assert_int_equal(am_dataset_load(AM_DATA_IDX, dir, "test", &d), AM_EIO);
    assert_non_null(strstr(am_last_error(), "no t10k-images-idx3-ubyte"));
}

int main(int argc, char **argv) {
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    snprintf(dir, sizeof dir, "/tmp/asymml-test-ckpt-XXXXXX");
    if (!mkdtemp(dir) || am_cpu_backend_create(&g_be) != AM_OK) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_resume_bitwise), cmocka_unit_test(t_bad_files),
        cmocka_unit_test(t_dir_helpers),    cmocka_unit_test(t_loader),
        cmocka_unit_test(t_cifar),
    };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    g_be->vt->destroy(g_be);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) r = r ? r : 1;
    return r;
}
