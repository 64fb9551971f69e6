/* metrics — Prometheus metrics of stored (GET /metrics, text format 0.0.4): HTTP requests by
 * route/method/status with latency histograms, spans ingested, database query latency and pool
 * use (process-local counters), and store gauges read from the database at scrape time
 * (rollouts/attempts by status, queue depth, workers), plus process memory and CPU. */
#ifndef STORED_METRICS_H
#define STORED_METRICS_H

#include "http.h"

/* One finished request. route is the route table's pattern ("/v1/agl/rollouts/{}"), NULL for
 * an unknown path (labelled "unmatched"); it must be a string with static lifetime. */
void metrics_request(const char *route, const char *method, int status, double seconds);
/* Spans newly stored (duplicates excluded). */
void metrics_spans_ingested(long n);
/* One database round trip. */
void metrics_db_query(double seconds);
/* Spans deleted by retention. */
void metrics_spans_retired(long n);

/* GET /metrics */
agl_code metrics_h_metrics(agl_req *r, agl_error *err);

#endif
