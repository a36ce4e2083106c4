//! Hostile bodies: each ends in a clear error after bounded work, never a panic. Times are
//! asserted loosely (debug builds on a shared 2-core machine) but would catch quadratic work.

use std::time::{Duration, Instant};

use medgate_ingest::{IngestError, MediaType};

use super::*;

const ALL: [&str; 3] = [
    "application/json",
    "application/fhir+json",
    "x-application/hl7-v2+er7",
];

/// Parses and returns the error and how long it took; a panic fails the test.
fn run(content_type: &str, body: &[u8]) -> (Result<usize, IngestError>, Duration) {
    let start = Instant::now();
    let result = medgate_ingest::parse(content_type, body, &ctx()).map(|r| r.len());
    (result, start.elapsed())
}

fn quick(d: Duration) {
    assert!(d < Duration::from_secs(3), "took {d:?}");
}

#[test]
fn deep_nesting_is_refused_for_both_json_formats() {
    let deep = "[".repeat(100_000) + &"]".repeat(100_000);
    for ct in &ALL[..2] {
        let (r, d) = run(ct, deep.as_bytes());
        match r {
            Err(IngestError::Malformed { detail, at, .. }) => {
                assert_eq!(detail, "nested deeper than 64 levels");
                assert_eq!(at, "byte 64");
            }
            other => panic!("{other:?}"),
        }
        quick(d);
    }
    // Unclosed: still a syntax error, with a position.
    let (r, _) = run(ALL[0], "{\"a\":".repeat(10_000).as_bytes());
    assert!(matches!(r, Err(IngestError::Malformed { .. })), "{r:?}");
}

#[test]
fn a_million_element_array_stops_early() {
    let huge = format!("[{}0]", "0,".repeat(999_999));
    let (r, d) = run(ALL[0], huge.as_bytes());
    assert_eq!(
        r.unwrap_err(),
        IngestError::TooLarge {
            what: "reports in one body",
            limit: 1000
        }
    );
    quick(d);
    let items = format!(
        r#"{{"patient_id":"P1","reported_at":"2026-03-01T08:00:00Z","kind":"epro","items":[{}{{}}]}}"#,
        "{},".repeat(999_999)
    );
    let (r, d) = run(ALL[0], items.as_bytes());
    assert_eq!(r.unwrap_err().status(), 413);
    quick(d);
    let entries = format!(
        r#"{{"resourceType":"Bundle","type":"batch","entry":[{}{{}}]}}"#,
        "{},".repeat(999_999)
    );
    let (r, d) = run(ALL[1], entries.as_bytes());
    assert_eq!(
        r.unwrap_err(),
        IngestError::TooLarge {
            what: "entries in one Bundle",
            limit: 20_000
        }
    );
    quick(d);
    // A huge array inside an ignored FHIR element is not walked member by member.
    let codings = format!(
        r#"{{"resourceType":"Observation","status":"final","code":{{"coding":[{}{{}}]}},"subject":{{"reference":"Patient/P1"}}}}"#,
        "{},".repeat(999_999)
    );
    let (r, d) = run(ALL[1], codings.as_bytes());
    match r {
        Err(IngestError::Invalid { issues, .. }) => assert_eq!(issues[0].path, "/code/coding"),
        other => panic!("{other:?}"),
    }
    quick(d);
}

#[test]
fn invalid_utf8_names_the_byte() {
    let mut json = br#"{"patient_id": "P1", "x": ""#.to_vec();
    json.extend_from_slice(b"\xC3\x28\"}");
    for ct in &ALL[..2] {
        match run(ct, &json).0 {
            Err(IngestError::Malformed { at, detail, .. }) => {
                assert_eq!(at, "byte 27");
                assert_eq!(detail, "the body is not valid UTF-8");
            }
            other => panic!("{other:?}"),
        }
    }
    let mut hl7 = fixture("hl7v2/ruby-hl7/ORU_R01_2.5.1_SampleTestCase1.hl7");
    hl7[300] = 0xFF;
    match run(ALL[2], &hl7).0 {
        Err(IngestError::Malformed { at, .. }) => assert_eq!(at, "byte 300"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn hl7_without_terminators_and_huge_fields() {
    // One 1 MB segment without any terminator: a long line, then a clear limit.
    let mut one_line = b"MSH|^~\\&|A|B|||20260301||ORU^R01|1|P|2.5.1|".to_vec();
    one_line.extend(std::iter::repeat_n(b'x', 1 << 20));
    let (r, d) = run(ALL[2], &one_line);
    assert_eq!(
        r.unwrap_err(),
        IngestError::TooLarge {
            what: "bytes in one field",
            limit: 65_536
        }
    );
    quick(d);
    // A segment of a million empty fields.
    let mut fields = b"MSH|^~\\&|A\rPID".to_vec();
    fields.extend(std::iter::repeat_n(b'|', 1 << 20));
    let (r, d) = run(ALL[2], &fields);
    assert_eq!(
        r.unwrap_err(),
        IngestError::TooLarge {
            what: "fields in one segment",
            limit: 512
        }
    );
    quick(d);
    // Half a million tiny segments.
    let mut segments = b"MSH|^~\\&|A".to_vec();
    for _ in 0..500_000 {
        segments.extend_from_slice(b"\rZ1|");
    }
    let (r, d) = run(ALL[2], &segments);
    assert_eq!(
        r.unwrap_err(),
        IngestError::TooLarge {
            what: "segments in one body",
            limit: 100_000
        }
    );
    quick(d);
    // A million repetitions in OBX-5 (under the field limit: 64 KiB of `~`).
    let mut reps =
        b"MSH|^~\\&|A|B|||20260301||ORU^R01|1|P|2.5.1\rPID|1||P1\rOBX|1|ST|1-8^x^LN||".to_vec();
    reps.extend(std::iter::repeat_n(b'~', 60_000));
    let (r, d) = run(ALL[2], &reps);
    assert!(r.is_ok(), "{r:?}");
    quick(d);
    // No MSH at all, or nothing but line breaks.
    for body in [&b"OBX|1|NM"[..], b"\r\n\r\n", b"", b"MSH"] {
        let (r, _) = run(ALL[2], body);
        assert!(
            matches!(r, Err(IngestError::Malformed { .. })),
            "{body:?}: {r:?}"
        );
    }
}

#[test]
fn unsupported_media_types_are_415() {
    for ct in [
        "text/plain",
        "application/xml",
        "application/fhir+xml",
        "",
        "application/json; charset=iso-8859-1",
    ] {
        let e = medgate_ingest::parse(ct, b"{}", &ctx()).unwrap_err();
        assert_eq!(e, IngestError::UnsupportedMediaType, "{ct}");
        assert_eq!(e.status(), 415);
    }
    assert_eq!(MediaType::SUPPORTED.len(), 4);
}

/// A small deterministic generator (xorshift64*): no dependency, reproducible failures.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Random bytes, and real fixtures with random bytes flipped, inserted or cut, through every
/// format: every outcome is `Ok` or a classified error; nothing panics.
#[test]
fn fuzzed_bodies_never_panic() {
    let mut seeds: Vec<Vec<u8>> = [
        "hl7v2/ruby-hl7/ORU_R01_2.5.1_SampleTestCase1.hl7",
        "hl7v2/cdc-prime-reportstream/hci.hl7",
        "hl7v2/hamaluik-hl7-parser/sample_oru_r01_lab.hl7",
        "fhir-json/r4-core-examples/Observation-f001.json",
        "fhir-json/r4-core-examples/Observation-f205.json",
        "fhir-json/validator-cases/obs-temp-bad.json",
    ]
    .iter()
    .map(|p| fixture(p))
    .collect();
    seeds.push(
        br#"[{"patient_id":"P1","reported_at":"2026-03-01T08:00:00+08:00","kind":"epro","items":[{"code":"8867-4","code_system":"http://loinc.org","value":72,"unit":"/min","effective":{"start":"2026-03-01"},"reference_range":{"low":1,"text":"x"},"components":[{"code":"a","code_system":"urn:x","value":{"code":"b","system":"urn:y"}}]}]}]"#.to_vec(),
    );
    let alphabet = b"|^~\\&\r\n{}[]\":,0123456789.-+eE#MSHPIDOBXR\xC3\xA9\xFF ";
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let start = Instant::now();
    let mut outcomes = [0usize; 5];
    for round in 0..6_000 {
        let body: Vec<u8> = if round % 4 == 0 {
            let len = rng.below(300);
            (0..len)
                .map(|_| alphabet[rng.below(alphabet.len())])
                .collect()
        } else {
            let mut b = seeds[rng.below(seeds.len())].clone();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(b.len().max(1));
                match rng.below(3) {
                    0 if !b.is_empty() => b[at] = alphabet[rng.below(alphabet.len())],
                    1 => b.insert(at.min(b.len()), alphabet[rng.below(alphabet.len())]),
                    _ if at < b.len() => {
                        b.truncate(at + rng.below(b.len() - at));
                    }
                    _ => {}
                }
            }
            b
        };
        for ct in ALL {
            let outcome = std::panic::catch_unwind(|| medgate_ingest::parse(ct, &body, &ctx()));
            let Ok(outcome) = outcome else {
                panic!(
                    "panic on round {round} ({ct}): {:?}",
                    String::from_utf8_lossy(&body)
                );
            };
            let class = match outcome {
                Ok(_) => 0,
                Err(IngestError::Invalid { issues, .. }) => {
                    assert!(!issues.is_empty());
                    1
                }
                Err(IngestError::Malformed { .. }) => 2,
                Err(IngestError::TooLarge { .. }) => 3,
                Err(IngestError::UnsupportedMediaType) => 4,
            };
            outcomes[class] += 1;
        }
    }
    // Mutated real bodies must exercise the readers, not just the syntax checks.
    assert!(
        outcomes[0] > 100 && outcomes[1] > 100 && outcomes[2] > 100,
        "{outcomes:?}"
    );
    assert_eq!(outcomes[4], 0);
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "{:?}",
        start.elapsed()
    );
}
