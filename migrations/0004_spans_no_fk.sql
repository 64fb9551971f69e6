-- 0004_spans_no_fk: the foreign key from spans to attempts ran a trigger and an index probe of
-- attempts for every span row (512 per OTLP batch, ~15% of ingestion throughput). Attempt rows
-- are never deleted or re-keyed, so checking once per request that the attempt exists — under
-- the rollout's row lock that every span insert already takes — keeps the same guarantee.
-- stored/db_sql.c: SQL_SPAN_TARGET_LOCK (batches) and SQL_SPAN_ADD_ONE (single spans).
ALTER TABLE spans DROP CONSTRAINT IF EXISTS spans_rollout_id_attempt_id_fkey;
