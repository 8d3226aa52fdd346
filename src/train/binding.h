/* What a run is bound to (am_run_binding in asymml/train.h): made when it
 * starts, checked when it resumes. Internal to src/train. */
#ifndef ASYMML_TRAIN_BINDING_H
#define ASYMML_TRAIN_BINDING_H

#include "asymml/train.h"

/* A new run's binding: a fresh run id, the data's digests, this thread
 * count. */
am_status am_binding_new(const am_trainer_io *io, am_run_binding *b);
/* AM_OK if the run of checkpoint ck may resume with io here: the same
 * training and test data. Else a one-line error that says what differs. */
am_status am_binding_check(const am_checkpoint *ck, const am_trainer_io *io);

#endif
