//! HL7 CDA R2 / C-CDA (`ClinicalDocument` in `urn:hl7-org:v3`).
//!
//! The document is walked iteratively. What is emitted:
//!
//! - Every `observation` with a `value` element is one Observation, wherever it sits in the
//!   body: directly under `entry` (social history, smoking status) or as a `component` of an
//!   `organizer` (vital signs and result organizers), at any organizer depth.
//! - **Organizers themselves are not emitted.** A C-CDA result organizer is a FHIR
//!   DiagnosticReport, not an Observation, and a vital-signs organizer only groups its
//!   members; a valueless panel record would add an empty row per panel to every tabular
//!   export. Each member carries its own code, status, time and value.
//! - **`entryRelationship` subtrees are skipped** wherever they occur. They hold supporting
//!   facts, not results of their own: the unit of a string result, problem and allergy
//!   observations inside concern acts, severities, reactions, reasons. Emitting them would
//!   invent rows. Section narrative (`text`) is skipped too.
//! - **Anything with a `subject` participation is skipped** (the whole section, organizer or
//!   observation that has one as a direct child): in CDA a `subject` says the act is about
//!   someone other than the record target, such as the relative of a family-history
//!   organizer. The patient is the one of the request; another person's condition must not
//!   become the patient's observation.
//!
//! Per observation: `id` (`@root` + `/` + `@extension`), `code` (code, code system OID →
//! URI, displayName, translations as extra codings, originalText as text), `statusCode` →
//! status (`completed` → final, `active` → preliminary, `aborted` and `cancelled` →
//! cancelled, `nullified` → entered-in-error, anything else → none), `effectiveTime`
//! (`@value` → date-time, `low`/`high` → period, `value=""` → none), `value` by `xsi:type`,
//! `interpretationCode` (v3 ObservationInterpretation) and
//! `referenceRange/observationRange` (IVL_PQ bounds, text; an `interpretationCode` of `N`
//! marks the normal range). Category comes from the nearest enclosing section's code:
//! results (LOINC 30954-2) → `laboratory`, vital signs (8716-3) → `vital-signs`, social
//! history (29762-2) → `social-history`, else none.
//!
//! Values by `xsi:type`: `PQ` → Quantity (value as written, `@unit` as UCUM); a PQ with a
//! `nullFlavor` whose value sits in a `translation` takes the translation's value and unit,
//! with a warning. `IVL_PQ` → Range when both bounds are given, else a Quantity with the
//! comparator FHIR uses for "<5" (`high` → `<`/`<=`, `low` → `>`/`>=`, by `@inclusive`,
//! HL7's default inclusive). `ST`/`ED` → string; `CD`/`CE`/`CO`/`CV`/`CS` → CodeableConcept;
//! `INT` → integer (a Quantity when it does not fit 32 bits); `REAL` → unitless Quantity;
//! `BL` → boolean; `TS` → dateTime; `IVL_TS` → Period; `RTO*` → Ratio. A value with a
//! `nullFlavor` and nothing else has no value and a `dataAbsentReason` mapped from the
//! flavor. A value that cannot be read is "no value" + `dataAbsentReason = error` + a
//! warning; a time that cannot be read is left out with a warning.

use std::borrow::Cow;

use medgate_core::model::INTERPRETATION_SYSTEM;
use medgate_core::{
    CodeableConcept, Coding, Comparator, DateTime, Effective, Observation, Period, Quantity, Range,
    Ratio, ReferenceRange, Status, Value, Warning,
};

use crate::error::Fail;
use crate::text::{decimal, quoted, unreadable_number};
use crate::xml::{local, Ev, Start, Xml};
use crate::{ParseContext, Sink};

const CDA_NS: &str = "urn:hl7-org:v3";
/// The OID of UCUM, for translations that say their unit is UCUM.
const UCUM_OID: &str = "2.16.840.1.113883.6.8";
/// FHIR's code system for the meaning of a reference range.
const RANGE_MEANING: &str = "http://terminology.hl7.org/CodeSystem/referencerange-meaning";

/// A value that could be read, or the warning saying why not.
type Read<T> = Result<T, Warning>;

/// Parses a CDA document into `rows`.
pub(crate) fn parse(bytes: &[u8], ctx: &ParseContext, rows: &mut impl Sink) -> Result<(), Fail> {
    let mut xml = Xml::new(bytes, ctx.max_depth);
    let root = xml.root()?;
    if xml.root_namespace(&root)?.as_deref() != Some(CDA_NS) {
        return Err(xml.content_error(format!("root element is not in the CDA namespace {CDA_NS}")));
    }
    if local(&root) != "ClinicalDocument" {
        return Err(xml.content_error("root element is not a ClinicalDocument"));
    }
    // (depth of the section element, its category once its code is seen)
    let mut sections: Vec<(usize, Option<&'static str>)> = Vec::new();
    while let Some(event) = xml.next()? {
        match event {
            Ev::Start(start) => match local(&start) {
                "subject" => {
                    // The parent is about someone else: leave it (see the module docs).
                    let parent = xml.depth() - 1;
                    xml.skip_until(parent.saturating_sub(1))?;
                    while sections.last().is_some_and(|s| s.0 > xml.depth()) {
                        sections.pop();
                    }
                }
                "observation" => {
                    let category = sections.last().and_then(|s| s.1);
                    if let Some(o) = parse_observation(&mut xml, ctx, category, rows.count())? {
                        rows.emit(o)?;
                    }
                }
                "entryRelationship" | "text" => xml.skip()?,
                "section" => sections.push((xml.depth(), None)),
                "code" => {
                    let depth = xml.depth();
                    if let Some(section) = sections.last_mut().filter(|s| s.0 + 1 == depth) {
                        section.1 = section_category(xml.attr(&start, "code")?.as_deref());
                    }
                    xml.skip()?;
                }
                _ => {}
            },
            Ev::End => {
                let depth = xml.depth();
                if sections.last().is_some_and(|s| s.0 > depth) {
                    sections.pop();
                }
            }
            Ev::Text(_) => {}
        }
    }
    Ok(())
}

fn section_category(code: Option<&str>) -> Option<&'static str> {
    match code.map(str::trim) {
        Some("30954-2") => Some("laboratory"),
        Some("8716-3") => Some("vital-signs"),
        Some("29762-2") => Some("social-history"),
        _ => None,
    }
}

/// Maps well-known code system OIDs to their FHIR URIs; other OIDs become `urn:oid:<oid>`.
pub fn code_system_uri(oid: &str) -> String {
    let oid = oid.trim();
    let uri = match oid {
        "2.16.840.1.113883.6.1" => "http://loinc.org",
        "2.16.840.1.113883.6.96" => "http://snomed.info/sct",
        UCUM_OID => "http://unitsofmeasure.org",
        "2.16.840.1.113883.5.83" => INTERPRETATION_SYSTEM,
        "2.16.840.1.113883.6.88" => "http://www.nlm.nih.gov/research/umls/rxnorm",
        "2.16.840.1.113883.12.292" => "http://hl7.org/fhir/sid/cvx",
        "2.16.840.1.113883.6.90" => "http://hl7.org/fhir/sid/icd-10-cm",
        "2.16.840.1.113883.6.12" => "http://www.ama-assn.org/go/cpt",
        "2.16.840.1.113883.5.4" => "http://terminology.hl7.org/CodeSystem/v3-ActCode",
        other => return format!("urn:oid:{other}"),
    };
    uri.to_owned()
}

/// HL7 v3 ActStatus → FHIR ObservationStatus (see the module docs).
fn status(code: Option<&str>) -> Option<Status> {
    match code?.trim() {
        "completed" => Some(Status::Final),
        "active" => Some(Status::Preliminary),
        "aborted" | "cancelled" => Some(Status::Cancelled),
        "nullified" => Some(Status::EnteredInError),
        _ => None,
    }
}

/// HL7 v3 NullFlavor → FHIR data-absent-reason. Flavors without a FHIR counterpart (`NI`,
/// `OTH`, `NP`, `UNK` …) are `unknown`.
fn null_flavor_reason(flavor: &str) -> CodeableConcept {
    let (code, display) = match flavor.trim() {
        "ASKU" => ("asked-unknown", "Asked But Unknown"),
        "NAV" => ("temp-unknown", "Temporarily Unknown"),
        "NASK" => ("not-asked", "Not Asked"),
        "MSK" => ("masked", "Masked"),
        "NA" => ("not-applicable", "Not Applicable"),
        "NAN" => ("not-a-number", "Not a Number (NaN)"),
        "NINF" => ("negative-infinity", "Negative Infinity (NINF)"),
        "PINF" => ("positive-infinity", "Positive Infinity (PINF)"),
        _ => ("unknown", "Unknown"),
    };
    CodeableConcept::data_absent(code, display)
}

/// Reads one `observation` (its start was just read) and consumes it; `None` when it has no
/// `value` element (not a result).
fn parse_observation(
    xml: &mut Xml<'_>,
    ctx: &ParseContext,
    category: Option<&'static str>,
    index: usize,
) -> Result<Option<Observation>, Fail> {
    let mut o = Observation::new(ctx.patient_id.clone(), ctx.source.clone(), String::new());
    let (mut id, mut has_code, mut has_time, mut has_value) = (None, false, false, false);
    while let Some(child) = xml.next_child()? {
        match local(&child) {
            "subject" => {
                // About someone else (see the module docs).
                xml.skip_until(xml.depth().saturating_sub(2))?;
                return Ok(None);
            }
            "id" if id.is_none() => {
                id = instance_id(xml, &child)?;
                xml.skip()?;
            }
            "code" if !has_code => {
                has_code = true;
                o.code = read_cd(xml, &child, None)?;
            }
            "statusCode" => {
                o.status = status(xml.attr(&child, "code")?.as_deref());
                xml.skip()?;
            }
            "effectiveTime" if !has_time => {
                has_time = true;
                o.effective = read_effective_time(xml, &child, &mut o.warnings)?;
            }
            "value" if !has_value => {
                has_value = true;
                read_value(xml, &child, &mut o)?;
            }
            "value" => {
                xml.skip()?;
                let w = xml.warning("observation has more than one value; only the first is kept");
                o.warnings.push(w);
            }
            "interpretationCode" => {
                let concept = read_cd(xml, &child, Some(INTERPRETATION_SYSTEM))?;
                if !concept.is_empty() {
                    o.interpretation.push(concept);
                }
            }
            "referenceRange" => {
                if let Some(range) = read_reference_range(xml, &mut o.warnings)? {
                    o.reference_range.push(range);
                }
            }
            _ => xml.skip()?,
        }
    }
    if !has_value {
        return Ok(None);
    }
    o.id = id.unwrap_or_else(|| index.to_string());
    if let Some(category) = category {
        o.category.push(CodeableConcept::category(category));
    }
    Ok(Some(o))
}

/// `@root` + `/` + `@extension` of an `id` element.
fn instance_id(xml: &Xml<'_>, start: &Start<'_>) -> Result<Option<String>, Fail> {
    let [root, extension] = xml.attrs(start, ["root", "extension"])?;
    Ok(match (root, extension) {
        (Some(r), Some(e)) => Some(format!("{r}/{e}")),
        (Some(r), None) => Some(r.into_owned()),
        (None, e) => e.map(Cow::into_owned),
    })
}

/// A `CD`-family element (`code`, coded `value`, `interpretationCode`), consuming it:
/// its own coding, one coding per `translation`, and `originalText` as the text.
/// `default_system` applies when the element names no code system.
fn read_cd(
    xml: &mut Xml<'_>,
    start: &Start<'_>,
    default_system: Option<&str>,
) -> Result<CodeableConcept, Fail> {
    let mut concept = CodeableConcept::default();
    let own = coding(xml, start, default_system)?;
    if !own.is_empty() {
        concept.coding.push(own);
    }
    while let Some(child) = xml.next_child()? {
        match local(&child) {
            "originalText" => concept.text = trimmed_text(xml)?,
            "translation" => {
                let translated = coding(xml, &child, None)?;
                xml.skip()?;
                if !translated.is_empty() {
                    concept.coding.push(translated);
                }
            }
            _ => xml.skip()?,
        }
    }
    Ok(concept)
}

/// The coding in a CD element's attributes (codes trimmed: CDA codes never carry spaces, but
/// real documents do, e.g. `code="46008-9 "`).
fn coding(xml: &Xml<'_>, start: &Start<'_>, default_system: Option<&str>) -> Result<Coding, Fail> {
    let [code, system, display] = xml.attrs(start, ["code", "codeSystem", "displayName"])?;
    let code = code.map(|c| c.trim().to_owned()).filter(|c| !c.is_empty());
    if code.is_none() && display.is_none() {
        return Ok(Coding::default());
    }
    Ok(Coding {
        system: match system {
            Some(oid) => Some(code_system_uri(&oid)),
            None => default_system.map(str::to_owned),
        },
        code,
        display: display.map(Cow::into_owned),
        mapped: false,
    })
}

/// The text content of the current element, trimmed; `None` when empty (a `<reference>`
/// to narrative only).
fn trimmed_text(xml: &mut Xml<'_>) -> Result<Option<String>, Fail> {
    let text = xml.read_text()?;
    let trimmed = text.trim();
    Ok((!trimmed.is_empty()).then(|| trimmed.to_owned()))
}

/// An HL7 TS; `""` is no time. A time that is not HL7 but ISO 8601 is accepted with a
/// warning; anything else is dropped with a warning.
fn ts(xml: &Xml<'_>, text: &str, element: &str, warnings: &mut Vec<Warning>) -> Option<DateTime> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    match DateTime::parse_hl7(text) {
        Ok(at) => Some(at),
        Err(_) => match DateTime::parse(text) {
            Ok(at) => {
                warnings.push(xml.warning(format!(
                    "{element} {} is ISO 8601, not an HL7 timestamp; read as ISO 8601",
                    quoted(text)
                )));
                Some(at)
            }
            Err(_) => {
                warnings.push(xml.warning(format!(
                    "{element} {} is not a valid HL7 timestamp",
                    quoted(text)
                )));
                None
            }
        },
    }
}

/// `@value` of a TS element, consuming it.
fn ts_element(
    xml: &mut Xml<'_>,
    start: &Start<'_>,
    element: &str,
    warnings: &mut Vec<Warning>,
) -> Result<Option<DateTime>, Fail> {
    let value = xml.attr(start, "value")?;
    xml.skip()?;
    Ok(value.and_then(|v| ts(xml, &v, element, warnings)))
}

/// An `IVL_TS` as a period (`low`, `high`), consuming it; `center` alone counts as the start.
fn read_ivl_ts(
    xml: &mut Xml<'_>,
    element: &str,
    warnings: &mut Vec<Warning>,
) -> Result<Period, Fail> {
    let mut period = Period::default();
    let mut center = None;
    while let Some(child) = xml.next_child()? {
        match local(&child) {
            "low" => period.start = ts_element(xml, &child, element, warnings)?,
            "high" => period.end = ts_element(xml, &child, element, warnings)?,
            "center" => center = ts_element(xml, &child, element, warnings)?,
            _ => xml.skip()?,
        }
    }
    if period.start.is_none() && period.end.is_none() {
        period.start = center;
    }
    Ok(period)
}

/// `effectiveTime`: `@value` → a date-time, else `low`/`high` → a period; consumes it.
fn read_effective_time(
    xml: &mut Xml<'_>,
    start: &Start<'_>,
    warnings: &mut Vec<Warning>,
) -> Result<Option<Effective>, Fail> {
    if let Some(value) = xml.attr(start, "value")? {
        xml.skip()?;
        return Ok(ts(xml, &value, "effectiveTime", warnings).map(Effective::DateTime));
    }
    let period = read_ivl_ts(xml, "effectiveTime", warnings)?;
    Ok((period.start.is_some() || period.end.is_some()).then_some(Effective::Period(period)))
}

/// The first `translation` that has a value: the real value and unit of a PQ whose own
/// value is a nullFlavor (non-UCUM units).
struct Translation {
    value: String,
    code: Option<String>,
    code_system: Option<String>,
    original_text: Option<String>,
}

impl Translation {
    /// The translation as a quantity: UCUM when it says so, else its code in its own system
    /// with the original text as the display unit.
    fn quantity(self, xml: &Xml<'_>, element: &str) -> Read<Quantity> {
        let Some(value) = decimal(&self.value) else {
            return Err(xml.warning(unreadable_number(element, &self.value)));
        };
        if let (Some(code), Some(UCUM_OID)) = (&self.code, self.code_system.as_deref()) {
            return Ok(Quantity::ucum(value, code));
        }
        Ok(Quantity {
            value: Some(value),
            comparator: None,
            unit: self.original_text.or_else(|| self.code.clone()),
            system: self.code_system.as_deref().map(code_system_uri),
            code: self.code,
        })
    }
}

/// Consumes the current element, returning its first `translation` with a `@value`.
fn read_translation(xml: &mut Xml<'_>) -> Result<Option<Translation>, Fail> {
    let mut found = None;
    while let Some(child) = xml.next_child()? {
        if found.is_some() || local(&child) != "translation" {
            xml.skip()?;
            continue;
        }
        let [value, code, code_system] = xml.attrs(&child, ["value", "code", "codeSystem"])?;
        let (value, code, code_system) = (
            value.map(Cow::into_owned),
            code.map(|c| c.trim().to_owned()),
            code_system.map(Cow::into_owned),
        );
        let mut original_text = None;
        while let Some(part) = xml.next_child()? {
            if local(&part) == "originalText" {
                original_text = trimmed_text(xml)?;
            } else {
                xml.skip()?;
            }
        }
        if let Some(value) = value.filter(|v| !v.trim().is_empty()) {
            found = Some(Translation {
                value,
                code,
                code_system,
                original_text,
            });
        }
    }
    Ok(found)
}

/// A PQ-like element (a PQ value, an IVL_PQ bound, a ratio part), consuming it: its own
/// `@value` and `@unit` (UCUM), or, when it has no value, the value and unit of its first
/// translation, with a warning. `None`: no value at all (a nullFlavor, an infinite bound).
fn read_pq(
    xml: &mut Xml<'_>,
    start: &Start<'_>,
    element: &str,
    warnings: &mut Vec<Warning>,
) -> Result<Option<Read<Quantity>>, Fail> {
    let [raw, unit, null_flavor] = xml.attrs(start, ["value", "unit", "nullFlavor"])?;
    if let Some(raw) = raw.filter(|r| !r.trim().is_empty()) {
        xml.skip()?;
        let quantity = match decimal(&raw) {
            Some(value) => match unit.as_deref().map(str::trim).filter(|u| !u.is_empty()) {
                Some(unit) => Ok(Quantity::ucum(value, unit)),
                None => Ok(Quantity {
                    value: Some(value),
                    ..Quantity::default()
                }),
            },
            None => Err(xml.warning(unreadable_number(element, &raw))),
        };
        return Ok(Some(quantity));
    }
    let flavor = null_flavor.map_or_else(|| "none".to_owned(), |f| f.trim().to_owned());
    let Some(translation) = read_translation(xml)? else {
        return Ok(None);
    };
    warnings.push(xml.warning(format!(
        "{element} is a nullFlavor ({flavor}); the value and unit of its translation were used"
    )));
    Ok(Some(translation.quantity(xml, element)))
}

/// Both bounds of an IVL_PQ with their `@inclusive` (HL7 default: inclusive).
#[derive(Default)]
struct Bounds {
    low: Option<(Quantity, bool)>,
    high: Option<(Quantity, bool)>,
}

impl Bounds {
    fn exclusive(&self) -> bool {
        [&self.low, &self.high]
            .into_iter()
            .any(|b| b.as_ref().is_some_and(|(_, inclusive)| !inclusive))
    }
}

/// An IVL_PQ's bounds, consuming it; `Err` if a bound's value cannot be read.
fn read_bounds(
    xml: &mut Xml<'_>,
    element: &str,
    warnings: &mut Vec<Warning>,
) -> Result<Read<Bounds>, Fail> {
    let mut bounds = Bounds::default();
    let mut problem = None;
    while let Some(child) = xml.next_child()? {
        let bound = match local(&child) {
            "low" => &mut bounds.low,
            "high" => &mut bounds.high,
            _ => {
                xml.skip()?;
                continue;
            }
        };
        let inclusive = xml.attr(&child, "inclusive")?.as_deref().map(str::trim) != Some("false");
        match read_pq(xml, &child, element, warnings)? {
            Some(Ok(q)) => *bound = Some((q, inclusive)),
            Some(Err(w)) => {
                problem.get_or_insert(w);
            }
            None => {}
        }
    }
    Ok(problem.map_or(Ok(bounds), Err))
}

/// An IVL_PQ value (see the module docs).
fn ivl_pq_value(xml: &Xml<'_>, bounds: Bounds, warnings: &mut Vec<Warning>) -> Value {
    let with = |q: Quantity, comparator| {
        Value::Quantity(Quantity {
            comparator: Some(comparator),
            ..q
        })
    };
    match bounds {
        Bounds {
            low: Some((low, low_inclusive)),
            high: Some((high, high_inclusive)),
        } => {
            if !(low_inclusive && high_inclusive) {
                warnings.push(
                    xml.warning("IVL_PQ value has an exclusive bound; FHIR ranges are inclusive"),
                );
            }
            Value::Range(Range {
                low: Some(low),
                high: Some(high),
            })
        }
        Bounds {
            low: Some((low, inclusive)),
            high: None,
        } => with(
            low,
            if inclusive {
                Comparator::GreaterOrEqual
            } else {
                Comparator::Greater
            },
        ),
        Bounds {
            low: None,
            high: Some((high, inclusive)),
        } => with(
            high,
            if inclusive {
                Comparator::LessOrEqual
            } else {
                Comparator::Less
            },
        ),
        Bounds {
            low: None,
            high: None,
        } => Value::None,
    }
}

/// Reads the observation's `value` by `xsi:type` into `o`, consuming the element.
fn read_value(xml: &mut Xml<'_>, start: &Start<'_>, o: &mut Observation) -> Result<(), Fail> {
    let [kind, null_flavor, raw, code, representation] = xml.attrs(
        start,
        ["type", "nullFlavor", "value", "code", "representation"],
    )?;
    let kind = kind
        .as_deref()
        .map(|k| k.rsplit(':').next().unwrap_or(k).trim());
    let warnings = &mut o.warnings;
    let value: Read<Value> = match kind {
        Some("PQ") => pq_value(read_pq(xml, start, "PQ value", warnings)?),
        Some("IVL_PQ") => {
            read_bounds(xml, "IVL_PQ value", warnings)?.map(|b| ivl_pq_value(xml, b, warnings))
        }
        Some("ST") => Ok(trimmed_text(xml)?.map_or(Value::None, Value::String)),
        Some("ED") if representation.as_deref() == Some("B64") => {
            xml.skip()?;
            warnings.push(xml.warning("ED value with base64 data is not supported; left out"));
            Ok(Value::None)
        }
        Some("ED") => Ok(trimmed_text(xml)?.map_or(Value::None, Value::String)),
        Some("CD" | "CE" | "CO" | "CV" | "CS") => Ok(coded(read_cd(xml, start, None)?)),
        Some("INT") => {
            xml.skip()?;
            raw.as_deref()
                .map_or(Ok(Value::None), |r| int_value(xml, r, warnings))
        }
        Some("REAL") => {
            xml.skip()?;
            match raw.as_deref().filter(|r| !r.trim().is_empty()) {
                None => Ok(Value::None),
                Some(r) => decimal(r)
                    .map(Value::number)
                    .ok_or_else(|| xml.warning(unreadable_number("REAL value", r))),
            }
        }
        Some("BL") => {
            xml.skip()?;
            match raw.as_deref().map(str::trim) {
                None => Ok(Value::None),
                Some("true") => Ok(Value::Boolean(true)),
                Some("false") => Ok(Value::Boolean(false)),
                Some(other) => {
                    Err(xml.warning(format!("BL value {} is not true or false", quoted(other))))
                }
            }
        }
        Some("TS") => {
            xml.skip()?;
            match raw.as_deref().filter(|r| !r.trim().is_empty()) {
                None => Ok(Value::None),
                Some(r) => match DateTime::parse_hl7(r.trim()) {
                    Ok(at) => Ok(Value::DateTime(at)),
                    Err(_) => Err(xml.warning(format!(
                        "TS value {} is not a valid HL7 timestamp",
                        quoted(r)
                    ))),
                },
            }
        }
        Some("IVL_TS") => {
            let period = read_ivl_ts(xml, "IVL_TS value", warnings)?;
            Ok(if period.start.is_none() && period.end.is_none() {
                Value::None
            } else {
                Value::Period(period)
            })
        }
        Some(k) if k.starts_with("RTO") => read_ratio(xml, warnings)?,
        Some(other) => untyped(
            xml,
            start,
            raw.is_some(),
            code.is_some(),
            warnings,
            Some(other),
        )?,
        None => untyped(xml, start, raw.is_some(), code.is_some(), warnings, None)?,
    };
    match value {
        Ok(Value::None) => {
            if let Some(flavor) = null_flavor {
                o.data_absent_reason = Some(null_flavor_reason(&flavor));
            }
        }
        Ok(value) => o.value = value,
        Err(w) => o.value_unreadable(w.at, w.message),
    }
    Ok(())
}

fn pq_value(read: Option<Read<Quantity>>) -> Read<Value> {
    match read {
        None => Ok(Value::None),
        Some(quantity) => quantity.map(Value::Quantity),
    }
}

fn coded(concept: CodeableConcept) -> Value {
    if concept.is_empty() {
        Value::None
    } else {
        Value::CodeableConcept(concept)
    }
}

/// An INT: a 32-bit integer, else (too big, or written as a decimal) a unitless number with
/// a warning rather than a lost value.
fn int_value(xml: &Xml<'_>, raw: &str, warnings: &mut Vec<Warning>) -> Read<Value> {
    if raw.trim().is_empty() {
        return Ok(Value::None);
    }
    let Some(number) = decimal(raw) else {
        return Err(xml.warning(unreadable_number("INT value", raw)));
    };
    match number.to_i64().and_then(|n| i32::try_from(n).ok()) {
        Some(n) => Ok(Value::Integer(n)),
        None => {
            warnings.push(xml.warning(format!(
                "INT value {number} is not a 32-bit integer; kept as a number"
            )));
            Ok(Value::number(number))
        }
    }
}

/// An `RTO` value (`numerator`, `denominator`, each PQ or INT), consuming it.
fn read_ratio(xml: &mut Xml<'_>, warnings: &mut Vec<Warning>) -> Result<Read<Value>, Fail> {
    let mut ratio = Ratio::default();
    let mut problem = None;
    while let Some(child) = xml.next_child()? {
        let part = match local(&child) {
            "numerator" => &mut ratio.numerator,
            "denominator" => &mut ratio.denominator,
            _ => {
                xml.skip()?;
                continue;
            }
        };
        match read_pq(xml, &child, "RTO value", warnings)? {
            Some(Ok(q)) => *part = Some(q),
            Some(Err(w)) => {
                problem.get_or_insert(w);
            }
            None => {}
        }
    }
    if let Some(w) = problem {
        return Ok(Err(w));
    }
    Ok(Ok(
        if ratio.numerator.is_none() && ratio.denominator.is_none() {
            Value::None
        } else {
            Value::Ratio(ratio)
        },
    ))
}

/// A value without `xsi:type` (CDA requires one) or of a type this parser does not know:
/// read by what it carries — a code as CD, a `@value` as PQ, else its text — and say so.
fn untyped(
    xml: &mut Xml<'_>,
    start: &Start<'_>,
    has_value: bool,
    has_code: bool,
    warnings: &mut Vec<Warning>,
    kind: Option<&str>,
) -> Result<Read<Value>, Fail> {
    let (value, read_as) = if has_code {
        (Ok(coded(read_cd(xml, start, None)?)), "CD")
    } else if has_value {
        (pq_value(read_pq(xml, start, "value", warnings)?), "PQ")
    } else {
        (
            Ok(trimmed_text(xml)?.map_or(Value::None, Value::String)),
            "ST",
        )
    };
    if matches!(value, Ok(Value::None)) && kind.is_none() {
        return Ok(value);
    }
    let what = match kind {
        Some(kind) => format!("value of xsi:type {} is not supported", quoted(kind)),
        None => "value has no xsi:type".to_owned(),
    };
    warnings.push(xml.warning(format!("{what}; read as {read_as}")));
    Ok(value)
}

/// `referenceRange/observationRange`, consuming it; `None` if it holds nothing usable.
fn read_reference_range(
    xml: &mut Xml<'_>,
    warnings: &mut Vec<Warning>,
) -> Result<Option<ReferenceRange>, Fail> {
    let mut range = ReferenceRange::default();
    while let Some(child) = xml.next_child()? {
        if local(&child) != "observationRange" {
            xml.skip()?;
            continue;
        }
        while let Some(part) = xml.next_child()? {
            match local(&part) {
                "text" => {
                    if let Some(text) = trimmed_text(xml)? {
                        range.text.get_or_insert(text);
                    }
                }
                "value" => read_range_value(xml, &part, &mut range, warnings)?,
                "interpretationCode" => {
                    let code = xml.attr(&part, "code")?;
                    if code.as_deref().map(str::trim) == Some("N") {
                        range.kind = Some(CodeableConcept::coded(
                            RANGE_MEANING,
                            "normal",
                            Some("Normal Range"),
                        ));
                    }
                    xml.skip()?;
                }
                _ => xml.skip()?,
            }
        }
    }
    Ok((!range.is_empty()).then_some(range))
}

/// An `observationRange/value`: IVL_PQ bounds become low/high; a string or a code becomes
/// the range's text when it has none.
fn read_range_value(
    xml: &mut Xml<'_>,
    start: &Start<'_>,
    range: &mut ReferenceRange,
    warnings: &mut Vec<Warning>,
) -> Result<(), Fail> {
    let kind = xml.attr(start, "type")?;
    let kind = kind
        .as_deref()
        .map(|k| k.rsplit(':').next().unwrap_or(k).trim());
    match kind {
        Some("IVL_PQ") => match read_bounds(xml, "referenceRange bound", warnings)? {
            Ok(bounds) => {
                if bounds.exclusive() {
                    warnings.push(xml.warning(
                        "referenceRange has an exclusive bound; FHIR ranges are inclusive",
                    ));
                }
                range.low = bounds.low.map(|(q, _)| q);
                range.high = bounds.high.map(|(q, _)| q);
            }
            Err(w) => warnings.push(w),
        },
        Some("ST" | "ED") => {
            if let Some(text) = trimmed_text(xml)? {
                range.text.get_or_insert(text);
            }
        }
        Some("CD" | "CE" | "CO" | "CV" | "CS") => {
            let concept = read_cd(xml, start, None)?;
            if let Some(text) = concept.display() {
                range.text.get_or_insert_with(|| text.to_owned());
            }
        }
        _ => xml.skip()?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_code_system_oids() {
        assert_eq!(code_system_uri("2.16.840.1.113883.6.1"), "http://loinc.org");
        assert_eq!(
            code_system_uri("2.16.840.1.113883.6.96"),
            "http://snomed.info/sct"
        );
        assert_eq!(
            code_system_uri("2.16.840.1.113883.5.83"),
            INTERPRETATION_SYSTEM
        );
        assert_eq!(code_system_uri(" 1.2.3 "), "urn:oid:1.2.3");
    }

    #[test]
    fn statuses_and_null_flavors() {
        let cases = [
            ("completed", Some(Status::Final)),
            ("active", Some(Status::Preliminary)),
            ("aborted", Some(Status::Cancelled)),
            ("nullified", Some(Status::EnteredInError)),
            ("held", None),
            ("new", None),
        ];
        for (code, want) in cases {
            assert_eq!(status(Some(code)), want, "{code}");
        }
        assert_eq!(status(None), None);
        let reason = |f: &str| null_flavor_reason(f).coding[0].code.clone().unwrap();
        assert_eq!(reason("NA"), "not-applicable");
        assert_eq!(reason("ASKU"), "asked-unknown");
        assert_eq!(reason("OTH"), "unknown");
        assert_eq!(reason("PINF"), "positive-infinity");
    }
}
