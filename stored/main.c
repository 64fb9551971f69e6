/* stored — the LightningStore HTTP API on PostgreSQL. main() reads as the table of contents:
 * parse config, open the database (embedded or --db), migrate, serve, drain on SIGTERM. */
#include "agl_config.h"
#include "agl_log.h"
#include "agl_util.h"
#include "embedded.h"
#include "http.h"
#include "retention.h"
#include "stored.h"

#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const log_formats[] = {"text", "json", NULL};
static const char *const log_levels[] = {"debug", "info", "warn", "error", NULL};

int main(int argc, char **argv)
{
    /* Large buffers (OTLP bodies of megabytes, their decoding arenas) are mmapped and go back
     * to the system when freed. Left to itself glibc raises this threshold to the largest
     * block freed so far, after which such buffers come from the per-thread heaps and stay
     * resident: RSS grew by ~17 MB per round of OTLP load in the 10-minute soak
     * (docs/performance.md, "Memory soak"). */
    mallopt(M_MMAP_THRESHOLD, 256 * 1024);
    const char *listen = "127.0.0.1:4747", *db_url = NULL, *data_dir = "./var/stored";
    const char *log_format = "text", *log_level = "info", *pg_bin = NULL, *pg_user = NULL;
    const char *cors = NULL;
    long threads = 0, db_pool = 32, max_body = 32L << 20, conn_timeout = 60;
    double scan_interval = 10;
    const char *retain = NULL, *retain_mode[3] = {NULL, NULL, NULL};
    double retain_interval = 60;
    long retain_batch = 1000;
    agl_option opts[] = {
        {"listen", "AGL_STORE_LISTEN", AGL_OPT_STR, &listen, "HOST:PORT", "address to serve on",
         NULL},
        {"db", "AGL_STORE_DB", AGL_OPT_STR, &db_url, "URL",
         "PostgreSQL URL (postgresql://...); without it stored runs its own private cluster", NULL},
        {"data-dir", "AGL_STORE_DATA_DIR", AGL_OPT_STR, &data_dir, "DIR",
         "where the embedded cluster lives (ignored with --db)", NULL},
        {"threads", "AGL_STORE_THREADS", AGL_OPT_INT, &threads, "N",
         "HTTP worker threads; 0 = one thread per connection", NULL},
        {"db-pool", "AGL_STORE_DB_POOL", AGL_OPT_INT, &db_pool, "N", "database connections", NULL},
        {"max-body", "AGL_STORE_MAX_BODY", AGL_OPT_INT, &max_body, "BYTES",
         "largest request body accepted (413 beyond)", NULL},
        {"scan-interval", "AGL_STORE_SCAN_INTERVAL", AGL_OPT_DOUBLE, &scan_interval, "SECONDS",
         "period of the timeout/unresponsive scan; 0 = before every request that scans", NULL},
        {"idle-timeout", "AGL_STORE_IDLE_TIMEOUT", AGL_OPT_INT, &conn_timeout, "SECONDS",
         "close keep-alive connections idle this long", NULL},
        {"cors-origin", "AGL_STORE_CORS_ORIGIN", AGL_OPT_STR, &cors, "ORIGINS",
         "allow browser calls from these origins (comma-separated, * = any)", NULL},
        {"pg-bin", "AGL_STORE_PG_BIN", AGL_OPT_STR, &pg_bin, "DIR",
         "PostgreSQL binaries for the embedded cluster (default: searched)", NULL},
        {"pg-user", "AGL_STORE_PG_USER", AGL_OPT_STR, &pg_user, "USER",
         "account of the embedded cluster when stored runs as root (default: postgres or nobody)",
         NULL},
        {"retain-spans", "AGL_STORE_RETAIN_SPANS", AGL_OPT_STR, &retain, "DURATION",
         "delete spans of rollouts finished longer ago than this (90s, 15m, 12h, 7d; off)", NULL},
        {"retain-spans-train", "AGL_STORE_RETAIN_SPANS_TRAIN", AGL_OPT_STR, &retain_mode[0],
         "DURATION", "--retain-spans for mode=train rollouts", NULL},
        {"retain-spans-val", "AGL_STORE_RETAIN_SPANS_VAL", AGL_OPT_STR, &retain_mode[1], "DURATION",
         "--retain-spans for mode=val rollouts", NULL},
        {"retain-spans-test", "AGL_STORE_RETAIN_SPANS_TEST", AGL_OPT_STR, &retain_mode[2],
         "DURATION", "--retain-spans for mode=test rollouts", NULL},
        {"retention-interval", "AGL_STORE_RETENTION_INTERVAL", AGL_OPT_DOUBLE, &retain_interval,
         "SECONDS", "period of the span retention sweep", NULL},
        {"retention-batch", "AGL_STORE_RETENTION_BATCH", AGL_OPT_INT, &retain_batch, "N",
         "spans deleted per statement by the retention sweep", NULL},
        {"log-format", "AGL_STORE_LOG_FORMAT", AGL_OPT_STR, &log_format, "text|json",
         "log line format", log_formats},
        {"log-level", "AGL_STORE_LOG_LEVEL", AGL_OPT_STR, &log_level, "LEVEL",
         "debug, info, warn or error", log_levels},
        {NULL, NULL, 0, NULL, NULL, NULL, NULL},
    };
    agl_cli cli = {
        .prog = "stored",
        .usage = "[options]",
        .summary = "The agl LightningStore: the agentlightning v0.3 store HTTP API (/v1/agl/*)\n"
                   "and OTLP trace ingestion (/v1/traces), backed by PostgreSQL.",
        .epilog = "Every option can also be set through the environment variable shown.\n"
                  "SIGTERM or SIGINT: finish in-flight requests and exit 0.",
        .opts = opts,
    };
    int rc = agl_config_parse(&cli, argc, argv, 1, NULL, NULL);
    if (rc) return rc == 1 ? 0 : 2;
    agl_log_setup("stored", log_format, log_level);
    if (db_pool < 1 || max_body < 1 || scan_interval < 0 || threads < 0) {
        fprintf(stderr, "stored: --db-pool and --max-body must be positive, --threads and "
                        "--scan-interval not negative\n");
        return 2;
    }

    retention_opts ro = {.interval = retain_interval, .batch = (int)retain_batch};
    {
        agl_error perr;
        bool bad = retention_parse_duration(retain, &ro.all, &perr) != AGL_OK;
        for (int m = 0; m < 3 && !bad; m++) {
            ro.mode[m] = -1;
            if (retain_mode[m]) bad = retention_parse_duration(retain_mode[m], &ro.mode[m], &perr);
        }
        if (bad || retain_interval <= 0 || retain_batch < 1 || retain_batch > 1000000) {
            fprintf(stderr, "stored: %s\n",
                    bad ? perr.msg : "--retention-interval and --retention-batch must be positive");
            return 2;
        }
    }

    /* Signals are taken by sigwait in main; every thread inherits the blocked mask. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    agl_error err;
    agl_error_clear(&err);
    embedded_pg *epg = NULL;
    const char *conninfo = db_url;
    if (!conninfo) {
        if (embedded_pg_start(data_dir, pg_bin, pg_user, &epg, &err) != AGL_OK) {
            agl_error("cannot start the embedded database: %s", err.msg);
            return 1;
        }
        conninfo = embedded_pg_conninfo(epg);
    }
    static stored_ctx ctx;
    ctx.started = agl_now();
    ctx.scan_interval = scan_interval;
    pthread_mutex_init(&ctx.scan_mu, NULL);
    pthread_mutex_init(&ctx.done_mu, NULL);
    pthread_cond_init(&ctx.done_cv, NULL);
    int status = 1;
    ctx.pool = db_pool_open(conninfo, (int)db_pool, &err);
    if (!ctx.pool) {
        agl_error("cannot connect to the database: %s", err.msg);
        goto out;
    }
    if (db_migrate(ctx.pool, &err) != AGL_OK) {
        agl_error("cannot migrate the database: %s", err.msg);
        goto out;
    }
    stored_background_start(&ctx);
    stored_http_opts ho = {listen, threads, max_body, conn_timeout, cors};
    stored_http *http = stored_http_start(&ctx, &ho, &err);
    if (!http) {
        agl_error("%s", err.msg);
        stored_background_stop(&ctx);
        goto out;
    }
    retention *ret = retention_start(ctx.pool, &ro);
    agl_info("serving on %s (database %s)", listen, epg ? "embedded" : "external");
    agl_sd_notify("READY=1");
    int sig = 0;
    sigwait(&sigs, &sig);
    agl_sd_notify("STOPPING=1");
    agl_info("received %s, draining", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    ctx.stopping = true;
    stored_done_broadcast(&ctx); /* release wait_for_rollouts waiters */
    stored_http_stop(http);
    retention_stop(ret);
    stored_background_stop(&ctx);
    status = 0;
out:
    db_pool_close(ctx.pool);
    embedded_pg_stop(epg);
    agl_info("stopped");
    return status;
}
