/* The option tables: getopt_long's table and the help text are both made
 * from them, and each entry says whether it defines the run (OPT_RUN), so
 * that --resume can refuse those. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define MAX_OPTS 128

static void help(const char *usage, const cli_opt *const *tables) {
    printf("%s", usage);
    for (int t = 0; tables[t]; t++)
        for (const cli_opt *o = tables[t]; o->name; o++) {
            char head[64];
            snprintf(head, sizeof head, "--%s%s%s", o->name, o->arg ? " " : "", o->arg ? o->arg : "");
            const char *h = o->help;
            const char *nl = strchr(h, '\n');
            printf("  %-22s %.*s\n", head, (int)(nl ? nl - h : (long)strlen(h)), h);
            while (nl) {
                h = nl + 1;
                nl = strchr(h, '\n');
                printf("  %-22s %.*s\n", "", (int)(nl ? nl - h : (long)strlen(h)), h);
            }
        }
    printf("  %-22s %s\n", "--help", "this text");
}

int cli_parse(const char *cmd, const char *usage, int argc, char **argv, const cli_opt *const *tables, cli_handler h,
              void *ctx, const cli_opt **first_run, int *rest) {
    struct option lo[MAX_OPTS + 2];
    const cli_opt *by_index[MAX_OPTS];
    int n = 0;
    for (int t = 0; tables[t]; t++)
        for (const cli_opt *o = tables[t]; o->name && n < MAX_OPTS; o++) {
            lo[n] = (struct option){o->name, o->arg ? required_argument : no_argument, NULL, 1000 + n};
            by_index[n++] = o;
        }
    lo[n++] = (struct option){"help", no_argument, NULL, 'h'};
    lo[n] = (struct option){NULL, 0, NULL, 0};
    if (first_run) *first_run = NULL;
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        if (c == 'h') {
            help(usage, tables);
            return -1;
        }
        if (c < 1000 || c >= 1000 + MAX_OPTS) {
            const char *arg = argv[optind - 1];
            if (optopt && strncmp(arg, "--", 2))
                return die(EXIT_USAGE, "%s: unknown option '%s' (see asymml %s --help)", cmd, arg, cmd);
            return die(EXIT_USAGE, "%s: unknown option or missing value: '%s' (see asymml %s --help)", cmd, arg, cmd);
        }
        const cli_opt *o = by_index[c - 1000];
        if (first_run && !*first_run && (o->flags & OPT_RUN)) *first_run = o;
        int rc = h(ctx, o, optarg);
        if (rc) return rc;
    }
    if (rest) *rest = optind;
    else if (optind < argc) return die(EXIT_USAGE, "%s: unexpected argument '%s'", cmd, argv[optind]);
    return 0;
}
