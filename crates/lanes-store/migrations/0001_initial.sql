-- lanes-store schema, version 1. docs/store.md describes every table.
-- Times are INTEGER milliseconds since the Unix epoch (UTC). States, priorities and classes are
-- the `as_str` names of lanes-core's enums; reasons are JSON text.

-- Counters that must survive restarts. `next_token`: the smallest fencing token never handed out.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO meta (key, value) VALUES ('next_token', 1);

CREATE TABLE repos (
    id             INTEGER PRIMARY KEY,
    name           TEXT NOT NULL UNIQUE,
    path           TEXT NOT NULL,
    remote_url     TEXT,
    default_branch TEXT NOT NULL,
    -- The number the next run of this repository gets.
    next_run       INTEGER NOT NULL DEFAULT 1,
    created_at     INTEGER NOT NULL
);

-- The head the ref watcher last saw per branch: a head seen before creates nothing.
CREATE TABLE refs (
    repo_id INTEGER NOT NULL REFERENCES repos (id) ON DELETE CASCADE,
    branch  TEXT NOT NULL,
    head    TEXT NOT NULL,
    seen_at INTEGER NOT NULL,
    PRIMARY KEY (repo_id, branch)
) WITHOUT ROWID;

CREATE TABLE runs (
    id            INTEGER PRIMARY KEY,
    repo_id       INTEGER NOT NULL REFERENCES repos (id) ON DELETE CASCADE,
    number        INTEGER NOT NULL,
    branch        TEXT NOT NULL,
    head          TEXT NOT NULL,
    base          TEXT,
    triggered_by  TEXT NOT NULL CHECK (triggered_by IN ('push', 'nightly', 'manual')),
    status        TEXT NOT NULL
        CHECK (status IN ('pending', 'running', 'passed', 'failed', 'cancelled', 'error')),
    diagnostics   TEXT,
    superseded_by INTEGER,
    created_at    INTEGER NOT NULL,
    started_at    INTEGER,
    finished_at   INTEGER,
    UNIQUE (repo_id, number)
);
-- The same commit pushed again creates nothing, even when two watchers race.
CREATE UNIQUE INDEX runs_push_once ON runs (repo_id, branch, head) WHERE triggered_by = 'push';
-- Newest-first listings (rowid order) per repository, per branch, per status.
CREATE INDEX runs_by_repo ON runs (repo_id);
CREATE INDEX runs_by_branch ON runs (repo_id, branch);
CREATE INDEX runs_by_status ON runs (repo_id, status);

CREATE TABLE jobs (
    -- AUTOINCREMENT: ids never come back, so id order is FIFO order.
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id            INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    lane              TEXT NOT NULL,
    class             TEXT NOT NULL CHECK (class IN ('required', 'advisory', 'nightly', 'manual')),
    priority          TEXT NOT NULL
        CHECK (priority IN ('manual', 'required', 'advisory', 'nightly')),
    state             TEXT NOT NULL CHECK (state IN ('queued', 'leased', 'running', 'passed',
        'failed', 'timed-out', 'cancelled', 'skipped', 'error')),
    reason            TEXT,
    selection         TEXT NOT NULL DEFAULT '[]',
    needs             TEXT NOT NULL DEFAULT '[]',
    concurrency_group TEXT,
    labels            TEXT NOT NULL DEFAULT '[]',
    retries           INTEGER NOT NULL DEFAULT 0,
    attempts          INTEGER NOT NULL DEFAULT 0,
    agent             TEXT,
    token             INTEGER,
    expires_at        INTEGER,
    rerun_of          INTEGER REFERENCES jobs (id) ON DELETE SET NULL,
    queued_at         INTEGER,
    leased_at         INTEGER,
    started_at        INTEGER,
    finished_at       INTEGER,
    queue_wait_ms     INTEGER,
    lock_wait_ms      INTEGER,
    materialize_ms    INTEGER,
    -- Acknowledged length of <data>/logs/<id>.log.
    log_len           INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX jobs_by_run ON jobs (run_id);
-- What the scheduler reloads at start.
CREATE INDEX jobs_open ON jobs (state) WHERE state IN ('queued', 'leased', 'running');

CREATE TABLE steps (
    job_id      INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    idx         INTEGER NOT NULL,
    name        TEXT NOT NULL,
    status      TEXT NOT NULL,
    cache       TEXT NOT NULL CHECK (cache IN ('hit', 'miss', 'disabled')),
    key         TEXT,
    duration_ms INTEGER,
    saved_ms    INTEGER,
    exit_code   INTEGER,
    PRIMARY KEY (job_id, idx)
) WITHOUT ROWID;

CREATE TABLE agents (
    id             INTEGER PRIMARY KEY,
    name           TEXT NOT NULL UNIQUE,
    labels         TEXT NOT NULL DEFAULT '[]',
    capacity       INTEGER NOT NULL CHECK (capacity >= 0),
    -- BLAKE3 of the agent's token; the token itself is never stored.
    token_hash     BLOB NOT NULL UNIQUE,
    state          TEXT NOT NULL CHECK (state IN ('online', 'draining', 'paused', 'lost')),
    last_heartbeat INTEGER,
    created_at     INTEGER NOT NULL
);

CREATE TABLE admin_tokens (
    id         INTEGER PRIMARY KEY,
    -- BLAKE3 of the token; the token itself is never stored.
    token_hash BLOB NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);

-- A nightly cron slot runs once, even across restarts.
CREATE TABLE nightly_slots (
    repo_id INTEGER NOT NULL REFERENCES repos (id) ON DELETE CASCADE,
    lane    TEXT NOT NULL,
    slot    INTEGER NOT NULL,
    run_id  INTEGER REFERENCES runs (id) ON DELETE SET NULL,
    PRIMARY KEY (repo_id, lane, slot)
) WITHOUT ROWID;
