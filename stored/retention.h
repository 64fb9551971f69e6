/* retention — deletes the spans of finished rollouts older than a configured age, per mode
 * (--retain-spans, --retain-spans-{train,val,test}), in small batches on its own database
 * connection and thread, skipping rows that requests hold locked, so request handling never
 * waits on it. Rollouts, attempts and statistics stay (total_spans counts retired spans). */
#ifndef STORED_RETENTION_H
#define STORED_RETENTION_H

#include "agl_err.h"
#include "db.h"

/* Parses "90", "90s", "15m", "12h", "7d" (also fractional: "1.5h") into seconds. "" or "off" →
 * 0 (keep forever). */
agl_code retention_parse_duration(const char *text, double *seconds, agl_error *err);

typedef struct retention_opts {
    double all;      /* seconds; 0 = keep */
    double mode[3];  /* train, val, test; < 0 = as `all` */
    double interval; /* seconds between sweeps */
    int batch;       /* spans per DELETE */
} retention_opts;

typedef struct retention retention;
/* Starts the sweeper thread; NULL when nothing is to be retired. */
retention *retention_start(db_pool *pool, const retention_opts *o);
void retention_stop(retention *r);
/* One full sweep on conn (used by the thread; exposed for tests). Returns spans deleted or -1. */
long retention_sweep(PGconn *conn, const retention_opts *o, double now, const volatile int *stop);

#endif
