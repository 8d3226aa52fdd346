/* The asymml command: dispatches to one file per command (cli.h). The
 * process the user runs is the trusted side; with --tee process it starts
 * the accelerator server itself (tee.c). */
#include <string.h>

#include "cli.h"

static void usage(FILE *f) {
    fprintf(f, "usage: asymml COMMAND [options]   (asymml COMMAND --help for each)\n"
               "  train   train a model (MNIST, Fashion-MNIST, CIFAR-10/100); checkpoints, resume\n"
               "  eval    evaluate a checkpoint on a dataset\n"
               "  analyze per conv layer: entropy, ranks, energy kept, TEE/accelerator FLOPs\n"
               "  info    print a model's layers, shapes, parameters and FLOPs\n"
               "  bench   time training and inference steps of zoo models\n"
               "  seal    encrypt dataset files under a key; keygen makes a key\n"
               "  log     print a run's log, opening its sealed records\n"
               "  --version, --help\n"
               "exit codes: 0 success, 1 run-time failure, 2 bad usage\n");
}

int main(int argc, char **argv) {
    cli_argv = argv;
    if (argc < 2) return die(EXIT_USAGE, "no command given (see asymml --help)");
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version")) {
        printf("asymml %s\n", ASYMML_VERSION);
        return 0;
    }
    static const struct {
        const char *name;
        int (*run)(int, char **);
    } cmds[] = {{"train", cmd_train}, {"eval", cmd_eval},     {"bench", cmd_bench}, {"analyze", cmd_analyze},
                {"info", cmd_info},   {"seal", cmd_seal},     {"keygen", cmd_keygen}, {"log", cmd_log}};
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++)
        if (!strcmp(cmd, cmds[i].name)) return cmds[i].run(argc - 1, argv + 1);
    return die(EXIT_USAGE, "unknown command '%s' (see asymml --help)", cmd);
}
