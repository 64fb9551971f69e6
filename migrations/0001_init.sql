-- 0001_init: the LightningStore schema.
-- Free-form JSON (inputs, metadata, stats, span documents) is stored as `json`, which keeps
-- the client's text verbatim (key order, number spelling); the store never queries inside it.
-- Every table has a `pos` column: the storage order the API promises when no sort is asked.

CREATE TABLE rollouts (
    pos            bigserial        NOT NULL UNIQUE,
    rollout_id     text             PRIMARY KEY,
    input          json             NOT NULL,
    start_time     double precision NOT NULL,
    end_time       double precision,
    mode           text,
    resources_id   text,
    status         text             NOT NULL,
    -- RolloutConfig, one column per field (the store reads them for timeouts and retries)
    timeout_seconds      double precision,
    unresponsive_seconds double precision,
    max_attempts   bigint           NOT NULL DEFAULT 1,
    retry_condition json            NOT NULL DEFAULT '[]',
    metadata       json,
    num_attempts   integer          NOT NULL DEFAULT 0,
    -- position in the FIFO queue; NULL = not queued (store-api.md §4.4)
    queue_pos      bigint
);
CREATE SEQUENCE queue_pos_seq;
CREATE INDEX rollouts_queue ON rollouts (queue_pos) WHERE queue_pos IS NOT NULL;
CREATE INDEX rollouts_active ON rollouts (status) WHERE status IN ('preparing', 'running');

CREATE TABLE attempts (
    pos                 bigserial        NOT NULL UNIQUE,
    rollout_id          text             NOT NULL REFERENCES rollouts (rollout_id),
    attempt_id          text             NOT NULL,
    sequence_id         integer          NOT NULL,
    start_time          double precision NOT NULL,
    end_time            double precision,
    status              text             NOT NULL,
    worker_id           text,
    last_heartbeat_time double precision,
    metadata            json,
    PRIMARY KEY (rollout_id, attempt_id),
    UNIQUE (rollout_id, sequence_id)
);

CREATE TABLE workers (
    pos                 bigserial        NOT NULL UNIQUE,
    worker_id           text             PRIMARY KEY,
    status              text             NOT NULL DEFAULT 'unknown',
    heartbeat_stats     json,
    last_heartbeat_time double precision,
    last_dequeue_time   double precision,
    last_busy_time      double precision,
    last_idle_time      double precision,
    current_rollout_id  text,
    current_attempt_id  text
);

CREATE TABLE resources (
    pos          bigserial        NOT NULL UNIQUE,
    resources_id text             PRIMARY KEY,
    create_time  double precision NOT NULL,
    update_time  double precision NOT NULL,
    version      bigint           NOT NULL,
    resources    json             NOT NULL,
    -- bumped from resources_write_seq on every add/update: "latest" = greatest write_seq
    write_seq    bigint           NOT NULL
);
CREATE SEQUENCE resources_write_seq;
CREATE INDEX resources_latest ON resources (write_seq DESC);

-- One counter per rollout id, independent of the rollout's existence (store-api.md §5.1).
CREATE TABLE span_counters (
    rollout_id text   PRIMARY KEY,
    value      bigint NOT NULL
);

CREATE TABLE spans (
    pos         bigserial        NOT NULL UNIQUE,
    rollout_id  text             NOT NULL,
    attempt_id  text             NOT NULL,
    span_id     text             NOT NULL,
    sequence_id bigint           NOT NULL,
    trace_id    text             NOT NULL,
    parent_id   text,
    name        text             NOT NULL,
    start_time  double precision,
    end_time    double precision,
    doc         json             NOT NULL,
    PRIMARY KEY (rollout_id, attempt_id, span_id),
    FOREIGN KEY (rollout_id, attempt_id) REFERENCES attempts (rollout_id, attempt_id)
);
CREATE INDEX spans_by_rollout ON spans (rollout_id, sequence_id);

-- Store-wide counters that must not shrink when rows are deleted (statistics).
CREATE TABLE store_info (
    key   text PRIMARY KEY,
    value text NOT NULL
);
INSERT INTO store_info VALUES ('created_at', extract(epoch from clock_timestamp())::text);
