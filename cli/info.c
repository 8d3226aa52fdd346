/* asymml info: a model's layers, output shapes, parameters and FLOPs. */
#include <stdlib.h>

#include "cli.h"

static const char usage[] = "usage: asymml info [--model NAME | --model-file PATH] [options]\n"
                            "Print a model's layers, output shapes, parameter count and forward FLOPs.\n";

enum { I_MODEL = 1, I_FILE, I_INPUT, I_CLASSES, I_LIST };

static const cli_opt opts[] = {
    {"model", "NAME", I_MODEL, 0, "zoo model (default lenet); see `asymml info --list`"},
    {"model-file", "PATH", I_FILE, 0, "a layer description file (syntax: include/asymml/nn.h)"},
    {"input", "C,H,W", I_INPUT, 0, "input shape for zoo models (default 1,28,28)"},
    {"classes", "N", I_CLASSES, 0, "class count for zoo models (default 10)"},
    {"list", NULL, I_LIST, 0, "list the zoo's models"},
    {NULL, NULL, 0, 0, NULL},
};

typedef struct info_opts {
    const char *name, *file;
    am_shape in;
    int classes, list;
} info_opts;

static int handle(void *ctx, const cli_opt *o, const char *arg) {
    info_opts *i = ctx;
    switch (o->id) {
    case I_MODEL: i->name = arg; return 0;
    case I_FILE: i->file = arg; return 0;
    case I_INPUT: return arg_shape("input", arg, &i->in) ? 0 : EXIT_USAGE;
    case I_CLASSES: return arg_int("classes", arg, 2, 1000000, &i->classes) ? 0 : EXIT_USAGE;
    case I_LIST: i->list = 1; return 0;
    }
    return EXIT_USAGE;
}

int cmd_info(int argc, char **argv) {
    info_opts o = {"lenet", NULL, am_shape4(1, 1, 28, 28), 10, 0};
    const cli_opt *const tables[] = {opts, NULL};
    int rc = cli_parse("info", usage, argc, argv, tables, handle, &o, NULL, NULL);
    if (rc) return rc < 0 ? 0 : rc;
    if (o.list) {
        for (const char *const *n = am_zoo_names(); *n; n++) printf("%s\n", *n);
        return 0;
    }
    am_model *m;
    if ((rc = make_model(o.name, o.file, o.in, o.classes, &m))) return rc;
    printf("%-5s %-12s %-10s %-18s %12s %14s\n", "layer", "kind", "name", "output (CxHxW)", "params", "MFLOPs");
    double total = 0;
    for (int i = 0; i < am_model_num_layers(m); i++) {
        am_layer_info li;
        am_model_layer_info(m, i, &li);
        char shp[32];
        snprintf(shp, sizeof shp, "%dx%dx%d", li.out.c, li.out.h, li.out.w);
        printf("%-5d %-12s %-10s %-18s %12zu %14.3f\n", i, li.kind, li.name, shp, li.params, li.flops / 1e6);
        total += li.flops;
    }
    printf("parameters: %zu\nforward GFLOPs per sample: %.4f (training step ~3x)\n", am_model_trainable_count(m), total / 1e9);
    am_model_free(m);
    return 0;
}
