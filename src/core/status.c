/* Status codes and the per-thread error message, and apart from it the
 * source file and line of the failure (for a debugger or a test, not for
 * the message: a user reads where the problem is, not where the code is). */
#include "asymml/core.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char g_err[512], g_at[64];

const char *am_last_error(void) { return g_err; }
const char *am_last_error_at(void) { return g_at; }

am_status am_fail_at(am_status st, const char *file, int line, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const char *base = strrchr(file, '/');
    snprintf(g_err, sizeof g_err, "%s", msg);
    snprintf(g_at, sizeof g_at, "%s:%d", base ? base + 1 : file, line);
    return st;
}

const char *am_status_name(am_status st) {
    switch (st) {
    case AM_OK: return "ok";
    case AM_EINVAL: return "invalid argument";
    case AM_ENOMEM: return "out of memory";
    case AM_EIO: return "i/o error";
    case AM_EFORMAT: return "bad file format";
    case AM_ENUM: return "non-finite number";
    }
    return "unknown status";
}
