-- 0005_span_doc_compress: span documents are compressed in the row when that lets rows share a
-- page, and with lz4 again.
-- * 0003 changed the column's type, which reset its compression to the server default (pglz):
--   0002's lz4 setting was lost. Set it again (servers built without lz4 keep pglz).
-- * Rows over toast_tuple_target get their document compressed inline; STORAGE MAIN keeps the
--   compressed (or incompressible) document in the row and moves it to the TOAST table only when
--   the row would not fit a page at all, so 0003's one-row-in-one-place layout stays. With the
--   target at 4080 bytes a row that compresses below it shares its page: trace text that
--   compresses (prompts, completions, JSON) takes about half the table and WAL bytes it took
--   (docs/performance.md), and incompressible documents are stored as before.
-- Metadata only: existing rows stay as they are, new rows follow the new settings.
DO $$
BEGIN
    ALTER TABLE spans ALTER COLUMN doc SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported OR invalid_parameter_value THEN
    RAISE NOTICE 'lz4 not available, span documents stay pglz-compressed';
END
$$;
ALTER TABLE spans ALTER COLUMN doc SET STORAGE MAIN;
-- PostgreSQL works on EXTENDED columns before MAIN ones: with these short text columns left
-- EXTENDED, every row over the target first had its trace id (33 bytes) moved to the TOAST
-- table — an extra heap and index insert per span — before the document was even tried.
ALTER TABLE spans ALTER COLUMN rollout_id SET STORAGE MAIN, ALTER COLUMN attempt_id SET STORAGE MAIN,
    ALTER COLUMN span_id SET STORAGE MAIN, ALTER COLUMN trace_id SET STORAGE MAIN,
    ALTER COLUMN parent_id SET STORAGE MAIN, ALTER COLUMN name SET STORAGE MAIN;
ALTER TABLE spans SET (toast_tuple_target = 4080);
