//! medgate-alerts against real parts: a SQLite store in a temp dir always, PostgreSQL too
//! when `MEDGATE_TEST_POSTGRES_URL` is set (each test in a schema of its own; an unreachable
//! server fails the test, an unset variable skips the PostgreSQL half with a message), and
//! webhook receivers on loopback (axum on 127.0.0.1:0).

mod common;
mod config;
mod delivery;
mod rules;
mod workers;
