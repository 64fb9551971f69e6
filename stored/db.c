/* db — libpq connection pool, prepared statements, transactions and migrations. */
#include "db.h"
#include "agl_alloc.h"
#include "agl_arena.h"
#include "agl_log.h"
#include "agl_util.h"
#include "metrics.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Embedded migrations, generated at build time from migrations/NNNN_*.sql. */
extern const char *const agl_migrations[][2];

#define DYN_CACHE 64

struct db_conn {
    PGconn *pg;
    bool prepared;
    bool in_pool;
    bool in_tx;         /* between db_begin and db_commit/db_rollback */
    bool begin_pending; /* BEGIN not sent yet (see db_begin) */
    int ndefer;         /* writes held back (db_exec_deferred) */
    struct deferred {
        int stmt, n;
        const char **params; /* copies in defer_arena */
        PGresult **slot;     /* where its result goes (db_exec_held), or NULL */
    } defer[DB_DEFER_MAX];
    agl_arena defer_arena;
    int ndyn;
    struct {
        uint64_t hash;
        char *sql;
    } dyn[DYN_CACHE];
};

struct db_pool {
    char *conninfo;
    int size;
    int nfree;
    db_conn **free;
    db_conn *all;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

static void conn_reset(db_conn *c);
static void drop_held(db_conn *c);
static agl_code conn_prepare(db_conn *c, agl_error *err);
static void conn_reset(db_conn *c)
{
    if (c->pg) PQfinish(c->pg);
    c->pg = NULL;
    c->in_tx = false;
    drop_held(c);
    c->prepared = false;
    for (int i = 0; i < c->ndyn; i++) free(c->dyn[i].sql);
    c->ndyn = 0;
}

static agl_code pg_error(db_conn *c, PGresult *r, const char *what, agl_error *err)
{
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = c->pg ? PQerrorMessage(c->pg) : "no connection";
    if (r && PQresultErrorMessage(r)[0]) msg = PQresultErrorMessage(r);
    char clean[300];
    snprintf(clean, sizeof clean, "%s", msg);
    for (char *p = clean; *p; p++)
        if (*p == '\n') *p = ' ';
    if (!c->pg || PQstatus(c->pg) != CONNECTION_OK) {
        agl_warn("database connection lost during %s: %s", what, clean);
        conn_reset(c);
        return agl_error_set(err, AGL_E_UNAVAILABLE, NULL, "database unavailable: %s", clean);
    }
    if (state && !strcmp(state, "23503")) /* foreign key: a row refers to a missing one */
        return agl_error_set(err, AGL_E_NOT_FOUND, NULL, "unknown rollout or attempt");
    if (state && (!strcmp(state, "40001") || !strcmp(state, "40P01")))
        return agl_error_set(err, AGL_E_CONFLICT, NULL, "concurrent update conflict, retry: %s",
                             clean);
    agl_error("database error in %s: %s", what, clean);
    return agl_error_set(err, AGL_E_INTERNAL, NULL, "database error: %s", clean);
}

static agl_code conn_open(db_pool *p, db_conn *c, agl_error *err)
{
    conn_reset(c);
    c->pg = PQconnectdb(p->conninfo);
    if (PQstatus(c->pg) != CONNECTION_OK) {
        char clean[300];
        snprintf(clean, sizeof clean, "%s", PQerrorMessage(c->pg));
        for (char *q = clean; *q; q++)
            if (*q == '\n') *q = ' ';
        conn_reset(c);
        return agl_error_set(err, AGL_E_UNAVAILABLE, NULL, "database unavailable: %s", clean);
    }
    PGresult *r = PQexec(c->pg, "SET client_min_messages = warning; SET extra_float_digits = 3");
    PQclear(r);
    return AGL_OK;
}

static agl_code conn_prepare(db_conn *c, agl_error *err)
{
    if (c->prepared) return AGL_OK;
    for (int i = 0; i < SQL__COUNT; i++) {
        char name[16];
        snprintf(name, sizeof name, "s%d", i);
        PGresult *r = PQprepare(c->pg, name, db_sql[i], 0, NULL);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            agl_code code = pg_error(c, r, "prepare", err);
            agl_error("cannot prepare statement %d: %s", i, err->msg);
            PQclear(r);
            /* Start from scratch next time, not from "s0 already exists". */
            if (c->pg) PQclear(PQexec(c->pg, "DEALLOCATE ALL"));
            return code;
        }
        PQclear(r);
    }
    c->prepared = true;
    return AGL_OK;
}

db_pool *db_pool_open(const char *conninfo, int size, agl_error *err)
{
    if (size < 1) size = 1;
    db_pool *p = agl_calloc(1, sizeof *p);
    p->conninfo = agl_strdup(conninfo);
    p->size = size;
    p->all = agl_calloc((size_t)size, sizeof *p->all);
    p->free = agl_calloc((size_t)size, sizeof *p->free);
    for (int i = 0; i < size; i++) p->free[p->nfree++] = &p->all[i];
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    if (conn_open(p, &p->all[0], err) != AGL_OK) {
        db_pool_close(p);
        return NULL;
    }
    return p;
}

void db_pool_close(db_pool *p)
{
    if (!p) return;
    for (int i = 0; i < p->size; i++) conn_reset(&p->all[i]);
    free(p->all);
    free(p->free);
    free(p->conninfo);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p);
}

const char *db_pool_conninfo(const db_pool *p)
{
    return p->conninfo;
}

static agl_code acquire_raw(db_pool *p, db_conn **out, agl_error *err)
{
    pthread_mutex_lock(&p->mu);
    while (p->nfree == 0) pthread_cond_wait(&p->cv, &p->mu);
    db_conn *c = p->free[--p->nfree];
    pthread_mutex_unlock(&p->mu);

    if (!c->pg || PQstatus(c->pg) != CONNECTION_OK) {
        if (c->pg) PQreset(c->pg);
        if (!c->pg || PQstatus(c->pg) != CONNECTION_OK) {
            agl_code code = conn_open(p, c, err);
            if (code != AGL_OK) {
                db_release(p, c);
                return code;
            }
        } else {
            c->prepared = false;
            for (int i = 0; i < c->ndyn; i++) free(c->dyn[i].sql);
            c->ndyn = 0;
        }
    }
    *out = c;
    return AGL_OK;
}

agl_code db_acquire(db_pool *p, db_conn **out, agl_error *err)
{
    db_conn *c;
    agl_code code = acquire_raw(p, &c, err);
    if (code != AGL_OK) return code;
    code = conn_prepare(c, err);
    if (code != AGL_OK) {
        db_release(p, c);
        return code;
    }
    *out = c;
    return AGL_OK;
}

void db_release(db_pool *p, db_conn *c)
{
    c->in_tx = false;
    drop_held(c);
    pthread_mutex_lock(&p->mu);
    p->free[p->nfree++] = c;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

void db_pool_stats(db_pool *p, int *size, int *idle)
{
    pthread_mutex_lock(&p->mu);
    *size = p->size;
    *idle = p->nfree;
    pthread_mutex_unlock(&p->mu);
}

PGconn *db_pgconn(db_conn *c)
{
    return c->pg;
}

static agl_code simple(db_conn *c, const char *sql, agl_error *err)
{
    if (!c->pg) return agl_error_set(err, AGL_E_UNAVAILABLE, NULL, "database unavailable");
    PGresult *r = PQexec(c->pg, sql);
    agl_code code = AGL_OK;
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) code = pg_error(c, r, sql, err);
    PQclear(r);
    return code;
}

/* A transaction sends as little as it can on its own. BEGIN is held back and travels with the
 * transaction's first statement; writes whose result the caller does not read
 * (db_exec_deferred) are held back too and travel with the next statement or with COMMIT. Each
 * hold saves a round trip — two context switches on each side —, and a transaction that runs
 * no statement sends nothing at all. All held statements go in one libpq pipeline, in order;
 * the first failure aborts the rest (PostgreSQL skips them) and is reported as db_exec would. */
agl_code db_begin(db_conn *c, agl_error *err)
{
    if (!c->pg) return agl_error_set(err, AGL_E_UNAVAILABLE, NULL, "database unavailable");
    c->begin_pending = true;
    c->in_tx = true;
    return AGL_OK;
}

static void drop_held(db_conn *c)
{
    c->begin_pending = false;
    c->ndefer = 0;
    agl_arena_free(&c->defer_arena);
}

/* The one pipeline runner: sends the held BEGIN and writes, then count runs of the prepared
 * statement name (params[i] for the i-th; count <= DB_PIPELINE_MAX so neither socket buffer
 * can fill), then COMMIT if commit, and one sync. On AGL_OK out[i] holds the i-th run's result
 * (caller PQclear()s); on the first failure err is set as db_exec would, out[] stays NULL and
 * PostgreSQL has skipped the rest. Held statements are gone either way. */
static agl_code run_pipeline(db_conn *c, const char *name, int count, int n,
                             const char *const *const *params, bool commit, PGresult **out,
                             agl_error *err)
{
    for (int i = 0; i < count; i++) out[i] = NULL;
    bool begin = c->begin_pending;
    int nd = c->ndefer;
    if (!PQenterPipelineMode(c->pg)) {
        drop_held(c);
        return pg_error(c, NULL, "pipeline", err);
    }
    bool sent = !begin || PQsendQueryParams(c->pg, "BEGIN", 0, NULL, NULL, NULL, NULL, 0) == 1;
    for (int i = 0; i < nd && sent; i++) {
        char held[16];
        snprintf(held, sizeof held, "s%d", c->defer[i].stmt);
        sent =
            PQsendQueryPrepared(c->pg, held, c->defer[i].n, c->defer[i].params, NULL, NULL, 0) == 1;
    }
    for (int i = 0; i < count && sent; i++)
        sent = PQsendQueryPrepared(c->pg, name, n, params[i], NULL, NULL, 0) == 1;
    if (sent && commit)
        sent = PQsendQueryParams(c->pg, "COMMIT", 0, NULL, NULL, NULL, NULL, 0) == 1;
    if (!sent || !PQpipelineSync(c->pg)) {
        agl_code code = pg_error(c, NULL, "pipeline send", err);
        if (c->pg) PQexitPipelineMode(c->pg);
        drop_held(c);
        return code;
    }
    int first = (begin ? 1 : 0) + nd, total = first + count + (commit ? 1 : 0);
    agl_code code = AGL_OK;
    for (int i = 0; i < total && c->pg; i++) {
        PGresult *r = PQgetResult(c->pg); /* the command's result, then NULL */
        if (r) PQclear(PQgetResult(c->pg));
        ExecStatusType st = PQresultStatus(r);
        bool ok = st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK;
        if (code == AGL_OK && !ok) {
            /* the first failure names the cause; later commands report PIPELINE_ABORTED */
            char what[32];
            if (begin && i == 0)
                snprintf(what, sizeof what, "BEGIN");
            else if (i < first)
                snprintf(what, sizeof what, "s%d", c->defer[i - (begin ? 1 : 0)].stmt);
            else
                snprintf(what, sizeof what, "%s", i < first + count ? name : "COMMIT");
            code = pg_error(c, r, what, err);
        }
        int h = i - (begin ? 1 : 0); /* index among the held statements */
        if (ok && code == AGL_OK && i >= first && i < first + count)
            out[i - first] = r;
        else if (ok && code == AGL_OK && h >= 0 && i < first && c->defer[h].slot)
            *c->defer[h].slot = r;
        else
            PQclear(r);
    }
    if (c->pg) {
        PGresult *sync = PQgetResult(c->pg);
        if (PQresultStatus(sync) != PGRES_PIPELINE_SYNC && code == AGL_OK)
            code = pg_error(c, sync, "pipeline sync", err);
        PQclear(sync);
        if (c->pg) PQexitPipelineMode(c->pg);
    }
    if (code != AGL_OK) {
        for (int i = 0; i < count; i++) {
            PQclear(out[i]);
            out[i] = NULL;
        }
        for (int i = 0; i < nd; i++)
            if (c->defer[i].slot) {
                PQclear(*c->defer[i].slot);
                *c->defer[i].slot = NULL;
            }
    }
    drop_held(c);
    return code;
}

/* Paths that cannot carry held statements along send them first. */
static agl_code flush_held(db_conn *c, agl_error *err)
{
    if (!c->begin_pending && !c->ndefer) return AGL_OK;
    if (!c->pg) {
        drop_held(c);
        return agl_error_set(err, AGL_E_UNAVAILABLE, NULL, "database unavailable");
    }
    return run_pipeline(c, NULL, 0, 0, NULL, false, NULL, err);
}

agl_code db_commit(db_conn *c, agl_error *err)
{
    c->in_tx = false;
    if (!c->ndefer) {
        bool sent_begin = !c->begin_pending;
        drop_held(c);
        return sent_begin ? simple(c, "COMMIT", err) : AGL_OK;
    }
    if (!c->pg) {
        drop_held(c);
        return agl_error_set(err, AGL_E_UNAVAILABLE, NULL, "database unavailable");
    }
    double t0 = agl_monotonic();
    agl_code code = run_pipeline(c, NULL, 0, 0, NULL, true, NULL, err);
    metrics_db_query(agl_monotonic() - t0);
    return code;
}

void db_rollback(db_conn *c)
{
    c->in_tx = false;
    drop_held(c);
    if (!c->pg || PQstatus(c->pg) != CONNECTION_OK) return;
    if (PQtransactionStatus(c->pg) == PQTRANS_IDLE) return;
    PGresult *r = PQexec(c->pg, "ROLLBACK");
    PQclear(r);
}

agl_code db_exec_held(db_conn *c, db_stmt s, int n, const char *const *params, PGresult **slot,
                      agl_error *err)
{
    if (slot) *slot = NULL;
    if (!c->in_tx) {
        PGresult *r = db_exec(c, s, n, params, err);
        if (!r) return err->code;
        if (slot)
            *slot = r;
        else
            PQclear(r);
        return AGL_OK;
    }
    if (c->ndefer == DB_DEFER_MAX && flush_held(c, err) != AGL_OK) return err->code;
    struct deferred *d = &c->defer[c->ndefer++];
    d->stmt = (int)s;
    d->n = n;
    d->slot = slot;
    const char **copy = agl_arena_alloc(&c->defer_arena, sizeof *copy * (size_t)(n ? n : 1));
    for (int i = 0; i < n; i++) copy[i] = agl_arena_strdup(&c->defer_arena, params[i]);
    d->params = copy;
    return AGL_OK;
}

agl_code db_exec_deferred(db_conn *c, db_stmt s, int n, const char *const *params, agl_error *err)
{
    return db_exec_held(c, s, n, params, NULL, err);
}

static PGresult *exec_named(db_conn *c, const char *name, const char *what, int n,
                            const char *const *params, agl_error *err)
{
    if (!c->pg) {
        drop_held(c);
        agl_error_set(err, AGL_E_UNAVAILABLE, NULL, "database unavailable");
        return NULL;
    }
    double t0 = agl_monotonic();
    PGresult *r;
    if (c->begin_pending || c->ndefer) {
        agl_code code = run_pipeline(c, name, 1, n, &params, false, &r, err);
        metrics_db_query(agl_monotonic() - t0);
        return code == AGL_OK ? r : NULL;
    }
    r = PQexecPrepared(c->pg, name, n, params, NULL, NULL, 0);
    metrics_db_query(agl_monotonic() - t0);
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) return r;
    pg_error(c, r, what, err);
    PQclear(r);
    return NULL;
}

PGresult *db_exec(db_conn *c, db_stmt s, int n, const char *const *params, agl_error *err)
{
    char name[16];
    snprintf(name, sizeof name, "s%d", (int)s);
    return exec_named(c, name, name, n, params, err);
}

agl_code db_exec_many(db_conn *c, db_stmt s, int count, int n, const char *const *const *params,
                      PGresult **out, agl_error *err)
{
    for (int i = 0; i < count; i++) out[i] = NULL;
    if (!c->pg) return agl_error_set(err, AGL_E_UNAVAILABLE, NULL, "database unavailable");
    char name[16];
    snprintf(name, sizeof name, "s%d", (int)s);
    double t0 = agl_monotonic();
    agl_code code = AGL_OK;
    /* held statements travel with the first chunk */
    for (int off = 0; off < count && code == AGL_OK; off += DB_PIPELINE_MAX) {
        int k = count - off < DB_PIPELINE_MAX ? count - off : DB_PIPELINE_MAX;
        code = run_pipeline(c, name, k, n, params + off, false, out + off, err);
    }
    metrics_db_query(agl_monotonic() - t0);
    if (code != AGL_OK)
        for (int i = 0; i < count; i++) {
            PQclear(out[i]);
            out[i] = NULL;
        }
    return code;
}

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

PGresult *db_exec_dynamic(db_conn *c, const char *sql, int n, const char *const *params,
                          agl_error *err)
{
    if (!c->pg) {
        agl_error_set(err, AGL_E_UNAVAILABLE, NULL, "database unavailable");
        return NULL;
    }
    if (flush_held(c, err) != AGL_OK) return NULL;
    uint64_t h = fnv1a(sql);
    int idx = -1;
    for (int i = 0; i < c->ndyn; i++)
        if (c->dyn[i].hash == h && !strcmp(c->dyn[i].sql, sql)) idx = i;
    char name[32];
    if (idx < 0) {
        if (c->ndyn == DYN_CACHE) {
            /* Cache full (an unusual mix of filters): drop every statement and start over. */
            PGresult *r = PQexec(c->pg, "DEALLOCATE ALL");
            PQclear(r);
            for (int i = 0; i < c->ndyn; i++) free(c->dyn[i].sql);
            c->ndyn = 0;
            c->prepared = false;
            if (conn_prepare(c, err) != AGL_OK) return NULL;
        }
        idx = c->ndyn;
        snprintf(name, sizeof name, "d%d", idx);
        PGresult *r = PQprepare(c->pg, name, sql, n, NULL);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            pg_error(c, r, "prepare dynamic", err);
            PQclear(r);
            return NULL;
        }
        PQclear(r);
        c->dyn[idx].hash = h;
        c->dyn[idx].sql = agl_strdup(sql);
        c->ndyn++;
    }
    snprintf(name, sizeof name, "d%d", idx);
    return exec_named(c, name, "list query", n, params, err);
}

double db_double(const PGresult *r, int row, int col, bool *has)
{
    if (PQgetisnull(r, row, col)) {
        if (has) *has = false;
        return 0;
    }
    if (has) *has = true;
    return strtod(PQgetvalue(r, row, col), NULL);
}

long long db_int(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

agl_code db_migrate(db_pool *p, agl_error *err)
{
    db_conn *c;
    agl_code code = acquire_raw(p, &c, err);
    if (code != AGL_OK) return code;
    /* One stored at a time migrates; the others wait on the lock and then find nothing to do. */
    code = simple(c,
                  "SELECT pg_advisory_lock(4747);"
                  "CREATE TABLE IF NOT EXISTS agl_schema_version ("
                  " version integer PRIMARY KEY, name text NOT NULL,"
                  " applied_at timestamptz NOT NULL DEFAULT now())",
                  err);
    for (int i = 0; code == AGL_OK && agl_migrations[i][0]; i++) {
        const char *name = agl_migrations[i][0];
        int version = atoi(name);
        char vbuf[16];
        snprintf(vbuf, sizeof vbuf, "%d", version);
        const char *params[2] = {vbuf, name};
        PGresult *r = PQexecParams(c->pg, "SELECT 1 FROM agl_schema_version WHERE version = $1", 1,
                                   NULL, params, NULL, NULL, 0);
        bool done = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0;
        if (PQresultStatus(r) != PGRES_TUPLES_OK) code = pg_error(c, r, "migrate", err);
        PQclear(r);
        if (code != AGL_OK || done) continue;
        agl_info("applying migration %s", name);
        code = simple(c, "BEGIN", err);
        if (code == AGL_OK) code = simple(c, agl_migrations[i][1], err);
        if (code == AGL_OK) {
            r = PQexecParams(c->pg,
                             "INSERT INTO agl_schema_version (version, name) VALUES ($1, $2)", 2,
                             NULL, params, NULL, NULL, 0);
            if (PQresultStatus(r) != PGRES_COMMAND_OK) code = pg_error(c, r, "migrate", err);
            PQclear(r);
        }
        if (code == AGL_OK)
            code = simple(c, "COMMIT", err);
        else
            db_rollback(c);
        if (code != AGL_OK) agl_error("migration %s failed: %s", name, err->msg);
    }
    agl_error tmp;
    simple(c, "SELECT pg_advisory_unlock(4747)", &tmp);
    /* Statements were prepared before the tables existed: prepare again. */
    conn_reset(c);
    db_release(p, c);
    return code;
}
