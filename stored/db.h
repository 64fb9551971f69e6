/* db — PostgreSQL access for stored: connection pool, prepared statements, transactions,
 * migrations. Every statement is prepared by name once per connection: the fixed ones from
 * the table in db_sql.c at connect time, the list queries (built only from whitelisted
 * fragments, never from input text) on first use through a per-connection cache. */
#ifndef STORED_DB_H
#define STORED_DB_H

#include "agl_err.h"

#include <libpq-fe.h>
#include <stdbool.h>

typedef struct db_conn db_conn;
typedef struct db_pool db_pool;

/* Column lists shared by the fixed statements and the list queries; the row readers in
 * store_rows.c index results by these positions. */
#define DB_ROLLOUT_COLS                                                                            \
    "r.rollout_id, r.input, r.start_time, r.end_time, r.mode, r.resources_id, r.status, "          \
    "r.timeout_seconds, r.unresponsive_seconds, r.max_attempts, r.retry_condition, "               \
    "r.metadata, r.num_attempts"
#define DB_ROLLOUT_NCOLS 13
#define DB_ATTEMPT_COLS                                                                            \
    "a.rollout_id, a.attempt_id, a.sequence_id, a.start_time, a.end_time, a.status, "              \
    "a.worker_id, a.last_heartbeat_time, a.metadata"
#define DB_ATTEMPT_NCOLS 9
#define DB_WORKER_COLS                                                                             \
    "worker_id, status, heartbeat_stats, last_heartbeat_time, last_dequeue_time, "                 \
    "last_busy_time, last_idle_time, current_rollout_id, current_attempt_id"
#define DB_RESOURCES_COLS "resources_id, create_time, update_time, version, resources"

/* Statement ids; the SQL lives in db_sql.c. */
typedef enum {
    SQL_ROLLOUT_INSERT,
    SQL_ROLLOUT_GET,
    SQL_ROLLOUT_GET_FOR_UPDATE,
    SQL_ROLLOUT_UPDATE,
    SQL_ROLLOUT_ADD_ATTEMPT,
    SQL_ROLLOUT_SET_RUNNING_IF_LATEST,
    SQL_SPAN_TARGET_LOCK,
    SQL_QUEUE_PICK,
    SQL_QUEUE_DROP,
    SQL_ATTEMPT_GET,
    SQL_ATTEMPT_GET_LATEST,
    SQL_ATTEMPT_UPDATE,
    SQL_ATTEMPT_HEARTBEAT,
    SQL_WORKER_GET,
    SQL_WORKER_HEARTBEAT,
    SQL_WORKER_SYNC,
    SQL_WORKER_DEQUEUE_IDLE,
    SQL_RESOURCES_INSERT,
    SQL_RESOURCES_UPSERT,
    SQL_RESOURCES_GET,
    SQL_RESOURCES_LATEST,
    SQL_SPAN_COUNTER_RAISE,
    SQL_SPAN_COUNTER_NEXT,
    SQL_SPAN_SEQ_NEXT,
    SQL_SPAN_SEQ_NEXT_MANY,
    SQL_SPAN_INSERT,
    SQL_SPAN_ADD_ONE,
    SQL_STATISTICS,
    SQL_SCAN_CANDIDATES,
    SQL_WAIT_STATUS,
    SQL_NOTIFY_DONE,
    SQL__COUNT
} db_stmt;

extern const char *const db_sql[SQL__COUNT];

/* Opens a pool of up to size connections to conninfo (a libpq URL or key=value string).
 * Connections are made lazily; the first is made here so a bad URL fails at start-up. */
db_pool *db_pool_open(const char *conninfo, int size, agl_error *err);
void db_pool_close(db_pool *p);
const char *db_pool_conninfo(const db_pool *p);

/* Takes a connection (waits while all are busy), reconnecting a broken one.
 * AGL_E_UNAVAILABLE when the database cannot be reached. */
agl_code db_acquire(db_pool *p, db_conn **out, agl_error *err);
void db_release(db_pool *p, db_conn *c);
/* Pool size and connections not lent out right now (for metrics). */
void db_pool_stats(db_pool *p, int *size, int *idle);
PGconn *db_pgconn(db_conn *c);

agl_code db_begin(db_conn *c, agl_error *err);
agl_code db_commit(db_conn *c, agl_error *err);
void db_rollback(db_conn *c);

/* A write whose result the caller does not need. Inside a transaction it is held back (its
 * parameters copied) and sent in one pipeline with the next statement or with COMMIT; a
 * failure then surfaces there, with the same error mapping, and the transaction rolls back as
 * it would have. Outside a transaction it runs at once. */
#define DB_DEFER_MAX 16
agl_code db_exec_deferred(db_conn *c, db_stmt s, int n, const char *const *params, agl_error *err);
/* The same for a statement whose result the caller reads later: it travels held back like a
 * deferred write, and once its pipeline has run without error *slot holds its result (caller
 * PQclear()s). Until then, and after any failure, *slot is NULL. slot must stay valid until
 * the next statement, db_commit or db_rollback. Lets a transaction send a read together with
 * what follows it when nothing in between depends on the read's result. */
agl_code db_exec_held(db_conn *c, db_stmt s, int n, const char *const *params, PGresult **slot,
                      agl_error *err);
/* Runs a prepared statement. params may contain NULL (SQL NULL). Returns the result (caller
 * PQclear()s) or NULL with err set: AGL_E_UNAVAILABLE when the connection broke (it will be
 * re-made on the next acquire), AGL_E_CONFLICT on serialization failure/deadlock,
 * AGL_E_INTERNAL otherwise. */
PGresult *db_exec(db_conn *c, db_stmt s, int n, const char *const *params, agl_error *err);
/* Runs one prepared statement count times (params[i] for the i-th) in libpq pipeline mode:
 * all are sent before any result is read, so PostgreSQL executes them back to back instead of
 * waiting for a round trip each. out[i] receives each result (caller PQclear()s) on AGL_OK; on
 * an error nothing is returned (out[] all NULL) and err is set as db_exec does. Sends at most
 * DB_PIPELINE_MAX statements per sync so neither socket buffer can fill. */
#define DB_PIPELINE_MAX 256
agl_code db_exec_many(db_conn *c, db_stmt s, int count, int n, const char *const *const *params,
                      PGresult **out, agl_error *err);
/* Same for a list query assembled from whitelisted fragments; prepared once per connection. */
PGresult *db_exec_dynamic(db_conn *c, const char *sql, int n, const char *const *params,
                          agl_error *err);

/* Applies migrations/NNNN_*.sql (embedded in the binary) not yet recorded in
 * agl_schema_version, each in its own transaction. Safe when several stored processes
 * start at once (advisory lock). */
agl_code db_migrate(db_pool *p, agl_error *err);

/* Helpers for reading result cells. */
static inline const char *db_val(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}
double db_double(const PGresult *r, int row, int col, bool *has);
long long db_int(const PGresult *r, int row, int col);

#endif
