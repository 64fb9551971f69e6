/* agl_http_client — the libcurl HTTP client the daemons use to talk to stored (and each other).
 * Owns one CURL easy handle per client object (so the TCP connection is kept alive across
 * requests), the retry policy of the reference Python client (spec store-api.md §7), and the
 * mapping of HTTP failures onto the agl_err vocabulary.
 *
 * Threading: a client object is NOT thread-safe. Use one per thread (they are cheap: one
 * handle, one pooled connection). agl_http_global_init() is the only function that may race. */
#ifndef AGL_HTTP_CLIENT_H
#define AGL_HTTP_CLIENT_H

#include "agl_buf.h"
#include "agl_err.h"

#include <stddef.h>

typedef struct agl_http_client agl_http_client; /* opaque */

/* Zero-initialise and set what you need; every zero field means "the default". */
typedef struct agl_http_client_opts {
    double connect_timeout_s; /* 0 → 5 s (reference client); < 0 → curl's default */
    double request_timeout_s; /* total per attempt; 0 → 30 s (reference); < 0 → no limit */
    /* Sleeps between attempts, in seconds: attempt 1 is immediate, attempt k+2 follows
     * retry_delays[k]. NULL → {1, 2, 5} (4 attempts, like the reference client). To disable
     * retries pass a non-NULL array with n_retry_delays = 0. Up to 10% jitter is added. */
    const double *retry_delays;
    size_t n_retry_delays;
    const char *user_agent; /* NULL → "agl/<version>" */
    /* NULL-terminated list of extra "Name: value" header lines sent on every request. */
    const char *const *headers;
} agl_http_client_opts;

typedef struct agl_http_response {
    long status;        /* HTTP status of the last attempt; 0 if no response was received */
    agl_buf body;       /* owned; body.data is NUL-terminated (never NULL) once a response came */
    char *content_type; /* owned; NULL when the server sent none */
} agl_http_response;

/* Calls curl_global_init exactly once per process (pthread_once). Call it from main() before
 * starting threads; agl_http_client_new calls it too, so forgetting is harmless in
 * single-threaded programs. Returns AGL_OK or AGL_E_INTERNAL (same result on every call). */
agl_code agl_http_global_init(void);

/* base_url: scheme://host:port[/prefix]; a trailing '/' is stripped. opts may be NULL.
 * Returns NULL if base_url is not http(s) or curl cannot allocate a handle.
 * Caller frees with agl_http_client_free. */
agl_http_client *agl_http_client_new(const char *base_url, const agl_http_client_opts *opts);
/* Closes the kept-alive connection. NULL is a no-op. */
void agl_http_client_free(agl_http_client *c);

/* Sends method base_url+path (path should start with '/'; one is inserted if missing).
 * body may be NULL (then len is ignored and, for non-GET/HEAD methods, Content-Length: 0 is
 * sent without a content type, like the reference client). content_type may be NULL.
 *
 * Network errors, 408 and 5xx are retried with the configured delays; any other status is
 * returned at once. A response of any status — including a 4xx, or the 5xx of the last
 * attempt — is AGL_OK here: the caller inspects out->status.
 * Errors: AGL_E_UNAVAILABLE when no attempt got a response (refused, unresolvable, timed
 * out, reset), the message naming the URL and curl's error text; AGL_E_INVALID for a URL
 * curl rejects; AGL_E_INTERNAL for other curl failures (not retried).
 * *out is (re)initialised by the call, so do not pass one still holding a previous response;
 * free it with agl_http_response_free whatever the call returned. */
agl_code agl_http_request(agl_http_client *c, const char *method, const char *path,
                          const char *content_type, const void *body, size_t len,
                          agl_http_response *out, agl_error *err);

/* agl_http_request with a JSON body (Content-Type: application/json; NULL json_body sends no
 * body) that also turns HTTP errors into agl codes: when status >= 400 the JSON body's
 * "detail" becomes err->msg (for a pydantic 422 list, the first item's "msg", its "loc"
 * going to err->loc) and the code is 404 → NOT_FOUND, 422 → INVALID, 400 → BAD_REQUEST,
 * 409 → CONFLICT, 405 → METHOD, 413 → TOO_LARGE, 408/429/502/503/504 → UNAVAILABLE,
 * anything else → INTERNAL. *out keeps the response either way; free it with
 * agl_http_response_free. */
agl_code agl_http_json(agl_http_client *c, const char *method, const char *path,
                       const char *json_body, agl_http_response *out, agl_error *err);
/* The same error mapping for any body and content type (e.g. a protobuf upload). */
agl_code agl_http_call(agl_http_client *c, const char *method, const char *path,
                       const char *content_type, const void *body, size_t len,
                       agl_http_response *out, agl_error *err);

/* Zeroes r (status 0, empty body, no content type). */
void agl_http_response_init(agl_http_response *r);
/* Frees what r owns and re-initialises it. Safe on an initialised, empty response. */
void agl_http_response_free(agl_http_response *r);

/* The agl code agl_http_json uses for an HTTP status >= 400. */
agl_code agl_http_status_code(long status);

#endif
