/* asymml: privacy-preserving training across a TEE and an untrusted
 * accelerator (AsymML). The one header to include. */
#ifndef ASYMML_H
#define ASYMML_H

#define ASYMML_VERSION "0.1.0"

#include "asymml/core.h"
#include "asymml/ops.h"
#include "asymml/nn.h"
#include "asymml/data.h"
#include "asymml/train.h"
#include "asymml/decomp.h"
#include "asymml/asym.h"
#include "asymml/seal.h"
#include "asymml/import.h"
#include "asymml/factors.h"

#endif
