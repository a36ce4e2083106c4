//! FHIR R4 JSON `Observation` → core [`Observation`]: the inverse of
//! [`medgate_core::fhir`], for pushed FHIR and for any future FHIR JSON source.
//!
//! The reader fills every field of the record the resource gives and reports every
//! departure from R4 as an [`Issue`] with its JSON Pointer. It never stops at the first
//! problem, and an unreadable value still leaves a usable record behind: the value becomes
//! "no value" + `dataAbsentReason = error` + a [`Warning`] (the
//! data-quality rule of the pull sources). So a caller chooses its policy: ingestion refuses
//! a body with any issue, a source could keep the records and log the issues.
//!
//! What it reads:
//! - `id`, and the medgate identifier (`urn:medgate:source:<source>`) that the writer uses
//!   to keep the upstream's original id: when present it wins, so writer → reader keeps ids.
//! - `status`, `category`, `code`, `subject` (returned as a [`Subject`], not resolved: the
//!   caller knows the Bundle), `effective[x]` (`dateTime`, `instant`, `Period`),
//!   `issued`, `value[x]` (every type of the record), `dataAbsentReason`,
//!   `interpretation`, `referenceRange` (`low`, `high`, `type`, `text`), `hasMember`,
//!   `derivedFrom`, `device`, `component` (code, value, dataAbsentReason, interpretation,
//!   referenceRange), and the medgate warning extension.
//! - Primitive extensions (`_field`): the medgate local-time extension on a `dateTime`
//!   restores a wall-clock time that had no offset; a primitive given only by its `_field`
//!   (an extension, no value) is absent.
//! - Numbers: JSON numbers keep their written digits; a number written as a JSON string is
//!   read leniently (same digits) and reported.
//!
//! What it refuses (as issues): members R4 does not define on the types it reads, a
//! `modifierExtension` (R4: a reader that does not understand one must not process the
//! resource), several `value[x]` or `effective[x]`, an unknown `status`, a time of day
//! without offset (unless carried by the local-time extension), `valueSampledData`,
//! `valueAttachment`-like types R4 does not allow, and `effectiveTiming`.
//! Elements the record has no place for (`note`, `performer`, `bodySite`, `method`,
//! `specimen`, `basedOn`, `focus`, `encounter`, `text`, `meta`, `contained` …) are accepted
//! and not kept.

use std::sync::Arc;

use medgate_core::fhir::{LOCAL_TIME_EXTENSION, WARNING_EXTENSION};
use medgate_core::{
    CodeableConcept, Coding, Comparator, Component, DateTime, Decimal, Effective, Observation,
    Period, Precision, Quantity, Range, Ratio, Reference, ReferenceRange, Status, Value, Warning,
};

use crate::json::{self, Kind, Node, SplitError};
use crate::{IngestError, Issue, Issues};

/// Identifier system prefix under which the medgate writer keeps an observation's upstream
/// id.
pub const SOURCE_IDENTIFIER_PREFIX: &str = "urn:medgate:source:";

/// Elements of an R4 Observation.
pub const OBSERVATION_ELEMENTS: &[&str] = &[
    "resourceType",
    "id",
    "meta",
    "implicitRules",
    "language",
    "text",
    "contained",
    "extension",
    "modifierExtension",
    "identifier",
    "basedOn",
    "partOf",
    "status",
    "category",
    "code",
    "subject",
    "focus",
    "encounter",
    "effectiveDateTime",
    "effectivePeriod",
    "effectiveTiming",
    "effectiveInstant",
    "issued",
    "performer",
    "valueQuantity",
    "valueCodeableConcept",
    "valueString",
    "valueBoolean",
    "valueInteger",
    "valueRange",
    "valueRatio",
    "valueSampledData",
    "valueTime",
    "valueDateTime",
    "valuePeriod",
    "dataAbsentReason",
    "interpretation",
    "note",
    "bodySite",
    "method",
    "specimen",
    "device",
    "referenceRange",
    "hasMember",
    "derivedFrom",
    "component",
];
const OBSERVATION_PRIMITIVES: &[&str] = &[
    "id",
    "implicitRules",
    "language",
    "status",
    "effectiveDateTime",
    "effectiveInstant",
    "issued",
    "valueString",
    "valueBoolean",
    "valueInteger",
    "valueTime",
    "valueDateTime",
];
const COMPONENT_ELEMENTS: &[&str] = &[
    "id",
    "extension",
    "modifierExtension",
    "code",
    "valueQuantity",
    "valueCodeableConcept",
    "valueString",
    "valueBoolean",
    "valueInteger",
    "valueRange",
    "valueRatio",
    "valueSampledData",
    "valueTime",
    "valueDateTime",
    "valuePeriod",
    "dataAbsentReason",
    "interpretation",
    "referenceRange",
];
const COMPONENT_PRIMITIVES: &[&str] = &[
    "id",
    "valueString",
    "valueBoolean",
    "valueInteger",
    "valueTime",
    "valueDateTime",
];
const CONCEPT: (&[&str], &[&str]) = (&["id", "extension", "coding", "text"], &["id", "text"]);
const CODING: (&[&str], &[&str]) = (
    &[
        "id",
        "extension",
        "system",
        "version",
        "code",
        "display",
        "userSelected",
    ],
    &["id", "system", "version", "code", "display", "userSelected"],
);
const QUANTITY: (&[&str], &[&str]) = (
    &[
        "id",
        "extension",
        "value",
        "comparator",
        "unit",
        "system",
        "code",
    ],
    &["id", "value", "comparator", "unit", "system", "code"],
);
const REFERENCE: (&[&str], &[&str]) = (
    &[
        "id",
        "extension",
        "reference",
        "type",
        "identifier",
        "display",
    ],
    &["id", "reference", "type", "display"],
);
const IDENTIFIER: (&[&str], &[&str]) = (
    &[
        "id",
        "extension",
        "use",
        "type",
        "system",
        "value",
        "period",
        "assigner",
    ],
    &["id", "use", "system", "value"],
);
const PERIOD: (&[&str], &[&str]) = (
    &["id", "extension", "start", "end"],
    &["id", "start", "end"],
);
const RANGE: (&[&str], &[&str]) = (&["id", "extension", "low", "high"], &["id"]);
const RATIO: (&[&str], &[&str]) = (&["id", "extension", "numerator", "denominator"], &["id"]);
const REFERENCE_RANGE: (&[&str], &[&str]) = (
    &[
        "id",
        "extension",
        "modifierExtension",
        "low",
        "high",
        "type",
        "appliesTo",
        "age",
        "text",
    ],
    &["id", "text"],
);

/// Most elements read from one repeating element (codings, components …).
const MAX_REPEATS: usize = 1_000;

/// The `subject` of an Observation, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// A literal reference: `Patient/123`, an absolute URL, `urn:uuid:…`, `#contained`.
    Reference(String),
    /// A logical reference by identifier.
    Identifier {
        /// The identifier's system.
        system: Option<String>,
        /// Its value.
        value: String,
    },
}

impl Subject {
    /// The patient id of a `Patient/<id>` reference (relative, or absolute with a
    /// `…/Patient/<id>[/_history/<v>]` path), or of an identifier; `None` for anything else.
    pub fn patient_id(&self) -> Option<&str> {
        match self {
            Subject::Identifier { value, .. } => Some(value),
            Subject::Reference(r) => {
                let path = r.split(['?', '#']).next().unwrap_or(r);
                let path = match path.find("/_history/") {
                    Some(cut) => &path[..cut],
                    None => path,
                };
                let (head, id) = path.rsplit_once('/')?;
                let kind = head.rsplit('/').next().unwrap_or(head);
                (kind == "Patient" && !id.is_empty()).then_some(id)
            }
        }
    }
}

/// An Observation read from FHIR JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Read {
    /// The record (`patient_id` is empty: resolve [`Read::subject`] first). `id` is the
    /// medgate identifier's value, else the resource id, else empty.
    pub observation: Observation,
    /// The resource's `subject`, if any.
    pub subject: Option<Subject>,
    /// The resource's own `id`, if any.
    pub resource_id: Option<String>,
}

/// Reads one FHIR R4 JSON Observation from bytes (UTF-8, optional BOM) into a record of
/// `source`.
///
/// # Errors
/// [`IngestError::Malformed`] if the text is not JSON; [`IngestError::Invalid`] listing every
/// departure from R4 (use [`read_observation`] to keep the record despite issues).
pub fn observation_from_slice(body: &[u8], source: &str) -> Result<Read, IngestError> {
    let root = Node::new(json::parse_body(body, "FHIR JSON")?);
    let mut issues = Issues::default();
    let read = read_observation(root, "", &Arc::from(source), &mut issues);
    issues.finish(read)?.ok_or_else(|| IngestError::Invalid {
        issues: vec![Issue::new("", "not an Observation")],
        truncated: 0,
    })
}

/// Reads the Observation at `node` (JSON Pointer `at`), recording issues in `issues`.
/// Returns `None` only when `node` is not an Observation object at all.
pub fn read_observation(
    node: Node<'_>,
    at: &str,
    source: &Arc<str>,
    issues: &mut Issues,
) -> Option<Read> {
    let mut r = Reader {
        issues,
        unreadable_components: Vec::new(),
    };
    let f = r.object(node, at, (OBSERVATION_ELEMENTS, OBSERVATION_PRIMITIVES))?;
    match f.get("resourceType").and_then(|(n, _)| n.as_str()) {
        Some(t) if t == "Observation" => {}
        _ => {
            r.issues.push(
                json::child(at, "resourceType"),
                "expected resourceType `Observation`",
            );
            return None;
        }
    }
    r.modifier_extensions(&f);
    let resource_id = f.get("id").and_then(|(n, p)| r.string(n, &p));
    let mut o = Observation::new(Arc::from(""), source.clone(), "");
    o.id = r
        .medgate_id(&f, source)
        .or_else(|| resource_id.clone())
        .unwrap_or_default();
    o.status = f.get("status").and_then(|(n, p)| r.status(n, &p));
    if o.status.is_none() && f.get("status").is_none() {
        r.issues
            .push(json::child(at, "status"), "is required in R4");
    }
    o.category = r.concepts(&f, "category");
    match f.get("code") {
        Some((n, p)) => o.code = r.concept(n, &p).unwrap_or_default(),
        None => r.issues.push(json::child(at, "code"), "is required in R4"),
    }
    let subject = f.get("subject").and_then(|(n, p)| r.subject(n, &p));
    o.effective = r.effective(&f);
    o.issued = r.primitive_time(&f, "issued", TimeKind::Instant);
    let unreadable = r.value(&f, &mut o.value);
    o.data_absent_reason = f
        .get("dataAbsentReason")
        .and_then(|(n, p)| r.concept(n, &p));
    if o.value.is_some() && o.data_absent_reason.is_some() {
        r.issues.push(
            json::child(at, "dataAbsentReason"),
            "is only allowed when there is no value (R4 obs-6)",
        );
    }
    o.interpretation = r.concepts(&f, "interpretation");
    o.reference_range = r.reference_ranges(&f);
    o.has_member = r.references(&f, "hasMember");
    o.derived_from = r.references(&f, "derivedFrom");
    o.device = f.get("device").and_then(|(n, p)| r.reference(n, &p));
    o.components = r.components(&f);
    o.warnings.extend(r.warnings(&f));
    o.warnings.append(&mut r.unreadable_components);
    if let Some(issue) = unreadable {
        o.value_unreadable(issue.path, issue.message);
    }
    Some(Read {
        observation: o,
        subject,
        resource_id,
    })
}

/// An object's members after the R4 element check.
pub(crate) struct Fields<'a> {
    members: Vec<(String, Node<'a>)>,
    at: String,
}

impl<'a> Fields<'a> {
    /// The member `name` unless absent or `null`, with its pointer.
    pub(crate) fn get(&self, name: &str) -> Option<(Node<'a>, String)> {
        self.members
            .iter()
            .find(|(k, v)| k == name && v.kind() != Kind::Null)
            .map(|(k, v)| (*v, json::child(&self.at, k)))
    }

    fn names(&self) -> impl Iterator<Item = &str> {
        self.members.iter().map(|(k, _)| k.as_str())
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum TimeKind {
    /// FHIR `dateTime`: any precision; a time of day needs an offset.
    DateTime,
    /// FHIR `instant`: seconds and offset.
    Instant,
}

struct Reader<'i> {
    issues: &'i mut Issues,
    /// Warnings of components whose value could not be read.
    unreadable_components: Vec<Warning>,
}

impl Reader<'_> {
    /// Splits an object and checks its members against `(elements, primitives)`: `_x` is
    /// allowed for each primitive `x`.
    fn object<'a>(
        &mut self,
        node: Node<'a>,
        at: &str,
        (elements, primitives): (&[&str], &[&str]),
    ) -> Option<Fields<'a>> {
        object(self.issues, node, at, elements, primitives)
    }

    fn modifier_extensions(&mut self, f: &Fields<'_>) {
        if let Some((_, p)) = f.get("modifierExtension") {
            self.issues.push(
                p,
                "modifierExtension is not understood by medgate; R4 forbids processing the element",
            );
        }
    }

    fn string(&mut self, node: Node<'_>, at: &str) -> Option<String> {
        match node.as_str() {
            Some(s) if s.trim().is_empty() => {
                self.issues
                    .push(at, "is empty (R4 strings must have content)");
                None
            }
            Some(s) => Some(s),
            None => {
                self.issues.push(
                    at,
                    format!("expected a string, found {}", node.kind().article()),
                );
                None
            }
        }
    }

    fn opt_string(&mut self, f: &Fields<'_>, name: &str) -> Option<String> {
        f.get(name).and_then(|(n, p)| self.string(n, &p))
    }

    fn array<'a>(&mut self, node: Node<'a>, at: &str) -> Vec<Node<'a>> {
        match node.elements(MAX_REPEATS) {
            Ok(items) => {
                if items.is_empty() {
                    self.issues
                        .push(at, "is an empty array (not allowed in R4)");
                }
                items
            }
            Err(SplitError::TooMany(limit)) => {
                self.issues
                    .push(at, format!("has more than {limit} elements"));
                Vec::new()
            }
            Err(SplitError::WrongKind(kind)) => {
                self.issues
                    .push(at, format!("expected an array, found {}", kind.article()));
                Vec::new()
            }
        }
    }

    fn status(&mut self, node: Node<'_>, at: &str) -> Option<Status> {
        let s = self.string(node, at)?;
        let status = Status::from_fhir(&s);
        if status.is_none() {
            self.issues.push(at, "is not an R4 ObservationStatus code");
        }
        status
    }

    /// The medgate identifier's value (`urn:medgate:source:<source>`).
    fn medgate_id(&mut self, f: &Fields<'_>, source: &str) -> Option<String> {
        let (node, at) = f.get("identifier")?;
        let system = format!("{SOURCE_IDENTIFIER_PREFIX}{source}");
        let mut found = None;
        for (i, id) in self.array(node, &at).into_iter().enumerate() {
            let at = json::index(&at, i);
            let Some(idf) = self.object(id, &at, IDENTIFIER) else {
                continue;
            };
            let sys = self.opt_string(&idf, "system");
            let value = self.opt_string(&idf, "value");
            if found.is_none() && sys.as_deref() == Some(system.as_str()) {
                found = value;
            }
        }
        found
    }

    fn concepts(&mut self, f: &Fields<'_>, name: &str) -> Vec<CodeableConcept> {
        let Some((node, at)) = f.get(name) else {
            return Vec::new();
        };
        self.array(node, &at)
            .into_iter()
            .enumerate()
            .filter_map(|(i, n)| self.concept(n, &json::index(&at, i)))
            .collect()
    }

    fn concept(&mut self, node: Node<'_>, at: &str) -> Option<CodeableConcept> {
        let f = self.object(node, at, CONCEPT)?;
        let mut c = CodeableConcept {
            coding: Vec::new(),
            text: self.opt_string(&f, "text"),
        };
        if let Some((n, p)) = f.get("coding") {
            for (i, coding) in self.array(n, &p).into_iter().enumerate() {
                if let Some(coding) = self.coding(coding, &json::index(&p, i)) {
                    c.coding.push(coding);
                }
            }
        }
        Some(c)
    }

    fn coding(&mut self, node: Node<'_>, at: &str) -> Option<Coding> {
        let f = self.object(node, at, CODING)?;
        if let Some((n, p)) = f.get("userSelected") {
            if n.as_bool().is_none() {
                self.issues.push(p, "expected true or false");
            }
        }
        let _version = self.opt_string(&f, "version");
        Some(Coding {
            system: self.opt_string(&f, "system"),
            code: self.opt_string(&f, "code"),
            display: self.opt_string(&f, "display"),
            mapped: false,
        })
    }

    fn subject(&mut self, node: Node<'_>, at: &str) -> Option<Subject> {
        let f = self.object(node, at, REFERENCE)?;
        let _ = self.opt_string(&f, "type");
        if let Some(r) = self.opt_string(&f, "reference") {
            return Some(Subject::Reference(r));
        }
        let (n, p) = f.get("identifier")?;
        let idf = self.object(n, &p, IDENTIFIER)?;
        let system = self.opt_string(&idf, "system");
        let value = self.opt_string(&idf, "value");
        match value {
            Some(value) => Some(Subject::Identifier { system, value }),
            None => {
                self.issues
                    .push(json::child(&p, "value"), "an identifier needs a value");
                None
            }
        }
    }

    fn reference(&mut self, node: Node<'_>, at: &str) -> Option<Reference> {
        let f = self.object(node, at, REFERENCE)?;
        let _ = self.opt_string(&f, "type");
        Some(Reference {
            reference: self.opt_string(&f, "reference"),
            display: self.opt_string(&f, "display"),
        })
    }

    fn references(&mut self, f: &Fields<'_>, name: &str) -> Vec<Reference> {
        let Some((node, at)) = f.get(name) else {
            return Vec::new();
        };
        self.array(node, &at)
            .into_iter()
            .enumerate()
            .filter_map(|(i, n)| self.reference(n, &json::index(&at, i)))
            .collect()
    }

    /// A `dateTime` or `instant` primitive `name` of `f`, with its `_name` extension.
    fn primitive_time(&mut self, f: &Fields<'_>, name: &str, kind: TimeKind) -> Option<DateTime> {
        let local = self.local_time_extension(f, name);
        let (node, at) = match f.get(name) {
            Some(found) => found,
            None => return local,
        };
        let text = self.string(node, &at)?;
        let parsed = match DateTime::parse(&text) {
            Ok(t) => t,
            Err(e) => {
                self.issues.push(at, format!("{e}"));
                return None;
            }
        };
        if let Some(local) = local {
            if local.date() != parsed.date() || parsed.precision() != Precision::Day {
                self.issues.push(
                    at,
                    "the local-time extension does not match the date it extends",
                );
            }
            return Some(local);
        }
        let seconds = text.as_bytes().get(16) == Some(&b':');
        match kind {
            TimeKind::Instant if parsed.precision() != Precision::Second || !seconds => {
                self.issues.push(
                    at,
                    "an R4 instant needs seconds and an offset, e.g. 2026-03-01T08:00:00+08:00",
                );
            }
            _ if parsed.is_local() => self.issues.push(
                at,
                "a time of day needs an offset (R4 dateTime), e.g. 2026-03-01T08:00:00+08:00",
            ),
            TimeKind::DateTime if parsed.precision() == Precision::Second && !seconds => {
                self.issues
                    .push(at, "an R4 dateTime with a time of day needs seconds");
            }
            _ => {}
        }
        Some(parsed)
    }

    /// The medgate local-time extension on `_name`, if any.
    fn local_time_extension(&mut self, f: &Fields<'_>, name: &str) -> Option<DateTime> {
        let (node, at) = f.get(&format!("_{name}"))?;
        let ext = extensions(self.issues, node, &at)?;
        let (value, at) = ext
            .into_iter()
            .find(|(url, _, _)| url == LOCAL_TIME_EXTENSION)
            .map(|(_, value, at)| (value, at))?;
        let Some(text) = value.and_then(|n| n.as_str()) else {
            self.issues
                .push(at, "the local-time extension needs a valueString");
            return None;
        };
        match DateTime::parse(&text) {
            Ok(t) if t.is_local() => Some(t),
            _ => {
                self.issues.push(
                    at,
                    "the local-time extension must hold a date-time without offset",
                );
                None
            }
        }
    }

    fn effective(&mut self, f: &Fields<'_>) -> Option<Effective> {
        let present: Vec<&str> = f
            .names()
            .filter(|n| n.starts_with("effective") || n.starts_with("_effective"))
            .map(|n| n.trim_start_matches('_'))
            .collect();
        let mut distinct = present.clone();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() > 1 {
            self.issues.push(
                json::child(&f.at, distinct[1]),
                "only one effective[x] is allowed",
            );
        }
        if let Some((_, p)) = f.get("effectiveTiming") {
            self.issues.push(
                p,
                "effectiveTiming is not supported; send effectiveDateTime or effectivePeriod",
            );
        }
        if let Some((n, p)) = f.get("effectivePeriod") {
            return self.period(n, &p).map(Effective::Period);
        }
        if present.contains(&"effectiveInstant") {
            return self
                .primitive_time(f, "effectiveInstant", TimeKind::Instant)
                .map(Effective::DateTime);
        }
        self.primitive_time(f, "effectiveDateTime", TimeKind::DateTime)
            .map(Effective::DateTime)
    }

    fn period(&mut self, node: Node<'_>, at: &str) -> Option<Period> {
        let f = self.object(node, at, PERIOD)?;
        let start = self.primitive_time(&f, "start", TimeKind::DateTime);
        let end = self.primitive_time(&f, "end", TimeKind::DateTime);
        if let (Some(s), Some(e)) = (&start, &end) {
            if crate::report::ends_before(s, e) {
                self.issues.push(
                    json::child(at, "end"),
                    "the period ends before it starts (R4 per-1)",
                );
            }
        }
        Some(Period { start, end })
    }

    /// The `value[x]` of an Observation or component into `value`; returns the issue that
    /// made a present value unreadable.
    fn value(&mut self, f: &Fields<'_>, value: &mut Value) -> Option<Issue> {
        let names: Vec<String> = f
            .names()
            .map(|n| n.trim_start_matches('_'))
            .filter(|n| n.starts_with("value"))
            .map(str::to_owned)
            .collect();
        let mut distinct = names.clone();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() > 1 {
            self.issues.push(
                json::child(&f.at, &distinct[1]),
                "only one value[x] is allowed",
            );
        }
        let name = names.first()?;
        // Only `_valueX`: an extension without a value.
        let (node, at) = f.get(name)?;
        let before = self.issues.as_slice().len();
        let read = match name.as_str() {
            "valueQuantity" => self.quantity(node, &at, true).map(Value::Quantity),
            "valueCodeableConcept" => self.concept(node, &at).map(Value::CodeableConcept),
            "valueString" => self.string(node, &at).map(Value::String),
            "valueBoolean" => {
                let b = node.as_bool();
                if b.is_none() {
                    self.issues.push(at.as_str(), "expected true or false");
                }
                b.map(Value::Boolean)
            }
            "valueInteger" => self.integer(node, &at).map(Value::Integer),
            "valueRange" => self.range(node, &at).map(Value::Range),
            "valueRatio" => self.ratio(node, &at).map(Value::Ratio),
            "valuePeriod" => self.period(node, &at).map(Value::Period),
            "valueDateTime" => self
                .primitive_time(f, "valueDateTime", TimeKind::DateTime)
                .map(Value::DateTime),
            "valueTime" => self.time(node, &at).map(Value::Time),
            "valueSampledData" => {
                self.issues
                    .push(at.as_str(), "valueSampledData is not supported");
                None
            }
            // Not an R4 element: already reported by the element check.
            _ => return None,
        };
        match read {
            Some(v) => {
                *value = v;
                None
            }
            None => Some(
                self.issues
                    .as_slice()
                    .get(before)
                    .cloned()
                    .unwrap_or_else(|| Issue::new(at, "the value could not be read")),
            ),
        }
    }

    fn integer(&mut self, node: Node<'_>, at: &str) -> Option<i32> {
        let parsed = node.number_text().and_then(|t| t.parse::<i32>().ok());
        if parsed.is_none() {
            self.issues.push(
                at,
                "expected a whole number between -2147483648 and 2147483647",
            );
        }
        parsed
    }

    fn time(&mut self, node: Node<'_>, at: &str) -> Option<String> {
        let t = self.string(node, at)?;
        let b = t.as_bytes();
        let ok = b.len() >= 8
            && b[2] == b':'
            && b[5] == b':'
            && t[..2].parse::<u8>().is_ok_and(|h| h < 24)
            && t[3..5].parse::<u8>().is_ok_and(|m| m < 60)
            && t[6..8].parse::<u8>().is_ok_and(|s| s < 60)
            && (b.len() == 8
                || (b[8] == b'.' && b.len() > 9 && b[9..].iter().all(u8::is_ascii_digit)));
        if !ok {
            self.issues.push(at, "expected an R4 time hh:mm:ss[.fff]");
            return None;
        }
        Some(t)
    }

    fn decimal(&mut self, node: Node<'_>, at: &str) -> Option<Decimal> {
        match node.kind() {
            Kind::Number => {
                let d = node.as_decimal();
                if d.is_none() {
                    self.issues.push(at, "not a number");
                }
                d
            }
            Kind::String => {
                let d = node.as_str().and_then(|s| Decimal::parse_lenient(&s));
                self.issues.push(
                    at,
                    if d.is_some() {
                        "a decimal must be a JSON number, not a string"
                    } else {
                        "not a number"
                    },
                );
                d
            }
            other => {
                self.issues
                    .push(at, format!("expected a number, found {}", other.article()));
                None
            }
        }
    }

    fn quantity(&mut self, node: Node<'_>, at: &str, comparator: bool) -> Option<Quantity> {
        let f = self.object(node, at, QUANTITY)?;
        let value = match f.get("value") {
            // An unreadable number makes the whole quantity unreadable.
            Some((n, p)) => Some(self.decimal(n, &p)?),
            None => None,
        };
        let comp = f.get("comparator").and_then(|(n, p)| {
            let s = self.string(n, &p)?;
            let c = Comparator::parse(&s);
            if c.is_none() {
                self.issues.push(p.as_str(), "expected <, <=, >= or >");
            } else if !comparator {
                self.issues
                    .push(p.as_str(), "a SimpleQuantity has no comparator");
            }
            c
        });
        let q = Quantity {
            value,
            comparator: comp,
            unit: self.opt_string(&f, "unit"),
            system: self.opt_string(&f, "system"),
            code: self.opt_string(&f, "code"),
        };
        if q.code.is_some() && q.system.is_none() {
            self.issues.push(
                json::child(at, "system"),
                "is required when a unit code is given (R4 qty-3)",
            );
        }
        Some(q)
    }

    fn range(&mut self, node: Node<'_>, at: &str) -> Option<Range> {
        let f = self.object(node, at, RANGE)?;
        Some(Range {
            low: f.get("low").and_then(|(n, p)| self.quantity(n, &p, false)),
            high: f.get("high").and_then(|(n, p)| self.quantity(n, &p, false)),
        })
    }

    fn ratio(&mut self, node: Node<'_>, at: &str) -> Option<Ratio> {
        let f = self.object(node, at, RATIO)?;
        Some(Ratio {
            numerator: f
                .get("numerator")
                .and_then(|(n, p)| self.quantity(n, &p, true)),
            denominator: f
                .get("denominator")
                .and_then(|(n, p)| self.quantity(n, &p, true)),
        })
    }

    fn reference_ranges(&mut self, f: &Fields<'_>) -> Vec<ReferenceRange> {
        let Some((node, at)) = f.get("referenceRange") else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, n) in self.array(node, &at).into_iter().enumerate() {
            let at = json::index(&at, i);
            let Some(rf) = self.object(n, &at, REFERENCE_RANGE) else {
                continue;
            };
            self.modifier_extensions(&rf);
            let range = ReferenceRange {
                low: rf.get("low").and_then(|(n, p)| self.quantity(n, &p, false)),
                high: rf
                    .get("high")
                    .and_then(|(n, p)| self.quantity(n, &p, false)),
                kind: rf.get("type").and_then(|(n, p)| self.concept(n, &p)),
                text: self.opt_string(&rf, "text"),
            };
            if range.low.is_none() && range.high.is_none() && range.text.is_none() {
                self.issues
                    .push(at.as_str(), "needs low, high or text (R4 obs-3)");
            }
            out.push(range);
        }
        out
    }

    fn components(&mut self, f: &Fields<'_>) -> Vec<Component> {
        let Some((node, at)) = f.get("component") else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, n) in self.array(node, &at).into_iter().enumerate() {
            let at = json::index(&at, i);
            let Some(cf) = self.object(n, &at, (COMPONENT_ELEMENTS, COMPONENT_PRIMITIVES)) else {
                continue;
            };
            self.modifier_extensions(&cf);
            let code = match cf.get("code") {
                Some((n, p)) => self.concept(n, &p).unwrap_or_default(),
                None => {
                    self.issues
                        .push(json::child(&at, "code"), "is required in R4");
                    CodeableConcept::default()
                }
            };
            let mut value = Value::None;
            let unreadable = self.value(&cf, &mut value);
            let mut absent = cf
                .get("dataAbsentReason")
                .and_then(|(n, p)| self.concept(n, &p));
            if let Some(issue) = unreadable {
                // The component has no warnings of its own: the observation carries them.
                self.unreadable_components
                    .push(Warning::new(issue.path, issue.message));
                absent = Some(CodeableConcept::data_absent("error", "Error"));
            }
            out.push(Component {
                code,
                value,
                data_absent_reason: absent,
                interpretation: self.concepts(&cf, "interpretation"),
                reference_range: self.reference_ranges(&cf),
            });
        }
        out
    }

    /// Warnings the medgate writer put in `extension`.
    fn warnings(&mut self, f: &Fields<'_>) -> Vec<Warning> {
        let Some((node, at)) = f.get("extension") else {
            return Vec::new();
        };
        let Some(ext) = extension_list(self.issues, node, &at) else {
            return Vec::new();
        };
        ext.into_iter()
            .filter(|(url, _, _)| url == WARNING_EXTENSION)
            .filter_map(|(_, value, _)| value.and_then(|v| v.as_str()))
            .map(|text| match text.split_once(": ") {
                Some((at, message)) => Warning::new(at, message),
                None => Warning::new("", text),
            })
            .collect()
    }
}

/// Splits an object and checks its members against R4 `elements`; `_x` is allowed for each
/// primitive `x`, and duplicates are refused.
pub(crate) fn object<'a>(
    issues: &mut Issues,
    node: Node<'a>,
    at: &str,
    elements: &[&str],
    primitives: &[&str],
) -> Option<Fields<'a>> {
    let members = match node.members(elements.len() + primitives.len() + 8) {
        Ok(m) => m,
        Err(SplitError::WrongKind(kind)) => {
            issues.push(at, format!("expected an object, found {}", kind.article()));
            return None;
        }
        Err(SplitError::TooMany(_)) => {
            issues.push(at, "has more members than R4 defines for this type");
            return None;
        }
    };
    for (i, (name, _)) in members.iter().enumerate() {
        let path = json::child(at, name);
        let known = match name.strip_prefix('_') {
            Some(p) => primitives.contains(&p),
            None => elements.contains(&name.as_str()),
        };
        if members[..i].iter().any(|(n, _)| n == name) {
            issues.push(path, "appears more than once in the object");
        } else if !known {
            issues.push(path, "is not an element R4 defines here");
        }
    }
    Some(Fields {
        members,
        at: at.to_owned(),
    })
}

/// The `extension` list inside a primitive's `_x` object.
fn extensions<'a>(
    issues: &mut Issues,
    node: Node<'a>,
    at: &str,
) -> Option<Vec<(String, Option<Node<'a>>, String)>> {
    let f = object(issues, node, at, &["id", "extension"], &[])?;
    let (list, at) = f.get("extension")?;
    extension_list(issues, list, &at)
}

/// `(url, valueString node, pointer)` of each extension in a list.
fn extension_list<'a>(
    issues: &mut Issues,
    node: Node<'a>,
    at: &str,
) -> Option<Vec<(String, Option<Node<'a>>, String)>> {
    let items = match node.elements(MAX_REPEATS) {
        Ok(items) => items,
        Err(_) => {
            issues.push(at, "expected an array of at most 1000 extensions");
            return None;
        }
    };
    let mut out = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let at = json::index(at, i);
        let members = match item.members(64) {
            Ok(m) => m,
            Err(_) => {
                issues.push(at, "expected an extension object");
                continue;
            }
        };
        let url = members
            .iter()
            .find(|(k, _)| k == "url")
            .and_then(|(_, v)| v.as_str());
        let Some(url) = url else {
            issues.push(json::child(&at, "url"), "an extension needs a url");
            continue;
        };
        let value = members
            .iter()
            .find(|(k, _)| k == "valueString")
            .map(|(_, v)| *v);
        let value_at = json::child(&at, "valueString");
        out.push((url, value, value_at));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_name_patients() {
        let r = |s: &str| Subject::Reference(s.into());
        assert_eq!(r("Patient/P1").patient_id(), Some("P1"));
        assert_eq!(
            r("http://example.org/fhir/Patient/123/_history/2").patient_id(),
            Some("123")
        );
        assert_eq!(r("Group/1").patient_id(), None);
        assert_eq!(r("#newborn").patient_id(), None);
        assert_eq!(r("urn:uuid:1234").patient_id(), None);
        assert_eq!(r("Patient/").patient_id(), None);
        let id = Subject::Identifier {
            system: None,
            value: "X".into(),
        };
        assert_eq!(id.patient_id(), Some("X"));
    }
}
