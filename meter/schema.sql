-- AgentTally store, schema version 1.
-- Times are integer epoch milliseconds (UTC) in *_ms columns; token counts are BIGINT.
-- Every accepted event has one row in `events` (the de-duplication key: (session_id, event_id),
-- the provider's identity of an event, since v5) and one row in the typed table for its kind;
-- event types we do not bill are kept whole in other_events. Later versions add to this file
-- only through the migrations in meter/store.py (v5: ingest_log's status, pid, host,
-- heartbeat_ms, id_collisions and error).

CREATE TABLE IF NOT EXISTS events (
    event_id    VARCHAR NOT NULL,   -- sevt_...: an event is (session_id, event_id)
    session_id  VARCHAR NOT NULL,
    type        VARCHAR NOT NULL,
    at_ms       BIGINT  NOT NULL,   -- processed_at
    thread_id   VARCHAR,            -- session_thread_id where the event names one
    ingest_id   BIGINT  NOT NULL
);

-- session.status_* and session.thread_status_* (thread_id set), plus session.deleted ('deleted').
CREATE TABLE IF NOT EXISTS status_events (
    event_id    VARCHAR NOT NULL,
    session_id  VARCHAR NOT NULL,
    thread_id   VARCHAR,
    status      VARCHAR NOT NULL,   -- running | idle | rescheduling | terminated | deleted
    at_ms       BIGINT  NOT NULL,
    stop_reason VARCHAR
);

-- span.model_request_end: per-request tokens (no 5m/1h split, no model id on the wire).
CREATE TABLE IF NOT EXISTS model_requests (
    event_id           VARCHAR NOT NULL,
    session_id         VARCHAR NOT NULL,
    thread_id          VARCHAR,
    at_ms              BIGINT  NOT NULL,
    input_tokens       BIGINT  NOT NULL,
    output_tokens      BIGINT  NOT NULL,
    cache_write_tokens BIGINT  NOT NULL,
    cache_read_tokens  BIGINT  NOT NULL,
    speed              VARCHAR,
    is_error           BOOLEAN
);

-- session.usage: cumulative snapshot, authoritative for tokens (with the TTL split) and searches.
CREATE TABLE IF NOT EXISTS usage_snapshots (
    event_id              VARCHAR NOT NULL,
    session_id            VARCHAR NOT NULL,
    at_ms                 BIGINT  NOT NULL,
    input_tokens          BIGINT  NOT NULL,
    output_tokens         BIGINT  NOT NULL,
    cache_read_tokens     BIGINT  NOT NULL,
    cache_write_5m_tokens BIGINT  NOT NULL,
    cache_write_1h_tokens BIGINT  NOT NULL,
    web_search_requests   BIGINT  NOT NULL,
    web_fetch_requests    BIGINT  NOT NULL,
    active_ms             BIGINT,          -- active_seconds x 1000, as the API reports it
    list_cost_cents       BIGINT,          -- list_cost.amount: whole cents
    currency              VARCHAR
);

-- agent.tool_use, agent.mcp_tool_use, agent.custom_tool_use.
CREATE TABLE IF NOT EXISTS tool_uses (
    event_id   VARCHAR NOT NULL,
    session_id VARCHAR NOT NULL,
    thread_id  VARCHAR,
    at_ms      BIGINT  NOT NULL,
    kind       VARCHAR NOT NULL,
    name       VARCHAR
);

-- session.thread_created: which agent (and so which model) a thread runs.
CREATE TABLE IF NOT EXISTS threads (
    event_id   VARCHAR NOT NULL,
    session_id VARCHAR NOT NULL,
    thread_id  VARCHAR NOT NULL,
    agent_name VARCHAR,
    model_id   VARCHAR,             -- from the event if present, else resolved from the roster
    at_ms      BIGINT  NOT NULL
);

-- session.updated: only the changed fields.
CREATE TABLE IF NOT EXISTS session_updates (
    event_id   VARCHAR NOT NULL,
    session_id VARCHAR NOT NULL,
    at_ms      BIGINT  NOT NULL,
    metadata   JSON,
    title      VARCHAR
);

-- Every event type we do not bill on: stored whole, never rejected.
CREATE TABLE IF NOT EXISTS other_events (
    event_id   VARCHAR NOT NULL,
    session_id VARCHAR NOT NULL,
    type       VARCHAR NOT NULL,
    at_ms      BIGINT  NOT NULL,
    payload    JSON
);

-- Dimensions: the latest record wins (by updated_at, then by arrival).
CREATE TABLE IF NOT EXISTS sessions (
    session_id     VARCHAR PRIMARY KEY,
    created_ms     BIGINT,
    updated_ms     BIGINT,
    status         VARCHAR,
    title          VARCHAR,
    environment_id VARCHAR,
    agent_id       VARCHAR,
    agent_version  BIGINT,
    agent_name     VARCHAR,
    model_id       VARCHAR,
    model_speed    VARCHAR,
    inference_geo  VARCHAR,
    metadata       JSON,
    roster         JSON,            -- multiagent roster: [{"name":..,"model":..}]
    archived_ms    BIGINT,
    ingest_id      BIGINT
);

CREATE TABLE IF NOT EXISTS agents (
    agent_id      VARCHAR PRIMARY KEY,
    version       BIGINT,
    name          VARCHAR,
    model_id      VARCHAR,
    model_speed   VARCHAR,
    inference_geo VARCHAR,
    metadata      JSON,
    updated_ms    BIGINT,
    ingest_id     BIGINT
);

CREATE TABLE IF NOT EXISTS environments (
    environment_id VARCHAR PRIMARY KEY,
    name           VARCHAR,
    metadata       JSON,
    updated_ms     BIGINT,
    ingest_id      BIGINT
);

CREATE TABLE IF NOT EXISTS quarantine (
    ingest_id      BIGINT  NOT NULL,
    source         VARCHAR NOT NULL,
    line_no        BIGINT,
    raw            VARCHAR,
    error          VARCHAR NOT NULL,
    quarantined_ms BIGINT  NOT NULL
);

CREATE TABLE IF NOT EXISTS ingest_log (
    ingest_id   BIGINT  NOT NULL,
    source      VARCHAR NOT NULL,
    started_ms  BIGINT  NOT NULL,
    finished_ms BIGINT,
    lines       BIGINT,
    new_events  BIGINT,
    duplicates  BIGINT,
    records     BIGINT,            -- session/agent/environment records applied
    quarantined BIGINT
);

-- The live collector's resume points: last stored event per session.
CREATE TABLE IF NOT EXISTS collector_cursors (
    session_id  VARCHAR PRIMARY KEY,
    last_at_ms  BIGINT  NOT NULL,
    last_event  VARCHAR,
    updated_ms  BIGINT  NOT NULL
);
