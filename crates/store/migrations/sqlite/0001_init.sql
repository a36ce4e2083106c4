-- medgate store, SQLite schema 1. Instants are microseconds since the Unix epoch (UTC).

-- One row per accepted report (one receipt).
CREATE TABLE reports (
    id                INTEGER PRIMARY KEY,
    receipt           TEXT    NOT NULL UNIQUE,
    source            TEXT    NOT NULL,
    partner           TEXT    NOT NULL,
    patient_id        TEXT    NOT NULL,
    kind              TEXT    NOT NULL,
    reported_at       TEXT,                      -- as written (RFC 3339, offset kept)
    meta              TEXT,                      -- JSON: device, app, ... as the partner sent it
    received_at_us    INTEGER NOT NULL,
    sae               INTEGER NOT NULL,          -- serious adverse event
    state             TEXT    NOT NULL,          -- accepted | processed | failed
    observation_count INTEGER NOT NULL,
    first_observation INTEGER NOT NULL,          -- id of its first observation; the rest follow
    processed_at_us   INTEGER,
    error             TEXT
);

-- Observations in medgate's serde JSON form (`body`: a format byte, then the compact JSON,
-- zstd-compressed against a fixed dictionary; see encode.rs), plus the columns searches use.
-- Ids are assigned by the single writer, so a report's observations are contiguous.
CREATE TABLE observations (
    id          INTEGER PRIMARY KEY,
    report_id   INTEGER NOT NULL,
    source      TEXT    NOT NULL,
    patient_id  TEXT    NOT NULL,
    start_us    INTEGER,                         -- earliest instant the effective time may mean
    end_us      INTEGER,                         -- latest instant it may mean
    code_system TEXT,                            -- primary coding
    code        TEXT,
    other_codes INTEGER NOT NULL,                -- 1: more codings or components (check the body)
    body        BLOB    NOT NULL
);
CREATE INDEX observations_by_patient ON observations (source, patient_id, start_us);

-- The outbox: one post-processing job per report (`id` = the report's id). Completed jobs
-- are deleted (and counted in outbox_completed).
CREATE TABLE jobs (
    id             INTEGER PRIMARY KEY,
    receipt        TEXT    NOT NULL,
    source         TEXT    NOT NULL,
    sae            INTEGER NOT NULL,
    priority       INTEGER NOT NULL,             -- higher first (SAE)
    state          TEXT    NOT NULL,             -- queued | running | dead
    attempts       INTEGER NOT NULL DEFAULT 0,
    not_before_us  INTEGER NOT NULL,
    lease_owner    TEXT,
    lease_until_us INTEGER,
    created_us     INTEGER NOT NULL,
    updated_us     INTEGER NOT NULL,
    last_error     TEXT
);
CREATE INDEX jobs_claim ON jobs (priority DESC, id) WHERE state = 'queued';
CREATE INDEX jobs_lease ON jobs (lease_until_us) WHERE state = 'running';
CREATE INDEX jobs_pending ON jobs (created_us) WHERE state IN ('queued', 'running');
CREATE INDEX jobs_dead ON jobs (id) WHERE state = 'dead';

-- Completed jobs per worker (a monotonic counter without a hot row).
CREATE TABLE outbox_completed (
    worker    TEXT    PRIMARY KEY,
    completed INTEGER NOT NULL
) WITHOUT ROWID;

-- Idempotency-Key records: a retried request gets these receipts back.
CREATE TABLE idempotency (
    partner     TEXT    NOT NULL,
    source      TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    body_sha256 BLOB    NOT NULL,
    receipts    TEXT    NOT NULL,                -- JSON array of receipt ids
    created_us  INTEGER NOT NULL,
    PRIMARY KEY (partner, source, key)
) WITHOUT ROWID;
CREATE INDEX idempotency_by_age ON idempotency (created_us);

-- Alerts (rule firings, SAEs) and their webhook deliveries.
CREATE TABLE alerts (
    id              INTEGER PRIMARY KEY,
    rule            TEXT    NOT NULL,
    webhook         TEXT    NOT NULL,
    receipt         TEXT,
    source          TEXT,
    payload         TEXT    NOT NULL,            -- JSON, the exact bytes that are signed and sent
    state           TEXT    NOT NULL,            -- pending | delivering | delivered | dead
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_us INTEGER NOT NULL,
    lease_owner     TEXT,
    lease_until_us  INTEGER,
    last_status     INTEGER,
    last_error      TEXT,
    created_us      INTEGER NOT NULL,
    updated_us      INTEGER NOT NULL,
    delivered_us    INTEGER
);
CREATE UNIQUE INDEX alerts_once ON alerts (rule, webhook, receipt);
CREATE INDEX alerts_due ON alerts (next_attempt_us) WHERE state = 'pending';
CREATE INDEX alerts_lease ON alerts (lease_until_us) WHERE state = 'delivering';
CREATE INDEX alerts_by_state ON alerts (state, id);

-- Bulk export jobs (FHIR Bulk Data kick-off → manifest).
CREATE TABLE export_jobs (
    id               TEXT    PRIMARY KEY,
    partner          TEXT    NOT NULL,
    request          TEXT    NOT NULL,           -- JSON, as kicked off
    state            TEXT    NOT NULL,           -- queued | running | completed | failed | cancelled
    owner            TEXT,
    lease_until_us   INTEGER,
    attempts         INTEGER NOT NULL DEFAULT 0,
    patients_total   INTEGER NOT NULL DEFAULT 0,
    patients_done    INTEGER NOT NULL DEFAULT 0,
    patients_failed  INTEGER NOT NULL DEFAULT 0,
    rows_written     INTEGER NOT NULL DEFAULT 0,
    created_us       INTEGER NOT NULL,
    updated_us       INTEGER NOT NULL,
    expires_us       INTEGER NOT NULL,
    transaction_time_us INTEGER,
    error            TEXT
) WITHOUT ROWID;
CREATE INDEX export_jobs_by_partner ON export_jobs (partner, created_us);
CREATE INDEX export_jobs_by_state ON export_jobs (state, created_us);

CREATE TABLE export_files (
    job_id   TEXT    NOT NULL,
    seq      INTEGER NOT NULL,
    kind     TEXT    NOT NULL,                   -- resource type: Observation, OperationOutcome
    url      TEXT    NOT NULL,
    path     TEXT    NOT NULL,
    size     INTEGER NOT NULL,
    sha256   TEXT    NOT NULL,
    count    INTEGER NOT NULL,
    PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;
