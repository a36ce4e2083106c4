//! medgate's report JSON (`application/json`): one report object or an array of them.
//!
//! The schema is in [`crate::schema`] (as `utoipa` types for the OpenAPI document); this
//! module is the reader, written by hand over [`crate::json`] so that *every* bad field is
//! reported with its JSON Pointer, not only the first one serde would stop at.
//!
//! Decisions:
//! - Unknown fields are refused (each one an issue naming the known fields): a misspelt
//!   `"unti"` silently dropping a unit would be a clinical error, and an app that adds
//!   fields must be rolled out together with the server that stores them.
//! - A member that appears twice in one object is refused (JSON leaves it undefined).
//! - `null` means absent.
//! - Every observation gets `issued = reported_at`; `effective` is only what the item says
//!   (absent stays absent: medgate does not invent measurement times).
//! - Categories: an item's `category` if given; else `laboratory` for a `lab` report; else
//!   `vital-signs` / `activity` for the LOINC codes of FHIR's vital-signs profile and common
//!   activity codes; else `survey` for answers (text, coded, boolean) and for numbers in an
//!   `epro` report (scores); else none.

use std::sync::Arc;

use medgate_core::model::{INTERPRETATION_SYSTEM, LOINC};
use medgate_core::{
    CodeableConcept, Coding, Comparator, Component, DateTime, Effective, Observation, Period,
    Quantity, Reference, ReferenceRange, Status, Value,
};

use crate::json::{self, Kind, Node, SplitError};
use crate::validate;
use crate::{
    Device, IngestContext, IngestError, Issues, Questionnaire, Report, ReportKind, Software,
    MAX_OBSERVATIONS, MAX_REPORTS,
};

/// Most items one report may hold.
pub const MAX_ITEMS: usize = 500;
/// Most components one item may hold.
pub const MAX_COMPONENTS: usize = 20;

/// Fields of a report object.
pub const REPORT_FIELDS: &[&str] = &[
    "report_id",
    "patient_id",
    "reported_at",
    "kind",
    "serious_adverse_event",
    "status",
    "app",
    "device",
    "questionnaire",
    "items",
];
/// Fields of an item.
pub const ITEM_FIELDS: &[&str] = &[
    "code",
    "code_system",
    "display",
    "category",
    "value",
    "unit",
    "comparator",
    "data_absent_reason",
    "effective",
    "status",
    "interpretation",
    "reference_range",
    "components",
];
/// Fields of a component.
pub const COMPONENT_FIELDS: &[&str] = &[
    "code",
    "code_system",
    "display",
    "value",
    "unit",
    "comparator",
    "data_absent_reason",
    "interpretation",
];
/// Fields of a coded value.
pub const CODED_FIELDS: &[&str] = &["code", "system", "display"];
/// Fields of `app` and `questionnaire`.
pub const VERSIONED_FIELDS: &[&str] = &["id", "version"];
/// Fields of `device`.
pub const DEVICE_FIELDS: &[&str] = &["id", "model"];
/// Fields of an effective period.
pub const PERIOD_FIELDS: &[&str] = &["start", "end"];
/// Fields of a reference range.
pub const RANGE_FIELDS: &[&str] = &["low", "high", "text"];

/// FHIR observation-category codes an item may name.
pub const CATEGORIES: &[&str] = &[
    "vital-signs",
    "laboratory",
    "survey",
    "activity",
    "social-history",
    "imaging",
    "procedure",
    "exam",
    "therapy",
];
/// FHIR data-absent-reason codes (R4) with their displays.
pub const DATA_ABSENT_REASONS: &[(&str, &str)] = &[
    ("unknown", "Unknown"),
    ("asked-unknown", "Asked But Unknown"),
    ("temp-unknown", "Temporarily Unknown"),
    ("not-asked", "Not Asked"),
    ("asked-declined", "Asked But Declined"),
    ("masked", "Masked"),
    ("not-applicable", "Not Applicable"),
    ("unsupported", "Unsupported"),
    ("as-text", "As Text"),
    ("error", "Error"),
    ("not-a-number", "Not a Number (NaN)"),
    ("negative-infinity", "Negative Infinity (NINF)"),
    ("positive-infinity", "Positive Infinity (PINF)"),
    ("not-performed", "Not Performed"),
    ("not-permitted", "Not Permitted"),
];
/// v3 ObservationInterpretation codes an item may send, with their displays.
pub const INTERPRETATIONS: &[(&str, &str)] = &[
    ("N", "Normal"),
    ("A", "Abnormal"),
    ("AA", "Critical abnormal"),
    ("H", "High"),
    ("HH", "Critical high"),
    ("HU", "Significantly high"),
    ("L", "Low"),
    ("LL", "Critical low"),
    ("LU", "Significantly low"),
    ("<", "Off scale low"),
    (">", "Off scale high"),
    ("POS", "Positive"),
    ("NEG", "Negative"),
    ("IND", "Indeterminate"),
    ("DET", "Detected"),
    ("ND", "Not detected"),
    ("U", "Significant change up"),
    ("D", "Significant change down"),
    ("B", "Better"),
    ("W", "Worse"),
];

/// LOINC codes of FHIR R4's vital-signs profile (and close relatives).
const VITAL_SIGNS: &[&str] = &[
    "85353-1", "9279-1", "8867-4", "2708-6", "59408-5", "8310-5", "8302-2", "9843-4", "29463-7",
    "39156-5", "85354-9", "8480-6", "8462-4", "8478-0", "3150-0", "3151-8", "96607-7", "8331-1",
    "8306-3", "8287-5", "8889-8",
];
/// LOINC codes of physical activity and sleep.
const ACTIVITY: &[&str] = &[
    "55423-8", "41950-7", "41981-2", "41979-6", "93832-4", "55411-3", "82290-8", "68516-4",
];

/// Reads a report JSON body.
///
/// # Errors
/// See [`crate::parse`].
pub fn parse(body: &[u8], ctx: &IngestContext) -> Result<Vec<Report>, IngestError> {
    let root = Node::new(json::parse_body(body, "JSON")?);
    let (nodes, single) = match root.kind() {
        Kind::Array => match root.elements(MAX_REPORTS) {
            Ok(nodes) => (nodes, false),
            Err(_) => {
                return Err(IngestError::TooLarge {
                    what: "reports in one body",
                    limit: MAX_REPORTS,
                })
            }
        },
        Kind::Object => (vec![root], true),
        other => {
            let mut issues = Issues::default();
            issues.push(
                "",
                format!(
                    "expected a report object or an array of reports, found {}",
                    other.article()
                ),
            );
            return issues.finish(Vec::new());
        }
    };
    let mut reader = Reader {
        ctx,
        issues: Issues::default(),
        observations: 0,
    };
    if nodes.is_empty() {
        reader.issues.push("", "the array holds no report");
    }
    let mut reports = Vec::with_capacity(nodes.len());
    for (i, node) in nodes.into_iter().enumerate() {
        let at = if single {
            String::new()
        } else {
            json::index("", i)
        };
        if let Some(report) = reader.report(node, &at, i)? {
            reports.push(report);
        }
        if reader.issues.is_full() {
            break;
        }
    }
    reader.issues.finish(reports)
}

struct Reader<'c> {
    ctx: &'c IngestContext,
    issues: Issues,
    observations: usize,
}

/// An object's members after the duplicate and unknown-field checks.
struct Fields<'a> {
    members: Vec<(String, Node<'a>)>,
    at: String,
}

impl<'a> Fields<'a> {
    /// The member `name` unless absent or `null`, with its pointer.
    fn get(&self, name: &str) -> Option<(Node<'a>, String)> {
        self.members
            .iter()
            .find(|(k, v)| k == name && v.kind() != Kind::Null)
            .map(|(k, v)| (*v, json::child(&self.at, k)))
    }
}

impl Reader<'_> {
    /// Splits an object, reporting duplicates and unknown members.
    fn fields<'a>(&mut self, node: Node<'a>, at: &str, known: &[&str]) -> Option<Fields<'a>> {
        let members = match node.members(known.len() * 2 + 8) {
            Ok(m) => m,
            Err(SplitError::WrongKind(kind)) => {
                self.issues
                    .push(at, format!("expected an object, found {}", kind.article()));
                return None;
            }
            Err(SplitError::TooMany(_)) => {
                self.issues
                    .push(at, "has far more members than the schema defines");
                return None;
            }
        };
        for (i, (name, _)) in members.iter().enumerate() {
            let path = json::child(at, name);
            if members[..i].iter().any(|(n, _)| n == name) {
                self.issues
                    .push(path, "appears more than once in the object");
            } else if !known.contains(&name.as_str()) {
                self.issues.push(
                    path,
                    format!("unknown field; known fields: {}", known.join(", ")),
                );
            }
        }
        Some(Fields {
            members,
            at: at.to_owned(),
        })
    }

    fn required<'a>(&mut self, f: &Fields<'a>, name: &str) -> Option<(Node<'a>, String)> {
        let found = f.get(name);
        if found.is_none() {
            self.issues.push(json::child(&f.at, name), "is required");
        }
        found
    }

    fn string(&mut self, node: Node<'_>, at: &str) -> Option<String> {
        let s = node.as_str();
        if s.is_none() {
            self.issues.push(
                at,
                format!("expected a string, found {}", node.kind().article()),
            );
        }
        s
    }

    /// A string field checked by `rule`.
    fn checked(
        &mut self,
        field: Option<(Node<'_>, String)>,
        rule: impl Fn(&str) -> Result<(), String>,
    ) -> Option<String> {
        let (node, at) = field?;
        let s = self.string(node, &at)?;
        match rule(&s) {
            Ok(()) => Some(s),
            Err(message) => {
                self.issues.push(at, message);
                None
            }
        }
    }

    fn report(
        &mut self,
        node: Node<'_>,
        at: &str,
        index: usize,
    ) -> Result<Option<Report>, IngestError> {
        let Some(f) = self.fields(node, at, REPORT_FIELDS) else {
            return Ok(None);
        };
        let report_id = self.checked(f.get("report_id"), validate::fhir_id);
        let patient = self.required(&f, "patient_id");
        let patient_id = self.checked(patient, validate::patient_id);
        let reported_at = self
            .required(&f, "reported_at")
            .and_then(|(n, p)| self.time(n, &p, validate::instant));
        let kind = self.required(&f, "kind").and_then(|(n, p)| {
            let s = self.string(n, &p)?;
            let kind = ReportKind::parse(&s);
            if kind.is_none() {
                self.issues
                    .push(p, "unknown kind; known kinds: epro, device, lab, clinical");
            }
            kind
        });
        let sae = match f.get("serious_adverse_event") {
            Some((n, p)) => self.boolean(n, &p).unwrap_or(false),
            None => false,
        };
        let status = f.get("status").and_then(|(n, p)| self.status(n, &p));
        let app = f
            .get("app")
            .and_then(|(n, p)| self.versioned(n, &p))
            .map(|(id, version)| Software { id, version });
        let device = f.get("device").and_then(|(n, p)| self.device(n, &p));
        let questionnaire = f
            .get("questionnaire")
            .and_then(|(n, p)| self.versioned(n, &p))
            .map(|(id, version)| Questionnaire { id, version });
        let items = self.required(&f, "items");
        let (Some(kind), Some(reported_at)) = (kind, reported_at) else {
            // Items are still checked so that every bad field is listed at once.
            if let Some((n, p)) = items {
                self.items(n, &p, &Defaults::unknown(), index)?;
            }
            return Ok(None);
        };
        let defaults = Defaults {
            kind,
            status,
            reported_at: Some(reported_at),
            device: device.as_ref().map(device_reference),
        };
        let observations = match items {
            Some((n, p)) => self.items(n, &p, &defaults, index)?,
            None => Vec::new(),
        };
        let Some(patient_id) = patient_id else {
            return Ok(None);
        };
        let patient_id: Arc<str> = Arc::from(patient_id);
        let observations = observations
            .into_iter()
            .map(|mut o| {
                o.patient_id = patient_id.clone();
                o
            })
            .collect();
        Ok(Some(Report {
            patient_id,
            kind,
            reported_at,
            serious_adverse_event: sae,
            report_id,
            app,
            device,
            questionnaire,
            at: at.to_owned(),
            observations,
        }))
    }

    fn boolean(&mut self, node: Node<'_>, at: &str) -> Option<bool> {
        let b = node.as_bool();
        if b.is_none() {
            self.issues.push(
                at,
                format!("expected true or false, found {}", node.kind().article()),
            );
        }
        b
    }

    fn time(
        &mut self,
        node: Node<'_>,
        at: &str,
        rule: fn(&str) -> Result<DateTime, String>,
    ) -> Option<DateTime> {
        let s = self.string(node, at)?;
        match rule(&s) {
            Ok(t) => Some(t),
            Err(message) => {
                self.issues.push(at, message);
                None
            }
        }
    }

    fn status(&mut self, node: Node<'_>, at: &str) -> Option<Status> {
        let s = self.string(node, at)?;
        let status = Status::from_fhir(&s);
        if status.is_none() {
            self.issues.push(
                at,
                "unknown status; known: registered, preliminary, final, amended, corrected, cancelled, entered-in-error, unknown",
            );
        }
        status
    }

    fn versioned(&mut self, node: Node<'_>, at: &str) -> Option<(String, Option<String>)> {
        let f = self.fields(node, at, VERSIONED_FIELDS)?;
        let id = self.required(&f, "id");
        let id = self.checked(id, short);
        let version = self.checked(f.get("version"), short);
        Some((id?, version))
    }

    fn device(&mut self, node: Node<'_>, at: &str) -> Option<Device> {
        let f = self.fields(node, at, DEVICE_FIELDS)?;
        let id = self.required(&f, "id");
        let id = self.checked(id, short);
        let model = self.checked(f.get("model"), short);
        Some(Device { id: id?, model })
    }

    fn items(
        &mut self,
        node: Node<'_>,
        at: &str,
        defaults: &Defaults,
        report: usize,
    ) -> Result<Vec<Observation>, IngestError> {
        let nodes = match node.elements(MAX_ITEMS) {
            Ok(nodes) => nodes,
            Err(SplitError::TooMany(_)) => {
                return Err(IngestError::TooLarge {
                    what: "items in one report",
                    limit: MAX_ITEMS,
                })
            }
            Err(SplitError::WrongKind(kind)) => {
                self.issues
                    .push(at, format!("expected an array, found {}", kind.article()));
                return Ok(Vec::new());
            }
        };
        if nodes.is_empty() {
            self.issues.push(at, "a report needs at least one item");
        }
        self.observations += nodes.len();
        if self.observations > MAX_OBSERVATIONS {
            return Err(IngestError::TooLarge {
                what: "observations in one body",
                limit: MAX_OBSERVATIONS,
            });
        }
        let mut out = Vec::with_capacity(nodes.len());
        for (i, item) in nodes.into_iter().enumerate() {
            let id = self.ctx.observation_id(report, i);
            if let Some(o) = self.item(item, &json::index(at, i), defaults, id) {
                out.push(o);
            }
            if self.issues.is_full() {
                break;
            }
        }
        Ok(out)
    }

    fn item(
        &mut self,
        node: Node<'_>,
        at: &str,
        defaults: &Defaults,
        id: String,
    ) -> Option<Observation> {
        let f = self.fields(node, at, ITEM_FIELDS)?;
        let code = self.code(&f, "code_system");
        let category = self.checked(f.get("category"), |c| {
            if CATEGORIES.contains(&c) {
                Ok(())
            } else {
                Err(format!(
                    "unknown category; known: {}",
                    CATEGORIES.join(", ")
                ))
            }
        });
        let measured = self.measured(&f);
        let effective = f.get("effective").and_then(|(n, p)| self.effective(n, &p));
        let status = f.get("status").and_then(|(n, p)| self.status(n, &p));
        let range = f
            .get("reference_range")
            .and_then(|(n, p)| self.reference_range(n, &p, &measured));
        let components = f
            .get("components")
            .map(|(n, p)| self.components(n, &p))
            .unwrap_or_default();
        let no_value = f.get("value").is_none();
        if no_value && measured.absent.is_none() && components.is_empty() {
            self.issues.push(
                json::child(&f.at, "value"),
                "is required: send a value, components, or a data_absent_reason",
            );
        }
        let code = code?;
        let mut o = Observation::new(Arc::from(""), self.ctx.source.clone(), id);
        o.category = category
            .as_deref()
            .or_else(|| infer_category(defaults.kind, &code, &measured.value))
            .map(CodeableConcept::category)
            .into_iter()
            .collect();
        o.status = status.or(defaults.status);
        o.code = code;
        o.effective = effective;
        o.issued = defaults.reported_at;
        o.value = measured.value;
        o.data_absent_reason = measured.absent;
        o.interpretation = measured.interpretation.into_iter().collect();
        o.reference_range = range.into_iter().collect();
        o.components = components;
        o.device = defaults.device.clone();
        Some(o)
    }

    /// `code` + `code_system_field` + `display` as a one-coding concept.
    fn code(&mut self, f: &Fields<'_>, system_field: &str) -> Option<CodeableConcept> {
        let code = self.required(f, "code");
        let code = self.checked(code, validate::code);
        let system = self.required(f, system_field);
        let system = self.checked(system, validate::system_uri);
        let display = self.checked(f.get("display"), |t| {
            validate::text(t, validate::MAX_TEXT_LEN)
        });
        Some(CodeableConcept {
            coding: vec![Coding {
                system: Some(system?),
                code: Some(code?),
                display,
                mapped: false,
            }],
            text: None,
        })
    }

    /// `value`, `unit`, `comparator`, `data_absent_reason` and `interpretation` of an item
    /// or a component.
    fn measured(&mut self, f: &Fields<'_>) -> Measured {
        let unit = f.get("unit");
        let comparator = f.get("comparator");
        let mut out = Measured::default();
        let value = f.get("value");
        if let Some((node, at)) = &value {
            out.value = match node.kind() {
                Kind::Number => {
                    let q = self.quantity(*node, at, unit.clone(), comparator.clone());
                    q.map(Value::Quantity).unwrap_or_default()
                }
                Kind::String => {
                    let s = node.as_str().unwrap_or_default();
                    if s.trim().is_empty() {
                        self.issues.push(
                            at.as_str(),
                            "text answer is empty; leave `value` out and send a data_absent_reason",
                        );
                        Value::None
                    } else if let Err(m) = validate::text(&s, validate::MAX_LONG_TEXT_LEN) {
                        self.issues.push(at.as_str(), m);
                        Value::None
                    } else {
                        Value::String(s)
                    }
                }
                Kind::Bool => Value::Boolean(node.as_bool().unwrap_or_default()),
                Kind::Object => self
                    .coded(*node, at)
                    .map(Value::CodeableConcept)
                    .unwrap_or_default(),
                other => {
                    self.issues.push(
                        at.as_str(),
                        format!(
                            "expected a number, a string, a boolean or a coded object, found {}",
                            other.article()
                        ),
                    );
                    Value::None
                }
            };
        }
        let numeric = value
            .as_ref()
            .is_some_and(|(n, _)| n.kind() == Kind::Number);
        if !numeric {
            for (name, field) in [("unit", &unit), ("comparator", &comparator)] {
                if let Some((_, at)) = field {
                    self.issues.push(
                        at.as_str(),
                        format!("{name} is only allowed with a numeric value"),
                    );
                }
            }
        }
        if let Some((node, at)) = f.get("data_absent_reason") {
            if value.is_some() {
                self.issues.push(
                    at.as_str(),
                    "data_absent_reason is only allowed without a value",
                );
            } else if let Some(code) = self.string(node, &at) {
                match DATA_ABSENT_REASONS.iter().find(|(c, _)| *c == code) {
                    Some((c, d)) => out.absent = Some(CodeableConcept::data_absent(c, d)),
                    None => self.issues.push(
                        at,
                        format!(
                            "unknown data_absent_reason; known: {}",
                            codes(DATA_ABSENT_REASONS)
                        ),
                    ),
                }
            }
        }
        if let Some((node, at)) = f.get("interpretation") {
            if let Some(code) = self.string(node, &at) {
                match INTERPRETATIONS.iter().find(|(c, _)| *c == code) {
                    Some((c, d)) => {
                        out.interpretation =
                            Some(CodeableConcept::coded(INTERPRETATION_SYSTEM, c, Some(d)))
                    }
                    None => self.issues.push(
                        at,
                        format!(
                            "unknown interpretation; known (v3 ObservationInterpretation): {}",
                            codes(INTERPRETATIONS)
                        ),
                    ),
                }
            }
        }
        out
    }

    fn quantity(
        &mut self,
        node: Node<'_>,
        at: &str,
        unit: Option<(Node<'_>, String)>,
        comparator: Option<(Node<'_>, String)>,
    ) -> Option<Quantity> {
        let value = node.as_decimal();
        if value.is_none() {
            self.issues.push(at, "not a number");
        }
        let unit = self.checked(unit, validate::ucum_unit);
        let comparator = comparator.and_then(|(n, p)| {
            let s = self.string(n, &p)?;
            let c = Comparator::parse(&s);
            if c.is_none() {
                self.issues
                    .push(p, "unknown comparator; known: <, <=, >=, >");
            }
            c
        });
        let value = value?;
        let mut q = match unit {
            Some(u) => Quantity::ucum(value, &u),
            None => Quantity {
                value: Some(value),
                ..Quantity::default()
            },
        };
        q.comparator = comparator;
        Some(q)
    }

    fn coded(&mut self, node: Node<'_>, at: &str) -> Option<CodeableConcept> {
        let f = self.fields(node, at, CODED_FIELDS)?;
        self.code(&f, "system")
    }

    fn effective(&mut self, node: Node<'_>, at: &str) -> Option<Effective> {
        match node.kind() {
            Kind::String => self
                .time(node, at, validate::date_or_instant)
                .map(Effective::DateTime),
            Kind::Object => {
                let f = self.fields(node, at, PERIOD_FIELDS)?;
                let start = self
                    .required(&f, "start")
                    .and_then(|(n, p)| self.time(n, &p, validate::date_or_instant));
                let end = f
                    .get("end")
                    .and_then(|(n, p)| self.time(n, &p, validate::date_or_instant));
                if let (Some(s), Some(e)) = (&start, &end) {
                    if ends_before(s, e) {
                        self.issues
                            .push(json::child(at, "end"), "the period ends before it starts");
                        return None;
                    }
                }
                Some(Effective::Period(Period {
                    start: Some(start?),
                    end,
                }))
            }
            other => {
                self.issues.push(
                    at,
                    format!(
                        "expected a date-time string or a {{start, end}} period, found {}",
                        other.article()
                    ),
                );
                None
            }
        }
    }

    fn reference_range(
        &mut self,
        node: Node<'_>,
        at: &str,
        measured: &Measured,
    ) -> Option<ReferenceRange> {
        let f = self.fields(node, at, RANGE_FIELDS)?;
        let unit = match &measured.value {
            Value::Quantity(q) => Some(q.clone()),
            Value::None => None,
            _ => {
                self.issues
                    .push(at, "reference_range is only allowed with a numeric value");
                return None;
            }
        };
        let mut bound = |name: &str| {
            let (n, p) = f.get(name)?;
            let value = n.as_decimal();
            if value.is_none() {
                self.issues.push(p, "expected a number");
            }
            let unit = unit.as_ref();
            Some(Quantity {
                value,
                comparator: None,
                unit: unit.and_then(|q| q.unit.clone()),
                system: unit.and_then(|q| q.system.clone()),
                code: unit.and_then(|q| q.code.clone()),
            })
        };
        let low = bound("low");
        let high = bound("high");
        let text = self.checked(f.get("text"), |t| validate::text(t, validate::MAX_TEXT_LEN));
        if let (Some(l), Some(h)) = (
            low.as_ref().and_then(|q| q.value.as_ref()),
            high.as_ref().and_then(|q| q.value.as_ref()),
        ) {
            if l.to_f64() > h.to_f64() {
                self.issues
                    .push(json::child(at, "low"), "low is greater than high");
            }
        }
        if low.is_none() && high.is_none() && text.is_none() {
            self.issues.push(at, "give low, high or text");
        }
        Some(ReferenceRange {
            low,
            high,
            kind: None,
            text,
        })
    }

    fn components(&mut self, node: Node<'_>, at: &str) -> Vec<Component> {
        let nodes = match node.elements(MAX_COMPONENTS) {
            Ok(nodes) => nodes,
            Err(SplitError::TooMany(limit)) => {
                self.issues
                    .push(at, format!("more than {limit} components"));
                return Vec::new();
            }
            Err(SplitError::WrongKind(kind)) => {
                self.issues
                    .push(at, format!("expected an array, found {}", kind.article()));
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for (i, node) in nodes.into_iter().enumerate() {
            let at = json::index(at, i);
            let Some(f) = self.fields(node, &at, COMPONENT_FIELDS) else {
                continue;
            };
            let code = self.code(&f, "code_system");
            let measured = self.measured(&f);
            if f.get("value").is_none() && measured.absent.is_none() {
                self.issues.push(
                    json::child(&at, "value"),
                    "is required: send a value or a data_absent_reason",
                );
            }
            if let Some(code) = code {
                out.push(Component {
                    code,
                    value: measured.value,
                    data_absent_reason: measured.absent,
                    interpretation: measured.interpretation.into_iter().collect(),
                    reference_range: Vec::new(),
                });
            }
        }
        out
    }
}

#[derive(Default)]
struct Measured {
    value: Value,
    absent: Option<CodeableConcept>,
    interpretation: Option<CodeableConcept>,
}

struct Defaults {
    kind: ReportKind,
    status: Option<Status>,
    reported_at: Option<DateTime>,
    device: Option<Reference>,
}

impl Defaults {
    /// Defaults when the report's own fields are invalid (its items are checked anyway).
    fn unknown() -> Defaults {
        Defaults {
            kind: ReportKind::Clinical,
            status: None,
            reported_at: None,
            device: None,
        }
    }
}

/// Whether a period's `end` lies wholly before its `start` (a date ending the day a time
/// starts is fine: the date covers the whole day).
pub(crate) fn ends_before(start: &DateTime, end: &DateTime) -> bool {
    let (s, _) = start.bounds();
    let (e0, e1) = end.bounds();
    e1 <= s && e0 < s
}

fn short(s: &str) -> Result<(), String> {
    validate::short_text(s)
}

fn codes(table: &[(&str, &str)]) -> String {
    table.iter().map(|(c, _)| *c).collect::<Vec<_>>().join(", ")
}

/// The device as an observation's `device` reference: `Device/<id>` when the id is a valid
/// FHIR id, and the model (or id) as display.
fn device_reference(d: &Device) -> Reference {
    Reference {
        reference: validate::fhir_id(&d.id)
            .is_ok()
            .then(|| format!("Device/{}", d.id)),
        display: Some(d.model.clone().unwrap_or_else(|| d.id.clone())),
    }
}

fn infer_category(kind: ReportKind, code: &CodeableConcept, value: &Value) -> Option<&'static str> {
    if kind == ReportKind::Lab {
        return Some("laboratory");
    }
    let loinc = code
        .coding
        .iter()
        .find(|c| c.system.as_deref() == Some(LOINC))
        .and_then(|c| c.code.as_deref());
    if let Some(code) = loinc {
        if VITAL_SIGNS.contains(&code) {
            return Some("vital-signs");
        }
        if ACTIVITY.contains(&code) {
            return Some("activity");
        }
    }
    match value {
        Value::String(_) | Value::CodeableConcept(_) | Value::Boolean(_) => Some("survey"),
        _ if kind == ReportKind::Epro => Some("survey"),
        _ => None,
    }
}
