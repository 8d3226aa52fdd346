/* Names of the crossing kinds (asymml/crossing.h). */
#include "asymml/crossing.h"

const char *am_cross_kind_name(am_cross_kind k) {
    switch (k) {
    case AM_CROSS_WEIGHTS: return "weights";
    case AM_CROSS_RESIDUAL: return "residual";
    case AM_CROSS_OUTPUT_GRAD: return "output-gradient";
    case AM_CROSS_ACTIVATION: return "activation";
    case AM_CROSS_GRAD_RESIDUAL: return "gradient-residual";
    case AM_CROSS_LABELS: return "labels";
    case AM_CROSS_STATE: return "state";
    case AM_CROSS_BLINDED: return "blinded";
    case AM_CROSS_KINDS: break;
    }
    return "unknown";
}
