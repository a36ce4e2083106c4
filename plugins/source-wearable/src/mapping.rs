//! Config-described JSON (`format = "mapping"`) → observations.
//!
//! `records` points at an array; every element is one observation whose fields are read
//! through pointers relative to it, falling back to `[mapping.constants]` (see
//! [`Mapping`] for each key).
//!
//! Choices:
//! - Only the envelope can fail the payload: a `records` pointer that finds nothing, or finds
//!   something other than an array. Inside a record, a field of the wrong type is a warning
//!   on that observation and counts as absent; a value that is missing or unreadable gives
//!   no value, `dataAbsentReason = error` and a warning with the JSON Pointer.
//! - A number in a string is a number (`"64.2"`, in every lexical form
//!   [`Decimal::parse_lenient`] accepts), because vendors such as Fitbit send numbers as
//!   strings; a leading comparator (`<5`, `>=10`) is read as the quantity's comparator. Any
//!   other string stays text. Neither is a warning: for these vendors it is the format.
//! - Units go through the one unit table unless `unit_system` says which system they are in.
//! - Times without an offset stay local: the pipeline applies the source's configured time
//!   zone later. A date-only `effective` joined with a time of day (`effective_time`) makes a
//!   local date-time; a time with no date is dropped, because a bare time of day is not a
//!   point in time.
//! - Without an id pointer (or when it finds nothing) the record's own pointer is the id,
//!   which is stable for a given payload (e.g. `/weight/2`).

use std::ops::ControlFlow;

use medgate_core::model::{
    CodeableConcept, Coding, Comparator, Observation, Quantity, Reference, ReferenceRange, Status,
    Value, INTERPRETATION_SYSTEM,
};
use medgate_core::{DateTime, Decimal, Effective, Period, Warning};
use serde_json::value::RawValue;

use crate::config::Mapping;
use crate::json::{self, Ptr};
use crate::{time, units, ParseContext, ParseError};

/// Parses a payload described by `mapping`, handing each observation to `emit` as soon as
/// it is read and stopping when `emit` breaks. Only the envelope can fail, before the first
/// observation.
pub(crate) fn parse(
    mapping: &Mapping,
    root: &RawValue,
    ctx: &ParseContext,
    emit: &mut impl FnMut(Observation) -> ControlFlow<()>,
) -> Result<(), ParseError> {
    let Some(records) = json::resolve(root, &mapping.records) else {
        return Err(ParseError::shape(
            mapping.records.as_str(),
            "records pointer finds nothing",
        ));
    };
    json::each(records, &Ptr::Text(&mapping.records), |i, raw| {
        emit(
            Record {
                mapping,
                raw,
                pointer: Ptr::Text(&mapping.records).index(i).to_string(),
                warnings: Vec::new(),
            }
            .observation(ctx),
        )
    })?;
    Ok(())
}

/// One record being read.
struct Record<'a> {
    mapping: &'a Mapping,
    raw: &'a RawValue,
    pointer: String,
    warnings: Vec<Warning>,
}

impl<'a> Record<'a> {
    fn observation(mut self, ctx: &ParseContext) -> Observation {
        let m: &'a Mapping = self.mapping;
        let (f, c) = (&m.fields, &m.constants);
        let id = self.text(&f.id).unwrap_or_else(|| self.pointer.clone());
        let mut o = ctx.observation(id);
        o.status = self.status();
        o.category = self
            .text_or(&f.category, &c.category)
            .map(category)
            .into_iter()
            .collect();
        o.code = self.code();
        o.effective = self.effective();
        o.issued = self.date_time(&f.issued);
        o.device = self.text_or(&f.device, &c.device).map(|name| Reference {
            reference: None,
            display: Some(name),
        });
        let unit = self.unit();
        match self.value(&unit) {
            Ok(value) => o.value = value,
            Err(e) => o.value_unreadable(e.at, e.message),
        }
        o.interpretation = self
            .text(&f.interpretation)
            .map(interpretation)
            .into_iter()
            .collect();
        o.reference_range = self.reference_range(&unit).into_iter().collect();
        // Warnings of the value come last, after those of the fields read before it.
        let mut warnings = std::mem::take(&mut self.warnings);
        warnings.append(&mut o.warnings);
        o.warnings = warnings;
        o
    }

    /// The node at a field pointer, if the pointer is set and finds a non-null node, with
    /// its absolute pointer.
    fn node(&self, field: &Option<String>) -> Option<(&'a RawValue, String)> {
        let pointer = field.as_deref()?;
        json::resolve(self.raw, pointer)
            .filter(|raw| !json::is_null(raw))
            .map(|raw| (raw, format!("{}{pointer}", self.pointer)))
    }

    /// A field as text: strings as they are, numbers and booleans as written; anything else
    /// is a warning and counts as absent.
    fn text(&mut self, field: &Option<String>) -> Option<String> {
        let (raw, at) = self.node(field)?;
        json::scalar_text(raw, &Ptr::Text(&at))
            .map_err(|e| self.warnings.push(e))
            .ok()
    }

    fn text_or(&mut self, field: &Option<String>, constant: &Option<String>) -> Option<String> {
        self.text(field).or_else(|| constant.clone())
    }

    fn status(&mut self) -> Option<Status> {
        let m: &'a Mapping = self.mapping;
        let (f, c) = (&m.fields, &m.constants);
        if let Some(text) = self.text(&f.status) {
            if let Some(status) = Status::from_fhir(text.trim()) {
                return Some(status);
            }
            let at = format!(
                "{}{}",
                self.pointer,
                f.status.as_deref().unwrap_or_default()
            );
            self.warnings.push(bad_at(
                &at,
                "not a FHIR observation status; the status is left out",
            ));
        }
        // Validated at start-up.
        c.status.as_deref().and_then(Status::from_fhir)
    }

    fn code(&mut self) -> CodeableConcept {
        let m: &'a Mapping = self.mapping;
        let (f, c) = (&m.fields, &m.constants);
        let system = self.text_or(&f.code_system, &c.code_system);
        let code = self.text_or(&f.code, &c.code);
        let display = self.text_or(&f.display, &c.display);
        match code {
            Some(code) => CodeableConcept {
                coding: vec![Coding {
                    system,
                    code: Some(code),
                    display,
                    mapped: false,
                }],
                text: None,
            },
            None => CodeableConcept {
                coding: Vec::new(),
                text: display,
            },
        }
    }

    /// The unit of the value and of the reference range, as a quantity without a number.
    fn unit(&mut self) -> Option<Quantity> {
        let m: &'a Mapping = self.mapping;
        let (f, c) = (&m.fields, &m.constants);
        let unit = self.text_or(&f.unit, &c.unit)?;
        if let Some(system) = self.text_or(&f.unit_system, &c.unit_system) {
            return Some(Quantity {
                code: Some(unit.clone()),
                unit: Some(unit),
                system: Some(system),
                ..Quantity::default()
            });
        }
        let (q, problem) = units::quantity(None, &unit, &[]);
        if let Some(problem) = problem {
            let at = match &f.unit {
                Some(p) if self.node(&f.unit).is_some() => format!("{}{p}", self.pointer),
                _ => "mapping.constants.unit".to_owned(),
            };
            self.warnings.push(bad_at(&at, problem));
        }
        Some(q)
    }

    fn value(&mut self, unit: &Option<Quantity>) -> Result<Value, Warning> {
        let m: &'a Mapping = self.mapping;
        let field = &m.fields.value;
        let Some((raw, at)) = self.node(field) else {
            let at = format!("{}{}", self.pointer, field.as_deref().unwrap_or_default());
            return Err(bad_at(&at, "missing"));
        };
        let quantity = |value: Decimal, comparator: Option<Comparator>| {
            let mut q = unit.clone().unwrap_or_default();
            q.value = Some(value);
            q.comparator = comparator;
            Value::Quantity(q)
        };
        let value = match json::kind(raw) {
            "a number" => quantity(json::number(raw, &Ptr::Text(&at))?.0, None),
            "a boolean" => Value::Boolean(raw.get().trim() == "true"),
            "a string" => {
                let text = json::string(raw, &Ptr::Text(&at))?;
                match with_comparator(&text) {
                    Some((comparator, value)) => quantity(value, comparator),
                    None => Value::String(text),
                }
            }
            other => {
                return Err(bad_at(
                    &at,
                    format!("expected a number, string or boolean, found {other}"),
                ))
            }
        };
        Ok(self.apply_comparator(value))
    }

    /// `fields.comparator`, on a numeric value.
    fn apply_comparator(&mut self, mut value: Value) -> Value {
        let m: &'a Mapping = self.mapping;
        let field = &m.fields.comparator;
        let Some(text) = self.text(field) else {
            return value;
        };
        let at = format!("{}{}", self.pointer, field.as_deref().unwrap_or_default());
        match (Comparator::parse(text.trim()), &mut value) {
            (Some(c), Value::Quantity(q)) => q.comparator = Some(c),
            (Some(_), _) => self.warnings.push(bad_at(
                &at,
                "a comparator on a value that is not a number; left out",
            )),
            (None, _) => self
                .warnings
                .push(bad_at(&at, "not a comparator (<, <=, >=, >); left out")),
        }
        value
    }

    fn reference_range(&mut self, unit: &Option<Quantity>) -> Option<ReferenceRange> {
        let m: &'a Mapping = self.mapping;
        let (f, c) = (&m.fields, &m.constants);
        let mut bound = |field: &Option<String>, constant: &Option<String>| {
            let text = self.text_or(field, constant)?;
            match Decimal::parse_lenient(&text) {
                Some(value) => {
                    let mut q = unit.clone().unwrap_or_default();
                    q.value = Some(value);
                    Some(q)
                }
                None => {
                    let at = format!("{}{}", self.pointer, field.as_deref().unwrap_or_default());
                    self.warnings
                        .push(bad_at(&at, "not a number; the bound is left out"));
                    None
                }
            }
        };
        let range = ReferenceRange {
            low: bound(&f.reference_low, &c.reference_low),
            high: bound(&f.reference_high, &c.reference_high),
            kind: None,
            text: self.text_or(&f.reference_text, &c.reference_text),
        };
        (!range.is_empty()).then_some(range)
    }

    /// A field parsed as a date or date-time; unreadable → a warning.
    fn date_time(&mut self, field: &Option<String>) -> Option<DateTime> {
        let text = self.text(field)?;
        let at = format!("{}{}", self.pointer, field.as_deref().unwrap_or_default());
        DateTime::parse(&text)
            .map_err(|e| self.warnings.push(bad_at(&at, e.to_string())))
            .ok()
    }

    /// A date field with an optional time-of-day field joined to it.
    fn joined(&mut self, date: &Option<String>, time: &Option<String>) -> Option<DateTime> {
        let d = self.date_time(date)?;
        let Some(t) = self.text(time) else {
            return Some(d);
        };
        if d.civil().is_some() {
            return Some(d);
        }
        let at = format!("{}{}", self.pointer, time.as_deref().unwrap_or_default());
        DateTime::parse(&format!("{d}T{}", t.trim()))
            .map_err(|e| self.warnings.push(bad_at(&at, e.to_string())))
            .ok()
            .or(Some(d))
    }

    fn effective(&mut self) -> Option<Effective> {
        let m: &'a Mapping = self.mapping;
        let f = &m.fields;
        let start = self.joined(&f.effective, &f.effective_time);
        let end = self
            .joined(&f.effective_end, &f.effective_end_time)
            .or_else(|| self.end_by_duration(start));
        match (start, end) {
            (None, None) => None,
            (Some(s), None) => Some(Effective::DateTime(s)),
            (start, end) => Some(Effective::Period(Period { start, end })),
        }
    }

    /// `start` + `fields.duration` in `constants.duration_unit`.
    fn end_by_duration(&mut self, start: Option<DateTime>) -> Option<DateTime> {
        let m: &'a Mapping = self.mapping;
        let field = &m.fields.duration;
        let (raw, at) = self.node(field)?;
        let start = start?;
        let unit = m.constants.duration_unit.as_deref()?;
        let unit = units::duration_code(unit)?;
        let n = json::number(raw, &Ptr::Text(&at))
            .map_err(|e| self.warnings.push(e))
            .ok()?
            .0;
        time::shift(start, &n, unit, 1)
            .map_err(|m| self.warnings.push(bad_at(&at, m)))
            .ok()
    }
}

/// A warning at the pointer text `at` (a record's pointer and a field's, joined).
fn bad_at(at: &str, message: impl Into<String>) -> Warning {
    json::bad(&Ptr::Text(at), message)
}

/// A numeric string with an optional leading comparator (`<5`, `>= 10`, `64.2`).
fn with_comparator(text: &str) -> Option<(Option<Comparator>, Decimal)> {
    let t = text.trim();
    let (comparator, rest) = ["<=", ">=", "<", ">"]
        .iter()
        .find_map(|c| t.strip_prefix(c).map(|rest| (Comparator::parse(c), rest)))
        .unwrap_or((None, t));
    Decimal::parse_lenient(rest).map(|d| (comparator, d))
}

/// A FHIR observation-category code gets FHIR's system; any other text is a bare code.
fn category(code: String) -> CodeableConcept {
    const FHIR_CATEGORIES: [&str; 9] = [
        "social-history",
        "vital-signs",
        "imaging",
        "laboratory",
        "procedure",
        "survey",
        "exam",
        "therapy",
        "activity",
    ];
    if FHIR_CATEGORIES.contains(&code.as_str()) {
        return CodeableConcept::category(&code);
    }
    CodeableConcept {
        coding: vec![Coding {
            code: Some(code),
            ..Coding::default()
        }],
        text: None,
    }
}

/// A HL7 v3 ObservationInterpretation code gets its system; other text stays text.
fn interpretation(text: String) -> CodeableConcept {
    const V3_CODES: [&str; 21] = [
        "<", ">", "A", "AA", "B", "D", "DET", "H", "HH", "HU", "I", "IND", "L", "LL", "LU", "N",
        "NEG", "ND", "POS", "R", "S",
    ];
    let code = text.trim();
    if V3_CODES.contains(&code) {
        return CodeableConcept::coded(INTERPRETATION_SYSTEM, code, None);
    }
    CodeableConcept::text(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_strings_with_comparators() {
        let c =
            |t: &str| with_comparator(t).map(|(c, d)| (c.map(Comparator::as_str), d.to_string()));
        assert_eq!(c("64.2"), Some((None, "64.2".into())));
        assert_eq!(c(" <5 "), Some((Some("<"), "5".into())));
        assert_eq!(c(">= .5"), Some((Some(">="), "0.5".into())));
        assert_eq!(c("<=+007"), Some((Some("<="), "7".into())));
        assert_eq!(c("walking"), None);
        assert_eq!(c("<"), None);
        assert_eq!(c("5 kg"), None);
    }

    #[test]
    fn categories_and_interpretations() {
        assert_eq!(
            category("activity".into()),
            CodeableConcept::category("activity")
        );
        let bare = category("fitness".into());
        assert_eq!(bare.coding[0].system, None);
        assert_eq!(bare.coding[0].code.as_deref(), Some("fitness"));
        assert_eq!(
            interpretation("H".into()),
            CodeableConcept::coded(INTERPRETATION_SYSTEM, "H", None)
        );
        assert_eq!(interpretation("high".into()), CodeableConcept::text("high"));
    }
}
