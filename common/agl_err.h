/* agl_err — the one error vocabulary of agl.
 * Every fallible libagl/daemon function returns an agl_code and, when it fails, fills an
 * agl_error. agl_error_http() is the single place that maps a code to an HTTP status and the
 * JSON error body {"detail": ..., "error_type": ...}. */
#ifndef AGL_ERR_H
#define AGL_ERR_H

#include <stdarg.h>

typedef enum agl_code {
    AGL_OK = 0,
    AGL_E_INVALID,     /* request failed validation (422); loc names the field */
    AGL_E_BAD_REQUEST, /* well-formed but unacceptable (400) */
    AGL_E_NOT_FOUND,   /* unknown id on a mutation, unknown route (404) */
    AGL_E_METHOD,      /* route exists, method does not (405) */
    AGL_E_CONFLICT,    /* state does not allow the operation (409) */
    AGL_E_TOO_LARGE,   /* body over the configured limit (413) */
    AGL_E_UNAVAILABLE, /* database or upstream unreachable (503), retryable */
    AGL_E_INTERNAL,    /* bug or unexpected failure (500) */
    AGL_E_IO,          /* local I/O or network failure (500 when served) */
    AGL_E__COUNT
} agl_code;

typedef struct agl_error {
    agl_code code;
    char loc[128]; /* dotted location of the offending field, e.g. "body.rollouts.0.mode" */
    char msg[384]; /* short lower-case primary message */
} agl_error;

/* Sets *e (if non-NULL) and returns code, so callers can `return agl_error_set(...)`. */
agl_code agl_error_set(agl_error *e, agl_code code, const char *loc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
agl_code agl_error_vset(agl_error *e, agl_code code, const char *loc, const char *fmt, va_list ap);
void agl_error_clear(agl_error *e);

/* Stable machine name of a code ("invalid", "not_found", ...), used as error_type. */
const char *agl_code_name(agl_code code);
/* HTTP status for a code. */
int agl_code_http_status(agl_code code);

/* Renders the JSON error body for e. 422 bodies follow the FastAPI/pydantic shape
 * {"detail":[{"type":..,"loc":[..],"msg":..}]}; every other body is
 * {"detail":"<msg>","error_type":"<name>"}. Returns a malloc'd NUL-terminated string;
 * caller frees with free(). *status receives the HTTP status. */
char *agl_error_http(const agl_error *e, int *status);

#endif
