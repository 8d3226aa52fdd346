/* The asymml command: dispatches to one file per command (cli.h). The
 * process the user runs is the trusted side; with --tee process it starts
 * the accelerator server itself (tee.c). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

/* OpenMP threads that spin while they wait take the cores from whatever
 * else runs there (another job, the accelerator server, the trusted side):
 * on 2 shared cores a VGG16 step took 3.5x its idle time, against 2.1x when
 * they spin briefly (about 10 us, GOMP_SPINCOUNT=1000) and then sleep,
 * which costs nothing measurable idle (bench/shared_cores.sh). Unless the
 * user chose a policy. The runtime reads it when it loads, before main:
 * set it and start again. */
#define SPIN "1000"
static void wait_briefly(char **argv) {
    if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT")) return;
    setenv("GOMP_SPINCOUNT", SPIN, 1);
    execv("/proc/self/exe", argv);
    fprintf(stderr, "asymml: note: cannot start again with a bounded OpenMP spin (%s): waiting threads may spin\n",
            strerror(errno));
}

static void usage(FILE *f) {
    fprintf(f, "usage: asymml COMMAND [options]   (asymml COMMAND --help for each)\n"
               "  train     train a model (MNIST, Fashion-MNIST, CIFAR-10/100); checkpoints, resume\n"
               "  eval      evaluate a checkpoint on a dataset\n"
               "  import    turn a PyTorch model (safetensors, torchvision's names) into a checkpoint\n"
               "  quantize  a checkpoint's model in fixed point: its accuracy next to the float model's\n"
               "  infer     private inference (slalom: blinded inputs; asymml; baselines): accuracy, images/s\n"
               "  precompute  slalom's unblinding factors ahead of time, sealed, each used once\n"
               "  analyze   per conv layer: entropy, ranks, energy kept, TEE/accelerator FLOPs\n"
               "  info      print a model's layers, shapes, parameters and FLOPs\n"
               "  bench     time training and inference steps of zoo models\n"
               "  seal      encrypt dataset files under a key; keygen makes a key\n"
               "  log       print a run's log, opening its sealed records\n"
               "  --version, --help\n"
               "exit codes: 0 success, 1 run-time failure, 2 bad usage\n");
}

int main(int argc, char **argv) {
    wait_briefly(argv);
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
                {"info", cmd_info},   {"seal", cmd_seal},     {"keygen", cmd_keygen}, {"log", cmd_log},
                {"import", cmd_import}, {"quantize", cmd_quantize}, {"infer", cmd_infer}, {"precompute", cmd_precompute}};
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++)
        if (!strcmp(cmd, cmds[i].name)) return cmds[i].run(argc - 1, argv + 1);
    return die(EXIT_USAGE, "unknown command '%s' (see asymml --help)", cmd);
}
