/* hostview_check SIGMA CLIP DIR...: reads recordings of the host's view
 * (--record: src/untrusted/recorder.h) and checks that no two noised
 * releases share noise: every pair of per-sample residual releases
 * (residuals, and gradient residuals) of the same size either is bitwise
 * the same (a release repeated whole: a resumed run's replay, which tells
 * the host nothing new) or differs by about as much as two independent
 * noise draws (squared distance at least sigma^2 clip^2 d, half of what
 * two independent draws give). Two releases with the same noise on other
 * data would differ by at most 2 clip in norm: far less.
 * Prints the number of releases, repeats, and the smallest ratio found;
 * exit 0 if the check holds, 1 if not, 2 on bad input. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct rel {
    const float *v;
    size_t d;
    int file;
} rel;

static rel *rels;
static size_t n_rels, cap_rels;

static int load(const char *dir, int file) {
    char p[4200], line[2048];
    snprintf(p, sizeof p, "%s/buffers.f32", dir);
    FILE *fd = fopen(p, "rb");
    snprintf(p, sizeof p, "%s/index.jsonl", dir);
    FILE *fi = fopen(p, "r");
    if (!fd || !fi) return fprintf(stderr, "hostview_check: %s: no recording\n", dir), 0;
    fseek(fd, 0, SEEK_END);
    size_t bytes = (size_t)ftell(fd);
    fseek(fd, 0, SEEK_SET);
    float *all = malloc(bytes ? bytes : 1);
    if (!all || fread(all, 1, bytes, fd) != bytes) return fprintf(stderr, "hostview_check: %s: read failed\n", dir), 0;
    fclose(fd);
    while (fgets(line, sizeof line, fi)) {
        if (!strstr(line, "\"kind\": \"residual\"") && !strstr(line, "\"kind\": \"gradient-residual\"")) continue;
        int n, c, h, w;
        unsigned long long off;
        size_t floats;
        const char *s = strstr(line, "\"shape\": ["), *o = strstr(line, "\"offset\": ");
        if (!s || !o || sscanf(s, "\"shape\": [%d, %d, %d, %d]", &n, &c, &h, &w) != 4 ||
            sscanf(o, "\"offset\": %llu, \"floats\": %zu", &off, &floats) != 2 || floats != (size_t)n * c * h * w ||
            off % 4 || off / 4 + floats > bytes / 4)
            return fprintf(stderr, "hostview_check: %s: bad line: %s", dir, line), 0;
        for (int b = 0; b < n; b++) {
            if (n_rels == cap_rels) {
                cap_rels = cap_rels ? 2 * cap_rels : 1024;
                rels = realloc(rels, sizeof *rels * cap_rels);
            }
            rels[n_rels++] = (rel){all + off / 4 + (size_t)b * c * h * w, (size_t)c * h * w, file};
        }
    }
    fclose(fi);
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 4) return fprintf(stderr, "usage: hostview_check SIGMA CLIP DIR...\n"), 2;
    double sigma = atof(argv[1]), clip = atof(argv[2]);
    for (int i = 3; i < argc; i++)
        if (!load(argv[i], i - 3)) return 2;
    size_t repeats = 0, pairs = 0;
    double worst = 1e300;
    for (size_t i = 0; i < n_rels; i++)
        for (size_t j = 0; j < i; j++) {
            if (rels[i].d != rels[j].d) continue;
            pairs++;
            if (!memcmp(rels[i].v, rels[j].v, rels[i].d * sizeof(float))) {
                repeats++;
                continue;
            }
            double d2 = 0;
            for (size_t k = 0; k < rels[i].d; k++) {
                double t = (double)rels[i].v[k] - rels[j].v[k];
                d2 += t * t;
            }
            double ratio = d2 / (sigma * sigma * clip * clip * (double)rels[i].d);
            if (ratio < worst) worst = ratio;
        }
    printf("hostview_check: %zu releases, %zu pairs, %zu repeated whole, smallest squared distance %.3f x sigma^2 clip^2 d "
           "(independent noise: about 2)\n",
           n_rels, pairs, repeats, worst);
    return worst >= 1.0 ? 0 : 1;
}
