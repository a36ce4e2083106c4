//! `GET /openapi.json`: the OpenAPI 3.1 document, generated from the handlers' annotations.
//!
//! The schema types below describe JSON that other crates produce (the core `Observation`);
//! an end-to-end test checks they list exactly the fields actually served.

use axum::Json;
use utoipa::{OpenApi, ToSchema};

use super::{data, export, fhir, sources};

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

/// The API description.
#[derive(OpenApi)]
#[openapi(
    modifiers(&ApiKeyScheme),
    info(title = "medgate", description = "One normalized HTTP API in front of hospital, lab and wearable systems."),
    paths(sources::list, data::one_source, data::all_sources, export::download, export::download_post, fhir::metadata, fhir::search),
    components(schemas(export::ExportBody, Observation, OneValue, Warning, Warnings, SourceData, SourceStatus, PatientData, Problem, FhirBundle, FhirResource, sources::SourceList, sources::SourceView)),
    tags((name = "sources"), (name = "data"), (name = "export"), (name = "fhir"))
)]
pub struct ApiDoc;

/// Serves the document.
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
