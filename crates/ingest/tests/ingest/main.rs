//! medgate-ingest against real published samples and hostile bodies: one test binary.

use std::path::PathBuf;

use medgate_core::DateTime;
use medgate_ingest::IngestContext;

mod fhir_json;
mod hl7v2;
mod hostile;
mod perf;
mod report_json;

/// `tests/fixtures/` of the workspace.
fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

/// The context every test uses: source `epro`, received 2026-03-01T00:00:00Z, prefix `rq1`.
fn ctx() -> IngestContext {
    IngestContext::new(
        "epro",
        DateTime::parse("2026-03-01T00:00:00Z").unwrap(),
        "rq1",
    )
}

/// A fixture's bytes, by path under `tests/fixtures/`.
fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(fixtures().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}
