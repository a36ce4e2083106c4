//! FHIR R4 XML: a searchset `Bundle` of Observations, or a bare `Observation`.
//!
//! One streaming pass. Each known element is handled by a small function that consumes it
//! completely; anything unknown (`extension`, `modifierExtension`, `text`, `meta`,
//! `contained`, `subject`, …) is skipped as a whole subtree, so codes and values are never
//! taken from extensions or narrative, and the patient is never taken from the payload. The
//! call depth of these functions is fixed by the FHIR structure, not by the input:
//! arbitrarily deep input is skipped iteratively.
//!
//! Everything the record has is filled: `id`, `status`, every `category`, `code` (all
//! codings and the text), `effectiveDateTime`/`effectiveInstant`/`effectivePeriod` (typed,
//! precision and offset kept), `issued`, `value[x]`, `dataAbsentReason`, `interpretation`,
//! `referenceRange`, `component` (with its own value, reason, interpretation and ranges),
//! `hasMember`, `derivedFrom` and `device`. A panel stays one Observation with components.
//!
//! Data quality: a value that cannot be read (a decimal such as `1,5`, an unknown
//! comparator, a boolean that is neither `true` nor `false`) becomes "no value" with
//! `dataAbsentReason = error` and a [`Warning`] naming its position; an unreadable time is
//! dropped with a warning; `valueSampledData`, `effectiveTiming` and unknown `value*`
//! elements give no value and a "not supported" warning. Only XML that is not well-formed,
//! is hostile, or is not FHIR at all fails the payload.

use std::borrow::Cow;

use medgate_core::{
    CodeableConcept, Coding, Comparator, Component, DateTime, Effective, Observation, Period,
    Quantity, Range, Ratio, Reference, ReferenceRange, Status, Value, Warning,
};

use crate::error::Fail;
use crate::text::{decimal, quoted, unreadable_number};
use crate::xml::{local, Start, Xml};
use crate::{ParseContext, Sink};

const FHIR_NS: &str = "http://hl7.org/fhir";

/// A value that could be read, or the warning saying why not.
type Read<T> = Result<T, Warning>;

/// Parses a FHIR R4 XML payload into `rows`.
pub(crate) fn parse(bytes: &[u8], ctx: &ParseContext, rows: &mut impl Sink) -> Result<(), Fail> {
    let mut xml = Xml::new(bytes, ctx.max_depth).trim_text();
    let root = xml.root()?;
    let namespace = xml.root_namespace(&root)?;
    if namespace.as_deref() != Some(FHIR_NS) {
        return Err(xml.content_error(format!(
            "root element is not in the FHIR namespace {FHIR_NS}"
        )));
    }
    match local(&root) {
        "Bundle" => parse_bundle(&mut xml, ctx, rows)?,
        "Observation" => rows.emit(parse_observation(&mut xml, ctx, "")?)?,
        "OperationOutcome" => {
            return Err(xml.content_error(
                "the server answered with an OperationOutcome instead of observations",
            ))
        }
        _ => {
            return Err(
                xml.content_error("root element is neither a FHIR Bundle nor an Observation")
            )
        }
    }
    // Read to the end so trailing garbage after the root is still reported.
    while xml.next()?.is_some() {}
    Ok(())
}

fn parse_bundle(xml: &mut Xml<'_>, ctx: &ParseContext, rows: &mut impl Sink) -> Result<(), Fail> {
    while let Some(child) = xml.next_child()? {
        match local(&child) {
            "entry" => parse_entry(xml, ctx, rows)?,
            "total" => {
                // A searchset says how many matches it holds: size the output once. Bounded
                // by what the payload could hold, so a lying `total` cannot reserve memory.
                let total = take_value(xml, &child)?.and_then(|t| t.trim().parse().ok());
                rows.expect(total.unwrap_or(0).min(xml.len() / 64));
            }
            _ => xml.skip()?,
        }
    }
    Ok(())
}

fn parse_entry(xml: &mut Xml<'_>, ctx: &ParseContext, rows: &mut impl Sink) -> Result<(), Fail> {
    // Borrowed from the payload: only an Observation without `id` keeps a copy.
    let mut full_url: Option<Cow<'_, str>> = None;
    while let Some(child) = xml.next_child()? {
        match local(&child) {
            "fullUrl" => full_url = take_value(xml, &child)?,
            "resource" => {
                while let Some(resource) = xml.next_child()? {
                    if local(&resource) == "Observation" {
                        let fallback = full_url.as_deref().map_or("", last_segment);
                        rows.emit(parse_observation(xml, ctx, fallback)?)?;
                    } else {
                        // Patient, OperationOutcome (search mode outcome), …
                        xml.skip()?;
                    }
                }
            }
            _ => xml.skip()?,
        }
    }
    Ok(())
}

/// `urn:uuid:abc` → `abc`, `http://x/Observation/1` → `1`.
fn last_segment(url: &str) -> &str {
    url.rsplit(['/', ':']).next().unwrap_or_default()
}

/// Reads one `Observation` (its start was just read) and consumes it. `fallback_id` is used
/// when the resource has no `id` (the last segment of the entry's `fullUrl`).
fn parse_observation(
    xml: &mut Xml<'_>,
    ctx: &ParseContext,
    fallback_id: &str,
) -> Result<Observation, Fail> {
    let mut o = Observation::new(ctx.patient_id.clone(), ctx.source.clone(), String::new());
    while let Some(child) = xml.next_child()? {
        let name = local(&child);
        match name {
            "id" => {
                o.id = take_value(xml, &child)?
                    .map(Cow::into_owned)
                    .unwrap_or_default()
            }
            "status" => o.status = read_status(xml, &child, &mut o.warnings)?,
            "category" => o.category.push(read_concept(xml)?),
            "code" => o.code = read_concept(xml)?,
            "effectiveDateTime" | "effectiveInstant" => {
                let at = read_date_time(xml, &child, name, &mut o.warnings)?;
                if o.effective.is_none() {
                    o.effective = at.map(Effective::DateTime);
                }
            }
            "effectivePeriod" => {
                let period = read_period(xml, name, &mut o.warnings)?;
                if o.effective.is_none() {
                    o.effective = Some(Effective::Period(period));
                }
            }
            "issued" => o.issued = read_date_time(xml, &child, name, &mut o.warnings)?,
            "dataAbsentReason" => {
                let reason = read_concept(xml)?;
                o.data_absent_reason.get_or_insert(reason);
            }
            "interpretation" => o.interpretation.push(read_concept(xml)?),
            "referenceRange" => {
                let range = read_reference_range(xml, &mut o.warnings)?;
                o.reference_range.push(range);
            }
            "hasMember" => o.has_member.push(read_reference(xml)?),
            "derivedFrom" => o.derived_from.push(read_reference(xml)?),
            "device" => o.device = Some(read_reference(xml)?),
            "component" => {
                let component = read_component(xml, &mut o.warnings)?;
                o.components.push(component);
            }
            "effectiveTiming" => {
                xml.skip()?;
                let w = xml.warning("effectiveTiming is not supported; it was left out");
                o.warnings.push(w);
            }
            _ if name.starts_with("value") => {
                match read_value(xml, &child, name, &mut o.warnings)? {
                    Ok(value) => o.value = value,
                    Err(w) => o.value_unreadable(w.at, w.message),
                }
            }
            _ => xml.skip()?,
        }
    }
    if o.id.is_empty() {
        o.id = fallback_id.to_owned();
    }
    Ok(o)
}

fn read_component(xml: &mut Xml<'_>, warnings: &mut Vec<Warning>) -> Result<Component, Fail> {
    let mut c = Component::default();
    while let Some(child) = xml.next_child()? {
        let name = local(&child);
        match name {
            "code" => c.code = read_concept(xml)?,
            "dataAbsentReason" => {
                let reason = read_concept(xml)?;
                c.data_absent_reason.get_or_insert(reason);
            }
            "interpretation" => c.interpretation.push(read_concept(xml)?),
            "referenceRange" => c.reference_range.push(read_reference_range(xml, warnings)?),
            _ if name.starts_with("value") => match read_value(xml, &child, name, warnings)? {
                Ok(value) => c.value = value,
                Err(w) => {
                    c.value = Value::None;
                    c.data_absent_reason = Some(CodeableConcept::data_absent("error", "Error"));
                    warnings.push(w);
                }
            },
            _ => xml.skip()?,
        }
    }
    Ok(c)
}

/// The `@value` of a primitive element, consuming the element.
fn take_value<'s>(xml: &mut Xml<'_>, start: &Start<'s>) -> Result<Option<Cow<'s, str>>, Fail> {
    let value = xml.attr(start, "value")?;
    xml.skip()?;
    Ok(value)
}

fn take_string(xml: &mut Xml<'_>, start: &Start<'_>) -> Result<Option<String>, Fail> {
    Ok(take_value(xml, start)?.map(Cow::into_owned))
}

fn read_status(
    xml: &mut Xml<'_>,
    start: &Start<'_>,
    warnings: &mut Vec<Warning>,
) -> Result<Option<Status>, Fail> {
    let Some(code) = take_value(xml, start)? else {
        return Ok(None);
    };
    let status = Status::from_fhir(code.trim());
    if status.is_none() {
        warnings.push(xml.warning(format!(
            "status {} is not a FHIR observation status",
            quoted(&code)
        )));
    }
    Ok(status)
}

fn read_concept(xml: &mut Xml<'_>) -> Result<CodeableConcept, Fail> {
    let mut concept = CodeableConcept::default();
    while let Some(child) = xml.next_child()? {
        match local(&child) {
            "coding" => concept.coding.push(read_coding(xml)?),
            "text" => concept.text = take_string(xml, &child)?,
            _ => xml.skip()?,
        }
    }
    Ok(concept)
}

fn read_coding(xml: &mut Xml<'_>) -> Result<Coding, Fail> {
    let mut coding = Coding::default();
    while let Some(child) = xml.next_child()? {
        match local(&child) {
            "system" => coding.system = take_string(xml, &child)?,
            "code" => coding.code = take_string(xml, &child)?,
            "display" => coding.display = take_string(xml, &child)?,
            _ => xml.skip()?,
        }
    }
    Ok(coding)
}

fn read_reference(xml: &mut Xml<'_>) -> Result<Reference, Fail> {
    let mut reference = Reference::default();
    while let Some(child) = xml.next_child()? {
        match local(&child) {
            "reference" => reference.reference = take_string(xml, &child)?,
            "display" => reference.display = take_string(xml, &child)?,
            _ => xml.skip()?,
        }
    }
    Ok(reference)
}

/// A `Quantity` (or `SimpleQuantity`), consuming it; a warning if its value or comparator
/// cannot be read (a number whose comparator is unknown must not pass for exact).
fn read_quantity(xml: &mut Xml<'_>, element: &str) -> Result<Read<Quantity>, Fail> {
    let mut quantity = Quantity::default();
    let mut problem = None;
    while let Some(child) = xml.next_child()? {
        match local(&child) {
            "value" => {
                if let Some(text) = take_value(xml, &child)? {
                    match decimal(&text) {
                        Some(d) => quantity.value = Some(d),
                        None => {
                            problem.get_or_insert_with(|| {
                                xml.warning(unreadable_number(&format!("{element}.value"), &text))
                            });
                        }
                    }
                }
            }
            "comparator" => {
                if let Some(text) = take_value(xml, &child)? {
                    match Comparator::parse(text.trim()) {
                        Some(c) => quantity.comparator = Some(c),
                        None => {
                            problem.get_or_insert_with(|| {
                                xml.warning(format!(
                                    "{element}.comparator {} is not <, <=, >= or >",
                                    quoted(&text)
                                ))
                            });
                        }
                    }
                }
            }
            "unit" => quantity.unit = take_string(xml, &child)?,
            "system" => quantity.system = take_string(xml, &child)?,
            "code" => quantity.code = take_string(xml, &child)?,
            _ => xml.skip()?,
        }
    }
    Ok(problem.map_or(Ok(quantity), Err))
}

/// A primitive date-time element (`effectiveDateTime`, `issued`, `start` …), consuming it;
/// an unreadable one is dropped with a warning.
fn read_date_time(
    xml: &mut Xml<'_>,
    start: &Start<'_>,
    element: &str,
    warnings: &mut Vec<Warning>,
) -> Result<Option<DateTime>, Fail> {
    let Some(text) = take_value(xml, start)? else {
        return Ok(None);
    };
    match parse_date_time(xml, &text, element) {
        Ok(at) => Ok(at),
        Err(w) => {
            warnings.push(w);
            Ok(None)
        }
    }
}

/// `""` is no time; anything else must be a FHIR date, dateTime or instant.
fn parse_date_time(xml: &Xml<'_>, text: &str, element: &str) -> Read<Option<DateTime>> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    DateTime::parse(text).map(Some).map_err(|e| {
        xml.warning(format!(
            "{element} {} is not a date-time: {e}",
            quoted(text)
        ))
    })
}

/// A `Period`, consuming it; unreadable ends are dropped with a warning.
fn read_period(
    xml: &mut Xml<'_>,
    element: &str,
    warnings: &mut Vec<Warning>,
) -> Result<Period, Fail> {
    let mut period = Period::default();
    while let Some(child) = xml.next_child()? {
        match local(&child) {
            "start" => period.start = read_date_time(xml, &child, element, warnings)?,
            "end" => period.end = read_date_time(xml, &child, element, warnings)?,
            _ => xml.skip()?,
        }
    }
    Ok(period)
}

fn read_reference_range(
    xml: &mut Xml<'_>,
    warnings: &mut Vec<Warning>,
) -> Result<ReferenceRange, Fail> {
    let mut range = ReferenceRange::default();
    while let Some(child) = xml.next_child()? {
        match local(&child) {
            "low" => match read_quantity(xml, "referenceRange.low")? {
                Ok(q) => range.low = Some(q),
                Err(w) => warnings.push(w),
            },
            "high" => match read_quantity(xml, "referenceRange.high")? {
                Ok(q) => range.high = Some(q),
                Err(w) => warnings.push(w),
            },
            "type" => range.kind = Some(read_concept(xml)?),
            "text" => range.text = take_string(xml, &child)?,
            _ => xml.skip()?,
        }
    }
    Ok(range)
}

/// One `value[x]` element, consuming it. `Err` is an unreadable value; unsupported types
/// give `Value::None` and push a warning.
fn read_value(
    xml: &mut Xml<'_>,
    start: &Start<'_>,
    name: &str,
    warnings: &mut Vec<Warning>,
) -> Result<Read<Value>, Fail> {
    let value = match name {
        "valueQuantity" => read_quantity(xml, name)?.map(Value::Quantity),
        "valueCodeableConcept" => Ok(Value::CodeableConcept(read_concept(xml)?)),
        "valueString" => Ok(take_string(xml, start)?.map_or(Value::None, Value::String)),
        "valueBoolean" => match take_value(xml, start)?.as_deref().map(str::trim) {
            None => Ok(Value::None),
            Some("true") => Ok(Value::Boolean(true)),
            Some("false") => Ok(Value::Boolean(false)),
            Some(other) => Err(xml.warning(format!(
                "valueBoolean {} is not true or false",
                quoted(other)
            ))),
        },
        "valueInteger" => match take_value(xml, start)? {
            None => Ok(Value::None),
            Some(text) => integer(xml, &text, name, warnings),
        },
        "valueRange" => read_range(xml)?.map(Value::Range),
        "valueRatio" => read_ratio(xml)?.map(Value::Ratio),
        "valuePeriod" => Ok(Value::Period(read_period(xml, name, warnings)?)),
        "valueDateTime" => match take_value(xml, start)? {
            None => Ok(Value::None),
            Some(text) => {
                parse_date_time(xml, &text, name).map(|d| d.map_or(Value::None, Value::DateTime))
            }
        },
        "valueTime" => match take_value(xml, start)? {
            None => Ok(Value::None),
            Some(text) if is_time(text.trim()) => Ok(Value::Time(text.trim().to_owned())),
            Some(text) => Err(xml.warning(format!(
                "valueTime {} is not a time (hh:mm:ss)",
                quoted(&text)
            ))),
        },
        _ => {
            // valueSampledData, valueAttachment (R5) …: no form in the record.
            xml.skip()?;
            warnings.push(xml.warning(format!("{name} is not supported; it was left out")));
            Ok(Value::None)
        }
    };
    Ok(value)
}

/// A FHIR integer (32-bit). A bigger integer or a decimal is kept as a number, with a
/// warning, rather than lost.
fn integer(xml: &Xml<'_>, text: &str, element: &str, warnings: &mut Vec<Warning>) -> Read<Value> {
    let Some(number) = decimal(text) else {
        return Err(xml.warning(unreadable_number(element, text)));
    };
    match number.to_i64().and_then(|n| i32::try_from(n).ok()) {
        Some(n) => Ok(Value::Integer(n)),
        None => {
            warnings.push(xml.warning(format!(
                "{element} {number} is not a 32-bit integer; kept as a number"
            )));
            Ok(Value::number(number))
        }
    }
}

fn read_range(xml: &mut Xml<'_>) -> Result<Read<Range>, Fail> {
    let mut range = Range::default();
    let mut problem = None;
    while let Some(child) = xml.next_child()? {
        let bound = match local(&child) {
            "low" => &mut range.low,
            "high" => &mut range.high,
            _ => {
                xml.skip()?;
                continue;
            }
        };
        match read_quantity(xml, "valueRange")? {
            Ok(q) => *bound = Some(q),
            Err(w) => {
                problem.get_or_insert(w);
            }
        }
    }
    Ok(problem.map_or(Ok(range), Err))
}

fn read_ratio(xml: &mut Xml<'_>) -> Result<Read<Ratio>, Fail> {
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
        match read_quantity(xml, "valueRatio")? {
            Ok(q) => *part = Some(q),
            Err(w) => {
                problem.get_or_insert(w);
            }
        }
    }
    Ok(problem.map_or(Ok(ratio), Err))
}

/// FHIR `time`: `hh:mm:ss` with an optional fraction.
fn is_time(text: &str) -> bool {
    let b = text.as_bytes();
    let two = |at: usize, max: u8| {
        matches!(b.get(at..at + 2), Some([h, l]) if h.is_ascii_digit() && l.is_ascii_digit()
            && (h - b'0') * 10 + (l - b'0') <= max)
    };
    let fraction_ok = match b.get(8) {
        None => true,
        Some(b'.') => b.len() > 9 && b[9..].iter().all(u8::is_ascii_digit),
        Some(_) => false,
    };
    b.len() >= 8
        && two(0, 23)
        && b[2] == b':'
        && two(3, 59)
        && b[5] == b':'
        && two(6, 59)
        && fraction_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        for ok in ["00:00:00", "23:59:59", "12:30:00.125"] {
            assert!(is_time(ok), "{ok}");
        }
        for bad in [
            "",
            "24:00:00",
            "12:60:00",
            "12:30",
            "12:30:00.",
            "12:30:00Z",
            "1:2:3",
        ] {
            assert!(!is_time(bad), "{bad}");
        }
    }

    #[test]
    fn last_segments() {
        assert_eq!(last_segment("urn:uuid:abc"), "abc");
        assert_eq!(last_segment("http://x/Observation/1"), "1");
        assert_eq!(last_segment(""), "");
    }
}
