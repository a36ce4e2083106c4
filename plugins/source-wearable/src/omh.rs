//! Open mHealth data points → observations.
//!
//! Accepted bodies: an array of data points, `{"data": [...]}`, or one data point object.
//! Each point is `{header: {id, schema_id: {namespace, name, version}}, body: {...}}`; the
//! measure is chosen by `schema_id.name` (any schema version: the measure shapes that differ
//! between versions, such as step-count 1.x's bare number, are all accepted).
//!
//! Policy, chosen for a clinical gateway:
//! - A point of a schema this module does not know (or of a namespace other than `omh`) is
//!   skipped, not an error: wearables send many measures and one unknown kind must not block
//!   the rest.
//! - A point of a known schema whose measure is missing or is not a number fails the whole
//!   payload with the pointer of the bad node; a silently dropped vital sign is worse than
//!   an explicit upstream error.
//! - Units are mapped to UCUM where the Open mHealth unit is known; an unknown unit is kept
//!   verbatim (the partner sees exactly what the device said). A unit is required where the
//!   schema allows several (weight, temperature, height, blood pressure).
//! - A missing `effective_time_frame` gives `effective = None`; an unreadable one is an error.

use medgate_core::{Observation, Value};
use serde_json::value::RawValue;

use crate::json::{self, child, Object};
use crate::{ParseContext, ParseError};

const LOINC: &str = "http://loinc.org";
const OMH_SYSTEM: &str = "urn:omh:schema";
const VITALS: &str = "vital-signs";
const ACTIVITY: &str = "activity";

/// A single-quantity schema: `body.<key> = {value, unit}`.
struct Measure {
    key: &'static str,
    code: &'static str,
    display: &'static str,
    category: &'static str,
    /// The UCUM unit when the payload gives none; `None` makes the unit required.
    default_unit: Option<&'static str>,
}

const fn measure(
    key: &'static str,
    code: &'static str,
    display: &'static str,
    category: &'static str,
    default_unit: Option<&'static str>,
) -> Measure {
    Measure {
        key,
        code,
        display,
        category,
        default_unit,
    }
}

const HEART_RATE: Measure = measure("heart_rate", "8867-4", "Heart rate", VITALS, Some("/min"));
const BODY_WEIGHT: Measure = measure("body_weight", "29463-7", "Body weight", VITALS, None);
const BODY_TEMPERATURE: Measure = measure(
    "body_temperature",
    "8310-5",
    "Body temperature",
    VITALS,
    None,
);
const RESPIRATORY_RATE: Measure = measure(
    "respiratory_rate",
    "9279-1",
    "Respiratory rate",
    VITALS,
    Some("/min"),
);
const BODY_HEIGHT: Measure = measure("body_height", "8302-2", "Body height", VITALS, None);
const BODY_MASS_INDEX: Measure = measure(
    "body_mass_index",
    "39156-5",
    "Body mass index",
    VITALS,
    Some("kg/m2"),
);
const SYSTOLIC: Measure = measure(
    "systolic_blood_pressure",
    "8480-6",
    "Systolic blood pressure",
    VITALS,
    None,
);
const DIASTOLIC: Measure = measure(
    "diastolic_blood_pressure",
    "8462-4",
    "Diastolic blood pressure",
    VITALS,
    None,
);

/// Parses an Open mHealth payload.
pub(crate) fn parse(
    root: &RawValue,
    ctx: &ParseContext<'_>,
) -> Result<Vec<Observation>, ParseError> {
    let points = data_points(root)?;
    let mut rows = Vec::with_capacity(points.len());
    for (pointer, point) in points {
        data_point(point, &pointer, ctx, &mut rows)?;
    }
    Ok(rows)
}

/// Pairs each item with its pointer below `base`.
fn indexed<'a>(items: Vec<&'a RawValue>, base: &str) -> Vec<(String, &'a RawValue)> {
    items
        .into_iter()
        .enumerate()
        .map(|(i, p)| (child(base, &i.to_string()), p))
        .collect()
}

/// The data points of the payload, each with its JSON Pointer.
///
/// A single data point object sits at the root pointer, so its errors read `/header/...`.
fn data_points(root: &RawValue) -> Result<Vec<(String, &RawValue)>, ParseError> {
    match json::kind(root) {
        "an array" => Ok(indexed(json::array(root, "")?, "")),
        "an object" => {
            let obj = json::object(root, "")?;
            if let Some(data) = obj.get("data") {
                return Ok(indexed(json::array(data, "/data")?, "/data"));
            }
            if obj.contains_key("header") || obj.contains_key("body") {
                return Ok(vec![(String::new(), root)]);
            }
            Err(ParseError::shape(
                "",
                "expected an array of data points, {\"data\": [...]} or one data point",
            ))
        }
        other => Err(ParseError::shape(
            "",
            format!("expected an array of data points or an object, found {other}"),
        )),
    }
}

fn data_point(
    point: &RawValue,
    pointer: &str,
    ctx: &ParseContext<'_>,
    rows: &mut Vec<Observation>,
) -> Result<(), ParseError> {
    let obj = json::object(point, pointer)?;
    let header_ptr = child(pointer, "header");
    let header = json::object(json::required(&obj, "header", pointer)?, &header_ptr)?;
    let Some(schema) = schema(&header, &header_ptr)? else {
        // Unknown measures are skipped by design (see the module docs).
        return Ok(());
    };
    let id = json::string(
        json::required(&header, "id", &header_ptr)?,
        &child(&header_ptr, "id"),
    )?;
    let body_ptr = child(pointer, "body");
    let body = json::object(json::required(&obj, "body", pointer)?, &body_ptr)?;
    let effective = effective(&body, &body_ptr)?;
    let point = Point {
        ctx,
        id,
        body,
        body_ptr,
        effective,
    };
    point.rows(schema, rows)
}

/// The schemas this module maps; everything else is skipped.
#[derive(Debug, Clone, Copy)]
enum Schema {
    HeartRate,
    StepCount,
    BodyWeight,
    BodyTemperature,
    OxygenSaturation,
    BloodPressure,
    RespiratoryRate,
    BodyHeight,
    BodyMassIndex,
    PhysicalActivity,
}

impl Schema {
    fn from_name(name: &str) -> Option<Schema> {
        Some(match name {
            "heart-rate" => Schema::HeartRate,
            "step-count" => Schema::StepCount,
            "body-weight" => Schema::BodyWeight,
            "body-temperature" => Schema::BodyTemperature,
            "oxygen-saturation" => Schema::OxygenSaturation,
            "blood-pressure" => Schema::BloodPressure,
            "respiratory-rate" => Schema::RespiratoryRate,
            "body-height" => Schema::BodyHeight,
            "body-mass-index" => Schema::BodyMassIndex,
            "physical-activity" => Schema::PhysicalActivity,
            _ => return None,
        })
    }
}

/// `header.schema_id`: the known `omh` schema it names, or `None` for any other.
///
/// A missing or malformed `schema_id` is an error: without it nothing can be said about the
/// point, not even that it is safe to skip.
fn schema(header: &Object<'_>, header_ptr: &str) -> Result<Option<Schema>, ParseError> {
    let ptr = child(header_ptr, "schema_id");
    let schema_id = json::object(json::required(header, "schema_id", header_ptr)?, &ptr)?;
    let name = json::string(
        json::required(&schema_id, "name", &ptr)?,
        &child(&ptr, "name"),
    )?;
    let namespace = match json::optional(&schema_id, "namespace") {
        Some(ns) => json::string(ns, &child(&ptr, "namespace"))?,
        None => String::new(),
    };
    Ok(if namespace == "omh" {
        Schema::from_name(&name)
    } else {
        None
    })
}

/// One data point of a known schema, being turned into rows.
struct Point<'a, 'c> {
    ctx: &'c ParseContext<'c>,
    id: String,
    body: Object<'a>,
    body_ptr: String,
    effective: Option<String>,
}

impl Point<'_, '_> {
    fn rows(&self, schema: Schema, rows: &mut Vec<Observation>) -> Result<(), ParseError> {
        let id = || self.id.clone();
        match schema {
            Schema::HeartRate => rows.push(self.quantity(&HEART_RATE, id())?),
            Schema::BodyWeight => rows.push(self.quantity(&BODY_WEIGHT, id())?),
            Schema::BodyTemperature => rows.push(self.quantity(&BODY_TEMPERATURE, id())?),
            Schema::RespiratoryRate => rows.push(self.quantity(&RESPIRATORY_RATE, id())?),
            Schema::BodyHeight => rows.push(self.quantity(&BODY_HEIGHT, id())?),
            Schema::BodyMassIndex => rows.push(self.quantity(&BODY_MASS_INDEX, id())?),
            Schema::OxygenSaturation => rows.push(self.oxygen_saturation()?),
            Schema::StepCount => rows.push(self.step_count()?),
            Schema::PhysicalActivity => rows.push(self.physical_activity()?),
            // Blood pressure is one point but two LOINC observations, like a FHIR panel's
            // components: ids get `#0` / `#1`.
            Schema::BloodPressure => {
                rows.push(self.quantity(&SYSTOLIC, format!("{}#0", self.id))?);
                rows.push(self.quantity(&DIASTOLIC, format!("{}#1", self.id))?);
            }
        }
        Ok(())
    }

    fn row(
        &self,
        id: String,
        category: &str,
        system: &str,
        code: &str,
        display: &str,
    ) -> Observation {
        let mut row = self.ctx.observation(id);
        row.category = Some(category.to_owned());
        row.code_system = Some(system.to_owned());
        row.code = Some(code.to_owned());
        row.display = Some(display.to_owned());
        row.effective = self.effective.clone();
        row
    }

    /// `body.<key> = {value: number, unit: string}`.
    fn quantity(&self, m: &Measure, id: String) -> Result<Observation, ParseError> {
        let ptr = child(&self.body_ptr, m.key);
        let raw = json::required(&self.body, m.key, &self.body_ptr)?;
        let (value, unit) = unit_value(raw, &ptr, m.default_unit)?;
        let mut row = self.row(id, m.category, LOINC, m.code, m.display);
        row.value = value;
        row.unit = Some(unit);
        Ok(row)
    }

    /// 59408-5 is SpO2 by pulse oximetry; without that method the general 2708-6 applies.
    fn oxygen_saturation(&self) -> Result<Observation, ParseError> {
        let by_oximetry = match json::optional(&self.body, "measurement_method") {
            Some(raw) => {
                json::string(raw, &child(&self.body_ptr, "measurement_method"))? == "pulse oximetry"
            }
            None => false,
        };
        let code = if by_oximetry { "59408-5" } else { "2708-6" };
        let m = measure(
            "oxygen_saturation",
            code,
            "Oxygen saturation",
            VITALS,
            Some("%"),
        );
        self.quantity(&m, self.id.clone())
    }

    /// step-count 1.x has a bare number, 2.x and later `{value, unit}`.
    fn step_count(&self) -> Result<Observation, ParseError> {
        let ptr = child(&self.body_ptr, "step_count");
        let raw = json::required(&self.body, "step_count", &self.body_ptr)?;
        let (value, unit) = if json::kind(raw) == "an object" {
            unit_value(raw, &ptr, Some("{steps}"))?
        } else {
            (
                Value::Number(json::number(raw, &ptr)?),
                "{steps}".to_owned(),
            )
        };
        let mut row = self.row(
            self.id.clone(),
            ACTIVITY,
            LOINC,
            "55423-8",
            "Number of steps",
        );
        row.value = value;
        row.unit = Some(unit);
        Ok(row)
    }

    /// No single LOINC fits an activity session: the value is the activity's name.
    fn physical_activity(&self) -> Result<Observation, ParseError> {
        let ptr = child(&self.body_ptr, "activity_name");
        let name = json::string(
            json::required(&self.body, "activity_name", &self.body_ptr)?,
            &ptr,
        )?;
        let mut row = self.row(
            self.id.clone(),
            ACTIVITY,
            OMH_SYSTEM,
            "physical-activity",
            "Physical activity",
        );
        row.value = Value::Text(name);
        Ok(row)
    }
}

/// Reads `{value, unit}` at `ptr`: the value as written, the unit mapped to UCUM.
fn unit_value(
    raw: &RawValue,
    ptr: &str,
    default_unit: Option<&str>,
) -> Result<(Value, String), ParseError> {
    let obj = json::object(raw, ptr)?;
    let value = json::number(json::required(&obj, "value", ptr)?, &child(ptr, "value"))?;
    let unit = match (json::optional(&obj, "unit"), default_unit) {
        (Some(u), _) => ucum(&json::string(u, &child(ptr, "unit"))?),
        (None, Some(default)) => default.to_owned(),
        (None, None) => return Err(ParseError::shape(child(ptr, "unit"), "missing")),
    };
    Ok((Value::Number(value), unit))
}

/// Open mHealth unit → UCUM code; unknown units are kept as sent.
fn ucum(unit: &str) -> String {
    match unit {
        "beats/min" | "breaths/min" => "/min",
        "steps" => "{steps}",
        "mmHg" => "mm[Hg]",
        "lb" => "[lb_av]",
        "C" => "Cel",
        "F" => "[degF]",
        "in" => "[in_i]",
        "ft" => "[ft_i]",
        other => other,
    }
    .to_owned()
}

/// `effective_time_frame`: a `date_time`, or a `time_interval`'s start (or its date, or end).
/// Times are kept verbatim, offsets included.
fn effective(body: &Object<'_>, body_ptr: &str) -> Result<Option<String>, ParseError> {
    let Some(raw) = json::optional(body, "effective_time_frame") else {
        return Ok(None);
    };
    let ptr = child(body_ptr, "effective_time_frame");
    let frame = json::object(raw, &ptr)?;
    if let Some(dt) = json::optional(&frame, "date_time") {
        return json::string(dt, &child(&ptr, "date_time")).map(Some);
    }
    let Some(interval) = json::optional(&frame, "time_interval") else {
        return Err(ParseError::shape(
            ptr,
            "expected date_time or time_interval",
        ));
    };
    let iptr = child(&ptr, "time_interval");
    let interval = json::object(interval, &iptr)?;
    for key in ["start_date_time", "date", "end_date_time"] {
        if let Some(v) = json::optional(&interval, key) {
            return json::string(v, &child(&iptr, key)).map(Some);
        }
    }
    Err(ParseError::shape(
        iptr,
        "expected start_date_time, date or end_date_time",
    ))
}
