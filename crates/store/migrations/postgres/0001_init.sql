-- medgate store, PostgreSQL schema 1. Instants are microseconds since the Unix epoch (UTC),
-- as in the SQLite schema, so both backends share one model.

CREATE TABLE reports (
    receipt           uuid    PRIMARY KEY,
    source            text    NOT NULL,
    partner           text    NOT NULL,
    patient_id        text    NOT NULL,
    kind              text    NOT NULL,
    reported_at       text,
    meta              text,
    received_at_us    bigint  NOT NULL,
    sae               boolean NOT NULL,
    state             text    NOT NULL,          -- accepted | processed | failed
    observation_count integer NOT NULL,
    processed_at_us   bigint,
    error             text
);

CREATE TABLE observations (
    receipt     uuid    NOT NULL,
    seq         integer NOT NULL,
    source      text    NOT NULL,
    patient_id  text    NOT NULL,
    start_us    bigint,
    end_us      bigint,
    code_system text,
    code        text,
    other_codes boolean NOT NULL,
    body        bytea   NOT NULL,                -- format byte + compact JSON (see encode.rs)
    PRIMARY KEY (receipt, seq)
);
CREATE INDEX observations_by_patient ON observations (source, patient_id, start_us NULLS FIRST);

-- One job per report, keyed by its receipt (a UUIDv7: ordered by creation time).
CREATE TABLE jobs (
    receipt        uuid    PRIMARY KEY,
    source         text    NOT NULL,
    sae            boolean NOT NULL,
    priority       integer NOT NULL,
    state          text    NOT NULL,             -- queued | running | dead
    attempts       integer NOT NULL DEFAULT 0,
    not_before_us  bigint  NOT NULL,
    lease_owner    text,
    lease_until_us bigint,
    created_us     bigint  NOT NULL,
    updated_us     bigint  NOT NULL,
    last_error     text
);
CREATE INDEX jobs_claim ON jobs (priority DESC, receipt) WHERE state = 'queued';
CREATE INDEX jobs_lease ON jobs (lease_until_us) WHERE state = 'running';
CREATE INDEX jobs_pending ON jobs (created_us) WHERE state IN ('queued', 'running');
CREATE INDEX jobs_dead ON jobs (receipt) WHERE state = 'dead';

CREATE TABLE outbox_completed (
    worker    text   PRIMARY KEY,
    completed bigint NOT NULL
);

CREATE TABLE idempotency (
    partner     text   NOT NULL,
    source      text   NOT NULL,
    key         text   NOT NULL,
    body_sha256 bytea  NOT NULL,
    receipts    text   NOT NULL,
    created_us  bigint NOT NULL,
    PRIMARY KEY (partner, source, key)
);
CREATE INDEX idempotency_by_age ON idempotency (created_us);

CREATE TABLE alerts (
    id              bigserial PRIMARY KEY,
    rule            text    NOT NULL,
    webhook         text    NOT NULL,
    receipt         text,
    source          text,
    payload         text    NOT NULL,
    state           text    NOT NULL,            -- pending | delivering | delivered | dead
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_us bigint  NOT NULL,
    lease_owner     text,
    lease_until_us  bigint,
    last_status     integer,
    last_error      text,
    created_us      bigint  NOT NULL,
    updated_us      bigint  NOT NULL,
    delivered_us    bigint
);
CREATE UNIQUE INDEX alerts_once ON alerts (rule, webhook, receipt);
CREATE INDEX alerts_due ON alerts (next_attempt_us) WHERE state = 'pending';
CREATE INDEX alerts_lease ON alerts (lease_until_us) WHERE state = 'delivering';
CREATE INDEX alerts_by_state ON alerts (state, id);

CREATE TABLE export_jobs (
    id               text    PRIMARY KEY,
    partner          text    NOT NULL,
    request          text    NOT NULL,
    state            text    NOT NULL,
    owner            text,
    lease_until_us   bigint,
    attempts         integer NOT NULL DEFAULT 0,
    patients_total   bigint  NOT NULL DEFAULT 0,
    patients_done    bigint  NOT NULL DEFAULT 0,
    patients_failed  bigint  NOT NULL DEFAULT 0,
    rows_written     bigint  NOT NULL DEFAULT 0,
    created_us       bigint  NOT NULL,
    updated_us       bigint  NOT NULL,
    expires_us       bigint  NOT NULL,
    transaction_time_us bigint,
    error            text
);
CREATE INDEX export_jobs_by_partner ON export_jobs (partner, created_us);
CREATE INDEX export_jobs_by_state ON export_jobs (state, created_us);

CREATE TABLE export_files (
    job_id   text    NOT NULL REFERENCES export_jobs (id) ON DELETE CASCADE,
    seq      integer NOT NULL,
    kind     text    NOT NULL,
    url      text    NOT NULL,
    path     text    NOT NULL,
    size     bigint  NOT NULL,
    sha256   text    NOT NULL,
    count    bigint  NOT NULL,
    PRIMARY KEY (job_id, seq)
);
