//! `medgate check` and `serve` agree on every input: a config that validates builds without
//! a panic or an error, and one that does not is refused by both, naming the key. Generated
//! configs push every numeric key to its edges (0, 1, the documented bounds and one past them,
//! `i64::MAX`) and to random values, from a fixed seed so a failure reproduces.

use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Numeric keys with their documented bounds, as `(table, key, min, max)`.
fn keys() -> Vec<(&'static str, String, u64, u64)> {
    let mut keys = Vec::new();
    for (table, bounds) in [
        ("server", medgate_core::bounds::SERVER),
        ("source", medgate_core::bounds::SOURCE),
        ("partner", medgate_core::bounds::PARTNER),
        ("audit", medgate_core::bounds::AUDIT),
    ] {
        for b in bounds {
            keys.push((table, b.key.to_owned(), b.min, b.max));
        }
    }
    keys
}

fn pick(rng: &mut StdRng, min: u64, max: u64) -> i64 {
    let edges = [
        0,
        1,
        min as i64,
        max as i64,
        (max as i64).saturating_add(1),
        min as i64 - 1,
        i64::MAX,
        rng.random_range(0..=max.min(i64::MAX as u64) as i64),
    ];
    edges[rng.random_range(0..edges.len())]
}

/// One generated config: every key has a value, most in range.
fn generate(rng: &mut StdRng, dir: &std::path::Path) -> String {
    let mut server = vec!["listen = \"127.0.0.1:0\"".to_owned()];
    let mut source = vec![
        "name = \"his\"".to_owned(),
        "kind = \"his-xml\"".to_owned(),
        "url = \"http://127.0.0.1:9/fhir/{patient_id}\"".to_owned(),
        "format = \"fhir-r4\"".to_owned(),
    ];
    let mut retry = Vec::new();
    let mut breaker = Vec::new();
    let mut partner = vec![
        "name = \"p\"".to_owned(),
        format!("key_sha256 = \"{}\"", "a".repeat(64)),
        "sources = [\"*\"]".to_owned(),
    ];
    let mut audit = vec![format!(
        "path = {:?}",
        dir.join("audit.jsonl").display().to_string()
    )];
    let store = format!("sqlite://{}", dir.join("store.db").display());
    let mut values: Vec<(&str, String, i64)> = keys()
        .into_iter()
        .map(|(table, key, min, max)| {
            // Most keys stay in range so that many configs validate; a few are pushed out.
            let value = if rng.random_bool(0.97) {
                rng.random_range(min..=max.min(i64::MAX as u64)) as i64
            } else {
                pick(rng, min, max)
            };
            (table, key, value)
        })
        .collect();
    // Keys that must be ordered (an attempt within its deadline …) are put in order most of
    // the time, and left as drawn otherwise.
    for (small, large) in [
        ("timeout_ms", "deadline_ms"),
        ("request_timeout_ms", "max_request_timeout_ms"),
        ("retry.base_delay_ms", "retry.max_delay_ms"),
    ] {
        let i = values.iter().position(|v| v.1 == small).unwrap();
        let j = values.iter().position(|v| v.1 == large).unwrap();
        if values[i].2 > values[j].2 && rng.random_bool(0.9) {
            let (a, b) = (values[i].2, values[j].2);
            values[i].2 = b;
            values[j].2 = a;
        }
    }
    for (table, key, value) in values {
        if value < 0 {
            continue; // unsigned keys: TOML parses, serde refuses; covered by other cases
        }
        let line = |k: &str| format!("{k} = {value}");
        match (table, key.split_once('.')) {
            ("server", _) => server.push(line(&key)),
            ("source", Some(("retry", k))) => retry.push(line(k)),
            ("source", Some(("breaker", k))) => breaker.push(line(k)),
            ("source", _) => source.push(line(&key)),
            ("partner", _) => partner.push(line(&key)),
            ("audit", _) => audit.push(line(&key)),
            _ => {}
        }
    }
    format!(
        "[store]\nurl = {store:?}\n[server]\n{}\n[[sources]]\n{}\n[sources.retry]\n{}\n[sources.breaker]\n{}\n[[partners]]\n{}\n[audit]\n{}\n",
        server.join("\n"),
        source.join("\n"),
        retry.join("\n"),
        breaker.join("\n"),
        partner.join("\n"),
        audit.join("\n"),
    )
}

#[tokio::test]
async fn check_and_serve_agree_on_generated_configs() {
    let mut rng = StdRng::seed_from_u64(0x006d_6564_6761_7465);
    let (mut valid, mut invalid) = (0, 0);
    for case in 0..300 {
        let dir = std::env::temp_dir().join(format!("medgate-agree-{}-{case}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let text = generate(&mut rng, &dir);
        let path = dir.join("medgate.toml");
        std::fs::write(&path, &text).unwrap();
        match medgate::startup::load(&path) {
            Ok(loaded) => {
                valid += 1;
                let built = AssertUnwindSafe(medgate::startup::build(loaded))
                    .catch_unwind()
                    .await;
                match built {
                    Ok(Ok(gateway)) => {
                        // A reload of the same file (what SIGHUP does) succeeds too.
                        gateway.reload(&path).unwrap_or_else(|e| {
                            panic!("case {case}: reload refused a valid file: {e}\n{text}")
                        });
                        let runtime = gateway.state.runtime();
                        assert!(runtime.exports.available_permits() >= 1);
                    }
                    Ok(Err(e)) => panic!("case {case}: check accepted, serve refused: {e}\n{text}"),
                    Err(_) => panic!("case {case}: check accepted, serve panicked\n{text}"),
                }
            }
            Err(e) => {
                invalid += 1;
                // Every refusal names a key or a position, one line per problem.
                for line in e.to_string().lines() {
                    assert!(line.contains(": "), "case {case}: {line}");
                }
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    // Both sides of the property were exercised.
    assert!(
        valid > 30 && invalid > 30,
        "valid {valid}, invalid {invalid}"
    );
}

#[test]
fn the_values_that_used_to_panic_are_refused_by_check() {
    let dir = std::env::temp_dir().join(format!("medgate-agree-edge-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("medgate.toml");
    let text = format!(
        "[[sources]]\nname = \"his\"\nkind = \"his-xml\"\nurl = \"http://127.0.0.1:9/{{patient_id}}\"\nformat = \"fhir-r4\"\nmax_concurrency = 9223372036854775807\n[audit]\npath = {:?}\n",
        dir.join("audit.jsonl").display().to_string()
    );
    std::fs::write(&path, text).unwrap();
    let error = medgate::startup::load(&path)
        .err()
        .expect("refused")
        .to_string();
    assert!(
        error.contains("sources[0] (his).max_concurrency: must be in 1..=65536"),
        "{error}"
    );
}
