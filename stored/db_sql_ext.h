/* db_sql_ext — the SQL of the extensions (adapters, metrics, retention). They run through
 * db_exec_dynamic, which prepares each once per connection, so the fixed statement table of
 * db_sql.c stays the reference API's. */
#ifndef STORED_DB_SQL_EXT_H
#define STORED_DB_SQL_EXT_H

/* $1 rollout ids, $2 their attempt ids (text[] of equal length) → (ord, doc), ord 1-based,
 * spans in store order (sequence_id, then insertion) within each rollout. */
extern const char *const db_sql_adapter_spans;
/* $1 rollout id → attempt id of its latest attempt, if any, and whether the rollout exists. */
extern const char *const db_sql_adapter_latest;

/* Gauges for /metrics: (kind, label, count) rows. */
extern const char *const db_sql_metrics_gauges;

/* Retention: $1 cutoff (end_time before it), $2 modes (text[]; NULL = every mode, '' in the
 * array = rollouts without mode), $3 excluded modes (text[], may be empty), $4 batch size.
 * Deletes one batch of spans of finished rollouts, adds it to store_info 'spans_retired'
 * (statistics.total_spans), returns the number deleted. */
extern const char *const db_sql_retention_delete;

#endif
