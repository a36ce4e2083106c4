//! The kick-off request ([`ExportRequest`]), the FHIR `$export` query ([`BulkQuery`]), the
//! partner's grant ([`Grant`]), and their validation against a [`Snapshot`].
//!
//! Validation runs twice: at kick-off, with the grant, so a partner learns at once what is
//! wrong; and when a worker starts the job, against the configuration in force then (a
//! source or cohort removed by a reload in between fails the job with the same message).

use std::collections::HashMap;
use std::sync::Arc;

use jiff::Timestamp;
use medgate_core::config::check_patient_id;
use medgate_core::{CodeFilter, Exporter, Filter, ObservationStore, SourceHandle};
use medgate_deid::Profile;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::RefOr;

use crate::env::Snapshot;
use crate::error::{ExportError, Result};

/// Most `codes` a request may list.
pub const MAX_CODES: usize = 1000;
/// Longest `code` token.
pub const MAX_CODE_LEN: usize = 256;

/// Body of `POST /v1/exports`: what to export, for whom, in which format.
///
/// ```json
/// {"sources": ["his", "epro"], "patients": ["P1", "P2"], "format": "csv",
///  "profile": "research", "since": "2024-01-01T00:00:00Z", "codes": ["8867-4"]}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportRequest {
    /// Source names; each patient's observations come from them in this order. Empty: the
    /// cohort's sources, or else every source the partner may read (with `"all"`, every
    /// `store` source it may read: only those can list their patients).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<String>,
    /// The patients: a list of ids, or `"all"` (every patient with data in the sources,
    /// which must all be `store` sources). Give this or `cohort`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patients: Option<Patients>,
    /// A configured cohort (`[[cohorts]]`) instead of `patients`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cohort: Option<String>,
    /// An enabled export format: `csv`, `json`, `ndjson`, `xlsx`, `fhir-ndjson`, `parquet`.
    pub format: String,
    /// A de-identification profile (`[[profiles]]`). A partner with a forced profile gets
    /// that one; naming another is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// Only observations whose effective time reaches this instant or later (RFC 3339 with an
    /// offset). Refused under a profile that shifts or truncates dates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub since: Option<String>,
    /// Only observations with one of these codes (`code` or `system|code`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub codes: Vec<String>,
}

/// `"patients"`: explicit ids, or every patient the sources hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Patients {
    /// `"all"`.
    All,
    /// `["P1", "P2", …]`, exported in this order.
    List(Vec<String>),
}

impl Serialize for Patients {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Patients::All => s.serialize_str("all"),
            Patients::List(ids) => ids.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Patients {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Visitor;
        const EXPECTED: &str = "\"all\" or an array of patient ids";
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Patients;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(EXPECTED)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<Patients, E> {
                if v == "all" {
                    Ok(Patients::All)
                } else {
                    Err(E::custom(format!(
                        "patients must be {EXPECTED}; a single string other than \"all\" is not accepted"
                    )))
                }
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<Patients, A::Error> {
                let mut ids = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
                while let Some(id) = seq.next_element::<String>()? {
                    ids.push(id);
                }
                Ok(Patients::List(ids))
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl utoipa::PartialSchema for Patients {
    fn schema() -> RefOr<Schema> {
        let all = ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(["all"]))
            .description(Some(
                "Every patient with data in the sources (store sources only)",
            ));
        let id = ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some("^[A-Za-z0-9._:@~-]{1,128}$"));
        let list = ArrayBuilder::new()
            .items(id)
            .min_items(Some(1))
            .description(Some("Patient ids, exported in this order"));
        OneOfBuilder::new().item(all).item(list).into()
    }
}

impl utoipa::ToSchema for Patients {}

/// The query of `GET /fhir/Patient/$export` and `GET /fhir/Group/{cohort}/$export`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BulkQuery {
    /// `application/fhir+ndjson` (default; also `application/ndjson`, `ndjson`), or a medgate
    /// format key (`csv`, `parquet`, …).
    #[serde(rename = "_outputFormat")]
    pub output_format: Option<String>,
    /// Only observations at or after this instant (RFC 3339).
    #[serde(rename = "_since")]
    pub since: Option<String>,
    /// Resource types: only `Observation` is exported.
    #[serde(rename = "_type")]
    pub types: Option<String>,
    /// Comma-separated source names (a medgate extension; default: the cohort's, or for
    /// `Patient/$export` every `store` source the partner may read).
    #[serde(rename = "_source")]
    pub sources: Option<String>,
    /// A de-identification profile (a medgate extension).
    #[serde(rename = "_profile")]
    pub profile: Option<String>,
}

impl BulkQuery {
    /// The kick-off request this query asks for: `Patient/$export` (`cohort = None`) is every
    /// patient of the sources, `Group/{cohort}/$export` the cohort.
    ///
    /// # Errors
    /// [`ExportError::Invalid`] for a `_type` other than `Observation` or an unknown
    /// `_outputFormat` MIME type.
    pub fn to_request(&self, cohort: Option<&str>) -> Result<ExportRequest> {
        if let Some(types) = &self.types {
            if let Some(other) = types
                .split(',')
                .map(str::trim)
                .find(|t| *t != "Observation")
            {
                return Err(ExportError::Invalid(format!(
                    "_type `{other}` is not exported; medgate exports Observation resources only"
                )));
            }
        }
        let format = match self.output_format.as_deref().map(str::trim) {
            None | Some("application/fhir+ndjson" | "application/ndjson" | "ndjson") => {
                "fhir-ndjson".to_owned()
            }
            Some(mime) if mime.contains('/') => {
                return Err(ExportError::Invalid(format!(
                    "_outputFormat `{mime}` is not supported; use application/fhir+ndjson or a \
                     medgate format key (csv, json, ndjson, xlsx, fhir-ndjson, parquet)"
                )))
            }
            Some(key) => key.to_owned(),
        };
        let sources = self
            .sources
            .as_deref()
            .map(|s| {
                s.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        Ok(ExportRequest {
            sources,
            patients: cohort.is_none().then_some(Patients::All),
            cohort: cohort.map(String::from),
            format,
            profile: self.profile.clone(),
            since: self.since.clone(),
            codes: Vec::new(),
        })
    }
}

/// What the partner may do, as the server's access check knows it.
pub struct Grant<'a> {
    /// The partner's configured name.
    pub partner: &'a str,
    /// Whether it may read a source.
    pub may_read: &'a (dyn Fn(&str) -> bool + Sync),
    /// Whether it may download a format.
    pub may_export: &'a (dyn Fn(&str) -> bool + Sync),
    /// The profile forced on it, if any.
    pub profile: Option<&'a str>,
}

impl Grant<'_> {
    /// A grant that permits everything (the CLI's local mode, tests).
    pub fn unrestricted() -> Grant<'static> {
        Grant {
            partner: "local",
            may_read: &|_| true,
            may_export: &|_| true,
            profile: None,
        }
    }

    /// `request` with the grant applied: sources checked (and filled in when empty),
    /// format checked, the forced profile put in.
    ///
    /// # Errors
    /// [`ExportError::Forbidden`] for a source or format outside the grant or another
    /// profile than the forced one; [`ExportError::Invalid`] when no source is left.
    pub fn apply(&self, snapshot: &Snapshot, mut request: ExportRequest) -> Result<ExportRequest> {
        if request.sources.is_empty() {
            let from_cohort = request
                .cohort
                .as_deref()
                .and_then(|c| snapshot.cohort(c))
                .map(|c| c.sources.clone())
                .unwrap_or_default();
            // `"all"` (a plain `Patient/$export`) can only run over sources that list their
            // patients: default to those, not to sources that would fail the request.
            let all = from_cohort.is_empty() && request.patients == Some(Patients::All);
            request.sources = if from_cohort.is_empty() {
                snapshot
                    .sources
                    .iter()
                    .filter(|s| !all || s.info.kind == medgate_source_store::KIND)
                    .map(|s| s.info.name.clone())
                    .filter(|s| (self.may_read)(s))
                    .collect()
            } else {
                from_cohort
            };
            if request.sources.is_empty() && all {
                return Err(ExportError::Invalid(format!(
                    "patients \"all\" needs sources that can list their patients (kind `{}`), \
                     and partner {} may read none: list the patients or name a cohort",
                    medgate_source_store::KIND,
                    self.partner
                )));
            }
            if request.sources.is_empty() {
                return Err(ExportError::Forbidden(format!(
                    "partner {} may read no configured source",
                    self.partner
                )));
            }
        }
        // The grant first: a source outside it is refused whether or not it exists.
        if let Some(s) = request.sources.iter().find(|s| !(self.may_read)(s)) {
            return Err(ExportError::Forbidden(format!(
                "partner {} may not read source {s}",
                self.partner
            )));
        }
        if !(self.may_export)(&request.format) {
            return Err(ExportError::Forbidden(format!(
                "partner {} may not download format {}",
                self.partner, request.format
            )));
        }
        match (self.profile, request.profile.as_deref()) {
            (Some(forced), Some(asked)) if forced != asked => {
                return Err(ExportError::Forbidden(format!(
                    "partner {} exports with profile {forced} only; leave profile out or name {forced}",
                    self.partner
                )))
            }
            (Some(forced), _) => request.profile = Some(forced.to_owned()),
            (None, _) => {}
        }
        Ok(request)
    }
}

/// Who the job's patients are.
#[derive(Clone)]
pub(crate) enum PatientSet {
    /// An explicit list or a cohort's.
    List(Arc<Vec<String>>),
    /// Every patient of these `store` sources.
    All {
        index: Arc<dyn ObservationStore>,
        sources: Vec<String>,
    },
}

/// A request checked against a snapshot: everything a run needs.
#[derive(Clone)]
pub struct Resolved {
    pub(crate) sources: Vec<SourceHandle>,
    pub(crate) exporter: Arc<dyn Exporter>,
    pub(crate) profile: Option<Arc<Profile>>,
    pub(crate) patients: PatientSet,
    pub(crate) filter: Filter,
    pub(crate) cohort: Option<String>,
}

impl Resolved {
    /// Source names, in request order.
    pub fn source_names(&self) -> Vec<String> {
        self.sources.iter().map(|s| s.info.name.clone()).collect()
    }

    /// The format key.
    pub fn format(&self) -> &'static str {
        self.exporter.format()
    }

    /// The profile's name and its key's public id.
    pub fn profile(&self) -> Option<(String, Option<String>)> {
        self.profile
            .as_ref()
            .map(|p| (p.name().to_owned(), p.key_id()))
    }

    /// Patients, when known before running (a list or a cohort; not `"all"`).
    pub fn patient_count(&self) -> Option<u64> {
        match &self.patients {
            PatientSet::List(ids) => Some(ids.len() as u64),
            PatientSet::All { .. } => None,
        }
    }

    /// The cohort's name, if the request named one.
    pub fn cohort(&self) -> Option<&str> {
        self.cohort.as_deref()
    }
}

/// Checks `request` against `snapshot` and resolves its parts. Reads a cohort's file (off
/// the async threads).
///
/// # Errors
/// Every problem as an [`ExportError`] a partner can act on.
pub async fn resolve(snapshot: &Snapshot, request: &ExportRequest) -> Result<Resolved> {
    let exporter = snapshot.exporter(&request.format).cloned().ok_or_else(|| {
        ExportError::Invalid(format!(
            "format `{}` is not enabled; enabled formats: {}",
            request.format,
            snapshot.formats().join(", ")
        ))
    })?;
    let sources = resolve_sources(snapshot, &request.sources)?;
    let profile = match &request.profile {
        Some(name) => Some(snapshot.profiles.get(name).ok_or_else(|| {
            let known: Vec<&str> = snapshot.profiles.names().collect();
            ExportError::NotFound(format!(
                "no profile is named `{name}`; configured profiles: {}",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ))
        })?),
        None => None,
    };
    let filter = filter(request, profile.as_deref())?;
    let patients = resolve_patients(snapshot, request, &sources).await?;
    Ok(Resolved {
        sources,
        exporter,
        profile,
        patients,
        filter,
        cohort: request.cohort.clone(),
    })
}

fn resolve_sources(snapshot: &Snapshot, names: &[String]) -> Result<Vec<SourceHandle>> {
    if names.is_empty() {
        return Err(ExportError::Invalid(
            "sources must name at least one source".into(),
        ));
    }
    let mut handles: Vec<SourceHandle> = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let handle = snapshot.source(name).ok_or_else(|| {
            ExportError::NotFound(format!("sources[{i}]: no source is named `{name}`"))
        })?;
        if handles.iter().any(|h| h.info.name == *name) {
            return Err(ExportError::Invalid(format!(
                "sources[{i}]: source {name} is listed twice"
            )));
        }
        handles.push(handle.clone());
    }
    Ok(handles)
}

/// `since` and `codes` as the pipeline's filter.
fn filter(request: &ExportRequest, profile: Option<&Profile>) -> Result<Filter> {
    let since = match &request.since {
        None => None,
        Some(text) => {
            let at: Timestamp = text.trim().parse().map_err(|_| {
                ExportError::Invalid(format!(
                    "since `{text}` is not an RFC 3339 date-time with an offset, e.g. \
                     2024-01-01T00:00:00Z"
                ))
            })?;
            if let Some(p) = profile.filter(|p| moves_dates(p)) {
                return Err(ExportError::Invalid(format!(
                    "since cannot be used with profile {}: it shifts or truncates dates, and a \
                     filter on the real dates would reveal them; export without since and \
                     filter the de-identified dates instead",
                    p.name()
                )));
            }
            Some(at)
        }
    };
    if request.codes.len() > MAX_CODES {
        return Err(ExportError::Invalid(format!(
            "codes lists {} codes; at most {MAX_CODES}",
            request.codes.len()
        )));
    }
    let mut codes = Vec::with_capacity(request.codes.len());
    for (i, token) in request.codes.iter().enumerate() {
        let bad = token.is_empty()
            || token.len() > MAX_CODE_LEN
            || token.chars().any(char::is_control)
            || token.ends_with('|');
        if bad {
            return Err(ExportError::Invalid(format!(
                "codes[{i}] must be `code` or `system|code`, 1-{MAX_CODE_LEN} characters without \
                 control characters"
            )));
        }
        codes.push(CodeFilter::parse(token));
    }
    Ok(Filter {
        since,
        until: None,
        codes,
    })
}

/// Whether `profile` changes dates (a filter on real dates would then leak them).
fn moves_dates(profile: &Profile) -> bool {
    let c = profile.config();
    c.date_shift_max_days > 0 || c.truncate_to.is_some()
}

async fn resolve_patients(
    snapshot: &Snapshot,
    request: &ExportRequest,
    sources: &[SourceHandle],
) -> Result<PatientSet> {
    match (&request.patients, &request.cohort) {
        (Some(_), Some(_)) => Err(ExportError::Invalid(
            "give either patients or cohort, not both".into(),
        )),
        (None, None) => Err(ExportError::Invalid(
            "patients (a list of ids, or \"all\") or cohort is required".into(),
        )),
        (Some(Patients::List(ids)), None) => {
            check_list(ids, snapshot.max_patients)?;
            Ok(PatientSet::List(Arc::new(ids.clone())))
        }
        (Some(Patients::All), None) => all_patients(snapshot, sources),
        (None, Some(name)) => cohort_patients(snapshot, name).await,
    }
}

fn check_list(ids: &[String], max: usize) -> Result<()> {
    if ids.is_empty() {
        return Err(ExportError::Invalid(
            "patients is empty; list at least one id, or use \"all\"".into(),
        ));
    }
    if ids.len() > max {
        return Err(ExportError::Invalid(format!(
            "at most {max} patients may be listed; got {} (use a cohort for larger lists)",
            ids.len()
        )));
    }
    let mut seen: HashMap<&str, usize> = HashMap::with_capacity(ids.len());
    for (i, id) in ids.iter().enumerate() {
        check_patient_id(id).map_err(|e| ExportError::Invalid(format!("patients[{i}]: {e}")))?;
        if let Some(first) = seen.insert(id, i) {
            return Err(ExportError::Invalid(format!(
                "patients[{i}] repeats patients[{first}]"
            )));
        }
    }
    Ok(())
}

fn all_patients(snapshot: &Snapshot, sources: &[SourceHandle]) -> Result<PatientSet> {
    if let Some(s) = sources
        .iter()
        .find(|s| s.info.kind != medgate_source_store::KIND)
    {
        return Err(ExportError::Invalid(format!(
            "patients \"all\" needs sources that can list their patients (kind `{}`); source {} \
             is of kind `{}` and cannot: list the patients or name a cohort",
            medgate_source_store::KIND,
            s.info.name,
            s.info.kind
        )));
    }
    let index = snapshot.patient_index.clone().ok_or_else(|| {
        ExportError::Unavailable("patients \"all\" needs the store, and none is configured".into())
    })?;
    Ok(PatientSet::All {
        index,
        sources: sources.iter().map(|s| s.info.name.clone()).collect(),
    })
}

async fn cohort_patients(snapshot: &Snapshot, name: &str) -> Result<PatientSet> {
    let cohort = snapshot
        .cohort(name)
        .cloned()
        .ok_or_else(|| ExportError::NotFound(format!("no cohort is named `{name}`")))?;
    let mut ids = cohort.patients.clone();
    if let Some(file) = cohort.patients_file.clone() {
        let read =
            tokio::task::spawn_blocking(move || medgate_core::config::read_cohort_file(&file))
                .await
                .map_err(|e| ExportError::Internal(format!("reading cohort {name}: {e}")))?;
        // The file's message names the file and line, never an id.
        ids.extend(
            read.map_err(|e| ExportError::Internal(format!("cohort {name} cannot be read: {e}")))?,
        );
    }
    if ids.is_empty() {
        return Err(ExportError::Invalid(format!(
            "cohort {name} has no patients"
        )));
    }
    // Inline and file ids together: each once, in their first position.
    let mut seen = std::collections::HashSet::with_capacity(ids.len());
    ids.retain(|id| seen.insert(id.clone()));
    Ok(PatientSet::List(Arc::new(ids)))
}
