/* db_sql — every fixed SQL statement of stored, by id. Prepared once per connection.
 * Lock order everywhere: rollout row, then attempt row, then worker row. */
#include "db.h"

#define ROLLOUT_WITH_LATEST                                                                        \
    "SELECT " DB_ROLLOUT_COLS ", " DB_ATTEMPT_COLS " FROM rollouts r LEFT JOIN attempts a"         \
    " ON a.rollout_id = r.rollout_id AND a.sequence_id = r.num_attempts"                           \
    " WHERE r.rollout_id = $1"

const char *const db_sql[SQL__COUNT] = {
    [SQL_ROLLOUT_INSERT] =
        "INSERT INTO rollouts (rollout_id, input, start_time, mode, resources_id, status,"
        " timeout_seconds, unresponsive_seconds, max_attempts, retry_condition, metadata,"
        " queue_pos) VALUES ($1, $2, $3, $4, CASE WHEN $13::boolean THEN (SELECT resources_id"
        " FROM resources ORDER BY write_seq DESC LIMIT 1) ELSE $5 END, $6, $7, $8, $9, $10, $11,"
        " CASE WHEN $12::boolean THEN nextval('queue_pos_seq') END) RETURNING resources_id",
    [SQL_ROLLOUT_GET] = ROLLOUT_WITH_LATEST,
    [SQL_ROLLOUT_GET_FOR_UPDATE] = ROLLOUT_WITH_LATEST " FOR UPDATE OF r",
    [SQL_ROLLOUT_UPDATE] =
        "UPDATE rollouts SET input = $2, mode = $3, resources_id = $4, status = $5,"
        " end_time = $6, timeout_seconds = $7, unresponsive_seconds = $8, max_attempts = $9,"
        " retry_condition = $10, metadata = $11, queue_pos = CASE WHEN $12::boolean AND"
        " queue_pos IS NULL THEN nextval('queue_pos_seq') ELSE queue_pos END"
        " WHERE rollout_id = $1",
    /* Attempt n+1 in one round trip: bump the rollout's counter (it becomes preparing) and
     * insert the attempt with that sequence id. $5: the claim comes from the queue (dequeue)
     * and so leaves it. */
    [SQL_ROLLOUT_ADD_ATTEMPT] =
        "WITH r AS (UPDATE rollouts SET num_attempts = num_attempts + 1, status = 'preparing',"
        " queue_pos = CASE WHEN $5::boolean THEN NULL ELSE queue_pos END"
        " WHERE rollout_id = $1 RETURNING num_attempts)"
        " INSERT INTO attempts (rollout_id, attempt_id, sequence_id, start_time, status,"
        " worker_id) SELECT $1, $2, r.num_attempts, $3, 'preparing', $4 FROM r"
        " RETURNING sequence_id",
    [SQL_ROLLOUT_SET_RUNNING_IF_LATEST] =
        "UPDATE rollouts SET status = 'running' WHERE rollout_id = $1 AND num_attempts = $2"
        " AND status IN ('preparing', 'requeuing')",
    /* Span batches lock their rollout first, so they order after E13's rollout lock, and
     * check its attempt exists (no foreign key: attempts are never deleted,
     * migrations/0004_spans_no_fk.sql). */
    [SQL_SPAN_TARGET_LOCK] = "SELECT r.num_attempts, (SELECT count(*) FROM attempts a WHERE"
                             " a.rollout_id = $1 AND a.attempt_id = $2) FROM rollouts r"
                             " WHERE r.rollout_id = $1 FOR NO KEY UPDATE OF r",
    [SQL_QUEUE_PICK] = "SELECT " DB_ROLLOUT_COLS " FROM rollouts r WHERE queue_pos IS NOT NULL"
                       " ORDER BY queue_pos LIMIT $1 FOR UPDATE SKIP LOCKED",
    [SQL_QUEUE_DROP] = "UPDATE rollouts SET queue_pos = NULL WHERE rollout_id = $1",
    [SQL_ATTEMPT_GET] = "SELECT " DB_ATTEMPT_COLS " FROM attempts a WHERE a.rollout_id = $1"
                        " AND a.attempt_id = $2 FOR UPDATE",
    [SQL_ATTEMPT_GET_LATEST] =
        "SELECT " DB_ATTEMPT_COLS " FROM attempts a JOIN rollouts r ON r.rollout_id ="
        " a.rollout_id AND a.sequence_id = r.num_attempts WHERE a.rollout_id = $1",
    [SQL_ATTEMPT_UPDATE] =
        "UPDATE attempts SET status = $3, end_time = $4, worker_id = $5,"
        " last_heartbeat_time = $6, metadata = $7 WHERE rollout_id = $1 AND attempt_id = $2",
    [SQL_ATTEMPT_HEARTBEAT] =
        "UPDATE attempts SET last_heartbeat_time = $3, status = CASE WHEN status IN"
        " ('preparing', 'unresponsive') THEN 'running' ELSE status END"
        " WHERE rollout_id = $1 AND attempt_id = $2 RETURNING sequence_id",
    [SQL_WORKER_GET] = "SELECT " DB_WORKER_COLS " FROM workers WHERE worker_id = $1",
    [SQL_WORKER_HEARTBEAT] =
        "INSERT INTO workers AS w (worker_id, heartbeat_stats, last_heartbeat_time)"
        " VALUES ($1, $2, $3) ON CONFLICT (worker_id) DO UPDATE SET last_heartbeat_time ="
        " EXCLUDED.last_heartbeat_time, heartbeat_stats = CASE WHEN $4::boolean THEN"
        " EXCLUDED.heartbeat_stats ELSE w.heartbeat_stats END RETURNING " DB_WORKER_COLS,
    /* $2 status; busy stamps last_busy_time, idle/unknown stamp last_idle_time (§4.7).
     * $6: also stamp last_dequeue_time. */
    [SQL_WORKER_SYNC] =
        "INSERT INTO workers AS w (worker_id, status, last_busy_time, last_idle_time,"
        " current_rollout_id, current_attempt_id, last_dequeue_time) VALUES ($1, $2::text,"
        " CASE WHEN $2::text = 'busy' THEN $3::float8 END,"
        " CASE WHEN $2::text <> 'busy' THEN $3::float8 END, $4, $5,"
        " CASE WHEN $6::boolean THEN $3::float8 END)"
        " ON CONFLICT (worker_id) DO UPDATE SET status = $2::text,"
        " last_busy_time = CASE WHEN $2::text = 'busy' THEN $3::float8 ELSE w.last_busy_time END,"
        " last_idle_time = CASE WHEN $2::text <> 'busy' THEN $3::float8 ELSE w.last_idle_time"
        " END, current_rollout_id = $4, current_attempt_id = $5,"
        " last_dequeue_time = CASE WHEN $6::boolean THEN $3::float8 ELSE w.last_dequeue_time END",
    /* Dequeue that claimed nothing: idle, but current_* ids stay (store-api.md §4.7). */
    [SQL_WORKER_DEQUEUE_IDLE] =
        "INSERT INTO workers AS w (worker_id, status, last_idle_time, last_dequeue_time)"
        " VALUES ($1, 'idle', $2, $2) ON CONFLICT (worker_id) DO UPDATE SET"
        " last_dequeue_time = $2, last_idle_time = CASE WHEN w.status <> 'idle' THEN $2"
        " ELSE w.last_idle_time END, status = 'idle'",
    [SQL_RESOURCES_INSERT] =
        "INSERT INTO resources (resources_id, create_time, update_time, version, resources,"
        " write_seq) VALUES ($1, $2, $2, 1, $3, nextval('resources_write_seq'))"
        " RETURNING " DB_RESOURCES_COLS,
    [SQL_RESOURCES_UPSERT] =
        "INSERT INTO resources AS x (resources_id, create_time, update_time, version,"
        " resources, write_seq) VALUES ($1, $2, $2, 1, $3, nextval('resources_write_seq'))"
        " ON CONFLICT (resources_id) DO UPDATE SET resources = EXCLUDED.resources,"
        " update_time = EXCLUDED.update_time, version = x.version + 1,"
        " write_seq = EXCLUDED.write_seq RETURNING " DB_RESOURCES_COLS,
    [SQL_RESOURCES_GET] = "SELECT " DB_RESOURCES_COLS " FROM resources WHERE resources_id = $1",
    [SQL_RESOURCES_LATEST] =
        "SELECT " DB_RESOURCES_COLS " FROM resources ORDER BY write_seq DESC LIMIT 1",
    [SQL_SPAN_COUNTER_RAISE] =
        "INSERT INTO span_counters AS c VALUES ($1, $2) ON CONFLICT (rollout_id) DO UPDATE"
        " SET value = GREATEST(c.value, EXCLUDED.value)",
    /* Allocates $2 consecutive ids; returns the last. */
    [SQL_SPAN_COUNTER_NEXT] =
        "INSERT INTO span_counters AS c VALUES ($1, $2) ON CONFLICT (rollout_id) DO UPDATE"
        " SET value = c.value + EXCLUDED.value RETURNING value",
    /* POST /v1/agl/spans/next, alone in an autocommit transaction that commits without waiting
     * for the WAL flush (set_config(..., true) lasts until that commit; the join makes it run).
     * Safe because an id only matters once a span carries it: every span insert raises the
     * counter to at least its id (GREATEST above) in a durable commit, and WAL is flushed in
     * order, so a durable span implies a durable counter. Only after a crash within the WAL
     * writer's delay can an id that no stored span uses yet be handed out twice. Saves one
     * fsync wait on every recorded LLM call (docs/operations.md, "Durability"). */
    [SQL_SPAN_SEQ_NEXT] =
        "INSERT INTO span_counters AS c SELECT $1, 1 FROM (SELECT set_config("
        "'synchronous_commit', 'off', true)) AS g ON CONFLICT (rollout_id) DO UPDATE"
        " SET value = c.value + 1 RETURNING value",
    /* The batch form (an agl extension: a JSON array body), same commit rule. $1: the request's
     * rollout ids in order (repeats allowed). Each rollout's counter rises by its count, in
     * rollout-id order so two batches lock counters in the same order; one id per element comes
     * back in request order, ids of one rollout increasing with it. */
    [SQL_SPAN_SEQ_NEXT_MANY] =
        "WITH q AS (SELECT r, ord FROM unnest($1::text[]) WITH ORDINALITY AS u(r, ord)),"
        " c AS (INSERT INTO span_counters AS c SELECT r, count(*) FROM q,"
        " (SELECT set_config('synchronous_commit', 'off', true)) AS g GROUP BY r ORDER BY r"
        " ON CONFLICT (rollout_id) DO UPDATE SET value = c.value + EXCLUDED.value"
        " RETURNING rollout_id, value)"
        " SELECT c.value - count(*) OVER w + row_number() OVER (w ORDER BY q.ord)"
        " FROM q JOIN c ON c.rollout_id = q.r WINDOW w AS (PARTITION BY q.r) ORDER BY q.ord",
    [SQL_SPAN_INSERT] =
        "INSERT INTO spans (rollout_id, attempt_id, span_id, sequence_id, trace_id, parent_id,"
        " name, start_time, end_time, doc) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        " ON CONFLICT DO NOTHING RETURNING pos",
    /* POST /v1/agl/spans in one autocommit statement (store-api.md §3 E24, §4.6): lock the
     * rollout (the same lock order as E13: rollout, then attempt), raise its sequence counter,
     * insert unless duplicate, and if a row went in, beat the attempt's heartbeat and promote a
     * preparing/requeuing rollout whose latest attempt it is. With an unknown attempt (t empty)
     * nothing is written. Returns (rollout found, span inserted, promoted, attempt found). */
    [SQL_SPAN_ADD_ONE] =
        "WITH r AS (SELECT num_attempts FROM rollouts WHERE rollout_id = $1 FOR NO KEY UPDATE),"
        " t AS (SELECT 1 FROM attempts WHERE rollout_id = $1 AND attempt_id = $2),"
        " c AS (INSERT INTO span_counters AS c (rollout_id, value) SELECT $1, $4::bigint FROM r, t"
        " ON CONFLICT (rollout_id) DO UPDATE SET value = GREATEST(c.value, EXCLUDED.value)),"
        " s AS (INSERT INTO spans (rollout_id, attempt_id, span_id, sequence_id, trace_id,"
        " parent_id, name, start_time, end_time, doc) SELECT $1, $2, $3, $4::bigint, $5, $6, $7,"
        " $8::float8, $9::float8, $10 FROM r, t ON CONFLICT DO NOTHING RETURNING 1),"
        " a AS (UPDATE attempts SET last_heartbeat_time = $11::float8, status = CASE WHEN status"
        " IN ('preparing', 'unresponsive') THEN 'running' ELSE status END WHERE rollout_id = $1"
        " AND attempt_id = $2 AND EXISTS (SELECT 1 FROM s) RETURNING sequence_id),"
        " u AS (UPDATE rollouts x SET status = 'running' FROM a, r WHERE x.rollout_id = $1"
        " AND a.sequence_id = r.num_attempts AND x.status IN ('preparing', 'requeuing')"
        " RETURNING 1)"
        " SELECT (SELECT count(*) FROM r), (SELECT count(*) FROM s), (SELECT count(*) FROM u),"
        " (SELECT count(*) FROM t)",
    [SQL_STATISTICS] =
        "SELECT (SELECT count(*) FROM rollouts), (SELECT count(*) FROM attempts),"
        " (SELECT count(*) FROM spans) + COALESCE((SELECT value::bigint FROM store_info"
        " WHERE key = 'spans_retired'), 0), (SELECT count(*) FROM resources),"
        " (SELECT count(*) FROM workers), pg_database_size(current_database())",
    /* Latest attempts of active rollouts past their timeout / silence (store-api.md §4.5). */
    [SQL_SCAN_CANDIDATES] =
        "SELECT r.rollout_id, a.attempt_id, CASE WHEN r.timeout_seconds IS NOT NULL AND"
        " $1::float8 - a.start_time > r.timeout_seconds THEN 'timeout' ELSE 'unresponsive' END"
        " FROM rollouts r JOIN attempts a ON a.rollout_id = r.rollout_id"
        " AND a.sequence_id = r.num_attempts WHERE r.status IN ('preparing', 'running') AND ("
        " (r.timeout_seconds IS NOT NULL AND $1::float8 - a.start_time > r.timeout_seconds)"
        " OR (r.unresponsive_seconds IS NOT NULL AND a.last_heartbeat_time IS NOT NULL AND"
        " a.last_heartbeat_time <> 0 AND"
        " $1::float8 - a.last_heartbeat_time > r.unresponsive_seconds)"
        " OR (r.unresponsive_seconds IS NOT NULL AND a.last_heartbeat_time IS NULL AND"
        " $1::float8 - a.start_time > r.unresponsive_seconds))",
    [SQL_WAIT_STATUS] =
        "SELECT " DB_ROLLOUT_COLS " FROM rollouts r WHERE r.rollout_id = ANY($1::text[])",
    [SQL_NOTIFY_DONE] = "SELECT pg_notify('agl_rollout_done', $1)",
};
