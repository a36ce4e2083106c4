//! One `[[profiles]]` entry of the config file, and its pure validation.
//!
//! ```toml
//! [[profiles]]
//! name = "research"
//! pseudonymize_patient_ids = true
//! pseudonym_key_env = "MEDGATE_PSEUDONYM_KEY"
//! date_shift_max_days = 364
//! truncate_to = "day"
//! drop_free_text = true
//! drop_fields = ["device"]
//! ```
//!
//! Core keeps the entries as raw `toml::Table`s (core cannot depend on this crate); this
//! module turns them into [`ProfileConfig`]s and reports every problem as a
//! [`ConfigIssue`] keyed `profiles[0] (research).date_shift_max_days`. Nothing here reads
//! the environment: the key is loaded by [`Profiles::build`](crate::Profiles::build).

use std::collections::HashSet;

use medgate_core::{ConfigIssue, Precision};
use serde::Deserialize;

/// Largest accepted `date_shift_max_days` (ten years).
pub const MAX_SHIFT_DAYS: u32 = 3650;

/// One de-identification profile.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileConfig {
    /// Name by which requests, partners and jobs choose the profile: 1–64 of `a-z`, `0-9`,
    /// `-`, `_`; unique among profiles.
    pub name: String,
    /// Replace each patient id by `psn-` + 32 hex digits of HMAC-SHA256(key,
    /// `"patient-id:" + id`), observation ids by `obs-` + 32 hex digits, literal references
    /// (`hasMember`, `derivedFrom`, `device`) by pseudonymous ones, and every remaining
    /// occurrence of the patient id in text by its pseudonym. Default `false`.
    #[serde(default)]
    pub pseudonymize_patient_ids: bool,
    /// Name of the environment variable holding the key (hex, 64 to 1024 digits: 32 to 512
    /// bytes); read only when pseudonymizing or shifting dates. `[A-Z_][A-Z0-9_]*`, at most
    /// 128 characters. Default `MEDGATE_PSEUDONYM_KEY`.
    #[serde(default = "default_key_env")]
    pub pseudonym_key_env: String,
    /// Shift every date-time of a patient by one offset of ±1 to ±`date_shift_max_days` days
    /// derived from HMAC-SHA256(key, `"date-shift:" + id`): the same for every source and
    /// every run with one key, so intervals are kept. 0 to 3650; 0 (the default) shifts
    /// nothing.
    #[serde(default)]
    pub date_shift_max_days: u32,
    /// After shifting, cut every date-time to `"day"`, `"month"` or `"year"`; absent keeps
    /// the written precision.
    #[serde(default)]
    pub truncate_to: Option<TruncateTo>,
    /// Remove free text: string values (they become no value with `dataAbsentReason =
    /// masked`), concept texts, displays of codings without a code system, reference
    /// displays and reference-range texts. Displays from a code system (LOINC names) are
    /// kept. Default `false`.
    #[serde(default)]
    pub drop_free_text: bool,
    /// Parts of the record removed entirely, from [`DropField`]'s list; each at most once.
    /// Default none.
    #[serde(default)]
    pub drop_fields: Vec<DropField>,
}

fn default_key_env() -> String {
    "MEDGATE_PSEUDONYM_KEY".to_owned()
}

/// `truncate_to`: the coarsest precision kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TruncateTo {
    /// `2024-03-01`
    Day,
    /// `2024-03`
    Month,
    /// `2024`
    Year,
}

impl TruncateTo {
    /// Core's precision for it.
    pub fn precision(self) -> Precision {
        match self {
            TruncateTo::Day => Precision::Day,
            TruncateTo::Month => Precision::Month,
            TruncateTo::Year => Precision::Year,
        }
    }
}

/// A part of the record that `drop_fields` can remove (the closed list).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropField {
    /// `category` (vital-signs, laboratory …).
    Category,
    /// `issued`, when the result was made available.
    Issued,
    /// `interpretation` (H, L, N …), of the observation and of its components.
    Interpretation,
    /// `referenceRange`, of the observation and of its components.
    ReferenceRange,
    /// `hasMember` references.
    HasMember,
    /// `derivedFrom` references.
    DerivedFrom,
    /// The `device` reference.
    Device,
    /// Data-quality warnings (messages and positions).
    Warnings,
}

impl DropField {
    /// Every accepted value, as written in the config.
    pub const ALL: [&'static str; 8] = [
        "category",
        "issued",
        "interpretation",
        "reference_range",
        "has_member",
        "derived_from",
        "device",
        "warnings",
    ];
}

/// `profiles[index] (name)`, or `profiles[index]` when the entry has no readable name.
pub fn label(index: usize, entry: &toml::Table) -> String {
    match entry.get("name").and_then(toml::Value::as_str) {
        Some(name) => format!("profiles[{index}] ({name})"),
        None => format!("profiles[{index}]"),
    }
}

impl ProfileConfig {
    /// Reads entry `index`.
    ///
    /// # Errors
    /// The deserialization problem, keyed by the entry's label (and the field when one is
    /// named).
    pub fn from_table(index: usize, entry: &toml::Table) -> Result<ProfileConfig, ConfigIssue> {
        let label = label(index, entry);
        if let Some(issue) = unknown_values(&label, entry) {
            return Err(issue);
        }
        ProfileConfig::deserialize(toml::Value::Table(entry.clone()))
            .map_err(|e| ConfigIssue::new(label, one_line(&e.to_string())))
    }

    /// Whether the profile needs the key (pseudonyms or date shifts).
    pub fn needs_key(&self) -> bool {
        self.pseudonymize_patient_ids || self.date_shift_max_days > 0
    }

    /// Whether the profile shifts or truncates dates: a filter on real dates (`since`,
    /// `date=ge…`) would then reveal them, so requests under it may not carry one.
    pub fn moves_dates(&self) -> bool {
        self.date_shift_max_days > 0 || self.truncate_to.is_some()
    }

    /// Whether the profile changes anything at all.
    pub fn is_identity(&self) -> bool {
        !self.needs_key()
            && self.truncate_to.is_none()
            && !self.drop_free_text
            && self.drop_fields.is_empty()
    }

    /// Checks the values (no I/O); `label` is `profiles[i] (name)`.
    pub fn validate(&self, label: &str) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        let valid_name = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !valid_name {
            issues.push(ConfigIssue::new(
                format!("{label}.name"),
                "must be 1-64 of a-z, 0-9, '-', '_' (requests name it)",
            ));
        }
        if self.date_shift_max_days > MAX_SHIFT_DAYS {
            issues.push(ConfigIssue::new(
                format!("{label}.date_shift_max_days"),
                format!("must be between 0 and {MAX_SHIFT_DAYS} days"),
            ));
        }
        if !is_env_name(&self.pseudonym_key_env) {
            issues.push(ConfigIssue::new(
                format!("{label}.pseudonym_key_env"),
                "must be an environment variable name: [A-Z_][A-Z0-9_]*, at most 128 characters",
            ));
        }
        let mut seen = HashSet::new();
        for (i, field) in self.drop_fields.iter().enumerate() {
            if !seen.insert(*field) {
                issues.push(ConfigIssue::new(
                    format!("{label}.drop_fields[{i}]"),
                    "is listed twice",
                ));
            }
        }
        issues
    }
}

/// Every problem of every `[[profiles]]` entry, names unique (pure: the key is not read).
pub fn validate_profiles(entries: &[toml::Table]) -> Vec<ConfigIssue> {
    parse_profiles(entries).1
}

/// The entries that parse, and every problem found.
pub(crate) fn parse_profiles(entries: &[toml::Table]) -> (Vec<ProfileConfig>, Vec<ConfigIssue>) {
    let mut issues = Vec::new();
    let mut profiles = Vec::new();
    let mut names = HashSet::new();
    for (i, entry) in entries.iter().enumerate() {
        let profile = match ProfileConfig::from_table(i, entry) {
            Ok(p) => p,
            Err(issue) => {
                issues.push(issue);
                continue;
            }
        };
        let label = label(i, entry);
        issues.extend(profile.validate(&label));
        if !names.insert(profile.name.clone()) {
            issues.push(ConfigIssue::new(
                format!("{label}.name"),
                format!("duplicate profile name `{}`", profile.name),
            ));
        }
        profiles.push(profile);
    }
    (profiles, issues)
}

/// Names the element of `truncate_to` or `drop_fields` that is not an accepted value, which
/// serde's message would only name by value.
fn unknown_values(label: &str, entry: &toml::Table) -> Option<ConfigIssue> {
    if let Some(text) = entry.get("truncate_to").and_then(toml::Value::as_str) {
        if !matches!(text, "day" | "month" | "year") {
            return Some(ConfigIssue::new(
                format!("{label}.truncate_to"),
                format!("unknown value `{text}`; expected day, month or year"),
            ));
        }
    }
    let fields = entry.get("drop_fields").and_then(toml::Value::as_array)?;
    fields.iter().enumerate().find_map(|(i, v)| {
        let text = v.as_str()?;
        (!DropField::ALL.contains(&text)).then(|| {
            ConfigIssue::new(
                format!("{label}.drop_fields[{i}]"),
                format!(
                    "unknown field `{text}`; known fields: {}",
                    DropField::ALL.join(", ")
                ),
            )
        })
    })
}

fn is_env_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && !b[0].is_ascii_digit()
        && b.iter()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == b'_')
}

/// serde/toml messages may span lines; a config problem is one line.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(text: &str) -> Vec<toml::Table> {
        #[derive(Deserialize)]
        struct File {
            profiles: Vec<toml::Table>,
        }
        toml::from_str::<File>(text).unwrap().profiles
    }

    fn issues(text: &str) -> Vec<String> {
        validate_profiles(&entries(text))
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn the_issue_example_parses_with_its_values() {
        let list = entries(
            r#"
            [[profiles]]
            name = "research"
            pseudonymize_patient_ids = true
            pseudonym_key_env = "MEDGATE_PSEUDONYM_KEY"
            date_shift_max_days = 364
            truncate_to = "day"
            drop_free_text = true
            drop_fields = ["device"]
            "#,
        );
        let (profiles, problems) = parse_profiles(&list);
        assert!(problems.is_empty(), "{problems:?}");
        let p = &profiles[0];
        assert_eq!(p.name, "research");
        assert!(p.pseudonymize_patient_ids && p.drop_free_text && p.needs_key());
        assert_eq!(p.date_shift_max_days, 364);
        assert_eq!(p.truncate_to, Some(TruncateTo::Day));
        assert_eq!(p.drop_fields, vec![DropField::Device]);
    }

    #[test]
    fn defaults_change_nothing_and_need_no_key() {
        let (profiles, problems) = parse_profiles(&entries("[[profiles]]\nname = \"open\""));
        assert!(problems.is_empty());
        assert!(profiles[0].is_identity());
        assert!(!profiles[0].needs_key());
        assert_eq!(profiles[0].pseudonym_key_env, "MEDGATE_PSEUDONYM_KEY");
    }

    #[test]
    fn every_problem_names_its_key() {
        let check = |text: &str, want: &str| {
            let got = issues(text);
            assert_eq!(got, vec![want.to_owned()], "{text}");
        };
        check(
            "[[profiles]]\nname = \"r\"\ndate_shift_max_days = 4000",
            "profiles[0] (r).date_shift_max_days: must be between 0 and 3650 days",
        );
        check(
            "[[profiles]]\nname = \"R S\"",
            "profiles[0] (R S).name: must be 1-64 of a-z, 0-9, '-', '_' (requests name it)",
        );
        check(
            "[[profiles]]\nname = \"r\"\ntruncate_to = \"week\"",
            "profiles[0] (r).truncate_to: unknown value `week`; expected day, month or year",
        );
        check(
            "[[profiles]]\nname = \"r\"\ndrop_fields = [\"device\", \"notes\"]",
            "profiles[0] (r).drop_fields[1]: unknown field `notes`; known fields: category, \
             issued, interpretation, reference_range, has_member, derived_from, device, warnings",
        );
        check(
            "[[profiles]]\nname = \"r\"\ndrop_fields = [\"device\", \"device\"]",
            "profiles[0] (r).drop_fields[1]: is listed twice",
        );
        check(
            "[[profiles]]\nname = \"r\"\npseudonym_key_env = \"my-key\"",
            "profiles[0] (r).pseudonym_key_env: must be an environment variable name: \
             [A-Z_][A-Z0-9_]*, at most 128 characters",
        );
        check(
            "[[profiles]]\nname = \"r\"\n[[profiles]]\nname = \"r\"",
            "profiles[1] (r).name: duplicate profile name `r`",
        );
        let unknown = issues("[[profiles]]\nname = \"r\"\nshift_days = 3");
        assert_eq!(unknown.len(), 1);
        assert!(
            unknown[0].starts_with("profiles[0] (r): unknown field `shift_days`"),
            "{unknown:?}"
        );
        let negative = issues("[[profiles]]\nname = \"r\"\ndate_shift_max_days = -1");
        assert!(negative[0].starts_with("profiles[0] (r): "), "{negative:?}");
        let nameless = issues("[[profiles]]\ndrop_free_text = true");
        assert!(
            nameless[0].starts_with("profiles[0]: missing field `name`"),
            "{nameless:?}"
        );
    }
}
