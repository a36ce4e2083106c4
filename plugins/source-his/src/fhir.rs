//! FHIR R4 XML: a searchset `Bundle` of Observations, or a bare `Observation`.
//!
//! One streaming pass. Each known element is handled by a small function that consumes it
//! completely; anything unknown (`extension`, `modifierExtension`, `text`, `meta`,
//! `contained`, …) is skipped as a whole subtree, so codes and values are never taken from
//! extensions or narrative. The call depth of these functions is fixed by the FHIR structure,
//! not by the input: arbitrarily deep input is skipped iteratively.
//!
//! Values without a natural scalar form are rendered as readable text: `valueRange` as
//! `low–high` (or `>=low` / `<=high`), `valueRatio` as `numerator/denominator`, `valuePeriod`
//! as `start/end`; `valueSampledData` and unknown `value*` elements give `Null`. A
//! `valueQuantity` with a `comparator` (`<`, `>=`, …) becomes `Text("<5")` because a bare
//! number would misstate the result.

use medgate_core::{Decimal, Observation, Value};
use quick_xml::events::BytesStart;

use crate::error::ParseError;
use crate::xml::Xml;
use crate::ParseContext;

const FHIR_NS: &str = "http://hl7.org/fhir";
const LOINC: &str = "http://loinc.org";

/// Parses a FHIR R4 XML payload.
pub(crate) fn parse(bytes: &[u8], ctx: &ParseContext<'_>) -> Result<Vec<Observation>, ParseError> {
    let mut xml = Xml::new(bytes, ctx.max_depth).trim_text();
    let root = xml.root()?;
    let namespace = xml.root_namespace(&root)?;
    let local = root.local_name();
    let name: &str = local.as_ref();
    if namespace.as_deref() != Some(FHIR_NS) {
        return Err(xml.content_error(format!(
            "root element is not in the FHIR namespace {FHIR_NS}"
        )));
    }
    let mut rows = Vec::new();
    match name {
        "Bundle" => parse_bundle(&mut xml, ctx, &mut rows)?,
        "Observation" => parse_observation(&mut xml)?.emit(ctx, String::new(), &mut rows),
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
    Ok(rows)
}

fn parse_bundle(
    xml: &mut Xml<'_>,
    ctx: &ParseContext<'_>,
    rows: &mut Vec<Observation>,
) -> Result<(), ParseError> {
    while let Some(child) = xml.next_child()? {
        if child.local_name().as_ref() == "entry" {
            parse_entry(xml, ctx, rows)?;
        } else {
            xml.skip()?;
        }
    }
    Ok(())
}

fn parse_entry(
    xml: &mut Xml<'_>,
    ctx: &ParseContext<'_>,
    rows: &mut Vec<Observation>,
) -> Result<(), ParseError> {
    let mut full_url = None;
    while let Some(child) = xml.next_child()? {
        match child.local_name().as_ref() {
            "fullUrl" => full_url = take_value(xml, &child)?,
            "resource" => {
                while let Some(resource) = xml.next_child()? {
                    if resource.local_name().as_ref() == "Observation" {
                        let fallback = full_url.as_deref().map(last_segment).unwrap_or_default();
                        parse_observation(xml)?.emit(ctx, fallback.to_owned(), rows);
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

#[derive(Default)]
struct Coding {
    system: Option<String>,
    code: Option<String>,
    display: Option<String>,
}

#[derive(Default)]
struct Concept {
    codings: Vec<Coding>,
    text: Option<String>,
}

impl Concept {
    /// (system, code, display): the LOINC coding if any, else the first; display falls back
    /// to the concept's text.
    fn pick(self) -> (Option<String>, Option<String>, Option<String>) {
        let Concept { mut codings, text } = self;
        let index = codings
            .iter()
            .position(|c| c.system.as_deref() == Some(LOINC))
            .unwrap_or(0);
        if index < codings.len() {
            let coding = codings.swap_remove(index);
            (coding.system, coding.code, coding.display.or(text))
        } else {
            (None, None, text)
        }
    }

    /// A coded value as text: first coding's display, else the text, else the first code.
    fn into_text(self) -> Value {
        let Concept { mut codings, text } = self;
        let first = if codings.is_empty() {
            None
        } else {
            Some(codings.swap_remove(0))
        };
        let display = first.as_ref().and_then(|c| c.display.clone());
        display
            .or(text)
            .or_else(|| first.and_then(|c| c.code))
            .map_or(Value::Null, Value::Text)
    }
}

/// What an Observation or one of its components measured.
#[derive(Default)]
struct Measured {
    concept: Concept,
    value: Option<Value>,
    unit: Option<String>,
}

#[derive(Default)]
struct ObservationData {
    id: Option<String>,
    category: Option<String>,
    effective: Option<String>,
    main: Measured,
    components: Vec<Measured>,
}

impl ObservationData {
    /// Appends the rows: the parent when it has a value or no components, then one row per
    /// component with id `<id>#<index>`.
    fn emit(self, ctx: &ParseContext<'_>, fallback_id: String, rows: &mut Vec<Observation>) {
        let id = self.id.unwrap_or(fallback_id);
        let ObservationData {
            category,
            effective,
            main,
            components,
            ..
        } = self;
        if main.value.is_some() || components.is_empty() {
            rows.push(row(ctx, id.clone(), &category, &effective, main));
        }
        for (index, component) in components.into_iter().enumerate() {
            let component_id = format!("{id}#{index}");
            rows.push(row(ctx, component_id, &category, &effective, component));
        }
    }
}

fn row(
    ctx: &ParseContext<'_>,
    id: String,
    category: &Option<String>,
    effective: &Option<String>,
    measured: Measured,
) -> Observation {
    let (code_system, code, display) = measured.concept.pick();
    Observation {
        patient_id: ctx.patient_id.to_owned(),
        source: ctx.source.to_owned(),
        id,
        category: category.clone(),
        code_system,
        code,
        display,
        value: measured.value.unwrap_or(Value::Null),
        unit: measured.unit,
        effective: effective.clone(),
    }
}

fn parse_observation(xml: &mut Xml<'_>) -> Result<ObservationData, ParseError> {
    let mut data = ObservationData::default();
    while let Some(child) = xml.next_child()? {
        let local = child.local_name();
        let name: &str = local.as_ref();
        match name {
            "id" => data.id = take_value(xml, &child)?,
            "category" => {
                let code = read_first_code(xml)?;
                data.category = data.category.or(code);
            }
            "code" => data.main.concept = read_concept(xml)?,
            "effectiveDateTime" | "effectiveInstant" => {
                let value = take_value(xml, &child)?;
                data.effective = data.effective.or(value);
            }
            "effectivePeriod" => {
                let period = read_period(xml)?;
                data.effective = data.effective.or(period.0);
            }
            "component" => data.components.push(read_component(xml)?),
            _ if name.starts_with("value") => {
                let (value, unit) = read_value(xml, &child, name)?;
                data.main.value = Some(value);
                data.main.unit = unit;
            }
            _ => xml.skip()?,
        }
    }
    Ok(data)
}

fn read_component(xml: &mut Xml<'_>) -> Result<Measured, ParseError> {
    let mut measured = Measured::default();
    while let Some(child) = xml.next_child()? {
        let local = child.local_name();
        let name: &str = local.as_ref();
        match name {
            "code" => measured.concept = read_concept(xml)?,
            _ if name.starts_with("value") => {
                let (value, unit) = read_value(xml, &child, name)?;
                measured.value = Some(value);
                measured.unit = unit;
            }
            _ => xml.skip()?,
        }
    }
    Ok(measured)
}

/// The `@value` of a primitive element, consuming the element.
fn take_value(xml: &mut Xml<'_>, start: &BytesStart<'_>) -> Result<Option<String>, ParseError> {
    let value = xml.attr(start, "value")?;
    xml.skip()?;
    Ok(value)
}

fn read_concept(xml: &mut Xml<'_>) -> Result<Concept, ParseError> {
    let mut concept = Concept::default();
    while let Some(child) = xml.next_child()? {
        match child.local_name().as_ref() {
            "coding" => concept.codings.push(read_coding(xml)?),
            "text" => concept.text = take_value(xml, &child)?,
            _ => xml.skip()?,
        }
    }
    Ok(concept)
}

/// The first `coding/code/@value` of a CodeableConcept, allocating nothing else.
fn read_first_code(xml: &mut Xml<'_>) -> Result<Option<String>, ParseError> {
    let mut first = None;
    while let Some(child) = xml.next_child()? {
        if child.local_name().as_ref() != "coding" {
            xml.skip()?;
            continue;
        }
        while let Some(field) = xml.next_child()? {
            if first.is_none() && field.local_name().as_ref() == "code" {
                first = take_value(xml, &field)?;
            } else {
                xml.skip()?;
            }
        }
    }
    Ok(first)
}

fn read_coding(xml: &mut Xml<'_>) -> Result<Coding, ParseError> {
    let mut coding = Coding::default();
    while let Some(child) = xml.next_child()? {
        match child.local_name().as_ref() {
            "system" => coding.system = take_value(xml, &child)?,
            "code" => coding.code = take_value(xml, &child)?,
            "display" => coding.display = take_value(xml, &child)?,
            _ => xml.skip()?,
        }
    }
    Ok(coding)
}

#[derive(Default)]
struct Quantity {
    value: Option<String>,
    unit: Option<String>,
    code: Option<String>,
    comparator: Option<String>,
}

fn read_quantity(xml: &mut Xml<'_>) -> Result<Quantity, ParseError> {
    let mut quantity = Quantity::default();
    while let Some(child) = xml.next_child()? {
        match child.local_name().as_ref() {
            "value" => quantity.value = take_value(xml, &child)?,
            "unit" => quantity.unit = take_value(xml, &child)?,
            "code" => quantity.code = take_value(xml, &child)?,
            "comparator" => quantity.comparator = take_value(xml, &child)?,
            _ => xml.skip()?,
        }
    }
    Ok(quantity)
}

/// (start, end) of a Period, consuming it.
fn read_period(xml: &mut Xml<'_>) -> Result<(Option<String>, Option<String>), ParseError> {
    let (mut start, mut end) = (None, None);
    while let Some(child) = xml.next_child()? {
        match child.local_name().as_ref() {
            "start" => start = take_value(xml, &child)?,
            "end" => end = take_value(xml, &child)?,
            _ => xml.skip()?,
        }
    }
    Ok((start, end))
}

fn decimal(xml: &Xml<'_>, text: &str, element: &str) -> Result<Decimal, ParseError> {
    Decimal::parse(text.trim())
        .ok_or_else(|| xml.content_error(format!("{element} is not a valid decimal number")))
}

/// One `value[x]` element → (value, unit), consuming it.
fn read_value(
    xml: &mut Xml<'_>,
    start: &BytesStart<'_>,
    name: &str,
) -> Result<(Value, Option<String>), ParseError> {
    match name {
        "valueQuantity" => {
            let quantity = read_quantity(xml)?;
            let unit = quantity.code.or(quantity.unit);
            let value = match (quantity.value, quantity.comparator) {
                (None, _) => Value::Null,
                (Some(v), Some(cmp)) => Value::Text(format!("{cmp}{}", v.trim())),
                (Some(v), None) => Value::Number(decimal(xml, &v, name)?),
            };
            Ok((value, unit))
        }
        "valueInteger" => {
            let value = match take_value(xml, start)? {
                Some(v) => Value::Number(decimal(xml, &v, name)?),
                None => Value::Null,
            };
            Ok((value, None))
        }
        "valueBoolean" => {
            let value = match take_value(xml, start)?.as_deref() {
                Some("true") => Value::Bool(true),
                Some("false") => Value::Bool(false),
                None => Value::Null,
                Some(_) => return Err(xml.content_error("valueBoolean is not true or false")),
            };
            Ok((value, None))
        }
        "valueString" | "valueDateTime" | "valueTime" => {
            let value = take_value(xml, start)?.map_or(Value::Null, Value::Text);
            Ok((value, None))
        }
        "valueCodeableConcept" => Ok((read_concept(xml)?.into_text(), None)),
        "valueRange" => read_range(xml),
        "valueRatio" => read_ratio(xml),
        "valuePeriod" => {
            let (start, end) = read_period(xml)?;
            let text = format!("{}/{}", start.unwrap_or_default(), end.unwrap_or_default());
            Ok((Value::Text(text), None))
        }
        _ => {
            // valueSampledData and anything unknown: no scalar form.
            xml.skip()?;
            Ok((Value::Null, None))
        }
    }
}

fn read_range(xml: &mut Xml<'_>) -> Result<(Value, Option<String>), ParseError> {
    let (mut low, mut high) = (None, None);
    while let Some(child) = xml.next_child()? {
        match child.local_name().as_ref() {
            "low" => low = Some(read_quantity(xml)?),
            "high" => high = Some(read_quantity(xml)?),
            _ => xml.skip()?,
        }
    }
    let low_value = low.as_ref().and_then(|q| q.value.clone());
    let high_value = high.as_ref().and_then(|q| q.value.clone());
    let unit = [low, high]
        .into_iter()
        .flatten()
        .find_map(|q| q.code.or(q.unit));
    let value = match (low_value, high_value) {
        (Some(l), Some(h)) => Value::Text(format!("{l}–{h}")),
        (Some(l), None) => Value::Text(format!(">={l}")),
        (None, Some(h)) => Value::Text(format!("<={h}")),
        (None, None) => Value::Null,
    };
    Ok((value, unit))
}

fn read_ratio(xml: &mut Xml<'_>) -> Result<(Value, Option<String>), ParseError> {
    let (mut numerator, mut denominator) = (None, None);
    while let Some(child) = xml.next_child()? {
        match child.local_name().as_ref() {
            "numerator" => numerator = read_quantity(xml)?.value,
            "denominator" => denominator = read_quantity(xml)?.value,
            _ => xml.skip()?,
        }
    }
    let value = match (numerator, denominator) {
        (None, None) => Value::Null,
        (n, d) => Value::Text(format!(
            "{}/{}",
            n.unwrap_or_default(),
            d.unwrap_or_default()
        )),
    };
    Ok((value, None))
}
