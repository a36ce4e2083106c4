//! The FHIR R4 facade: medgate as a read-only FHIR server over every configured source.
//!
//! - `GET /fhir/metadata`: the CapabilityStatement (what is supported; no patient data).
//! - `GET /fhir/Observation?patient=ID`: a searchset Bundle of the patient's Observations from
//!   every source the partner may read (or `_source=NAME[,NAME]`), filtered by `code=` (tokens,
//!   comma = OR) and `date=` (`eq`, `ge`, `gt`, `le`, `lt`; repeat to bound both ends).
//!
//! Errors on these routes are FHIR `OperationOutcome`s: the [`fhir_errors`] layer rewrites
//! the problem documents that [`crate::problem`] makes (the one place errors are mapped to
//! statuses), so both representations always agree. Failed sources and data-quality warnings
//! of a successful search travel in the Bundle as an OperationOutcome entry with
//! `search.mode = outcome`.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{OriginalUri, RawQuery, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use medgate_core::fhir::{resource_id, FhirObservation};
use medgate_core::{CodeFilter, DateTime, Filter, Observation, SourceHandle};
use medgate_pipeline::Summary;
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use serde_json::{json, Value};

use crate::access::Partner;
use crate::audit::Access;
use crate::fetch::validate_patient_id;
use crate::problem::ApiError;
use crate::routes::RequestId;
use crate::state::{AppState, Runtime};

/// The FHIR JSON media type.
pub const FHIR_JSON: &str = "application/fhir+json";

/// How a data route answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Representation {
    /// medgate's flat JSON rows.
    Flat,
    /// A FHIR R4 searchset Bundle.
    Fhir,
}

/// The representation asked for by `_format` (wins) or `Accept`.
///
/// # Errors
/// 400 for a `_format` that is neither JSON nor FHIR JSON.
pub fn representation(
    headers: &HeaderMap,
    format: Option<&str>,
) -> Result<Representation, ApiError> {
    match format.map(str::trim) {
        Some("json" | "application/json") => return Ok(Representation::Flat),
        Some("fhir+json" | "application/fhir+json" | "fhir") => return Ok(Representation::Fhir),
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "_format `{}` is not supported; use json or fhir+json",
                other.chars().take(40).collect::<String>()
            )))
        }
        None => {}
    }
    let wants_fhir = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| v.split(';').next().map(str::trim) == Some(FHIR_JSON));
    Ok(if wants_fhir {
        Representation::Fhir
    } else {
        Representation::Flat
    })
}

/// One issue of an OperationOutcome.
#[derive(Debug, Clone, Serialize)]
pub struct Issue {
    severity: &'static str,
    code: &'static str,
    diagnostics: String,
}

/// Failed sources (errors) and data-quality warnings of a run, as OperationOutcome issues.
pub fn issues_of(summary: &Summary) -> Vec<Issue> {
    let failed = summary.failures.iter().map(|f| Issue {
        severity: "error",
        code: issue_code(f.failure.kind),
        diagnostics: format!("source {}: {}", f.source, f.failure.message),
    });
    let warnings = summary.sources.iter().flat_map(|(source, s)| {
        let listed = s.first_warnings.iter().map(move |w| Issue {
            severity: "warning",
            code: "value",
            diagnostics: format!("source {source}: {w}"),
        });
        let more = (s.warnings > s.first_warnings.len() as u64).then(|| Issue {
            severity: "information",
            code: "informational",
            diagnostics: format!(
                "source {source}: {} data-quality warnings in all",
                s.warnings
            ),
        });
        listed.chain(more)
    });
    failed.chain(warnings).collect()
}

/// FHIR `IssueType` for a problem kind.
fn issue_code(kind: &str) -> &'static str {
    match kind {
        "unauthorized" => "login",
        "forbidden" => "forbidden",
        "not-found" | "unknown-source" | "patient-not-found" => "not-found",
        "bad-request" | "unsupported-format" => "invalid",
        "rate-limited" => "throttled",
        "timeout" => "timeout",
        "unavailable" | "interrupted" => "transient",
        _ => "exception",
    }
}

/// The base URL clients reach this server at (for `fullUrl` and links).
fn base_url(headers: &HeaderMap, runtime: &Runtime) -> String {
    let scheme = if runtime.server.tls_cert.is_some() {
        "https"
    } else {
        headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .filter(|p| *p == "https" || *p == "http")
            .unwrap_or("http")
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| h.bytes().all(|b| b.is_ascii_graphic()) && !h.is_empty())
        .map_or_else(|| runtime.server.listen.to_string(), str::to_owned);
    format!("{scheme}://{host}")
}

/// A searchset Bundle of `observations` with `issues` as an outcome entry.
pub fn search_bundle(
    headers: &HeaderMap,
    runtime: &Runtime,
    self_link: &str,
    observations: &[Observation],
    issues: &[Issue],
) -> Response {
    let base = base_url(headers, runtime);
    let bundle = Bundle {
        base: &base,
        self_link: format!("{base}{self_link}"),
        observations,
        issues,
    };
    match serde_json::to_vec(&bundle) {
        Ok(bytes) => fhir_response(StatusCode::OK, bytes),
        Err(e) => ApiError::Core(medgate_core::Error::Internal(format!(
            "serializing the bundle failed: {e}"
        )))
        .into_response(),
    }
}

fn fhir_response(status: StatusCode, bytes: Vec<u8>) -> Response {
    (status, [(header::CONTENT_TYPE, FHIR_JSON)], bytes).into_response()
}

struct Bundle<'a> {
    base: &'a str,
    self_link: String,
    observations: &'a [Observation],
    issues: &'a [Issue],
}

impl Serialize for Bundle<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("resourceType", "Bundle")?;
        m.serialize_entry("type", "searchset")?;
        m.serialize_entry(
            "timestamp",
            &DateTime::from_timestamp(jiff::Timestamp::now()),
        )?;
        m.serialize_entry("total", &self.observations.len())?;
        m.serialize_entry(
            "link",
            &[json!({"relation": "self", "url": self.self_link})],
        )?;
        m.serialize_entry("entry", &Entries(self))?;
        m.end()
    }
}

struct Entries<'a, 'b>(&'a Bundle<'b>);

impl Serialize for Entries<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let bundle = self.0;
        let mut seq = s.serialize_seq(None)?;
        for o in bundle.observations {
            seq.serialize_element(&Entry {
                full_url: format!("{}/fhir/Observation/{}", bundle.base, resource_id(o)),
                resource: &FhirObservation(o),
                mode: "match",
            })?;
        }
        if !bundle.issues.is_empty() {
            seq.serialize_element(&Entry {
                full_url: format!("urn:uuid:{}", uuid_v4()),
                resource: &OperationOutcome(bundle.issues),
                mode: "outcome",
            })?;
        }
        seq.end()
    }
}

struct Entry<'a, R: Serialize> {
    full_url: String,
    resource: &'a R,
    mode: &'static str,
}

impl<R: Serialize> Serialize for Entry<'_, R> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("fullUrl", &self.full_url)?;
        m.serialize_entry("resource", self.resource)?;
        m.serialize_entry("search", &json!({ "mode": self.mode }))?;
        m.end()
    }
}

/// An OperationOutcome resource.
pub struct OperationOutcome<'a>(pub &'a [Issue]);

impl Serialize for OperationOutcome<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("resourceType", "OperationOutcome")?;
        m.serialize_entry("issue", self.0)?;
        m.end()
    }
}

/// A random RFC 4122 version 4 UUID.
fn uuid_v4() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// `GET /fhir/metadata`: the CapabilityStatement.
#[utoipa::path(get, path = "/fhir/metadata", tag = "fhir",
    responses((status = 200, description = "FHIR R4 CapabilityStatement", body = crate::routes::openapi::FhirResource, content_type = "application/fhir+json")))]
pub async fn metadata(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let runtime = state.runtime();
    let base = base_url(&headers, &runtime);
    let statement = json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": started().to_string(),
        "publisher": "medgate",
        "kind": "instance",
        "software": { "name": "medgate", "version": env!("CARGO_PKG_VERSION") },
        "implementation": {
            "description": "medgate: a read-only FHIR R4 facade over hospital, lab and wearable sources",
            "url": format!("{base}/fhir")
        },
        "fhirVersion": "4.0.1",
        "format": [FHIR_JSON, "json"],
        "rest": [{
            "mode": "server",
            "documentation": "Send Authorization: Bearer <partner API key>. Observations are read through the partner's permitted sources.",
            "security": {
                "cors": false,
                "description": "Partner API keys as bearer tokens (HTTP Authorization header)."
            },
            "resource": [{
                "type": "Observation",
                "profile": "http://hl7.org/fhir/StructureDefinition/Observation",
                "interaction": [{ "code": "search-type" }],
                "searchParam": [
                    { "name": "patient", "type": "reference", "documentation": "Required. The patient id (or Patient/id)." },
                    { "name": "code", "type": "token", "documentation": "system|code or code; comma-separated values are OR." },
                    { "name": "date", "type": "date", "documentation": "Effective time with eq, ge, gt, le or lt; repeat to bound both ends." },
                    { "name": "_source", "type": "uri", "documentation": "medgate source names, comma-separated (default: every source the partner may read)." }
                ]
            }]
        }]
    });
    fhir_response(StatusCode::OK, statement.to_string().into_bytes())
}

fn started() -> DateTime {
    static STARTED: OnceLock<DateTime> = OnceLock::new();
    *STARTED.get_or_init(|| DateTime::from_timestamp(jiff::Timestamp::now()))
}

/// The parsed search parameters.
struct Search {
    patient: String,
    sources: Option<Vec<String>>,
    filter: Filter,
    ignored: Vec<String>,
}

fn parse_search(query: Option<&str>) -> Result<Search, ApiError> {
    let bad = |m: String| ApiError::BadRequest(m);
    let mut patient = None;
    let mut sources = None;
    let mut filter = Filter::default();
    let mut ignored = Vec::new();
    let mut codes_seen = false;
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match key.as_ref() {
            "patient" | "subject" | "patient:Patient" | "subject:Patient" => {
                let id = value.strip_prefix("Patient/").unwrap_or(&value).to_owned();
                if patient.replace(id).is_some() {
                    return Err(bad("give the patient parameter once".into()));
                }
            }
            "_source" => {
                sources = Some(value.split(',').map(|s| s.trim().to_owned()).collect());
            }
            "code" => {
                if codes_seen {
                    return Err(bad(
                        "repeat the code parameter is not supported; separate codes with commas (OR)".into(),
                    ));
                }
                codes_seen = true;
                filter.codes = value
                    .split(',')
                    .map(|t| CodeFilter::parse(t.trim()))
                    .collect();
            }
            "date" => apply_date(&mut filter, &value)?,
            "_format" => {
                if !matches!(
                    value.as_ref(),
                    "json" | "fhir+json" | "application/json" | "application/fhir+json"
                ) {
                    return Err(bad(
                        "_format must be json or fhir+json: this server speaks FHIR JSON".into(),
                    ));
                }
            }
            other => ignored.push(other.chars().take(40).collect()),
        }
    }
    let patient = patient
        .ok_or_else(|| bad("the patient parameter is required, e.g. patient=P000001".into()))?;
    validate_patient_id(&patient)?;
    Ok(Search {
        patient,
        sources,
        filter,
        ignored,
    })
}

/// `date=[prefix]value` into the filter's bounds (FHIR search semantics on ranges).
fn apply_date(filter: &mut Filter, value: &str) -> Result<(), ApiError> {
    let (prefix, text) = match value.get(..2) {
        Some(p @ ("eq" | "ge" | "gt" | "le" | "lt")) => (p, &value[2..]),
        _ => ("eq", value),
    };
    let date = DateTime::parse(text).map_err(|e| {
        ApiError::BadRequest(format!(
            "date must be [eq|ge|gt|le|lt]YYYY[-MM[-DD[Thh:mm:ss±hh:mm]]]: {e}"
        ))
    })?;
    let (start, end) = date.bounds();
    // `bounds` ends are exclusive for dates and equal to the start for instants.
    let last = if end > start {
        end - jiff::SignedDuration::from_nanos(1)
    } else {
        end
    };
    let tighten_since =
        |f: &mut Filter, t| f.since = Some(f.since.map_or(t, |s: jiff::Timestamp| s.max(t)));
    let tighten_until =
        |f: &mut Filter, t| f.until = Some(f.until.map_or(t, |u: jiff::Timestamp| u.min(t)));
    match prefix {
        "ge" => tighten_since(filter, start),
        "gt" => tighten_since(filter, last + jiff::SignedDuration::from_nanos(1)),
        "le" => tighten_until(filter, last),
        "lt" => tighten_until(filter, start - jiff::SignedDuration::from_nanos(1)),
        _ => {
            tighten_since(filter, start);
            tighten_until(filter, last);
        }
    }
    Ok(())
}

/// `GET /fhir/Observation`: FHIR search over the partner's sources.
#[utoipa::path(get, path = "/fhir/Observation", tag = "fhir",
    params(
        ("patient" = String, Query, description = "The patient id (or Patient/id)"),
        ("code" = Option<String>, Query, description = "system|code or code; comma-separated = OR"),
        ("date" = Option<Vec<String>>, Query, description = "eq|ge|gt|le|lt + date or dateTime; repeatable"),
        ("_source" = Option<String>, Query, description = "Source names, comma-separated"),
        ("_format" = Option<String>, Query, description = "json or fhir+json"),
        ("Request-Timeout" = Option<String>, Header, description = "Shorter time budget, e.g. 1500ms or 2s")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "searchset Bundle; failed sources and warnings in an OperationOutcome entry", body = crate::routes::openapi::FhirBundle, content_type = "application/fhir+json"),
        (status = 400, description = "Invalid search parameter", body = crate::routes::openapi::FhirResource, content_type = "application/fhir+json"),
        (status = 401, description = "Missing or unknown API key", body = crate::routes::openapi::FhirResource, content_type = "application/fhir+json"),
        (status = 403, description = "A _source the partner may not read", body = crate::routes::openapi::FhirResource, content_type = "application/fhir+json"),
        (status = 404, description = "A _source that does not exist (for a partner that may read every source)", body = crate::routes::openapi::FhirResource, content_type = "application/fhir+json"),
        (status = 504, description = "Every source timed out", body = crate::routes::openapi::FhirResource, content_type = "application/fhir+json"),
        (status = 429, description = "Over the partner's rate limit", body = crate::routes::openapi::FhirResource, content_type = "application/fhir+json"),
        (status = 502, description = "Every source failed", body = crate::routes::openapi::FhirResource, content_type = "application/fhir+json"),
    ))]
pub async fn search(
    State(state): State<AppState>,
    Extension(partner): Extension<Arc<Partner>>,
    request_id: RequestId,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    RawQuery(query): RawQuery,
) -> Response {
    let mut access = Access::new(&state, &request_id, &partner, "/fhir/Observation");
    if let Some(details) = crate::deid::forced_audit_details(&state.runtime(), &partner) {
        access = access.with_details(details);
    }
    let search = parse_search(query.as_deref());
    if let Ok(s) = &search {
        access = access.patients(vec![s.patient.clone()]);
    }
    let result = async {
        let search = search?;
        let runtime = state.runtime();
        let sources = chosen_sources(&runtime, &partner, search.sources.as_deref())?;
        let deadline = crate::budget::deadline(&headers, &runtime.server)?;
        let count = sources.len();
        let mut request = medgate_pipeline::Request::new(
            sources,
            vec![search.patient.clone()],
            request_id.as_str(),
        );
        request.deadline = Some(deadline);
        request.fetch_budget = deadline.saturating_duration_since(Instant::now());
        request.concurrency = count;
        let profile = crate::deid::profile_for(&runtime, &partner, None, &search.filter)?;
        request.transforms = crate::deid::transforms(profile.as_ref());
        request.filter = search.filter;
        let (observations, summary) = runtime.pipeline.run(request).collect().await?;
        let summary = summary.snapshot();
        let every_source_failed =
            !summary.sources.is_empty() && summary.sources.values().all(|s| s.ok == 0);
        let unknown_everywhere = summary.failures.iter().all(|f| {
            matches!(
                *f.failure.error,
                medgate_core::Error::PatientNotFound { .. }
            )
        });
        if every_source_failed && !unknown_everywhere {
            let first = summary.failures.iter().find(|f| {
                !matches!(
                    *f.failure.error,
                    medgate_core::Error::PatientNotFound { .. }
                )
            });
            if let Some(f) = first {
                return Err(ApiError::Core(medgate_core::Error::clone(&f.failure.error)));
            }
        }
        let mut issues = issues_of(&summary);
        if !search.ignored.is_empty() {
            issues.push(Issue {
                severity: "information",
                code: "not-supported",
                diagnostics: format!("ignored search parameters: {}", search.ignored.join(", ")),
            });
        }
        let self_link = uri
            .path_and_query()
            .map_or("/fhir/Observation", |p| p.as_str());
        let records = observations.len() as u64;
        Ok((
            search_bundle(&headers, &runtime, self_link, &observations, &issues),
            records,
        ))
    }
    .await;
    access.respond(result).await
}

/// The sources a search reads: `_source` (each must be readable) or every readable one.
fn chosen_sources(
    runtime: &Runtime,
    partner: &Partner,
    asked: Option<&[String]>,
) -> Result<Vec<SourceHandle>, ApiError> {
    match asked {
        Some(names) => names
            .iter()
            .map(|name| {
                partner.check_source(name)?;
                runtime.source(name).cloned()
            })
            .collect(),
        None => {
            let readable: Vec<SourceHandle> = runtime
                .catalog
                .sources()
                .iter()
                .filter(|h| partner.check_source(&h.info.name).is_ok())
                .cloned()
                .collect();
            if readable.is_empty() {
                return Err(ApiError::Forbidden(format!(
                    "partner {} may not read any source",
                    partner.name
                )));
            }
            Ok(readable)
        }
    }
}

/// Layer on `/fhir/*`: problem documents become OperationOutcomes with the same status and
/// headers.
pub async fn fhir_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    if !is_problem {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let problem: Value = match axum::body::to_bytes(body, 1 << 20).await {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        Err(_) => Value::Null,
    };
    let kind = problem["type"]
        .as_str()
        .and_then(|t| t.strip_prefix("urn:medgate:problem:"))
        .unwrap_or("exception");
    let mut issues = vec![Issue {
        severity: if parts.status.is_server_error() {
            "fatal"
        } else {
            "error"
        },
        code: issue_code(kind),
        diagnostics: problem["detail"]
            .as_str()
            .unwrap_or("request failed")
            .to_owned(),
    }];
    if let Some(sources) = problem["sources"].as_array() {
        for s in sources {
            if let Some(detail) = s["error"]["detail"].as_str() {
                let kind = s["error"]["type"]
                    .as_str()
                    .and_then(|t| t.strip_prefix("urn:medgate:problem:"))
                    .unwrap_or("exception");
                issues.push(Issue {
                    severity: "error",
                    code: issue_code(kind),
                    diagnostics: format!(
                        "source {}: {detail}",
                        s["source"].as_str().unwrap_or("?")
                    ),
                });
            }
        }
    }
    let body = serde_json::to_vec(&OperationOutcome(&issues)).unwrap_or_default();
    parts
        .headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(params: &[&str]) -> Filter {
        let mut f = Filter::default();
        for p in params {
            apply_date(&mut f, p).unwrap();
        }
        f
    }

    #[test]
    fn date_prefixes_bound_the_range() {
        let f = filter(&["ge2024-01-01", "le2024-01-31"]);
        assert_eq!(f.since.unwrap().to_string(), "2024-01-01T00:00:00Z");
        assert_eq!(
            f.until.unwrap().to_string(),
            "2024-01-31T23:59:59.999999999Z"
        );
        let f = filter(&["2024-02"]);
        assert_eq!(f.since.unwrap().to_string(), "2024-02-01T00:00:00Z");
        assert_eq!(
            f.until.unwrap().to_string(),
            "2024-02-29T23:59:59.999999999Z"
        );
        let f = filter(&["gt2024-01-01T08:00:00+08:00"]);
        assert_eq!(
            f.since.unwrap().to_string(),
            "2024-01-01T00:00:00.000000001Z"
        );
        assert!(apply_date(&mut Filter::default(), "ge01/02/2024").is_err());
    }

    #[test]
    fn search_parameters() {
        let s = parse_search(Some(
            "patient=Patient%2FP1&code=http://loinc.org|8867-4,8310-5&_count=10",
        ))
        .unwrap();
        assert_eq!(s.patient, "P1");
        assert_eq!(s.filter.codes.len(), 2);
        assert_eq!(
            s.filter.codes[0].system.as_deref(),
            Some("http://loinc.org")
        );
        assert_eq!(s.ignored, ["_count"]);
        assert!(parse_search(Some("code=1")).is_err());
        assert!(parse_search(Some("patient=a/b")).is_err());
        assert!(parse_search(Some("patient=P1&_format=xml")).is_err());
    }

    #[test]
    fn uuids_are_version_4() {
        let u = uuid_v4();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert!(matches!(&u[19..20], "8" | "9" | "a" | "b"));
    }
}
