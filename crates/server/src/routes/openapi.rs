//! `GET /openapi.json`: the OpenAPI 3.1 document, generated from the handlers' annotations.
//!
//! The schema types below describe JSON that other crates produce (the core `Observation`);
//! an end-to-end test checks they list exactly the fields actually served.

use axum::Json;
use utoipa::{OpenApi, ToSchema};

use super::{alerts, data, export, fhir, ingest, jobs, sources};

/// One row of the flat projection of an observation (a panel's components are rows of their
/// own, with id `<id>#<index>`). The first ten keys are always present (null when empty); the
/// others appear only when they have a value. Column meanings are in the README.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Observation {
    /// The patient id asked for.
    patient_id: String,
    /// Source name.
    source: String,
    /// Upstream observation id; components are `<id>#<index>`.
    id: String,
    /// Category code, e.g. `vital-signs`.
    category: Option<String>,
    /// Code system URI, e.g. `http://loinc.org` (a mapped code when a code map applied).
    code_system: Option<String>,
    /// Code, e.g. LOINC `8867-4`.
    code: Option<String>,
    /// Name of the code.
    display: Option<String>,
    /// The value: a JSON number with its written digits, a string (coded values' display,
    /// ranges as `low..high`, `>=low` or `<=high`, ratios as `n:d`, periods as `start/end`,
    /// date-times), a boolean, or null.
    #[schema(value_type = Option<OneValue>)]
    value: Option<serde_json::Value>,
    /// UCUM code when the upstream gives one, else its unit text (ratios: `unit/unit`).
    unit: Option<String>,
    /// RFC 3339 with the upstream's offset, a date, a year-month, a year, or a local time
    /// without offset (see `effective_zone`).
    effective: Option<String>,
    /// FHIR status (`final`, `preliminary`, …).
    status: Option<String>,
    /// FHIR type of `value`: `Quantity`, `CodeableConcept`, `string`, `boolean`, `integer`,
    /// `Range`, `Ratio`, `Period`, `dateTime`, `time`.
    value_type: Option<String>,
    /// `<`, `<=`, `>=` or `>`: the true value lies beyond `value`.
    value_comparator: Option<String>,
    /// Code system of a coded value.
    value_code_system: Option<String>,
    /// Code of a coded value.
    value_code: Option<String>,
    /// Interpretation codes (`H`, `L`, `N`, `A` …), `;`-separated.
    interpretation: Option<String>,
    /// Low bound of the first reference range, as written.
    #[schema(value_type = Option<f64>)]
    reference_low: Option<serde_json::Value>,
    /// High bound of the first reference range, as written.
    #[schema(value_type = Option<f64>)]
    reference_high: Option<serde_json::Value>,
    /// Unit of the reference range bounds.
    reference_unit: Option<String>,
    /// Reference range as text.
    reference_text: Option<String>,
    /// End of an effective period.
    effective_end: Option<String>,
    /// `as-sent` (the upstream wrote the offset), `assumed` (the source's configured time
    /// zone was applied) or `local` (no offset known).
    effective_zone: Option<String>,
    /// When the result was issued (RFC 3339).
    issued: Option<String>,
    /// Code system of `category`.
    category_system: Option<String>,
    /// Why there is no value (FHIR data-absent-reason code, e.g. `error`).
    data_absent_reason: Option<String>,
    /// `system|code` of the upstream's own coding when a code map replaced it in `code`.
    mapped_from: Option<String>,
    /// Data-quality warnings with their positions in the upstream payload, `; `-separated.
    warnings: Option<String>,
}

/// A value: number, string or boolean.
#[derive(ToSchema)]
#[allow(dead_code)]
pub enum OneValue {
    /// A number as written.
    Number(f64),
    /// Text.
    Text(String),
    /// A boolean.
    Boolean(bool),
}

/// A data-quality warning: where in the upstream payload, and what.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Warning {
    /// `line 12, column 5` (XML) or a JSON Pointer.
    at: String,
    /// What could not be read.
    message: String,
}

/// Warnings of an answer.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Warnings {
    /// How many.
    count: u64,
    /// The first few.
    first: Vec<Warning>,
}

/// A FHIR R4 Bundle (`searchset`), see <https://hl7.org/fhir/R4/bundle.html>.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct FhirBundle {
    /// `Bundle`.
    #[schema(rename = "resourceType")]
    resource_type: String,
    /// `searchset`.
    r#type: String,
    /// Matches.
    total: u64,
    /// Observations (`search.mode = match`) and an OperationOutcome (`outcome`).
    #[schema(value_type = Vec<Object>)]
    entry: Vec<serde_json::Value>,
}

/// A FHIR R4 resource (CapabilityStatement, OperationOutcome …).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct FhirResource {
    /// The resource type.
    #[schema(rename = "resourceType")]
    resource_type: String,
}

/// Answer of `/v1/data/{source}`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct SourceData {
    source: String,
    patient_id: String,
    observations: Vec<Observation>,
    warnings: Warnings,
}

/// One source's outcome in a fan-out.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct SourceStatus {
    source: String,
    /// `ok` or `error`.
    status: String,
    /// Observations this source contributed.
    observations: u64,
    /// Data-quality warnings on them.
    warnings: u64,
    /// The first few warnings.
    first_warnings: Option<Vec<Warning>>,
    /// The source's problem when `status` is `error`.
    error: Option<Problem>,
}

/// Answer of `/v1/patients/{patient_id}/observations`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct PatientData {
    patient_id: String,
    sources: Vec<SourceStatus>,
    observations: Vec<Observation>,
}

/// RFC 9457 problem details.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Problem {
    /// `urn:medgate:problem:<kind>`.
    r#type: String,
    title: String,
    status: u16,
    /// What went wrong, for a partner to act on.
    detail: String,
    /// Enabled formats (unsupported-format only).
    formats: Option<Vec<String>>,
}

/// Adds the bearer API-key scheme the `/v1` operations refer to.
struct ApiKeyScheme;

impl utoipa::Modify for ApiKeyScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("Partner API key"))
                    .build(),
            ),
        );
    }
}

/// Adds the answers every operation can give, whatever its handler: the edge's 414/431, a
/// panic's 500, an overloaded gateway's 503, and for key-protected operations 401 and 429 —
/// so a client (or schemathesis) never meets an undocumented status.
struct CommonResponses;

impl utoipa::Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let problem = |description: &str, media: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    media,
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name(
                            if media == "application/fhir+json" {
                                "FhirResource"
                            } else {
                                "Problem"
                            },
                        )))
                        .build(),
                )
                .build()
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            let media = if path.starts_with("/fhir/") {
                "application/fhir+json"
            } else {
                "application/problem+json"
            };
            for operation in [&mut item.get, &mut item.post, &mut item.delete]
                .into_iter()
                .flatten()
            {
                let secured = operation.security.is_some();
                let mut common = vec![
                    ("414", "Request target too long"),
                    ("431", "Request headers too large"),
                    ("500", "Internal error (logged)"),
                    (
                        "503",
                        "The gateway or a source is unavailable right now (see Retry-After)",
                    ),
                ];
                if secured {
                    common.push(("401", "Missing or unknown API key"));
                    common.push((
                        "429",
                        "Over the partner's rate or concurrency limit (see Retry-After)",
                    ));
                }
                for (status, description) in common {
                    operation
                        .responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| problem(description, media).into());
                }
            }
        }
    }
}

/// The API description.
#[derive(OpenApi)]
#[openapi(
    modifiers(&ApiKeyScheme, &CommonResponses),
    info(title = "medgate", description = "One normalized HTTP API in front of hospital, lab and wearable systems."),
    paths(sources::list, data::one_source, data::all_sources, export::download, export::download_post, ingest::upload, ingest::receipt, alerts::list, jobs::kick_off, jobs::patient_export, jobs::group_export, jobs::status, jobs::delete, jobs::file, fhir::metadata, fhir::search),
    components(schemas(ingest::Receipts, ingest::ReceiptView, ingest::ReceiptState, medgate_ingest::schema::ReportBody, export::ExportBody, Observation, OneValue, Warning, Warnings, SourceData, SourceStatus, PatientData, Problem, FhirBundle, FhirResource, sources::SourceList, sources::SourceView)),
    tags((name = "sources"), (name = "data"), (name = "export"), (name = "ingest"), (name = "fhir"))
)]
pub struct ApiDoc;

/// Serves the document.
pub async fn document(
    axum::extract::State(state): axum::extract::State<crate::state::AppState>,
) -> Json<serde_json::Value> {
    let runtime = state.runtime();
    let formats: Vec<&str> = runtime.catalog.formats();
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    constrain(&mut doc, &formats, runtime.server.max_export_patients);
    Json(doc)
}

/// One patient id: 1–128 of `A-Z a-z 0-9 - . _ : @ ~`, at least one not a dot (so never the
/// dot segments `.` or `..`), exactly what `check_patient_id` accepts.
const ID: &str = "[A-Za-z0-9._:@~-]{0,63}[A-Za-z0-9_:@~-][A-Za-z0-9._:@~-]{0,64}";
/// One source name.
const SOURCE: &str = "[a-z0-9_-]{1,64}";
/// A `Request-Timeout`: a positive number of milliseconds, or with `ms` / `s`.
const TIMEOUT: &str = "^0*[1-9][0-9]{0,8}(ms|s)?$";
/// A FHIR search `date`: an optional prefix and a date or date-time.
const DATE: &str = "^(eq|ge|gt|le|lt)?[0-9]{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12][0-9]|3[01])(T([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\\.[0-9]{1,9})?)?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])?)?)?)?$";

/// Writes the input grammar the handlers enforce into the document, so it is exactly as
/// strict as the server: every value the document allows is accepted, every value it forbids
/// is refused (checked by schemathesis in CI). The enabled formats and the patient limit come
/// from the running config.
fn constrain(doc: &mut serde_json::Value, formats: &[&str], max_patients: usize) {
    use serde_json::json;
    let one = format!("^{ID}$");
    // The count limit (max_export_patients) is in maxItems for the POST; a regex counting
    // thousands of repetitions is too large for generators to use, so the GET states it in
    // words (the description) and the server answers 400 beyond it.
    let many = format!("^{ID}(,{ID})*$");
    let sources = format!("^{SOURCE}(,{SOURCE})*$");
    let patches: Vec<(&str, &str, &str, serde_json::Value)> = vec![
        (
            "/v1/data/{source}",
            "get",
            "patient_id",
            json!({"type": "string", "pattern": one}),
        ),
        (
            "/v1/data/{source}",
            "get",
            "_format",
            json!({"type": "string", "enum": ["json", "application/json", "fhir", "fhir+json", "application/fhir+json"]}),
        ),
        (
            "/v1/data/{source}",
            "get",
            "Request-Timeout",
            json!({"type": "string", "pattern": TIMEOUT}),
        ),
        (
            "/v1/patients/{patient_id}/observations",
            "get",
            "patient_id",
            json!({"type": "string", "pattern": one}),
        ),
        (
            "/v1/patients/{patient_id}/observations",
            "get",
            "_format",
            json!({"type": "string", "enum": ["json", "application/json", "fhir", "fhir+json", "application/fhir+json"]}),
        ),
        (
            "/v1/patients/{patient_id}/observations",
            "get",
            "Request-Timeout",
            json!({"type": "string", "pattern": TIMEOUT}),
        ),
        (
            "/v1/export",
            "get",
            "source",
            json!({"type": "string", "pattern": sources}),
        ),
        (
            "/v1/export",
            "get",
            "patient_id",
            json!({"type": "string", "pattern": many}),
        ),
        (
            "/v1/export",
            "get",
            "format",
            json!({"type": "string", "enum": formats}),
        ),
        (
            "/v1/export",
            "get",
            "on_error",
            json!({"type": "string", "enum": ["skip", "fail"]}),
        ),
        (
            "/fhir/Observation",
            "get",
            "patient",
            json!({"type": "string", "pattern": format!("^(Patient/)?{ID}$")}),
        ),
        (
            "/fhir/Observation",
            "get",
            "date",
            json!({"type": "array", "items": {"type": "string", "pattern": DATE}}),
        ),
        (
            "/fhir/Observation",
            "get",
            "_source",
            json!({"type": "string", "pattern": sources}),
        ),
        (
            "/fhir/Observation",
            "get",
            "_format",
            json!({"type": "string", "enum": ["json", "application/json", "fhir+json", "application/fhir+json"]}),
        ),
        (
            "/fhir/Observation",
            "get",
            "Request-Timeout",
            json!({"type": "string", "pattern": TIMEOUT}),
        ),
    ];
    for (path, method, name, schema) in patches {
        let Some(params) = doc["paths"][path][method]["parameters"].as_array_mut() else {
            continue;
        };
        for p in params.iter_mut().filter(|p| p["name"] == name) {
            p["schema"] = schema.clone();
        }
    }
    let required: [(&str, &[&str]); 2] = [
        ("/v1/export", &["source", "patient_id", "format"]),
        ("/v1/data/{source}", &["patient_id"]),
    ];
    for (path, names) in required {
        if let Some(params) = doc["paths"][path]["get"]["parameters"].as_array_mut() {
            for p in params.iter_mut() {
                if names.iter().any(|n| p["name"] == *n) {
                    p["required"] = json!(true);
                }
            }
        }
    }
    let body = &mut doc["components"]["schemas"]["ExportBody"]["properties"];
    body["sources"] = json!({"type": "array", "minItems": 1, "items": {"type": "string", "pattern": format!("^{SOURCE}$")}});
    body["patients"] = json!({"type": "array", "minItems": 1, "maxItems": max_patients, "items": {"type": "string", "pattern": one}});
    body["format"] = json!({"type": "string", "enum": formats});
    body["on_error"] = json!({"type": ["string", "null"], "enum": ["skip", "fail", null]});
}
