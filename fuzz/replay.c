/* Runs a fuzz target over the files of a corpus directory without libFuzzer:
 * the regression test that every build runs (ctest), so that the committed
 * corpus of bad files is checked by gcc builds and sanitizer builds alike. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int main(int argc, char **argv) {
    int files = 0;
    for (int a = 1; a < argc; a++) {
        DIR *d = opendir(argv[a]);
        if (!d) {
            fprintf(stderr, "replay: cannot open %s\n", argv[a]);
            return 1;
        }
        struct dirent *e;
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.') continue;
            char p[4096];
            snprintf(p, sizeof p, "%s/%s", argv[a], e->d_name);
            FILE *f = fopen(p, "rb");
            if (!f) continue;
            fseek(f, 0, SEEK_END);
            long n = ftell(f);
            fseek(f, 0, SEEK_SET);
            uint8_t *b = malloc(n > 0 ? (size_t)n : 1);
            size_t got = fread(b, 1, (size_t)n, f);
            fclose(f);
            LLVMFuzzerTestOneInput(b, got);
            free(b);
            files++;
        }
        closedir(d);
    }
    printf("replay: %d files, no failure\n", files);
    return files ? 0 : 1;
}
