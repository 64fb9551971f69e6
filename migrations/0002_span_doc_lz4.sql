-- 0002_span_doc_lz4: span documents are a few KB of JSON each; PostgreSQL's default pglz
-- compression cost a fifth of the server's CPU on OTLP ingestion (docs/performance.md).
-- lz4 is several times cheaper. Servers built without lz4 keep pglz.
DO $$
BEGIN
    ALTER TABLE spans ALTER COLUMN doc SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported OR invalid_parameter_value THEN
    RAISE NOTICE 'lz4 not available, span documents stay pglz-compressed';
END
$$;
