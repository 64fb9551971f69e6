/* http — stored's HTTP front: libmicrohttpd set-up, request bodies, the route table,
 * responses and error rendering. Handlers see an agl_req and never touch MHD directly. */
#ifndef STORED_HTTP_H
#define STORED_HTTP_H

#include "agl_arena.h"
#include "agl_buf.h"
#include "agl_err.h"
#include "db.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

struct MHD_Connection;
typedef struct stored_ctx stored_ctx;

typedef struct agl_req {
    agl_arena arena; /* everything of this request; freed when the response is sent */
    stored_ctx *ctx;
    struct MHD_Connection *conn;
    const char *method;
    const char *path;
    const char *route;    /* pattern of the matched route (static), NULL if none; for metrics */
    const char *param[3]; /* path parameters, in order */
    int nparam;
    agl_buf body; /* raw request body */
    bool too_large;
    json_t *json; /* parsed body (owned; decref'd at the end) */
    db_conn *db;  /* held for the request's transaction, see req_db() */
    bool in_tx;
    bool commit_failed; /* a COMMIT failed: its outcome is unknown, so no retry */
    /* response */
    int status;
    const char *content_type; /* NULL = application/json */
    agl_buf out;
    const char *content_encoding;
    bool notify_done;  /* some rollout became terminal: wake waiters after commit */
    bool proto_errors; /* errors answered as protobuf google.rpc.Status (OTLP routes) */
} agl_req;

typedef agl_code (*agl_handler)(agl_req *r, agl_error *err);

/* Returns the database connection of this request, beginning its transaction on first use.
 * The framework commits when the handler returns AGL_OK and rolls back otherwise. */
agl_code req_db(agl_req *r, db_conn **out, agl_error *err);
/* Same connection, no explicit transaction: for handlers whose work is reads, or one single
 * statement (atomic by itself). Autocommit saves the BEGIN/COMMIT round trips. */
agl_code req_db_single(agl_req *r, db_conn **out, agl_error *err);
/* Commits the current transaction early (used by long waits that must not hold locks, and by
 * handlers that read results of held statements) and returns the connection to the pool. */
agl_code req_db_done(agl_req *r, agl_error *err);

/* Body helpers. req_json parses the body once; an empty body gives JSON null when
 * allow_empty, and a 422 otherwise. */
agl_code req_json(agl_req *r, bool allow_empty, json_t **out, agl_error *err);

/* Query-string helpers (percent-decoded by MHD). */
const char *req_query(agl_req *r, const char *key);
/* All values of a repeated key; returns count, values in *out (arena). */
int req_query_all(agl_req *r, const char *key, const char ***out);
const char *req_header(agl_req *r, const char *name);

/* Response helpers: JSON body already written into r->out. */
void req_reply(agl_req *r, int status);

typedef struct stored_http_opts {
    const char *listen; /* HOST:PORT */
    long threads;       /* 0 = a thread per connection */
    long max_body;
    long conn_timeout;
    const char *cors; /* comma-separated allowed origins, "*" = any, NULL = CORS off */
} stored_http_opts;

typedef struct stored_http stored_http;
stored_http *stored_http_start(stored_ctx *ctx, const stored_http_opts *o, agl_error *err);
/* Stops accepting, lets in-flight requests finish, then returns. */
void stored_http_stop(stored_http *h);
int stored_http_port(stored_http *h);

#endif
