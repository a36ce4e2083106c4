//! Plugin registration and the [`Catalog`] built from the config.
//!
//! Start-up has two phases, as in Vector:
//! 1. [`Registry::validate`]: pure validation, no I/O. Each `[[sources]]` entry is split into
//!    its [`SourceCommon`] keys and the rest, which is deserialized into the plugin's own typed
//!    config (`deny_unknown_fields`) selected by `kind`. `medgate check` runs exactly this.
//! 2. [`Plan::build`]: each plugin config builds its [`DataSource`] from a [`BuildContext`].
//!
//! Adding a source kind or an export format is one plugin crate plus one line in the server's
//! registration list; nothing here or in the handlers names a concrete type.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Debug;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ConfigIssue, ConfigIssues, SourceCommon};
use crate::{DataSource, Exporter, ObservationStore, Result, Upstream};

/// A plugin's typed config for one `[[sources]]` entry (the keys beyond [`SourceCommon`]).
///
/// Implementors write [`build`](SourceConfig::build); `format` and `validate` have defaults.
pub trait SourceConfig: Debug + Send + Sync + 'static {
    /// The entry's payload format as shown by `GET /v1/sources`, if the kind has several.
    fn format(&self) -> Option<&str> {
        None
    }

    /// Checks beyond what serde enforces. Keys are relative to the entry (`url`, `mapping.record`).
    fn validate(&self) -> Vec<ConfigIssue> {
        Vec::new()
    }

    /// Builds the source. Called only on a config that validated.
    ///
    /// # Errors
    /// Anything that could not be checked without building (rare; validation should catch it).
    fn build(&self, ctx: BuildContext) -> Result<Arc<dyn DataSource>>;
}

/// What a plugin gets to build its source with, instead of globals.
#[derive(Clone)]
pub struct BuildContext {
    /// The entry's `name`.
    pub source_name: String,
    /// The HTTP upstream bound to this source's policy.
    pub upstream: Arc<dyn Upstream>,
    /// Cancelled when the gateway shuts down.
    pub shutdown: CancellationToken,
    /// medgate's own store of pushed observations, when one is configured (`[store]`).
    pub store: Option<Arc<dyn ObservationStore>>,
}

impl BuildContext {
    /// A context for tests and tools: a fresh shutdown token.
    pub fn new(source_name: impl Into<String>, upstream: Arc<dyn Upstream>) -> Self {
        BuildContext {
            source_name: source_name.into(),
            upstream,
            shutdown: CancellationToken::new(),
            store: None,
        }
    }
}

type ParseFn = fn(toml::Table) -> std::result::Result<Box<dyn SourceConfig>, String>;

/// The source kinds and export formats this binary knows.
#[derive(Default)]
pub struct Registry {
    kinds: BTreeMap<&'static str, ParseFn>,
    exporters: BTreeMap<&'static str, Arc<dyn Exporter>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers source kind `kind`, whose entries deserialize into `C`.
    pub fn add_source_kind<C: SourceConfig + DeserializeOwned>(
        &mut self,
        kind: &'static str,
    ) -> &mut Self {
        fn parse<C: SourceConfig + DeserializeOwned>(
            t: toml::Table,
        ) -> std::result::Result<Box<dyn SourceConfig>, String> {
            C::deserialize(toml::Value::Table(t))
                .map(|c| Box::new(c) as Box<dyn SourceConfig>)
                .map_err(|e| e.to_string())
        }
        self.kinds.insert(kind, parse::<C>);
        self
    }

    /// Registers an export format under its [`Exporter::format`] key.
    pub fn add_exporter(&mut self, exporter: Arc<dyn Exporter>) -> &mut Self {
        self.exporters.insert(exporter.format(), exporter);
        self
    }

    /// Registered source kinds, sorted.
    pub fn source_kinds(&self) -> Vec<&'static str> {
        self.kinds.keys().copied().collect()
    }

    /// Registered export formats, sorted.
    pub fn formats(&self) -> Vec<&'static str> {
        self.exporters.keys().copied().collect()
    }

    /// The registered exporter for `format` (benchmarks and tools; requests go through the
    /// [`Catalog`], which holds only the enabled ones).
    pub fn exporter(&self, format: &str) -> Option<&Arc<dyn Exporter>> {
        self.exporters.get(format)
    }

    /// Phase 1: validates `config` without any I/O.
    ///
    /// # Errors
    /// Every problem found, each naming its key.
    pub fn validate(&self, config: Config) -> std::result::Result<Plan, ConfigIssues> {
        let mut issues = Vec::new();
        let mut sources = Vec::new();
        let mut names = HashSet::new();
        for (i, entry) in config.sources.iter().enumerate() {
            if let Some(planned) = self.validate_source(i, entry, &mut names, &mut issues) {
                sources.push(planned);
            }
        }
        check_code_map_names(&config, &sources, &mut issues);
        check_body_budget(&config, &sources, &mut issues);
        let exporters = self.validate_exporters(&config, &mut issues);
        issues.extend(crate::config::check_access(&config, &names));
        crate::bounds::check_config(&config, &mut issues);
        if issues.is_empty() {
            Ok(Plan {
                config,
                sources,
                exporters,
            })
        } else {
            Err(ConfigIssues(issues))
        }
    }

    fn validate_source(
        &self,
        index: usize,
        entry: &toml::Table,
        names: &mut HashSet<String>,
        issues: &mut Vec<ConfigIssue>,
    ) -> Option<PlannedSource> {
        let label = match entry.get("name").and_then(|n| n.as_str()) {
            Some(name) => format!("sources[{index}] ({name})"),
            None => format!("sources[{index}]"),
        };
        let common = match SourceCommon::deserialize(toml::Value::Table(entry.clone())) {
            Ok(c) => c,
            Err(e) => {
                issues.push(ConfigIssue::new(&label, one_line(&e.to_string())));
                return None;
            }
        };
        let before = issues.len();
        check_common(&label, &common, names, issues);
        let Some(parse) = self.kinds.get(common.kind.as_str()) else {
            let known = self.source_kinds().join(", ");
            issues.push(ConfigIssue::new(
                format!("{label}.kind"),
                format!("unknown kind `{}`; known kinds: {known}", common.kind),
            ));
            return None;
        };
        let mut rest = entry.clone();
        for key in SourceCommon::KEYS {
            rest.remove(key);
        }
        let plugin = match parse(rest) {
            Ok(p) => p,
            Err(e) => {
                issues.push(ConfigIssue::new(&label, one_line(&e)));
                return None;
            }
        };
        for issue in plugin.validate() {
            issues.push(ConfigIssue::new(
                format!("{label}.{}", issue.key),
                issue.message,
            ));
        }
        (issues.len() == before).then_some(PlannedSource { common, plugin })
    }

    fn validate_exporters(
        &self,
        config: &Config,
        issues: &mut Vec<ConfigIssue>,
    ) -> Vec<Arc<dyn Exporter>> {
        let mut chosen: Vec<Arc<dyn Exporter>> = Vec::new();
        if config.exporters.enabled.is_empty() {
            issues.push(ConfigIssue::new(
                "exporters.enabled",
                "must name at least one format",
            ));
        }
        for (i, format) in config.exporters.enabled.iter().enumerate() {
            match self.exporters.get(format.as_str()) {
                Some(_) if chosen.iter().any(|e| e.format() == format) => {
                    issues.push(ConfigIssue::new(
                        format!("exporters.enabled[{i}]"),
                        format!("`{format}` is listed twice"),
                    ))
                }
                Some(e) => chosen.push(e.clone()),
                None => issues.push(ConfigIssue::new(
                    format!("exporters.enabled[{i}]"),
                    format!(
                        "unknown format `{format}`; known formats: {}",
                        self.formats().join(", ")
                    ),
                )),
            }
        }
        chosen
    }
}

/// `[[code_maps]]` names are unique and every source's `code_maps` names one of them.
fn check_code_map_names(config: &Config, sources: &[PlannedSource], issues: &mut Vec<ConfigIssue>) {
    let mut names = HashSet::new();
    for (i, map) in config.code_maps.iter().enumerate() {
        if map.name.is_empty() || !names.insert(map.name.as_str()) {
            issues.push(ConfigIssue::new(
                format!("code_maps[{i}].name"),
                "must be non-empty and unique",
            ));
        }
    }
    for (i, source) in sources.iter().enumerate() {
        for (j, name) in source.common.code_maps.iter().enumerate() {
            if !names.contains(name.as_str()) {
                issues.push(ConfigIssue::new(
                    format!("sources[{i}] ({}).code_maps[{j}]", source.common.name),
                    format!("no [[code_maps]] entry is named `{name}`"),
                ));
            }
        }
    }
}

/// `[server] max_inflight_body_bytes` admits the largest body any source may return; a
/// smaller budget could never admit a legitimate body of that source.
fn check_body_budget(config: &Config, sources: &[PlannedSource], issues: &mut Vec<ConfigIssue>) {
    let budget = config.server.max_inflight_body_bytes;
    for (i, source) in sources.iter().enumerate() {
        let largest = source.common.max_body_bytes;
        if largest > budget {
            issues.push(ConfigIssue::new(
                "server.max_inflight_body_bytes",
                format!(
                    "must be at least sources[{i}] ({}).max_body_bytes ({largest}), or a body that large could never be admitted (got {budget})",
                    source.common.name
                ),
            ));
        }
    }
}

/// serde/toml messages may span lines (`...\nin `format``); a config problem is one line.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn check_common(
    label: &str,
    c: &SourceCommon,
    names: &mut HashSet<String>,
    issues: &mut Vec<ConfigIssue>,
) {
    let valid_name = !c.name.is_empty()
        && c.name.len() <= 64
        && c.name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !valid_name {
        issues.push(ConfigIssue::new(
            format!("{label}.name"),
            "must be 1-64 of a-z, 0-9, '-', '_' (it is used in URLs)",
        ));
    }
    if !names.insert(c.name.clone()) {
        issues.push(ConfigIssue::new(
            format!("{label}.name"),
            format!("duplicate source name `{}`", c.name),
        ));
    }
    crate::bounds::check_source(label, c, issues);
    if c.timeout_ms > c.deadline_ms {
        issues.push(ConfigIssue::new(
            format!("{label}.timeout_ms"),
            "must not exceed deadline_ms (one attempt cannot outlast the whole call)",
        ));
    }
    if c.retry.base_delay_ms > c.retry.max_delay_ms {
        issues.push(ConfigIssue::new(
            format!("{label}.retry.base_delay_ms"),
            "must not exceed retry.max_delay_ms",
        ));
    }
    if let Err(message) = c.time_zone() {
        issues.push(ConfigIssue::new(format!("{label}.timezone"), message));
    }
    if !(c.breaker.failure_rate > 0.0 && c.breaker.failure_rate <= 1.0) {
        issues.push(ConfigIssue::new(
            format!("{label}.breaker.failure_rate"),
            "must be in (0, 1]",
        ));
    }
}

struct PlannedSource {
    common: SourceCommon,
    plugin: Box<dyn SourceConfig>,
}

/// A validated config, ready to build.
pub struct Plan {
    /// The config it came from.
    pub config: Config,
    sources: Vec<PlannedSource>,
    exporters: Vec<Arc<dyn Exporter>>,
}

impl Plan {
    /// The validated common keys of each source, in config order.
    pub fn sources(&self) -> impl Iterator<Item = &SourceCommon> {
        self.sources.iter().map(|s| &s.common)
    }

    /// Phase 2: builds every source, giving each the upstream `upstream_for` makes for it.
    ///
    /// # Errors
    /// The first source that fails to build.
    pub fn build(
        &self,
        upstream_for: &dyn Fn(&SourceCommon) -> Arc<dyn Upstream>,
        store: Option<Arc<dyn ObservationStore>>,
        shutdown: &CancellationToken,
    ) -> Result<Catalog> {
        let mut sources = Vec::with_capacity(self.sources.len());
        for planned in &self.sources {
            let c = &planned.common;
            let upstream = upstream_for(c);
            let ctx = BuildContext {
                source_name: c.name.clone(),
                upstream: upstream.clone(),
                shutdown: shutdown.clone(),
                store: store.clone(),
            };
            let source = planned.plugin.build(ctx)?;
            let info = SourceInfo {
                name: c.name.clone(),
                kind: c.kind.clone(),
                format: planned.plugin.format().map(String::from),
            };
            sources.push(SourceHandle {
                info,
                common: c.clone(),
                source,
                upstream,
            });
        }
        let exporters = self
            .exporters
            .iter()
            .map(|e| (e.format().to_owned(), e.clone()))
            .collect();
        Ok(Catalog { sources, exporters })
    }
}

/// What `GET /v1/sources` tells about a source.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SourceInfo {
    /// Configured name.
    pub name: String,
    /// Plugin kind.
    pub kind: String,
    /// Payload format, if the kind has several.
    pub format: Option<String>,
}

/// A built source with its configuration.
#[derive(Clone)]
pub struct SourceHandle {
    /// Name, kind, format.
    pub info: SourceInfo,
    /// The common keys it was configured with.
    pub common: SourceCommon,
    /// The source itself.
    pub source: Arc<dyn DataSource>,
    /// The upstream it was given (the server reads its state for status pages).
    pub upstream: Arc<dyn Upstream>,
}

/// The registry built from the config: every request is dispatched through it.
pub struct Catalog {
    sources: Vec<SourceHandle>,
    exporters: BTreeMap<String, Arc<dyn Exporter>>,
}

impl Catalog {
    /// The source named `name`.
    pub fn source(&self, name: &str) -> Option<&SourceHandle> {
        self.sources.iter().find(|s| s.info.name == name)
    }

    /// All sources in config order.
    pub fn sources(&self) -> &[SourceHandle] {
        &self.sources
    }

    /// The enabled exporter for `format`.
    pub fn exporter(&self, format: &str) -> Option<&Arc<dyn Exporter>> {
        self.exporters.get(format)
    }

    /// Enabled format keys, sorted.
    pub fn formats(&self) -> Vec<&str> {
        self.exporters.keys().map(String::as_str).collect()
    }
}
