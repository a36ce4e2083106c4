//! FHIR R4 JSON of the record: one `Observation` resource per [`Observation`].
//!
//! The record is a subset of FHIR R4's Observation, so this is a direct projection with four
//! rules that keep the output valid R4:
//! - `id` must match `[A-Za-z0-9\-\.]{1,64}` and be unique across medgate's sources, so it is
//!   `<source>.<upstream id>` with other characters replaced by `-` (long ids end with a
//!   hash); the upstream's id itself is kept as an `identifier` with system
//!   `urn:medgate:source:<source>`.
//! - `status` and `code` are required: a missing status is written `unknown`, a missing code
//!   as the text `unknown`.
//! - A time of day without an offset is not a valid FHIR `dateTime`: the date is written and
//!   the full local time kept in the [`LOCAL_TIME_EXTENSION`] extension of that primitive.
//! - An offset medgate applied from the source's configured time zone is marked with the
//!   [`ASSUMED_OFFSET_EXTENSION`] extension, so a reader can tell it from one the upstream sent.
//! - `issued` is an `instant`: written only when it has a time and an offset.
//!
//! Numbers are written as JSON numbers with their digits as written.

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use crate::model::{
    CodeableConcept, Coding, Component, Effective, Observation, Period, Quantity, Range, Ratio,
    Reference, ReferenceRange, Value,
};
use crate::DateTime;

/// Extension on a `dateTime` primitive holding a local time that had no UTC offset.
pub const LOCAL_TIME_EXTENSION: &str = "urn:medgate:fhir:extension:local-date-time";
/// Extension on a `dateTime` primitive whose offset medgate applied from the source's
/// configured time zone (the upstream sent a local time).
pub const ASSUMED_OFFSET_EXTENSION: &str = "urn:medgate:fhir:extension:offset-assumed";
/// Extension on `Observation` carrying a data-quality warning.
pub const WARNING_EXTENSION: &str = "urn:medgate:fhir:extension:warning";

/// The FHIR id of an observation: `<source>.<upstream id>`, sanitized to FHIR's id grammar.
pub fn resource_id(o: &Observation) -> String {
    fhir_id(&format!("{}.{}", o.source, o.id))
}

/// `text` made into a FHIR id (`[A-Za-z0-9\-\.]{1,64}`): other characters become `-`, and
/// a text longer than 64 characters keeps its first 47 plus `-` and a 16-digit hash.
pub fn fhir_id(text: &str) -> String {
    let clean: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if clean.is_empty() {
        return "-".to_owned();
    }
    if clean.len() <= 64 {
        return clean;
    }
    format!("{}-{:016x}", &clean[..47], fnv1a(text.as_bytes()))
}

/// Whether `text` is already a valid FHIR id.
pub fn is_fhir_id(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 64
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Serializes `o` as a FHIR R4 `Observation` resource.
pub struct FhirObservation<'a>(pub &'a Observation);

/// Appends `o` as FHIR R4 JSON (one line, no trailing newline) to `out`.
///
/// # Errors
/// Only serde_json's own errors, which a `Vec` sink does not produce for this type.
pub fn write_observation(out: &mut Vec<u8>, o: &Observation) -> serde_json::Result<()> {
    serde_json::to_writer(out, &FhirObservation(o))
}

impl Serialize for FhirObservation<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let o = self.0;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("resourceType", "Observation")?;
        m.serialize_entry("id", &resource_id(o))?;
        m.serialize_entry(
            "meta",
            &serde_json::json!({ "source": format!("urn:medgate:source:{}", o.source) }),
        )?;
        if !o.warnings.is_empty() {
            let warnings: Vec<_> = o
                .warnings
                .iter()
                .map(|w| serde_json::json!({ "url": WARNING_EXTENSION, "valueString": w.to_string() }))
                .collect();
            m.serialize_entry("extension", &warnings)?;
        }
        m.serialize_entry(
            "identifier",
            &[serde_json::json!({
                "system": format!("urn:medgate:source:{}", o.source),
                "value": o.id,
            })],
        )?;
        m.serialize_entry("status", o.status.map_or("unknown", |s| s.as_str()))?;
        if !o.category.is_empty() {
            m.serialize_entry("category", &Concepts(&o.category))?;
        }
        m.serialize_entry("code", &RequiredConcept(&o.code))?;
        m.serialize_entry("subject", &Subject(&o.patient_id))?;
        match &o.effective {
            Some(Effective::DateTime(d)) => date_time_entry(&mut m, "effectiveDateTime", d)?,
            Some(Effective::Period(p)) => m.serialize_entry("effectivePeriod", &FhirPeriod(p))?,
            None => {}
        }
        if let Some(issued) = o.issued.as_ref().filter(|d| d.offset().is_some()) {
            m.serialize_entry("issued", issued)?;
        }
        value_entry(&mut m, &o.value)?;
        if let Some(reason) = o.data_absent_reason.as_ref().filter(|_| !o.value.is_some()) {
            m.serialize_entry("dataAbsentReason", &Concept(reason))?;
        }
        if !o.interpretation.is_empty() {
            m.serialize_entry("interpretation", &Concepts(&o.interpretation))?;
        }
        ranges_entry(&mut m, &o.reference_range)?;
        if !o.has_member.is_empty() {
            m.serialize_entry("hasMember", &References(&o.has_member))?;
        }
        if !o.derived_from.is_empty() {
            m.serialize_entry("derivedFrom", &References(&o.derived_from))?;
        }
        if let Some(device) = &o.device {
            m.serialize_entry("device", &FhirReference(device))?;
        }
        if !o.components.is_empty() {
            let components: Vec<_> = o.components.iter().map(FhirComponent).collect();
            m.serialize_entry("component", &components)?;
        }
        m.end()
    }
}

/// `Patient/<id>` when the id is a valid FHIR id, else a logical reference by identifier.
struct Subject<'a>(&'a str);

impl Serialize for Subject<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(1))?;
        if is_fhir_id(self.0) {
            m.serialize_entry("reference", &format!("Patient/{}", self.0))?;
        } else {
            m.serialize_entry(
                "identifier",
                &serde_json::json!({ "system": "urn:medgate:patient-id", "value": self.0 }),
            )?;
        }
        m.end()
    }
}

fn date_time_entry<M: SerializeMap>(m: &mut M, key: &str, d: &DateTime) -> Result<(), M::Error> {
    if matches!(d.zone(), Some(crate::Zone::Assumed(_))) {
        m.serialize_entry(key, d)?;
        return m.serialize_entry(
            &format!("_{key}"),
            &serde_json::json!({
                "extension": [{ "url": ASSUMED_OFFSET_EXTENSION, "valueBoolean": true }]
            }),
        );
    }
    if !d.is_local() {
        return m.serialize_entry(key, d);
    }
    m.serialize_entry(key, &DateTime::from_date(d.date()))?;
    m.serialize_entry(
        &format!("_{key}"),
        &serde_json::json!({
            "extension": [{ "url": LOCAL_TIME_EXTENSION, "valueString": d.to_string() }]
        }),
    )
}

fn value_entry<M: SerializeMap>(m: &mut M, value: &Value) -> Result<(), M::Error> {
    match value {
        Value::None => Ok(()),
        Value::Quantity(q) => m.serialize_entry("valueQuantity", &FhirQuantity(q)),
        Value::CodeableConcept(c) => m.serialize_entry("valueCodeableConcept", &Concept(c)),
        Value::String(t) => m.serialize_entry("valueString", t),
        Value::Boolean(b) => m.serialize_entry("valueBoolean", b),
        Value::Integer(i) => m.serialize_entry("valueInteger", i),
        Value::Range(r) => m.serialize_entry("valueRange", &FhirRange(r)),
        Value::Ratio(r) => m.serialize_entry("valueRatio", &FhirRatio(r)),
        Value::Period(p) => m.serialize_entry("valuePeriod", &FhirPeriod(p)),
        Value::DateTime(d) => date_time_entry(m, "valueDateTime", d),
        Value::Time(t) => m.serialize_entry("valueTime", t),
    }
}

fn ranges_entry<M: SerializeMap>(m: &mut M, ranges: &[ReferenceRange]) -> Result<(), M::Error> {
    let ranges: Vec<_> = ranges
        .iter()
        .filter(|r| !r.is_empty())
        .map(FhirReferenceRange)
        .collect();
    if ranges.is_empty() {
        return Ok(());
    }
    m.serialize_entry("referenceRange", &ranges)
}

struct FhirComponent<'a>(&'a Component);

impl Serialize for FhirComponent<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let c = self.0;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("code", &RequiredConcept(&c.code))?;
        value_entry(&mut m, &c.value)?;
        if let Some(reason) = c.data_absent_reason.as_ref().filter(|_| !c.value.is_some()) {
            m.serialize_entry("dataAbsentReason", &Concept(reason))?;
        }
        if !c.interpretation.is_empty() {
            m.serialize_entry("interpretation", &Concepts(&c.interpretation))?;
        }
        ranges_entry(&mut m, &c.reference_range)?;
        m.end()
    }
}

struct FhirReferenceRange<'a>(&'a ReferenceRange);

impl Serialize for FhirReferenceRange<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let mut m = s.serialize_map(None)?;
        if let Some(low) = r.low.as_ref().filter(|q| !q.is_empty()) {
            m.serialize_entry("low", &SimpleQuantity(low))?;
        }
        if let Some(high) = r.high.as_ref().filter(|q| !q.is_empty()) {
            m.serialize_entry("high", &SimpleQuantity(high))?;
        }
        if let Some(kind) = r.kind.as_ref().filter(|k| !k.is_empty()) {
            m.serialize_entry("type", &Concept(kind))?;
        }
        if let Some(text) = &r.text {
            m.serialize_entry("text", text)?;
        }
        m.end()
    }
}

struct FhirQuantity<'a>(&'a Quantity);

impl Serialize for FhirQuantity<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        quantity(s, self.0, true)
    }
}

/// A FHIR `SimpleQuantity` (no comparator allowed): used inside ranges.
struct SimpleQuantity<'a>(&'a Quantity);

impl Serialize for SimpleQuantity<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        quantity(s, self.0, false)
    }
}

fn quantity<S: Serializer>(s: S, q: &Quantity, comparator: bool) -> Result<S::Ok, S::Error> {
    let mut m = s.serialize_map(None)?;
    if let Some(v) = &q.value {
        m.serialize_entry("value", v)?;
    }
    if let Some(c) = q.comparator.filter(|_| comparator) {
        m.serialize_entry("comparator", c.as_str())?;
    }
    if let Some(u) = &q.unit {
        m.serialize_entry("unit", u)?;
    }
    if let Some(sys) = &q.system {
        m.serialize_entry("system", sys)?;
    }
    if let Some(c) = &q.code {
        m.serialize_entry("code", c)?;
    }
    m.end()
}

struct FhirRange<'a>(&'a Range);

impl Serialize for FhirRange<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        if let Some(low) = &self.0.low {
            m.serialize_entry("low", &SimpleQuantity(low))?;
        }
        if let Some(high) = &self.0.high {
            m.serialize_entry("high", &SimpleQuantity(high))?;
        }
        m.end()
    }
}

struct FhirRatio<'a>(&'a Ratio);

impl Serialize for FhirRatio<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        if let Some(n) = &self.0.numerator {
            m.serialize_entry("numerator", &FhirQuantity(n))?;
        }
        if let Some(d) = &self.0.denominator {
            m.serialize_entry("denominator", &FhirQuantity(d))?;
        }
        m.end()
    }
}

struct FhirPeriod<'a>(&'a Period);

impl Serialize for FhirPeriod<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        if let Some(start) = &self.0.start {
            date_time_entry(&mut m, "start", start)?;
        }
        if let Some(end) = &self.0.end {
            date_time_entry(&mut m, "end", end)?;
        }
        m.end()
    }
}

struct Concepts<'a>(&'a [CodeableConcept]);

impl Serialize for Concepts<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().filter(|c| !c.is_empty()).map(Concept))
    }
}

/// A required CodeableConcept: an empty one is written as the text `unknown`.
struct RequiredConcept<'a>(&'a CodeableConcept);

impl Serialize for RequiredConcept<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0.is_empty() {
            let mut m = s.serialize_map(Some(1))?;
            m.serialize_entry("text", "unknown")?;
            return m.end();
        }
        Concept(self.0).serialize(s)
    }
}

struct Concept<'a>(&'a CodeableConcept);

impl Serialize for Concept<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        let codings: Vec<_> = self
            .0
            .coding
            .iter()
            .filter(|c| !c.is_empty())
            .map(FhirCoding)
            .collect();
        if !codings.is_empty() {
            m.serialize_entry("coding", &codings)?;
        }
        if let Some(text) = &self.0.text {
            m.serialize_entry("text", text)?;
        }
        m.end()
    }
}

struct FhirCoding<'a>(&'a Coding);

impl Serialize for FhirCoding<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let c = self.0;
        let mut m = s.serialize_map(None)?;
        if let Some(system) = &c.system {
            m.serialize_entry("system", system)?;
        }
        if let Some(code) = &c.code {
            m.serialize_entry("code", code)?;
        }
        if let Some(display) = &c.display {
            m.serialize_entry("display", display)?;
        }
        m.end()
    }
}

struct References<'a>(&'a [Reference]);

impl Serialize for References<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(FhirReference))
    }
}

struct FhirReference<'a>(&'a Reference);

impl Serialize for FhirReference<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        if let Some(r) = &self.0.reference {
            m.serialize_entry("reference", r)?;
        }
        if let Some(d) = &self.0.display {
            m.serialize_entry("display", d)?;
        }
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::model::{Comparator, Status, LOINC};
    use crate::Decimal;

    #[test]
    fn ids_follow_the_fhir_grammar() {
        assert_eq!(fhir_id("his.obs-1"), "his.obs-1");
        assert_eq!(fhir_id("cda.1.2.3/ab c#0"), "cda.1.2.3-ab-c-0");
        let long = fhir_id(&"x".repeat(100));
        assert_eq!(long.len(), 64);
        assert!(is_fhir_id(&long));
        assert_ne!(long, fhir_id(&"x".repeat(101)));
    }

    #[test]
    fn writes_a_valid_observation_shape() {
        let mut o = Observation::new(Arc::from("P1"), Arc::from("his"), "1");
        o.status = Some(Status::Final);
        o.code = CodeableConcept::coded(LOINC, "2823-3", Some("Potassium"));
        o.effective = Some(Effective::DateTime(
            DateTime::parse("2016-12-13T11:02:30").unwrap(),
        ));
        o.value = Value::Quantity(Quantity {
            comparator: Some(Comparator::Less),
            ..Quantity::ucum(Decimal::parse("5.40").unwrap(), "mmol/L")
        });
        let mut out = Vec::new();
        write_observation(&mut out, &o).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["id"], "his.1");
        assert_eq!(v["subject"]["reference"], "Patient/P1");
        assert_eq!(v["effectiveDateTime"], "2016-12-13");
        assert_eq!(
            v["_effectiveDateTime"]["extension"][0]["valueString"],
            "2016-12-13T11:02:30"
        );
        assert_eq!(v["valueQuantity"]["comparator"], "<");
        assert!(String::from_utf8(out).unwrap().contains(r#""value":5.40"#));
    }
}
