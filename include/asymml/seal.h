/* Sealed files: datasets and checkpoints encrypted and authenticated with
 * libsodium's secretstream (XChaCha20-Poly1305) under a 32-byte key file.
 * The trusted side opens them itself; a wrong key or any change to the file
 * is a clear error. Once a key is set, the dataset readers open sealed files
 * (FILE.sealed beside or instead of FILE) and checkpoints are written sealed.
 *
 * Format: "AMSEAL" 0x01 0x00, the 24-byte stream header, then chunks of up
 * to 1 MiB of plaintext, each with its 17-byte tag; the last chunk carries
 * the FINAL tag, so a truncated file does not open. */
#ifndef ASYMML_SEAL_H
#define ASYMML_SEAL_H

#include <stddef.h>
#include <stdint.h>

#include "asymml/core.h"

#ifdef __cplusplus
extern "C" {
#endif

#define AM_SEAL_KEY_BYTES 32

/* A new random key, written to path (created, mode 0600; an existing file
 * is never overwritten). */
am_status am_seal_keygen(const char *path);
/* Reads a key file: exactly AM_SEAL_KEY_BYTES bytes. */
am_status am_seal_key_read(const char *path, uint8_t key[AM_SEAL_KEY_BYTES]);
/* The process-wide key (NULL clears it). */
void am_seal_set_key(const uint8_t *key);
int am_seal_have_key(void);

int am_is_sealed(const uint8_t *buf, size_t n);
/* Encrypts n bytes; *out (malloc'd) receives the sealed file's bytes. */
am_status am_seal(const uint8_t key[AM_SEAL_KEY_BYTES], const uint8_t *in, size_t n, uint8_t **out, size_t *out_n);
/* Decrypts and authenticates a sealed buffer; what names it in errors. */
am_status am_unseal(const uint8_t key[AM_SEAL_KEY_BYTES], const uint8_t *in, size_t n, const char *what, uint8_t **out,
                    size_t *out_n);
/* The same with the process-wide key (an error names the need for --key
 * when none is set). */
am_status am_seal_current(const uint8_t *in, size_t n, uint8_t **out, size_t *out_n);
am_status am_unseal_current(const uint8_t *in, size_t n, const char *what, uint8_t **out, size_t *out_n);
/* Seals the file in into out (written to a temporary file, synced, renamed;
 * an existing out is refused). */
am_status am_seal_file(const uint8_t key[AM_SEAL_KEY_BYTES], const char *in, const char *out);

#ifdef __cplusplus
}
#endif
#endif
