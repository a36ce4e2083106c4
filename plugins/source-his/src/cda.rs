//! HL7 CDA R2 / C-CDA (`ClinicalDocument` in `urn:hl7-org:v3`).
//!
//! The document is walked iteratively; every `observation` that has a `value` is one row.
//! Rule for nesting: `entryRelationship` subtrees are skipped wherever they occur, so the
//! observations of problem, allergy and other concern acts, and observations nested inside
//! another observation (reference ranges, supporting facts), are not emitted. Result and
//! vital-sign observations (`entry/organizer/component/observation`, or `entry/observation`)
//! always are. Section narrative (`text`) is skipped too.
//!
//! Category comes from the nearest enclosing section's code: results (LOINC 30954-2) →
//! `laboratory`, vital signs (8716-3) → `vital-signs`, else none.
//!
//! `IVL_PQ` values become text: `low–high` when both bounds exist, otherwise `>x`/`>=x` or
//! `<x`/`<=x` according to `@inclusive` (HL7 default: inclusive). An `effectiveTime` that is
//! not a valid HL7 TS is kept verbatim rather than failing the whole document.

use medgate_core::{Decimal, Observation, Value};
use quick_xml::events::BytesStart;

use crate::error::ParseError;
use crate::xml::{Ev, Xml};
use crate::ParseContext;

const CDA_NS: &str = "urn:hl7-org:v3";

/// Parses a CDA document.
pub(crate) fn parse(bytes: &[u8], ctx: &ParseContext<'_>) -> Result<Vec<Observation>, ParseError> {
    let mut xml = Xml::new(bytes, ctx.max_depth);
    let root = xml.root()?;
    if xml.root_namespace(&root)?.as_deref() != Some(CDA_NS) {
        return Err(xml.content_error(format!("root element is not in the CDA namespace {CDA_NS}")));
    }
    if root.local_name().as_ref() != "ClinicalDocument" {
        return Err(xml.content_error("root element is not a ClinicalDocument"));
    }
    let mut rows = Vec::new();
    // (depth of the section element, its category once its code is seen)
    let mut sections: Vec<(usize, Option<&'static str>)> = Vec::new();
    while let Some(event) = xml.next()? {
        match event {
            Ev::Start(start) => match start.local_name().as_ref() {
                "observation" => {
                    let category = sections.last().and_then(|s| s.1);
                    if let Some(row) = parse_observation(&mut xml, ctx, category, rows.len())? {
                        rows.push(row);
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
    Ok(rows)
}

fn section_category(code: Option<&str>) -> Option<&'static str> {
    match code {
        Some("30954-2") => Some("laboratory"),
        Some("8716-3") => Some("vital-signs"),
        _ => None,
    }
}

/// Maps the well-known OIDs to their URIs; other OIDs become `urn:oid:<oid>`.
pub fn code_system_uri(oid: &str) -> String {
    match oid {
        "2.16.840.1.113883.6.1" => "http://loinc.org".to_owned(),
        "2.16.840.1.113883.6.96" => "http://snomed.info/sct".to_owned(),
        "2.16.840.1.113883.6.8" => "http://unitsofmeasure.org".to_owned(),
        other => format!("urn:oid:{other}"),
    }
}

#[derive(Default)]
struct ObservationData {
    id: Option<String>,
    code_system: Option<String>,
    code: Option<String>,
    display: Option<String>,
    effective: Option<String>,
    value: Option<(Value, Option<String>)>,
}

/// Reads one `observation` (its start was just read) and consumes it.
fn parse_observation(
    xml: &mut Xml<'_>,
    ctx: &ParseContext<'_>,
    category: Option<&'static str>,
    index: usize,
) -> Result<Option<Observation>, ParseError> {
    let mut data = ObservationData::default();
    while let Some(child) = xml.next_child()? {
        match child.local_name().as_ref() {
            "id" if data.id.is_none() => {
                data.id = instance_id(xml, &child)?;
                xml.skip()?;
            }
            "code" if data.code.is_none() && data.display.is_none() => {
                data.code = xml.attr(&child, "code")?;
                data.code_system = xml.attr(&child, "codeSystem")?.map(|s| code_system_uri(&s));
                data.display = xml.attr(&child, "displayName")?;
                xml.skip()?;
            }
            "effectiveTime" if data.effective.is_none() => {
                data.effective = read_effective(xml, &child)?.map(|ts| hl7_ts_to_rfc3339(&ts));
            }
            "value" if data.value.is_none() => data.value = Some(read_value(xml, &child)?),
            _ => xml.skip()?,
        }
    }
    let Some((value, unit)) = data.value else {
        return Ok(None);
    };
    Ok(Some(Observation {
        patient_id: ctx.patient_id.to_owned(),
        source: ctx.source.to_owned(),
        id: data.id.unwrap_or_else(|| index.to_string()),
        category: category.map(str::to_owned),
        code_system: data.code_system,
        code: data.code,
        display: data.display,
        value,
        unit,
        effective: data.effective,
    }))
}

/// `@root` + `/` + `@extension` of an `id` element.
fn instance_id(xml: &Xml<'_>, start: &BytesStart<'_>) -> Result<Option<String>, ParseError> {
    let root = xml.attr(start, "root")?;
    let extension = xml.attr(start, "extension")?;
    Ok(match (root, extension) {
        (Some(r), Some(e)) => Some(format!("{r}/{e}")),
        (Some(r), None) => Some(r),
        (None, e) => e,
    })
}

/// `effectiveTime/@value`, else `effectiveTime/low/@value`; consumes the element.
fn read_effective(xml: &mut Xml<'_>, start: &BytesStart<'_>) -> Result<Option<String>, ParseError> {
    let mut value = xml.attr(start, "value")?;
    while let Some(child) = xml.next_child()? {
        if value.is_none() && child.local_name().as_ref() == "low" {
            value = xml.attr(&child, "value")?;
        }
        xml.skip()?;
    }
    Ok(value)
}

fn number(xml: &Xml<'_>, text: &str) -> Result<Value, ParseError> {
    Decimal::parse(text.trim())
        .map(Value::Number)
        .ok_or_else(|| xml.content_error("observation value is not a valid decimal number"))
}

/// One `value` element by `xsi:type` → (value, unit); consumes the element.
fn read_value(
    xml: &mut Xml<'_>,
    start: &BytesStart<'_>,
) -> Result<(Value, Option<String>), ParseError> {
    let kind = xml.attr(start, "type")?;
    let null_flavor = xml.attr(start, "nullFlavor")?;
    let raw = xml.attr(start, "value")?;
    let unit = xml.attr(start, "unit")?;
    let kind = kind.as_deref().map(|k| k.rsplit(':').next().unwrap_or(k));
    match kind {
        Some("ST") | Some("ED") => {
            let text = xml.read_text()?;
            let text = text.trim();
            if text.is_empty() {
                return Ok((Value::Null, None));
            }
            return Ok((Value::Text(text.to_owned()), None));
        }
        Some("IVL_PQ") => return read_interval(xml),
        _ => xml.skip()?,
    }
    if null_flavor.is_some() && raw.is_none() {
        return Ok((Value::Null, unit));
    }
    let value = match kind {
        Some("PQ") | Some("INT") | Some("REAL") => match raw {
            Some(raw) => number(xml, &raw)?,
            None => Value::Null,
        },
        Some("BL") => match raw.as_deref() {
            Some("true") => Value::Bool(true),
            Some("false") => Value::Bool(false),
            _ => Value::Null,
        },
        Some("CD") | Some("CE") | Some("CO") | Some("CV") | Some("CS") => {
            let text = xml.attr(start, "displayName")?.or(xml.attr(start, "code")?);
            text.map_or(Value::Null, Value::Text)
        }
        Some("TS") => raw.map_or(Value::Null, |ts| Value::Text(hl7_ts_to_rfc3339(&ts))),
        _ => raw.map_or(Value::Null, Value::Text),
    };
    Ok((value, unit))
}

/// An `IVL_PQ` as readable text (see the module docs); consumes the element.
fn read_interval(xml: &mut Xml<'_>) -> Result<(Value, Option<String>), ParseError> {
    let mut low: Option<(String, bool)> = None;
    let mut high: Option<(String, bool)> = None;
    let mut unit = None;
    while let Some(child) = xml.next_child()? {
        let bound = match child.local_name().as_ref() {
            "low" => &mut low,
            "high" => &mut high,
            _ => {
                xml.skip()?;
                continue;
            }
        };
        if let Some(value) = xml.attr(&child, "value")? {
            let inclusive = xml.attr(&child, "inclusive")?.as_deref() != Some("false");
            *bound = Some((value, inclusive));
            unit = unit.or(xml.attr(&child, "unit")?);
        }
        xml.skip()?;
    }
    let text = match (low, high) {
        (Some((l, _)), Some((h, _))) => format!("{l}–{h}"),
        (Some((l, true)), None) => format!(">={l}"),
        (Some((l, false)), None) => format!(">{l}"),
        (None, Some((h, true))) => format!("<={h}"),
        (None, Some((h, false))) => format!("<{h}"),
        (None, None) => return Ok((Value::Null, unit)),
    };
    Ok((Value::Text(text), unit))
}

/// Converts an HL7 TS (`YYYY[MM[DD[HH[MM[SS[.f+]]]]]][±ZZZZ]`) to RFC 3339 text, keeping the
/// given precision and offset and never inventing one. Unparseable input is returned as is.
pub fn hl7_ts_to_rfc3339(ts: &str) -> String {
    convert_ts(ts.trim()).unwrap_or_else(|| ts.to_owned())
}

fn convert_ts(ts: &str) -> Option<String> {
    let (main, offset) = match ts.find(['+', '-']) {
        Some(at) => (&ts[..at], Some(&ts[at..])),
        None => (ts, None),
    };
    let (digits, fraction) = match main.find('.') {
        Some(at) => (&main[..at], Some(&main[at + 1..])),
        None => (main, None),
    };
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut out = String::with_capacity(32);
    match digits.len() {
        4 => out.push_str(digits),
        6 => out.push_str(&format!("{}-{}", &digits[..4], &digits[4..6])),
        8 => out.push_str(&format!(
            "{}-{}-{}",
            &digits[..4],
            &digits[4..6],
            &digits[6..8]
        )),
        10 | 12 | 14 => {
            let minute = digits.get(10..12).unwrap_or("00");
            let second = digits.get(12..14).unwrap_or("00");
            out.push_str(&format!(
                "{}-{}-{}T{}:{minute}:{second}",
                &digits[..4],
                &digits[4..6],
                &digits[6..8],
                &digits[8..10]
            ));
        }
        _ => return None,
    }
    if let Some(fraction) = fraction {
        if digits.len() != 14
            || fraction.is_empty()
            || !fraction.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        out.push('.');
        out.push_str(fraction);
    }
    if let Some(offset) = offset {
        let (sign, zone) = offset.split_at(1);
        if zone.len() != 4 || !zone.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        // A date without a time cannot carry an offset in RFC 3339; drop it.
        if digits.len() >= 10 {
            out.push_str(&format!("{sign}{}:{}", &zone[..2], &zone[2..]));
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_hl7_timestamps() {
        assert_eq!(
            hl7_ts_to_rfc3339("20140520193605-0500"),
            "2014-05-20T19:36:05-05:00"
        );
        assert_eq!(
            hl7_ts_to_rfc3339("201208151005-0800"),
            "2012-08-15T10:05:00-08:00"
        );
        assert_eq!(hl7_ts_to_rfc3339("20140520"), "2014-05-20");
        assert_eq!(hl7_ts_to_rfc3339("201405201936"), "2014-05-20T19:36:00");
        assert_eq!(hl7_ts_to_rfc3339("1950"), "1950");
        assert_eq!(
            hl7_ts_to_rfc3339("20140520193605.123+0130"),
            "2014-05-20T19:36:05.123+01:30"
        );
        assert_eq!(hl7_ts_to_rfc3339("2014-05"), "2014-05");
        assert_eq!(hl7_ts_to_rfc3339("garbage"), "garbage");
    }

    #[test]
    fn maps_code_system_oids() {
        assert_eq!(code_system_uri("2.16.840.1.113883.6.1"), "http://loinc.org");
        assert_eq!(
            code_system_uri("2.16.840.1.113883.6.96"),
            "http://snomed.info/sct"
        );
        assert_eq!(code_system_uri("1.2.3"), "urn:oid:1.2.3");
    }
}
