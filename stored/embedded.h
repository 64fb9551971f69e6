/* embedded — the private PostgreSQL cluster stored runs when no --db is given: created by
 * initdb on first start under <data-dir>/pg, listening only on a unix socket, stopped on exit.
 * PostgreSQL refuses to run as root, so under root the cluster runs as an unprivileged user. */
#ifndef STORED_EMBEDDED_H
#define STORED_EMBEDDED_H

#include "agl_err.h"

typedef struct embedded_pg embedded_pg;

/* pg_bin: directory of initdb/pg_ctl, or NULL to search (pg_config, /usr/lib/postgresql/N).
 * pg_user: account for the cluster when running as root (NULL: postgres, else nobody). */
agl_code embedded_pg_start(const char *data_dir, const char *pg_bin, const char *pg_user,
                           embedded_pg **out, agl_error *err);
/* libpq connection string of the running cluster. */
const char *embedded_pg_conninfo(const embedded_pg *e);
void embedded_pg_stop(embedded_pg *e);

#endif
