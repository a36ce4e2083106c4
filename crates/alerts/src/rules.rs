//! [`Rules`]: the early-warning rules and SAE routing, checked once and evaluated per
//! report.
//!
//! Three kinds of rule, all on one code of one `store` source:
//! - a threshold (`above = 120`, `below = 90`): a number compared exactly, as decimals
//!   ([`medgate_store::rules::value_passes`], the same test the store's window count
//!   uses, so a threshold and a window rule never disagree on a value);
//! - an answer (`equals = "yes"`, `true`, `3`): a coded answer's code or text, a text, a
//!   boolean, or a number of equal value;
//! - a window (either test plus `count` and `within_s`): the report brings a passing
//!   reading and the patient has at least `count` passing readings whose effective time
//!   lies in `[t - within_s, t]`, `t` being that reading's effective start, counted by
//!   [`Store::count_matching`] over every stored report (so reports processed out of order
//!   still see each other).
//!
//! A code (`8867-4` or `http://loinc.org|8867-4`) matches an observation's codings and its
//! components' codings: a blood-pressure panel's systolic component fires a rule on
//! `8480-6`. Observations marked `entered-in-error` or `cancelled` never fire a rule.
//! A rule fires at most once per report (the store keeps one alert per rule, webhook and
//! receipt); every report with a serious adverse event fires the `sae` alert to the
//! webhooks of `[ingest] sae_notify`.

use std::collections::HashSet;
use std::time::Duration;

use jiff::Timestamp;
use medgate_core::model::Status;
use medgate_core::{CodeFilter, CodeableConcept, ConfigIssue, Decimal, Observation};
use medgate_store::rules::value_passes;
use medgate_store::{NewAlert, Store, StoreError, StoredReport, ValueTest, WindowQuery};

use crate::config::{check_bounds, label, read_entry, valid_name, RuleConfig, RULE_BOUNDS};
use crate::payload;

/// The rule name of serious-adverse-event alerts (reserved: no `[[rules]]` may use it).
pub const SAE_RULE: &str = "sae";

/// Most readings of one report whose windows one window rule counts (each is one query).
const MAX_WINDOW_ANCHORS: usize = 16;

/// What rules are checked against: names configured elsewhere.
#[derive(Debug, Clone, Copy)]
pub struct RuleScope<'a> {
    /// Names of the `[[webhooks]]` ([`Webhooks::names`](crate::Webhooks::names)).
    pub webhooks: &'a [String],
    /// Names of the `[[sources]]` of kind `store`.
    pub store_sources: &'a [String],
    /// `[ingest] sae_notify`, `None` when the key is absent. Absent is refused when a
    /// store source and a webhook exist (an SAE nobody hears of is what this prevents);
    /// `Some(&[])` says "notify none" explicitly.
    pub sae_notify: Option<&'a [String]>,
}

/// A window rule's window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Passing readings that fire the rule.
    pub count: u32,
    /// The window's length.
    pub within: Duration,
}

/// One checked rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Its name.
    pub name: String,
    /// Text for the receivers.
    pub description: Option<String>,
    /// The `store` source it watches.
    pub source: String,
    /// The code as configured (`8867-4`, `http://loinc.org|8867-4`).
    pub code_token: String,
    /// The code as a filter.
    pub code: CodeFilter,
    /// The value test.
    pub test: ValueTest,
    /// The window, for window rules.
    pub window: Option<Window>,
    /// The webhooks it notifies.
    pub notify: Vec<String>,
}

/// Every rule and the SAE routing. Cheap to share (`Arc` it); swap a new one in on reload.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    rules: Vec<Rule>,
    sae_notify: Vec<String>,
}

impl Rules {
    /// Reads and checks every `[[rules]]` table and `[ingest] sae_notify` against `scope`.
    ///
    /// # Errors
    /// Every problem found, keyed like `rules[0] (tachycardia).above` or
    /// `ingest.sae_notify[0]`.
    pub fn build(tables: &[toml::Table], scope: &RuleScope<'_>) -> Result<Rules, Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        let mut rules = Vec::new();
        let mut names = HashSet::new();
        for (i, table) in tables.iter().enumerate() {
            let label = label("rules", i, table);
            match read_entry::<RuleConfig>(&label, table) {
                Ok(config) => {
                    if !names.insert(config.name.clone()) {
                        issues.push(ConfigIssue::new(
                            format!("{label}.name"),
                            format!("duplicate rule name `{}`", config.name),
                        ));
                    }
                    if let Some(rule) = check_rule(&label, config, scope, &mut issues) {
                        rules.push(rule);
                    }
                }
                Err(issue) => issues.push(issue),
            }
        }
        let sae_notify = check_sae_notify(scope, &mut issues);
        if issues.is_empty() {
            Ok(Rules { rules, sae_notify })
        } else {
            Err(issues)
        }
    }

    /// The rules, in config order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The webhooks every SAE report notifies.
    pub fn sae_notify(&self) -> &[String] {
        &self.sae_notify
    }

    /// The alerts `report` fires: the SAE alert (one per `sae_notify` webhook) and every
    /// firing rule of its source (one per `notify` webhook). `now` is the payloads'
    /// `timestamp`.
    ///
    /// # Errors
    /// A window rule's count failed in the store.
    pub async fn evaluate(
        &self,
        store: &Store,
        report: &StoredReport,
        now: Timestamp,
    ) -> Result<Vec<NewAlert>, StoreError> {
        let mut alerts = Vec::new();
        if report.serious_adverse_event && !self.sae_notify.is_empty() {
            let body = payload::sae(report, now);
            push_alerts(&mut alerts, SAE_RULE, &self.sae_notify, report, &body);
        }
        for rule in self.rules.iter().filter(|r| r.source == report.source) {
            if let Some(firing) = rule.fires(store, report).await? {
                let body = payload::rule(rule, report, &firing, now);
                push_alerts(&mut alerts, &rule.name, &rule.notify, report, &body);
            }
        }
        Ok(alerts)
    }
}

fn push_alerts(
    alerts: &mut Vec<NewAlert>,
    rule: &str,
    webhooks: &[String],
    report: &StoredReport,
    payload: &serde_json::Value,
) {
    for webhook in webhooks {
        alerts.push(NewAlert {
            rule: rule.to_owned(),
            webhook: webhook.clone(),
            receipt: Some(report.receipt.clone()),
            source: Some(report.source.clone()),
            payload: payload.clone(),
        });
    }
}

/// A reading that passes a rule's test: an observation's own value or one component's.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Hit<'a> {
    /// The observation.
    pub obs: &'a Observation,
    /// The matching component's index, when the match is a component.
    pub component: Option<usize>,
}

impl Hit<'_> {
    /// The reading's effective start as the store's window count reads it (a local time
    /// as UTC).
    fn at(&self) -> Option<Timestamp> {
        let start = self.obs.effective.as_ref()?.start()?;
        Some(start.bounds().0)
    }
}

/// Why a rule fired.
#[derive(Debug)]
pub(crate) struct Firing<'a> {
    /// The reading shown in the payload (the first passing one, or the window's anchor).
    pub hit: Hit<'a>,
    /// Passing readings in the report.
    pub matches: usize,
    /// For window rules: the window counted and the count found.
    pub window: Option<Counted>,
}

/// A counted window.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Counted {
    pub since: Timestamp,
    pub until: Timestamp,
    pub observed: u64,
}

impl Rule {
    async fn fires<'r>(
        &self,
        store: &Store,
        report: &'r StoredReport,
    ) -> Result<Option<Firing<'r>>, StoreError> {
        let hits = hits(&report.observations, &self.code, &self.test);
        let Some(first) = hits.first().copied() else {
            return Ok(None);
        };
        let Some(window) = self.window else {
            return Ok(Some(Firing {
                hit: first,
                matches: hits.len(),
                window: None,
            }));
        };
        let mut anchors: Vec<(Timestamp, Hit<'r>)> = Vec::new();
        for hit in &hits {
            if let Some(at) = hit.at() {
                if !anchors.iter().any(|(t, _)| *t == at) {
                    anchors.push((at, *hit));
                }
            }
        }
        // Latest first: its window holds the most readings of this report.
        anchors.sort_by_key(|(t, _)| std::cmp::Reverse(*t));
        for (until, hit) in anchors.into_iter().take(MAX_WINDOW_ANCHORS) {
            let since = until
                .checked_sub(
                    jiff::SignedDuration::try_from(window.within)
                        .unwrap_or(jiff::SignedDuration::MAX),
                )
                .unwrap_or(Timestamp::MIN);
            let query = WindowQuery {
                source: report.source.clone(),
                patient_id: report.patient_id.clone(),
                code: self.code.clone(),
                since,
                until,
                test: self.test.clone(),
            };
            let observed = store.count_matching(&query).await?;
            if observed >= u64::from(window.count) {
                return Ok(Some(Firing {
                    hit,
                    matches: hits.len(),
                    window: Some(Counted {
                        since,
                        until,
                        observed,
                    }),
                }));
            }
        }
        Ok(None)
    }
}

/// Every reading of `observations` whose code matches and whose value passes, in order.
pub(crate) fn hits<'a>(
    observations: &'a [Observation],
    code: &CodeFilter,
    test: &ValueTest,
) -> Vec<Hit<'a>> {
    let mut out = Vec::new();
    for obs in observations {
        if matches!(obs.status, Some(Status::EnteredInError | Status::Cancelled)) {
            continue;
        }
        if concept_matches(&obs.code, code) && value_passes(&obs.value, test) {
            out.push(Hit {
                obs,
                component: None,
            });
        }
        for (i, c) in obs.components.iter().enumerate() {
            if concept_matches(&c.code, code) && value_passes(&c.value, test) {
                out.push(Hit {
                    obs,
                    component: Some(i),
                });
            }
        }
    }
    out
}

/// FHIR token semantics, as the store's: `code` matches any system, `system|code` that
/// system, `|code` a coding without one.
fn concept_matches(concept: &CodeableConcept, f: &CodeFilter) -> bool {
    concept.coding.iter().any(|c| {
        c.code.as_deref() == Some(f.code.as_str())
            && match &f.system {
                None => true,
                Some(s) => c.system.as_deref().unwrap_or("") == s,
            }
    })
}

// ---- checks ----------------------------------------------------------------------------

fn check_rule(
    label: &str,
    c: RuleConfig,
    scope: &RuleScope<'_>,
    issues: &mut Vec<ConfigIssue>,
) -> Option<Rule> {
    let before = issues.len();
    let key = |k: &str| format!("{label}.{k}");
    if !valid_name(&c.name) {
        issues.push(ConfigIssue::new(
            key("name"),
            "must be 1-64 of a-z, 0-9, '-', '_'",
        ));
    } else if c.name == SAE_RULE {
        issues.push(ConfigIssue::new(
            key("name"),
            "`sae` is reserved for serious adverse events (route them with [ingest] sae_notify)",
        ));
    }
    if !scope.store_sources.contains(&c.source) {
        let known = if scope.store_sources.is_empty() {
            "there is none".to_owned()
        } else {
            scope.store_sources.join(", ")
        };
        issues.push(ConfigIssue::new(
            key("source"),
            format!(
                "no source of kind `store` is named `{}`; store sources: {known}",
                c.source
            ),
        ));
    }
    let code = CodeFilter::parse(&c.code);
    if code.code.is_empty() || code.code.contains('|') {
        issues.push(ConfigIssue::new(
            key("code"),
            "must be a code (`8867-4`) or `system|code` (`http://loinc.org|8867-4`)",
        ));
    }
    let test = check_test(label, &c, issues);
    let window = check_window(label, &c, issues);
    check_notify(label, &c.notify, scope.webhooks, issues);
    if c.description.as_ref().is_some_and(|d| d.len() > 1000) {
        issues.push(ConfigIssue::new(
            key("description"),
            "must be at most 1000 bytes",
        ));
    }
    let rule = Rule {
        name: c.name,
        description: c.description,
        source: c.source,
        code_token: c.code,
        code,
        test: test?,
        window,
        notify: c.notify,
    };
    (issues.len() == before).then_some(rule)
}

fn check_test(label: &str, c: &RuleConfig, issues: &mut Vec<ConfigIssue>) -> Option<ValueTest> {
    let given: Vec<(&str, &toml::Value)> = [
        ("above", c.above.as_ref()),
        ("below", c.below.as_ref()),
        ("equals", c.equals.as_ref()),
    ]
    .into_iter()
    .filter_map(|(k, v)| Some((k, v?)))
    .collect();
    let (name, value) = match given.as_slice() {
        [one] => *one,
        [] => {
            issues.push(ConfigIssue::new(
                label,
                "needs a test: one of `above`, `below` or `equals`",
            ));
            return None;
        }
        [_, second, ..] => {
            issues.push(ConfigIssue::new(
                format!("{label}.{}", second.0),
                "only one of `above`, `below` and `equals` may be given (make two rules)",
            ));
            return None;
        }
    };
    let key = format!("{label}.{name}");
    let test = match name {
        "above" => threshold(value).map(ValueTest::Above),
        "below" => threshold(value).map(ValueTest::Below),
        _ => answer(value).map(ValueTest::Equals),
    };
    match test {
        Ok(t) => Some(t),
        Err(why) => {
            issues.push(ConfigIssue::new(key, why));
            None
        }
    }
}

/// A threshold: an integer, a float (its shortest exact text) or a string with a decimal.
fn threshold(value: &toml::Value) -> Result<Decimal, String> {
    let parsed = match value {
        toml::Value::Integer(i) => Some(Decimal::from_i64(*i)),
        toml::Value::Float(f) if f.is_finite() => Decimal::parse_lenient(&f.to_string()),
        toml::Value::String(s) => Decimal::parse_lenient(s),
        _ => None,
    };
    parsed.ok_or_else(|| {
        "must be a number (`120`, `37.5`) or a string holding one (`\"37.50\"`)".to_owned()
    })
}

/// An answer: a non-empty string, a boolean or a number, as text.
fn answer(value: &toml::Value) -> Result<String, String> {
    match value {
        toml::Value::String(s) if !s.is_empty() => Ok(s.clone()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Float(f) if f.is_finite() => Ok(f.to_string()),
        _ => {
            Err("must be a non-empty string (a code or text answer), a boolean or a number".into())
        }
    }
}

fn check_window(label: &str, c: &RuleConfig, issues: &mut Vec<ConfigIssue>) -> Option<Window> {
    check_bounds(
        label,
        RULE_BOUNDS,
        &[c.count.map(u64::from), c.within_s],
        issues,
    );
    match (c.count, c.within_s) {
        (Some(count), Some(within_s)) => Some(Window {
            count,
            within: Duration::from_secs(within_s),
        }),
        (None, None) => None,
        (Some(_), None) => {
            issues.push(ConfigIssue::new(
                format!("{label}.within_s"),
                "is required with `count` (the window's length in seconds, e.g. 86400)",
            ));
            None
        }
        (None, Some(_)) => {
            issues.push(ConfigIssue::new(
                format!("{label}.count"),
                "is required with `within_s` (how many readings in the window fire the rule)",
            ));
            None
        }
    }
}

fn check_notify(
    label: &str,
    notify: &[String],
    webhooks: &[String],
    issues: &mut Vec<ConfigIssue>,
) {
    if notify.is_empty() {
        issues.push(ConfigIssue::new(
            format!("{label}.notify"),
            "must name at least one webhook",
        ));
    }
    check_webhook_names(&format!("{label}.notify"), notify, webhooks, issues);
}

fn check_webhook_names(
    key: &str,
    names: &[String],
    webhooks: &[String],
    issues: &mut Vec<ConfigIssue>,
) {
    let mut seen = HashSet::new();
    for (j, name) in names.iter().enumerate() {
        if !webhooks.contains(name) {
            issues.push(ConfigIssue::new(
                format!("{key}[{j}]"),
                format!("no webhook is named `{name}`"),
            ));
        } else if !seen.insert(name) {
            issues.push(ConfigIssue::new(
                format!("{key}[{j}]"),
                format!("`{name}` is listed twice"),
            ));
        }
    }
}

/// `[ingest] sae_notify`: absent is refused when an SAE could arrive (a store source) and
/// could be sent (a webhook), since an SAE nobody hears about is the failure this exists
/// to prevent; `sae_notify = []` says so explicitly.
fn check_sae_notify(scope: &RuleScope<'_>, issues: &mut Vec<ConfigIssue>) -> Vec<String> {
    match scope.sae_notify {
        Some(names) => {
            check_webhook_names("ingest.sae_notify", names, scope.webhooks, issues);
            names.to_vec()
        }
        None => {
            if !scope.webhooks.is_empty() && !scope.store_sources.is_empty() {
                issues.push(ConfigIssue::new(
                    "ingest.sae_notify",
                    "is required when webhooks and store sources are configured: name the webhooks that hear of every serious adverse event (the safety monitor's), or write `sae_notify = []` to notify none",
                ));
            }
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> toml::Table {
        toml::from_str(text).unwrap()
    }

    fn scope<'a>(
        webhooks: &'a [String],
        sources: &'a [String],
        sae: Option<&'a [String]>,
    ) -> RuleScope<'a> {
        RuleScope {
            webhooks,
            store_sources: sources,
            sae_notify: sae,
        }
    }

    fn build(rules: &[&str]) -> Result<Rules, Vec<String>> {
        let hooks = vec!["safety".to_owned(), "ops".to_owned()];
        let sources = vec!["epro".to_owned()];
        let sae = vec!["safety".to_owned()];
        let tables: Vec<toml::Table> = rules.iter().map(|r| table(r)).collect();
        Rules::build(&tables, &scope(&hooks, &sources, Some(&sae)))
            .map_err(|issues| issues.iter().map(ToString::to_string).collect())
    }

    const TACHY: &str = r#"name = "tachycardia"
source = "epro"
code = "8867-4"
above = 120
notify = ["safety"]"#;

    #[test]
    fn the_issue_example_builds() {
        let rules = build(&[TACHY]).unwrap();
        let r = &rules.rules()[0];
        assert_eq!(r.test, ValueTest::Above(Decimal::parse("120").unwrap()));
        assert_eq!(r.code, CodeFilter::parse("8867-4"));
        assert_eq!(r.window, None);
        assert_eq!(rules.sae_notify(), ["safety"]);
    }

    #[test]
    fn thresholds_keep_their_digits() {
        let check = |v: &str| {
            let rule = TACHY.replace("above = 120", &format!("above = {v}"));
            match &build(&[&rule]).unwrap().rules()[0].test {
                ValueTest::Above(d) => d.as_str().to_owned(),
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(check("37.5"), "37.5");
        assert_eq!(check("0.1"), "0.1");
        assert_eq!(check("\"160.0000000000000001\""), "160.0000000000000001");
        assert_eq!(check("\" 37.50 \""), "37.50");
        assert_eq!(check("-5"), "-5");
    }

    #[test]
    fn answers_and_windows() {
        let rules = build(&[
            r#"name = "dizzy"
source = "epro"
code = "http://loinc.org|44250-9"
equals = true
notify = ["ops"]"#,
            r#"name = "bp-high"
source = "epro"
code = "8480-6"
above = 160
count = 3
within_s = 86400
notify = ["safety", "ops"]"#,
        ])
        .unwrap();
        assert_eq!(rules.rules()[0].test, ValueTest::Equals("true".into()));
        assert_eq!(
            rules.rules()[0].code.system.as_deref(),
            Some("http://loinc.org")
        );
        assert_eq!(
            rules.rules()[1].window,
            Some(Window {
                count: 3,
                within: Duration::from_secs(86400)
            })
        );
    }

    #[test]
    fn every_problem_is_named_by_its_key() {
        let cases: &[(&str, &str)] = &[
            (
                "name = \"t\"\nsource = \"epro\"\ncode = \"1\"\nnotify = [\"safety\"]",
                "rules[0] (t): needs a test: one of `above`, `below` or `equals`",
            ),
            (
                "name = \"t\"\nsource = \"epro\"\ncode = \"1\"\nabove = 1\nbelow = 0\nnotify = [\"safety\"]",
                "rules[0] (t).below: only one of `above`, `below` and `equals` may be given (make two rules)",
            ),
            (
                "name = \"t\"\nsource = \"epro\"\ncode = \"1\"\nabove = \"high\"\nnotify = [\"safety\"]",
                "rules[0] (t).above: must be a number (`120`, `37.5`) or a string holding one (`\"37.50\"`)",
            ),
            (
                "name = \"t\"\nsource = \"epro\"\ncode = \"1\"\nabove = 1\ncount = 3\nnotify = [\"safety\"]",
                "rules[0] (t).within_s: is required with `count` (the window's length in seconds, e.g. 86400)",
            ),
            (
                "name = \"t\"\nsource = \"epro\"\ncode = \"1\"\nabove = 1\nwithin_s = 60\nnotify = [\"safety\"]",
                "rules[0] (t).count: is required with `within_s` (how many readings in the window fire the rule)",
            ),
            (
                "name = \"t\"\nsource = \"epro\"\ncode = \"1\"\nabove = 1\ncount = 1\nwithin_s = 0\nnotify = [\"safety\"]",
                "rules[0] (t).count: must be in 2..=10000 (got 1)",
            ),
            (
                "name = \"t\"\nsource = \"epro\"\ncode = \"1\"\nabove = 1\nnotify = [\"pager\"]",
                "rules[0] (t).notify[0]: no webhook is named `pager`",
            ),
            (
                "name = \"t\"\nsource = \"epro\"\ncode = \"1\"\nabove = 1\nnotify = []",
                "rules[0] (t).notify: must name at least one webhook",
            ),
            (
                "name = \"t\"\nsource = \"his\"\ncode = \"1\"\nabove = 1\nnotify = [\"safety\"]",
                "rules[0] (t).source: no source of kind `store` is named `his`; store sources: epro",
            ),
            (
                "name = \"sae\"\nsource = \"epro\"\ncode = \"1\"\nabove = 1\nnotify = [\"safety\"]",
                "rules[0] (sae).name: `sae` is reserved for serious adverse events (route them with [ingest] sae_notify)",
            ),
            (
                "name = \"t\"\nsource = \"epro\"\ncode = \"http://loinc.org|\"\nabove = 1\nnotify = [\"safety\"]",
                "rules[0] (t).code: must be a code (`8867-4`) or `system|code` (`http://loinc.org|8867-4`)",
            ),
        ];
        for (rule, expected) in cases {
            let issues = build(&[rule]).unwrap_err();
            assert!(
                issues.iter().any(|i| i == expected),
                "{rule}\nexpected {expected}\ngot {issues:#?}"
            );
        }
        let issues = build(&[
            "name = \"t\"\nsource = \"epro\"\ncode = \"1\"\nabove = 1\nnotify = [\"safety\"]\nthreshold = 3",
        ])
        .unwrap_err();
        assert!(
            issues[0].starts_with("rules[0] (t): unknown field `threshold`"),
            "{issues:?}"
        );
        let issues = build(&[TACHY, TACHY]).unwrap_err();
        assert_eq!(
            issues,
            ["rules[1] (tachycardia).name: duplicate rule name `tachycardia`"]
        );
    }

    #[test]
    fn sae_routing_must_be_said() {
        let hooks = vec!["safety".to_owned()];
        let sources = vec!["epro".to_owned()];
        let issues = Rules::build(&[], &scope(&hooks, &sources, None)).unwrap_err();
        assert_eq!(issues[0].key, "ingest.sae_notify");
        let none: Vec<String> = Vec::new();
        assert!(Rules::build(&[], &scope(&hooks, &sources, Some(&none))).is_ok());
        assert!(Rules::build(&[], &scope(&[], &sources, None)).is_ok());
        let wrong = vec!["pager".to_owned()];
        let issues = Rules::build(&[], &scope(&hooks, &sources, Some(&wrong))).unwrap_err();
        assert_eq!(
            issues[0].to_string(),
            "ingest.sae_notify[0]: no webhook is named `pager`"
        );
    }
}
