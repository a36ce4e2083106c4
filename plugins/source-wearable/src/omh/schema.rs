//! What each Open mHealth schema becomes: category, codes, value and components.
//!
//! | schema | category | code | value |
//! |---|---|---|---|
//! | heart-rate | vital-signs | LOINC 8867-4 | `heart_rate`, `/min` |
//! | respiratory-rate | vital-signs | LOINC 9279-1 | `respiratory_rate`, `/min` |
//! | body-weight | vital-signs | LOINC 29463-7 | `body_weight` (kg, lb …) |
//! | body-height | vital-signs | LOINC 8302-2 | `body_height` (m, cm, in, ft …) |
//! | body-mass-index | vital-signs | LOINC 39156-5 | `body_mass_index`, `kg/m2` |
//! | body-temperature | vital-signs | LOINC 8310-5 | `body_temperature` (`Cel`, `[degF]`) |
//! | oxygen-saturation | vital-signs | LOINC 59408-5 + 2708-6 by pulse oximetry, else 2708-6 | `oxygen_saturation`, `%` |
//! | blood-pressure | vital-signs | LOINC 85354-9, a panel | components 8480-6 (systolic), 8462-4 (diastolic), `mm[Hg]` |
//! | step-count | activity | LOINC 55423-8 | `step_count` (a bare number in 1.x), `{steps}` |
//! | calories-burned | activity | LOINC 41981-2 | `kcal_burned`, `kcal` |
//! | sleep-duration | activity | LOINC 93832-4 | `sleep_duration` (h, min, s …) |
//! | physical-activity | activity | LOINC 73985-4 "Exercise activity" | the activity name as text |
//! | blood-glucose | laboratory | by unit and specimen, see below | `blood_glucose` (mg/dL, mmol/L) |
//!
//! Choices, with reasons:
//! - **Blood glucose** is coded by what the unit measures (mass or substance concentration)
//!   and the specimen: blood or none given → 2339-0 / 15074-8 (`… in Blood`); `plasma` or
//!   `serum` → 2345-7 / 14749-6 (`… in Serum or Plasma`); `interstitial fluid` (CGMs) →
//!   99504-3 / 105272-9. Without a known unit, or for another specimen, no LOINC fits and the
//!   code is `urn:medgate:openmhealth|blood-glucose`. The category is `laboratory` because
//!   these LOINC terms are chemistry tests, wherever the sample was measured.
//!   `specimen_source` (2.0: `blood_glucose_specimen_source`) and
//!   `temporal_relationship_to_meal` are kept as string components coded in
//!   `urn:medgate:openmhealth` (no LOINC names these qualifiers), so FHIR carries them and
//!   the tabular projection shows them as `<id>#<n>` rows.
//! - **Physical activity** follows the HL7 Physical Activity IG: code 73985-4 "Exercise
//!   activity", the name as `valueCodeableConcept.text`, the session as the effective period.
//!   Components when present: `kcal_burned` → 41981-2 "Calories burned",
//!   `effective_duration` → 55411-3 "Exercise duration", and `distance` →
//!   `urn:medgate:openmhealth|distance`, because the LOINC distance terms (55430-3, 41953-1)
//!   are walking distances and the activity may be a swim or a ride.
//! - **Blood pressure** is one observation with two components, as FHIR's vital-signs
//!   profile has it; the tabular projection still gives `<id>#0` (systolic) and `<id>#1`.
//! - Counts and totals over time (steps, calories, sleep, activity) should have a
//!   `time_interval`; a `date_time` is kept, with a warning.
//!
//! Members not listed (descriptive statistics, posture, location, notes, MET values) are not
//! read.

use medgate_core::model::{CodeableConcept, Component, Observation, Quantity, Value, LOINC};
use medgate_core::Warning;
use serde_json::value::RawValue;

use super::{warn_once, Body};
use crate::json::{self, bad, Ptr, Written};
use crate::time;
use crate::units::{self, Dim};

/// Code system of medgate's own codes for Open mHealth concepts without a LOINC term: schema
/// names (`blood-glucose`) and body member names (`distance`, `specimen_source`).
pub const OMH_CODES: &str = "urn:medgate:openmhealth";

/// The schemas this module maps; every other is skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Schema {
    HeartRate,
    RespiratoryRate,
    BodyWeight,
    BodyHeight,
    BodyMassIndex,
    BodyTemperature,
    OxygenSaturation,
    BloodPressure,
    StepCount,
    CaloriesBurned,
    SleepDuration,
    PhysicalActivity,
    BloodGlucose,
}

impl Schema {
    pub(super) fn from_name(name: &str) -> Option<Schema> {
        Some(match name {
            "heart-rate" => Schema::HeartRate,
            "respiratory-rate" => Schema::RespiratoryRate,
            "body-weight" => Schema::BodyWeight,
            "body-height" => Schema::BodyHeight,
            "body-mass-index" => Schema::BodyMassIndex,
            "body-temperature" => Schema::BodyTemperature,
            "oxygen-saturation" => Schema::OxygenSaturation,
            "blood-pressure" => Schema::BloodPressure,
            "step-count" => Schema::StepCount,
            "calories-burned" => Schema::CaloriesBurned,
            "sleep-duration" => Schema::SleepDuration,
            "physical-activity" => Schema::PhysicalActivity,
            "blood-glucose" => Schema::BloodGlucose,
            _ => return None,
        })
    }

    fn category(self) -> &'static str {
        match self {
            Schema::StepCount
            | Schema::CaloriesBurned
            | Schema::SleepDuration
            | Schema::PhysicalActivity => "activity",
            Schema::BloodGlucose => "laboratory",
            _ => "vital-signs",
        }
    }

    /// Measures of something that accumulates over time.
    fn needs_interval(self) -> bool {
        matches!(
            self,
            Schema::StepCount
                | Schema::CaloriesBurned
                | Schema::SleepDuration
                | Schema::PhysicalActivity
        )
    }
}

/// A coding as constants.
#[derive(Debug, Clone, Copy)]
struct Code {
    system: &'static str,
    code: &'static str,
    display: &'static str,
}

const fn loinc(code: &'static str, display: &'static str) -> Code {
    Code {
        system: LOINC,
        code,
        display,
    }
}

const fn omh(code: &'static str, display: &'static str) -> Code {
    Code {
        system: OMH_CODES,
        code,
        display,
    }
}

impl Code {
    fn concept(self) -> CodeableConcept {
        CodeableConcept::coded(self.system, self.code, Some(self.display))
    }
}

/// A `{value, unit}` member of the body.
struct Measure {
    key: &'static str,
    code: Code,
    /// What the unit may measure.
    dims: &'static [Dim],
    /// The UCUM unit when none is given, for schemas that allow exactly one.
    default_unit: Option<&'static str>,
}

const fn measure(
    key: &'static str,
    code: Code,
    dims: &'static [Dim],
    default_unit: Option<&'static str>,
) -> Measure {
    Measure {
        key,
        code,
        dims,
        default_unit,
    }
}

const HEART_RATE: Measure = measure(
    "heart_rate",
    loinc("8867-4", "Heart rate"),
    &[Dim::Rate],
    Some("/min"),
);
const RESPIRATORY_RATE: Measure = measure(
    "respiratory_rate",
    loinc("9279-1", "Respiratory rate"),
    &[Dim::Rate],
    Some("/min"),
);
const BODY_WEIGHT: Measure = measure(
    "body_weight",
    loinc("29463-7", "Body weight"),
    &[Dim::Mass],
    None,
);
const BODY_HEIGHT: Measure = measure(
    "body_height",
    loinc("8302-2", "Body height"),
    &[Dim::Length],
    None,
);
const BODY_MASS_INDEX: Measure = measure(
    "body_mass_index",
    loinc("39156-5", "Body mass index (BMI) [Ratio]"),
    &[Dim::AreaDensity],
    Some("kg/m2"),
);
const BODY_TEMPERATURE: Measure = measure(
    "body_temperature",
    loinc("8310-5", "Body temperature"),
    &[Dim::Temperature],
    None,
);
const OXYGEN_SATURATION: Measure = measure(
    "oxygen_saturation",
    loinc("2708-6", "Oxygen saturation in Arterial blood"),
    &[Dim::Percent],
    Some("%"),
);
const SPO2_BY_OXIMETRY: Code = loinc(
    "59408-5",
    "Oxygen saturation in Arterial blood by Pulse oximetry",
);
const SYSTOLIC: Measure = measure(
    "systolic_blood_pressure",
    loinc("8480-6", "Systolic blood pressure"),
    &[Dim::Pressure],
    Some("mm[Hg]"),
);
const DIASTOLIC: Measure = measure(
    "diastolic_blood_pressure",
    loinc("8462-4", "Diastolic blood pressure"),
    &[Dim::Pressure],
    Some("mm[Hg]"),
);
const BLOOD_PRESSURE: Code = loinc("85354-9", "Blood pressure panel with all children optional");
const STEP_COUNT: Measure = measure(
    "step_count",
    loinc("55423-8", "Number of steps in unspecified time Pedometer"),
    &[Dim::Steps],
    Some("{steps}"),
);
const CALORIES_BURNED: Measure = measure(
    "kcal_burned",
    loinc("41981-2", "Calories burned"),
    &[Dim::Energy],
    Some("kcal"),
);
const SLEEP_DURATION: Measure = measure(
    "sleep_duration",
    loinc("93832-4", "Sleep duration"),
    &[Dim::Duration],
    None,
);
const EXERCISE_ACTIVITY: Code = loinc("73985-4", "Exercise activity");
const ACTIVITY_PARTS: [Measure; 3] = [
    measure(
        "distance",
        omh("distance", "Distance"),
        &[Dim::Length],
        None,
    ),
    measure(
        "kcal_burned",
        loinc("41981-2", "Calories burned"),
        &[Dim::Energy],
        Some("kcal"),
    ),
    measure(
        "effective_duration",
        loinc("55411-3", "Exercise duration"),
        &[Dim::Duration],
        None,
    ),
];
const BLOOD_GLUCOSE: Measure = measure(
    "blood_glucose",
    omh("blood-glucose", "Blood glucose"),
    &[Dim::MassConcentration, Dim::SubstanceConcentration],
    None,
);
const SPECIMEN_SOURCE: Code = omh("specimen_source", "Specimen source");
const MEAL_RELATION: Code = omh(
    "temporal_relationship_to_meal",
    "Temporal relationship to meal",
);

/// Fills `o` from `body` as `schema` says.
pub(super) fn observe(schema: Schema, body: &Body<'_, '_>, o: &mut Observation) {
    o.category = vec![CodeableConcept::category(schema.category())];
    match schema {
        Schema::HeartRate => single(o, body, &HEART_RATE),
        Schema::RespiratoryRate => single(o, body, &RESPIRATORY_RATE),
        Schema::BodyWeight => single(o, body, &BODY_WEIGHT),
        Schema::BodyHeight => single(o, body, &BODY_HEIGHT),
        Schema::BodyMassIndex => single(o, body, &BODY_MASS_INDEX),
        Schema::BodyTemperature => single(o, body, &BODY_TEMPERATURE),
        Schema::StepCount => single(o, body, &STEP_COUNT),
        Schema::CaloriesBurned => single(o, body, &CALORIES_BURNED),
        Schema::SleepDuration => single(o, body, &SLEEP_DURATION),
        Schema::OxygenSaturation => oxygen_saturation(o, body),
        Schema::BloodPressure => blood_pressure(o, body),
        Schema::PhysicalActivity => physical_activity(o, body),
        Schema::BloodGlucose => blood_glucose(o, body),
    }
    if let Some(obj) = body.object() {
        let (effective, is_date_time) = time::time_frame(obj, &body.ptr, &mut o.warnings);
        o.effective = effective;
        if schema.needs_interval() && is_date_time {
            o.warnings.push(bad(
                &body.ptr.at("effective_time_frame"),
                "a date_time where a total over time needs a time_interval",
            ));
        }
    }
}

/// One `{value, unit}` measure as the observation's value.
fn single(o: &mut Observation, body: &Body<'_, '_>, m: &Measure) {
    o.code = m.code.concept();
    let value = quantity(body, m, &mut o.warnings);
    set_value(o, value.map(Value::Quantity));
}

/// The value, or no value + `dataAbsentReason` + the warning.
fn set_value(o: &mut Observation, value: Result<Value, Warning>) {
    match value {
        Ok(v) => o.value = v,
        Err(e) => o.value_unreadable(e.at, e.message),
    }
}

/// A component with the value, or no value + `dataAbsentReason` (the warning goes on the
/// observation).
fn component(code: Code, value: Result<Value, Warning>, w: &mut Vec<Warning>) -> Component {
    let mut c = Component {
        code: code.concept(),
        ..Component::default()
    };
    match value {
        Ok(v) => c.value = v,
        Err(e) => {
            c.data_absent_reason = Some(CodeableConcept::data_absent("error", "Error"));
            warn_once(w, e);
        }
    }
    c
}

/// A required `{value, unit}` member (step-count 1.x: a bare number).
fn quantity(body: &Body<'_, '_>, m: &Measure, w: &mut Vec<Warning>) -> Result<Quantity, Warning> {
    let raw = body.member(m.key)?;
    unit_value(raw, &body.ptr.at(m.key), m, w)
}

/// `{value, unit}` at `ptr`: the value as written, the unit through the unit table.
fn unit_value(
    raw: &RawValue,
    ptr: &Ptr<'_>,
    m: &Measure,
    w: &mut Vec<Warning>,
) -> Result<Quantity, Warning> {
    if let (Some(unit), false) = (m.default_unit, json::kind(raw) == "an object") {
        // step-count 1.x writes the count itself; a bare number has the schema's one unit.
        return Ok(Quantity::ucum(number(raw, ptr, w)?, unit));
    }
    let obj = json::object(raw, ptr)?;
    let value = number(json::required(&obj, "value", ptr)?, &ptr.at("value"), w)?;
    let uptr = ptr.at("unit");
    let unit =
        json::optional(&obj, "unit").and_then(|u| json::text(u, &uptr).map_err(|e| w.push(e)).ok());
    Ok(match (unit, m.default_unit) {
        (Some(unit), _) => {
            let (q, problem) = units::quantity(Some(value), &unit, m.dims);
            if let Some(p) = problem {
                w.push(bad(&uptr, p));
            }
            q
        }
        (None, Some(code)) => Quantity::ucum(value, code),
        (None, None) => {
            w.push(bad(&uptr, "missing: the number is kept without a unit"));
            Quantity {
                value: Some(value),
                ..Quantity::default()
            }
        }
    })
}

/// A number as written; a number in a string is read, with a warning.
fn number(
    raw: &RawValue,
    ptr: &Ptr<'_>,
    w: &mut Vec<Warning>,
) -> Result<medgate_core::Decimal, Warning> {
    let (value, written) = json::number(raw, ptr)?;
    if written == Written::String {
        w.push(bad(ptr, "a number written as a string; read as a number"));
    }
    Ok(value)
}

/// 59408-5 is SpO2 by pulse oximetry; FHIR's vital-signs profile wants 2708-6 beside it.
fn oxygen_saturation(o: &mut Observation, body: &Body<'_, '_>) {
    single(o, body, &OXYGEN_SATURATION);
    let method = body.text("measurement_method", &mut o.warnings);
    if method.as_deref() == Some("pulse oximetry") {
        o.code.coding.insert(
            0,
            medgate_core::Coding::new(
                SPO2_BY_OXIMETRY.system,
                SPO2_BY_OXIMETRY.code,
                Some(SPO2_BY_OXIMETRY.display),
            ),
        );
    }
}

fn blood_pressure(o: &mut Observation, body: &Body<'_, '_>) {
    o.code = BLOOD_PRESSURE.concept();
    for m in [&SYSTOLIC, &DIASTOLIC] {
        let value = quantity(body, m, &mut o.warnings).map(Value::Quantity);
        let c = component(m.code, value, &mut o.warnings);
        o.components.push(c);
    }
}

fn physical_activity(o: &mut Observation, body: &Body<'_, '_>) {
    o.code = EXERCISE_ACTIVITY.concept();
    let ptr = body.ptr.at("activity_name");
    let name = body
        .member("activity_name")
        .and_then(|raw| json::string(raw, &ptr))
        .map(|name| Value::CodeableConcept(CodeableConcept::text(name)));
    set_value(o, name);
    for m in &ACTIVITY_PARTS {
        let Some(raw) = body.optional(m.key) else {
            continue;
        };
        let value = unit_value(raw, &body.ptr.at(m.key), m, &mut o.warnings).map(Value::Quantity);
        let c = component(m.code, value, &mut o.warnings);
        o.components.push(c);
    }
}

fn blood_glucose(o: &mut Observation, body: &Body<'_, '_>) {
    let value = quantity(body, &BLOOD_GLUCOSE, &mut o.warnings);
    let specimen = body
        .text("specimen_source", &mut o.warnings)
        .or_else(|| body.text("blood_glucose_specimen_source", &mut o.warnings));
    let unit = value.as_ref().ok().and_then(|q| q.code.as_deref());
    o.code = glucose_code(unit, specimen.as_deref()).concept();
    set_value(o, value.map(Value::Quantity));
    if let Some(s) = specimen {
        o.components.push(component(
            SPECIMEN_SOURCE,
            Ok(Value::String(s)),
            &mut o.warnings,
        ));
    }
    if let Some(meal) = body.text("temporal_relationship_to_meal", &mut o.warnings) {
        o.components.push(component(
            MEAL_RELATION,
            Ok(Value::String(meal)),
            &mut o.warnings,
        ));
    }
}

/// The LOINC term for glucose in `unit` (UCUM) measured in `specimen` (see the module docs).
fn glucose_code(unit: Option<&str>, specimen: Option<&str>) -> Code {
    let mass = match unit {
        Some("mg/dL") => true,
        Some("mmol/L") => false,
        _ => return BLOOD_GLUCOSE.code,
    };
    let pick = |m: Code, s: Code| if mass { m } else { s };
    match specimen {
        None
        | Some("capillary blood" | "whole blood" | "venous blood" | "arterial blood" | "blood") => {
            pick(
                loinc("2339-0", "Glucose [Mass/volume] in Blood"),
                loinc("15074-8", "Glucose [Moles/volume] in Blood"),
            )
        }
        Some("plasma" | "serum") => pick(
            loinc("2345-7", "Glucose [Mass/volume] in Serum or Plasma"),
            loinc("14749-6", "Glucose [Moles/volume] in Serum or Plasma"),
        ),
        Some("interstitial fluid") => pick(
            loinc("99504-3", "Glucose [Mass/volume] in Interstitial fluid"),
            loinc("105272-9", "Glucose [Moles/volume] in Interstitial fluid"),
        ),
        Some(_) => BLOOD_GLUCOSE.code,
    }
}
