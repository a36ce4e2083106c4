//! medgate-store against real databases: SQLite in a temp dir always; PostgreSQL too when
//! `MEDGATE_TEST_POSTGRES_URL` is set (each test in a schema of its own; an unreachable
//! server fails the test, an unset variable skips the PostgreSQL half with a message).

mod alerts;
mod common;
mod crash;
mod exports;
mod ingest;
mod outbox;
mod reads;
