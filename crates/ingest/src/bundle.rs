//! FHIR R4 JSON bodies (`application/fhir+json`): a `Bundle` of type `batch`, `transaction`
//! or `collection`, or one `Observation`. Each Observation is read by [`crate::fhir`]; the
//! body becomes one [`Report`] per patient, in order of each patient's first observation.
//!
//! Decisions (the subject is what makes an observation a patient's):
//! - `subject` `Patient/<id>` (relative, or an absolute URL ending in `/Patient/<id>`, a
//!   `/_history/<v>` suffix ignored) names the patient `<id>`; a logical reference by
//!   `identifier` names the patient by its `value`, whatever its system.
//! - A reference to a Patient entry of the same Bundle (its `fullUrl`, e.g. `urn:uuid:…`) is
//!   resolved to that Patient's `id`; a Patient entry without `id` is refused: medgate needs
//!   the study's patient id, not a placeholder.
//! - A subject that is a contained resource (`#p1`), another resource type (`Group`,
//!   `Device` …), or missing, is refused: an observation must belong to one patient.
//! - Every patient id must pass the server's patient id rule.
//! - Entries other than Observations (Patient, DiagnosticReport, Specimen, Device …) are
//!   used only to resolve references and are not stored. In a batch or transaction, an
//!   Observation entry must be a `POST` or `PUT`; `GET`, `DELETE` and `PATCH` are refused.
//! - `hasMember` / `derivedFrom` references to other Observations of the body (by
//!   `fullUrl` or `Observation/<id>`) are rewritten to the ids medgate serves them under,
//!   so panels stay linked in medgate's FHIR output; other references are kept verbatim.
//! - A report's `reported_at` is `Bundle.timestamp` when given, else the receive time;
//!   `kind` is `lab` when any observation is categorised `laboratory`, `epro` when any is
//!   `survey`, else `clinical`; FHIR has no SAE flag on Observations, so it is `false`.
//! - Observations without `id` get `<id_prefix>-<report>-<n>`; with one, they keep it.

use std::collections::HashMap;
use std::sync::Arc;

use medgate_core::fhir::resource_id;
use medgate_core::{DateTime, Observation};

use crate::fhir::{self, Subject};
use crate::json::{self, Kind, Node, SplitError};
use crate::validate;
use crate::{IngestContext, IngestError, Issues, Report, ReportKind, MAX_OBSERVATIONS};

/// Elements of an R4 Bundle.
const BUNDLE_ELEMENTS: &[&str] = &[
    "resourceType",
    "id",
    "meta",
    "implicitRules",
    "language",
    "identifier",
    "type",
    "timestamp",
    "total",
    "link",
    "entry",
    "signature",
];
const BUNDLE_PRIMITIVES: &[&str] = &[
    "id",
    "implicitRules",
    "language",
    "type",
    "timestamp",
    "total",
];
const ENTRY_ELEMENTS: &[&str] = &[
    "id",
    "extension",
    "modifierExtension",
    "link",
    "fullUrl",
    "resource",
    "search",
    "request",
    "response",
];
const REQUEST_ELEMENTS: &[&str] = &[
    "id",
    "extension",
    "modifierExtension",
    "method",
    "url",
    "ifNoneMatch",
    "ifModifiedSince",
    "ifMatch",
    "ifNoneExist",
];

/// Bundle types accepted.
pub const BUNDLE_TYPES: &[&str] = &["batch", "transaction", "collection"];

/// Reads a FHIR JSON body.
///
/// # Errors
/// See [`crate::parse`].
pub fn parse(body: &[u8], ctx: &IngestContext) -> Result<Vec<Report>, IngestError> {
    let root = Node::new(json::parse_body(body, "FHIR JSON")?);
    let mut issues = Issues::default();
    let resource_type = root
        .members(json::MAX_CHILDREN)
        .ok()
        .and_then(|m| m.into_iter().find(|(k, _)| k == "resourceType"))
        .and_then(|(_, v)| v.as_str());
    let reports = match resource_type.as_deref() {
        Some("Bundle") => bundle(root, ctx, &mut issues)?,
        Some("Observation") => single(root, ctx, &mut issues),
        Some(_) => {
            issues.push(
                "/resourceType",
                "expected a Bundle (batch, transaction or collection) or an Observation",
            );
            Vec::new()
        }
        None if root.kind() != Kind::Object => {
            issues.push(
                "",
                format!(
                    "expected a FHIR resource object, found {}",
                    root.kind().article()
                ),
            );
            Vec::new()
        }
        None => {
            issues.push("/resourceType", "is required");
            Vec::new()
        }
    };
    issues.finish(reports)
}

/// One Observation read, with where it came from.
struct Entry {
    read: fhir::Read,
    /// The entry's pointer (the report's `at`).
    at: String,
    /// The resource's pointer.
    resource_at: String,
    full_url: Option<String>,
    patient: Option<Arc<str>>,
}

fn single(root: Node<'_>, ctx: &IngestContext, issues: &mut Issues) -> Vec<Report> {
    let Some(read) = fhir::read_observation(root, "", &ctx.source, issues) else {
        return Vec::new();
    };
    let mut entry = Entry {
        read,
        at: String::new(),
        resource_at: String::new(),
        full_url: None,
        patient: None,
    };
    entry.patient = resolve(&entry, &HashMap::new(), issues);
    let report_id = entry.read.resource_id.clone();
    group(vec![entry], ctx, ctx.received_at, report_id)
}

fn bundle(
    root: Node<'_>,
    ctx: &IngestContext,
    issues: &mut Issues,
) -> Result<Vec<Report>, IngestError> {
    let Some(f) = fhir::object(issues, root, "", BUNDLE_ELEMENTS, BUNDLE_PRIMITIVES) else {
        return Ok(Vec::new());
    };
    let kind = f.get("type").and_then(|(n, _)| n.as_str());
    match kind.as_deref() {
        Some(t) if BUNDLE_TYPES.contains(&t) => {}
        Some(_) => issues.push(
            "/type",
            "only batch, transaction and collection Bundles are accepted",
        ),
        None => issues.push("/type", "is required (batch, transaction or collection)"),
    }
    let needs_request = matches!(kind.as_deref(), Some("batch" | "transaction"));
    let reported_at = match f.get("timestamp") {
        Some((n, at)) => match n.as_str().map(|t| validate::instant(&t)) {
            Some(Ok(t)) => t,
            Some(Err(m)) => {
                issues.push(at, m);
                ctx.received_at
            }
            None => {
                issues.push(at, "expected an R4 instant string");
                ctx.received_at
            }
        },
        None => ctx.received_at,
    };
    let bundle_id = f.get("id").and_then(|(n, _)| n.as_str());
    let Some((entries, at)) = f.get("entry") else {
        issues.push("/entry", "the Bundle holds no entry");
        return Ok(Vec::new());
    };
    let nodes = match entries.elements(MAX_OBSERVATIONS) {
        Ok(nodes) => nodes,
        Err(SplitError::TooMany(limit)) => {
            return Err(IngestError::TooLarge {
                what: "entries in one Bundle",
                limit,
            })
        }
        Err(SplitError::WrongKind(k)) => {
            issues.push(at, format!("expected an array, found {}", k.article()));
            return Ok(Vec::new());
        }
    };
    let mut patients = HashMap::new();
    let mut observations = Vec::new();
    for (i, node) in nodes.into_iter().enumerate() {
        let at = json::index(&at, i);
        if let Some(e) = entry(node, &at, needs_request, ctx, issues, &mut patients) {
            observations.push(e);
        }
        if issues.is_full() {
            return Ok(Vec::new());
        }
    }
    if observations.is_empty() && issues.is_empty() {
        issues.push("/entry", "the Bundle holds no Observation");
    }
    for e in &mut observations {
        e.patient = resolve(e, &patients, issues);
    }
    Ok(group(observations, ctx, reported_at, bundle_id))
}

/// Reads one entry: an Observation is returned; a Patient's id is indexed by its fullUrl.
fn entry(
    node: Node<'_>,
    at: &str,
    needs_request: bool,
    ctx: &IngestContext,
    issues: &mut Issues,
    patients: &mut HashMap<String, Option<String>>,
) -> Option<Entry> {
    let f = fhir::object(issues, node, at, ENTRY_ELEMENTS, &["id", "fullUrl"])?;
    let full_url = f.get("fullUrl").and_then(|(n, _)| n.as_str());
    let method = match f.get("request") {
        Some((n, p)) => {
            let rf = fhir::object(issues, n, &p, REQUEST_ELEMENTS, &["id", "method", "url"])?;
            rf.get("method").and_then(|(n, _)| n.as_str())
        }
        None => None,
    };
    let Some((resource, rat)) = f.get("resource") else {
        issues.push(
            json::child(at, "resource"),
            "an entry without a resource is not accepted (only POST and PUT of Observations)",
        );
        return None;
    };
    let rtype = resource
        .members(json::MAX_CHILDREN)
        .ok()
        .and_then(|m| m.into_iter().find(|(k, _)| k == "resourceType"))
        .and_then(|(_, v)| v.as_str());
    match rtype.as_deref() {
        Some("Observation") => {}
        Some("Patient") => {
            let id = resource
                .members(json::MAX_CHILDREN)
                .ok()
                .and_then(|m| m.into_iter().find(|(k, _)| k == "id"))
                .and_then(|(_, v)| v.as_str());
            if let Some(url) = full_url {
                patients.insert(url, id.clone());
            }
            if let Some(id) = id {
                patients.insert(format!("Patient/{id}"), Some(id));
            }
            return None;
        }
        Some(_) => return None,
        None => {
            issues.push(json::child(&rat, "resourceType"), "is required");
            return None;
        }
    }
    if needs_request {
        match method.as_deref() {
            Some("POST" | "PUT") => {}
            Some(_) => issues.push(
                json::child(&json::child(at, "request"), "method"),
                "only POST and PUT entries are accepted",
            ),
            None => issues.push(
                json::child(at, "request"),
                "a batch or transaction entry needs request.method POST or PUT",
            ),
        }
    }
    let read = fhir::read_observation(resource, &rat, &ctx.source, issues)?;
    Some(Entry {
        read,
        at: at.to_owned(),
        resource_at: rat,
        full_url,
        patient: None,
    })
}

/// The patient id of an entry's subject, or an issue.
fn resolve(
    e: &Entry,
    patients: &HashMap<String, Option<String>>,
    issues: &mut Issues,
) -> Option<Arc<str>> {
    let at = json::child(&e.resource_at, "subject");
    let id = match &e.read.subject {
        None => {
            issues.push(at, "is required: every observation must name its patient");
            return None;
        }
        Some(Subject::Reference(r)) if r.starts_with('#') => {
            issues.push(
                at,
                "refers to a contained Patient; send the patient's id as Patient/<id>",
            );
            return None;
        }
        Some(Subject::Reference(r)) if patients.contains_key(r) => match &patients[r] {
            Some(id) => id.clone(),
            None => {
                issues.push(
                    at,
                    "refers to a Patient entry without an id; medgate needs the patient's id",
                );
                return None;
            }
        },
        Some(s) => match s.patient_id() {
            Some(id) => id.to_owned(),
            None => {
                issues.push(
                    at,
                    "must refer to a Patient (Patient/<id>, a Patient entry of the Bundle, or an identifier)",
                );
                return None;
            }
        },
    };
    match validate::patient_id(&id) {
        Ok(()) => Some(Arc::from(id)),
        Err(m) => {
            issues.push(at, m);
            None
        }
    }
}

/// One report per patient, in order of first appearance; ids and member references made
/// final.
fn group(
    entries: Vec<Entry>,
    ctx: &IngestContext,
    reported_at: DateTime,
    report_id: Option<String>,
) -> Vec<Report> {
    let mut order: Vec<Arc<str>> = Vec::new();
    let mut by_patient: HashMap<Arc<str>, Vec<Entry>> = HashMap::new();
    for e in entries {
        let Some(p) = e.patient.clone() else { continue };
        if !by_patient.contains_key(&p) {
            order.push(p.clone());
        }
        by_patient.entry(p).or_default().push(e);
    }
    let mut reports = Vec::with_capacity(order.len());
    let mut served: HashMap<String, String> = HashMap::new();
    for (r, patient) in order.iter().enumerate() {
        let entries = by_patient.remove(patient).unwrap_or_default();
        let at = entries.first().map(|e| e.at.clone()).unwrap_or_default();
        let mut observations = Vec::with_capacity(entries.len());
        for (n, e) in entries.into_iter().enumerate() {
            let mut o = e.read.observation;
            if o.id.is_empty() {
                o.id = ctx.observation_id(r, n);
            }
            o.patient_id = patient.clone();
            let target = format!("Observation/{}", resource_id(&o));
            if let Some(url) = e.full_url {
                served.insert(url, target.clone());
            }
            if let Some(id) = e.read.resource_id {
                served.insert(format!("Observation/{id}"), target);
            }
            observations.push(o);
        }
        reports.push(Report {
            patient_id: patient.clone(),
            kind: kind_of(&observations),
            reported_at,
            serious_adverse_event: false,
            report_id: report_id.clone(),
            app: None,
            device: None,
            questionnaire: None,
            at,
            observations,
        });
    }
    for o in reports.iter_mut().flat_map(|r| r.observations.iter_mut()) {
        for link in o.has_member.iter_mut().chain(o.derived_from.iter_mut()) {
            if let Some(target) = link.reference.as_ref().and_then(|r| served.get(r)) {
                link.reference = Some(target.clone());
            }
        }
    }
    reports
}

fn kind_of(observations: &[Observation]) -> ReportKind {
    let has = |code: &str| {
        observations.iter().any(|o| {
            o.category
                .iter()
                .flat_map(|c| &c.coding)
                .any(|c| c.code.as_deref() == Some(code))
        })
    };
    if has("laboratory") {
        ReportKind::Lab
    } else if has("survey") {
        ReportKind::Epro
    } else {
        ReportKind::Clinical
    }
}
