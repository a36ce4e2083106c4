//! Throughput figures (ignored by default; run with
//! `cargo test --release -p medgate-ingest --test ingest -- --ignored --nocapture perf`).

use std::time::Instant;

use super::*;

fn measure(name: &str, content_type: &str, body: &[u8], rounds: usize) {
    let ctx = ctx();
    let start = Instant::now();
    let mut observations = 0;
    for _ in 0..rounds {
        let reports = medgate_ingest::parse(content_type, body, &ctx).unwrap();
        observations += reports.iter().map(|r| r.observations.len()).sum::<usize>();
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{name}: {} bytes, {:.0} bodies/s, {:.1} MiB/s, {:.0} observations/s",
        body.len(),
        rounds as f64 / secs,
        (body.len() * rounds) as f64 / secs / (1024.0 * 1024.0),
        observations as f64 / secs
    );
}

#[test]
#[ignore]
fn perf() {
    let report = br#"{"report_id":"2f1c9a7e-0b7d-4a55-9d1e-1c0f5b9b6d21","patient_id":"P000001","reported_at":"2026-03-01T20:00:05+08:00","kind":"epro","app":{"id":"org.example.diary","version":"3.2.1"},"device":{"id":"cuff-42","model":"Omron HEM-7361T"},"questionnaire":{"id":"http://loinc.org/q/44249-1","version":"2.0"},"items":[{"code":"8867-4","code_system":"http://loinc.org","display":"Heart rate","value":72,"unit":"/min","effective":"2026-03-01T19:58:00+08:00"},{"code":"85354-9","code_system":"http://loinc.org","display":"Blood pressure","effective":"2026-03-01T19:58:00+08:00","components":[{"code":"8480-6","code_system":"http://loinc.org","value":128,"unit":"mm[Hg]"},{"code":"8462-4","code_system":"http://loinc.org","value":84,"unit":"mm[Hg]"}]},{"code":"44250-9","code_system":"http://loinc.org","value":{"code":"LA6569-3","system":"http://loinc.org","display":"Several days"}},{"code":"q3","code_system":"urn:example:q","value":true},{"code":"q4","code_system":"urn:example:q","value":"Slept badly after the evening dose"},{"code":"29463-7","code_system":"http://loinc.org","value":70.40,"unit":"kg"}]}"#;
    measure(
        "report JSON (1 report, 6 items)",
        "application/json",
        report,
        20_000,
    );
    measure(
        "HL7 v2 newborn screening (169 observations)",
        "x-application/hl7-v2+er7",
        &fixture("hl7v2/cdc-prime-reportstream/sample_oru_20241015-001.hl7"),
        500,
    );
    measure(
        "FHIR transaction (47 observations)",
        "application/fhir+json",
        &fixture("fhir-json/phd/bundle-continuousnonin.json"),
        500,
    );
}
