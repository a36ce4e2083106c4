//! `GET /openapi.json`: the OpenAPI 3.1 document, generated from the handlers' annotations.
//!
//! The schema types below describe JSON that other crates produce (the core `Observation`);
//! an end-to-end test checks they list exactly the fields actually served.

use axum::Json;
use utoipa::{OpenApi, ToSchema};

use super::{data, export, sources};

/// A normalized observation (one row; field order is the CSV/Excel column order).
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
    /// Code system URI, e.g. `http://loinc.org`.
    code_system: Option<String>,
    /// Code, e.g. LOINC `8867-4`.
    code: Option<String>,
    /// Name of the code.
    display: Option<String>,
    /// A number (written precision kept), a string, a boolean or null.
    #[schema(value_type = Object)]
    value: serde_json::Value,
    /// UCUM code when the upstream gives one, else its unit text.
    unit: Option<String>,
    /// RFC 3339 with the upstream's offset, or a date.
    effective: Option<String>,
}

/// Answer of `/v1/data/{source}`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct SourceData {
    source: String,
    patient_id: String,
    observations: Vec<Observation>,
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
    paths(sources::list, data::one_source, data::all_sources, export::download),
    components(schemas(Observation, SourceData, SourceStatus, PatientData, Problem, sources::SourceList, sources::SourceView)),
    tags((name = "sources"), (name = "data"), (name = "export"))
)]
pub struct ApiDoc;

/// Serves the document.
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
