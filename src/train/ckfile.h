/* One checkpoint file in a directory held open (ckfile.c): written
 * atomically, read whole. Internal to src/train; the directory's listing,
 * locking and pruning are ckdir.c's. */
#ifndef ASYMML_TRAIN_CKFILE_H
#define ASYMML_TRAIN_CKFILE_H

#include "asymml/train.h"

/* Writes buf as name in dir_fd (dir: its path, for messages): a new
 * temporary file of a unique name (O_EXCL, O_NOFOLLOW), fsync, rename,
 * fsync of the directory. On failure the file that was there is untouched. */
am_status am_ckfile_write(int dir_fd, const char *dir, const char *name, const uint8_t *buf, size_t n);
/* Reads and parses name in dir_fd; a ckpt-N.amck must hold step N. */
am_status am_ckfile_read(int dir_fd, const char *dir, const char *name, am_checkpoint *ck);
/* The whole of the regular file name in dir_fd (no link followed) into
 * *out (malloc'ed). */
am_status am_ckfile_slurp(int dir_fd, const char *dir, const char *name, uint8_t **out, size_t *out_n);
/* 1 if s is a checkpoint's name, ckpt-NNNNNNNNNN.amck; *step its step. */
int am_ckfile_name(const char *s, int *step);

#endif
