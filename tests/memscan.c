/* memscan PID STRING: searches every readable mapping of process PID for
 * STRING (through /proc/PID/mem). Exit 1 if found, 0 if not, 2 if the
 * memory could not be read at all. For the test that the host process never
 * holds a sealed dataset's plaintext. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 3 || !argv[2][0]) {
        fprintf(stderr, "usage: memscan PID STRING\n");
        return 2;
    }
    char p[64];
    snprintf(p, sizeof p, "/proc/%s/maps", argv[1]);
    FILE *maps = fopen(p, "r");
    snprintf(p, sizeof p, "/proc/%s/mem", argv[1]);
    int mem = open(p, O_RDONLY);
    if (!maps || mem < 0) {
        perror("memscan");
        return 2;
    }
    const char *needle = argv[2];
    size_t nl = strlen(needle), chunk = (size_t)1 << 22;
    char *buf = malloc(chunk + nl);
    char line[512];
    size_t bytes = 0;
    int found = 0;
    while (!found && fgets(line, sizeof line, maps)) {
        unsigned long lo, hi;
        char perm[8];
        if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perm) != 3 || perm[0] != 'r') continue;
        if (strstr(line, "[vvar]") || strstr(line, "[vsyscall]")) continue;
        /* Reserved address space of terabytes (a sanitizer's shadow) holds
         * no data of ours: skip regions over 64 GiB. */
        if (hi - lo > (64ul << 30)) continue;
        /* Chunks that overlap by the needle's length, so nothing is missed
         * at a boundary. */
        for (unsigned long a = lo; a < hi && !found; a += chunk) {
            size_t want = hi - a < chunk + nl ? hi - a : chunk + nl;
            ssize_t got = pread(mem, buf, want, (off_t)a);
            if (got <= 0) break;
            bytes += (size_t)got;
            if (memmem(buf, (size_t)got, needle, nl)) found = 1;
        }
    }
    fclose(maps);
    close(mem);
    free(buf);
    if (!bytes) {
        fprintf(stderr, "memscan: nothing readable in process %s\n", argv[1]);
        return 2;
    }
    fprintf(stderr, "memscan: %zu MiB of process %s read; %s\n", bytes >> 20, argv[1], found ? "found" : "not found");
    return found;
}
