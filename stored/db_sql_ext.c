/* db_sql_ext — SQL text of the extensions; see db_sql_ext.h. */
#include "db_sql_ext.h"

const char *const db_sql_adapter_spans =
    "SELECT k.ord, s.doc FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS k(rid, aid, ord)"
    " JOIN spans s ON s.rollout_id = k.rid AND s.attempt_id = k.aid"
    " ORDER BY k.ord, s.sequence_id, s.pos";

const char *const db_sql_adapter_latest =
    "SELECT r.rollout_id, r.status, r.mode, r.resources_id, a.attempt_id FROM rollouts r"
    " LEFT JOIN attempts a ON a.rollout_id = r.rollout_id AND a.sequence_id = r.num_attempts"
    " WHERE r.rollout_id = $1";

const char *const db_sql_metrics_gauges =
    "SELECT 'rollouts', status, count(*) FROM rollouts GROUP BY status"
    " UNION ALL SELECT 'attempts', status, count(*) FROM attempts GROUP BY status"
    " UNION ALL SELECT 'queue', '', count(*) FROM rollouts WHERE queue_pos IS NOT NULL"
    " UNION ALL SELECT 'spans', '', count(*) FROM spans"
    " UNION ALL SELECT 'workers', status, count(*) FROM workers GROUP BY status"
    " UNION ALL SELECT 'db_bytes', '', pg_database_size(current_database())";

/* SKIP LOCKED: rows a request is writing are left for the next batch, so retention never
 * waits on (or blocks) request handling. */
const char *const db_sql_retention_delete =
    "WITH victims AS (SELECT s.ctid AS c FROM spans s JOIN rollouts r ON r.rollout_id ="
    " s.rollout_id WHERE r.status IN ('succeeded', 'failed', 'cancelled')"
    " AND r.end_time IS NOT NULL AND r.end_time < $1::float8"
    " AND ($2::text[] IS NULL OR COALESCE(r.mode, '') = ANY($2::text[]))"
    " AND NOT (COALESCE(r.mode, '') = ANY($3::text[]))"
    " LIMIT $4::int FOR UPDATE OF s SKIP LOCKED),"
    " gone AS (DELETE FROM spans WHERE ctid IN (SELECT c FROM victims) RETURNING 1),"
    " n AS (SELECT count(*) AS c FROM gone),"
    /* statistics.total_spans keeps counting what was retired */
    " bump AS (INSERT INTO store_info (key, value) SELECT 'spans_retired', c::text FROM n"
    " WHERE c > 0 ON CONFLICT (key) DO UPDATE SET value ="
    " (store_info.value::bigint + EXCLUDED.value::bigint)::text)"
    " SELECT c FROM n";
