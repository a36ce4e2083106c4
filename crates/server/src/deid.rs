//! De-identification on the read routes (`/v1/data`, `/v1/patients/…`, `/v1/export`,
//! `/fhir/Observation`): the partner's forced profile, or one the request names.
//!
//! The profile runs as a pipeline transform, after the sources' own, so every
//! representation — flat JSON, FHIR, every download format — sees the same de-identified
//! record. Export jobs apply profiles the same way in `medgate-exports`.

use std::sync::Arc;

use medgate_core::Filter;
use medgate_deid::Profile;
use medgate_pipeline::Transform;

use crate::access::Partner;
use crate::problem::ApiError;
use crate::state::Runtime;

/// The profile a request runs under: the partner's forced one (naming another is refused),
/// else the one asked for, else none.
///
/// # Errors
/// 403 when the partner is bound to another profile; 404 for an unknown profile; 400 when
/// the profile moves dates and the request filters on dates (the filter would reveal them).
pub fn profile_for(
    runtime: &Runtime,
    partner: &Partner,
    asked: Option<&str>,
    filter: &Filter,
) -> Result<Option<Arc<Profile>>, ApiError> {
    let name = match (partner.profile.as_deref(), asked) {
        (Some(forced), Some(other)) if forced != other => {
            return Err(ApiError::Forbidden(format!(
                "partner {} reads under profile {forced} only; drop the profile parameter or ask for {forced}",
                partner.name
            )))
        }
        (Some(forced), _) => forced,
        (None, Some(asked)) => asked,
        (None, None) => return Ok(None),
    };
    let profile = runtime
        .profiles
        .get(name)
        .ok_or_else(|| ApiError::UnknownProfile {
            name: name.to_owned(),
            configured: configured(runtime),
        })?;
    if profile.config().moves_dates() && (filter.since.is_some() || filter.until.is_some()) {
        return Err(ApiError::BadRequest(format!(
            "date filters cannot be used under profile {name}: it shifts or truncates dates, and a filter on the real dates would reveal them; ask without one and filter the de-identified dates instead"
        )));
    }
    Ok(Some(profile))
}

/// The profile as the pipeline's extra transforms.
pub fn transforms(profile: Option<&Arc<Profile>>) -> Vec<Arc<dyn Transform>> {
    profile
        .map(|p| vec![p.clone() as Arc<dyn Transform>])
        .unwrap_or_default()
}

/// The patient id an answer names: its pseudonym under a pseudonymizing profile.
pub fn output_patient_id(profile: Option<&Arc<Profile>>, patient_id: &str) -> String {
    match profile {
        Some(p) => p.output_patient_id(patient_id).into_owned(),
        None => patient_id.to_owned(),
    }
}

/// For the audit entry: which profile (and key) the data left under.
pub fn audit_details(profile: Option<&Arc<Profile>>) -> Option<serde_json::Value> {
    profile.map(|p| serde_json::json!({ "profile": p.name(), "key_id": p.key_id() }))
}

/// For the audit entry of a route that only ever runs under the partner's forced profile.
pub fn forced_audit_details(runtime: &Runtime, partner: &Partner) -> Option<serde_json::Value> {
    let forced = partner
        .profile
        .as_deref()
        .and_then(|name| runtime.profiles.get(name));
    audit_details(forced.as_ref())
}

fn configured(runtime: &Runtime) -> String {
    let names: Vec<&str> = runtime.profiles.names().collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}
