-- 0003_span_doc_inline: a span document is written once by stored and read back whole, never
-- queried inside PostgreSQL, so
-- * it is stored as text: the json type re-parsed every document on insert to validate what
--   stored had just serialised itself. PostgreSQL rewrites the table for this change, once:
--   on an existing store the upgrade takes time in proportion to its spans (docs/operations.md);
-- * rows up to a page stay in the heap: past the default ~2 KB target, PostgreSQL moved each
--   document into the TOAST table (a second heap insert and an index insert per span), which
--   was the largest single cost of OTLP ingestion (docs/performance.md). Larger documents are
--   still compressed first and moved out of line only if they do not fit.
ALTER TABLE spans ALTER COLUMN doc TYPE text;
ALTER TABLE spans SET (toast_tuple_target = 8160);
