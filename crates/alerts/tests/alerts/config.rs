//! The `[[webhooks]]`/`[[rules]]` keys of issue #8 as `medgate check` sees them.

use medgate_alerts::Alerting;

use crate::common::*;

const ISSUE_EXAMPLE: &str = r#"
[[webhooks]]
name = "safety"
url = "http://127.0.0.1:9500/hooks/medgate"
secret_env = "MEDGATE_WEBHOOK_SECRET" # Standard Webhooks secret, whsec_<base64>

[[rules]]
name = "tachycardia"
source = "epro"
code = "8867-4"
above = 120                           # also: below, equals (answers), count + within_s (windows)
notify = ["safety"]
"#;

fn tables(text: &str, key: &str) -> Vec<toml::Table> {
    let doc: toml::Table = toml::from_str(text).unwrap();
    doc.get(key)
        .and_then(toml::Value::as_array)
        .map(|a| a.iter().filter_map(|v| v.as_table().cloned()).collect())
        .unwrap_or_default()
}

fn build(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<Alerting, Vec<String>> {
    let sae = vec!["safety".to_owned()];
    Alerting::build(
        &tables(text, "rules"),
        &tables(text, "webhooks"),
        Some(&sae),
        &["epro".to_owned()],
        env,
    )
    .map_err(|issues| issues.iter().map(ToString::to_string).collect())
}

#[test]
fn the_issue_example_loads() {
    let a = build(ISSUE_EXAMPLE, |var| {
        (var == "MEDGATE_WEBHOOK_SECRET").then(secret)
    })
    .unwrap();
    let hook = a.webhooks.get("safety").unwrap();
    assert_eq!(hook.url.as_str(), "http://127.0.0.1:9500/hooks/medgate");
    assert_eq!(hook.attempts, 10);
    assert_eq!(hook.timeout, std::time::Duration::from_secs(5));
    assert_eq!(a.rules.rules()[0].notify, ["safety"]);
    assert_eq!(a.rules.sae_notify(), ["safety"]);
    assert!(
        !format!("{a:?}").contains(&secret()["whsec_".len()..]),
        "no secret in Debug"
    );
}

#[test]
fn secret_problems_name_the_key_and_never_the_secret() {
    let issues = build(ISSUE_EXAMPLE, |_| None).unwrap_err();
    assert_eq!(
        issues,
        ["webhooks[0] (safety).secret_env: the environment variable `MEDGATE_WEBHOOK_SECRET` is not set (it must hold the webhook's `whsec_<base64>` secret)"]
    );
    let leaked = "whsec_dG9vLXNob3J0";
    let issues = build(ISSUE_EXAMPLE, |_| Some(leaked.into())).unwrap_err();
    assert!(!issues[0].contains("dG9v"));
    assert_eq!(
        issues,
        ["webhooks[0] (safety).secret_env: the secret in `MEDGATE_WEBHOOK_SECRET` must decode to 24 to 64 bytes (got 9)"]
    );
    let issues = build(ISSUE_EXAMPLE, |_| Some("hunter2hunter2".into())).unwrap_err();
    assert!(
        issues[0].ends_with("must start with `whsec_`"),
        "{issues:?}"
    );
    assert!(!issues[0].contains("hunter2"));
}

#[test]
fn webhook_keys_are_checked() {
    let text = r#"
[[webhooks]]
name = "Safety"
url = "ftp://example.org/x"
secret_env = "S"
timeout_ms = 0
attempts = 51
base_delay_ms = 5000
max_delay_ms = 1000

[[webhooks]]
name = "b"
url = "https://example.org/hook"
secret_env = "S"
retries = 3

[[webhooks]]
name = "c"
url = "https://user:pw@example.org/hook"
secret_env = "S"
"#;
    let issues = build(text, |_| Some(secret())).unwrap_err();
    let expected = [
        "webhooks[0] (Safety).name: must be 1-64 of a-z, 0-9, '-', '_'",
        "webhooks[0] (Safety).timeout_ms: must be in 1..=60000 (got 0)",
        "webhooks[0] (Safety).attempts: must be in 1..=50 (got 51)",
        "webhooks[0] (Safety).base_delay_ms: must not exceed max_delay_ms",
        "webhooks[0] (Safety).url: must be an http or https URL with a host, not `ftp:`",
        "webhooks[2] (c).url: must not carry credentials (the payload is signed with secret_env instead)",
        "ingest.sae_notify[0]: no webhook is named `safety`",
    ];
    for e in expected {
        assert!(issues.iter().any(|i| i == e), "missing {e}\n{issues:#?}");
    }
    assert!(
        issues
            .iter()
            .any(|i| i.starts_with("webhooks[1] (b): unknown field `retries`")),
        "{issues:#?}"
    );
    assert_eq!(issues.len(), expected.len() + 1, "{issues:#?}");
}
