//! Open mHealth data points → observations.
//!
//! Accepted bodies: an array of data points, `{"data": [...]}`, or one data point object.
//! Each point is `{header: {id, creation_date_time, schema_id: {namespace, name, version},
//! acquisition_provenance: {source_name}}, body: {...}}`; the measure is chosen by
//! `schema_id.name`, for any schema version (shapes that differ between versions, such as
//! step-count 1.x's bare number or blood-glucose 2.0's `blood_glucose_specimen_source`, are
//! all read). What each schema becomes is in [`schema`].
//!
//! Policy, chosen for a clinical gateway where one bad value must not cost the payload:
//! - Only the envelope can fail the payload: a body that is neither an array nor an object,
//!   or a `data` member that is not an array.
//! - A point that is not a data point of a known `omh` schema (not an object, no readable
//!   `header.schema_id`, another namespace, a schema this module does not map) is skipped:
//!   wearables send many measures and one unknown kind must not block the rest.
//! - A point of a known schema always gives one observation. A missing or unreadable body
//!   or measure gives no value, `dataAbsentReason = error` and a warning with the JSON
//!   Pointer of the node; a number written as a string is read, with a warning; a missing
//!   header id gives the point's pointer as id, with a warning.
//! - Units go through the one unit table ([`crate::units`]); an unknown unit, or a known unit
//!   of the wrong kind, is kept as sent with a warning. Where the schema allows exactly one
//!   unit (heart rate, blood pressure, SpO2, BMI, kcal, steps) a missing unit is that unit.
//! - `header.creation_date_time` → `issued`; `acquisition_provenance.source_name` → the
//!   device's display. Times: see [`crate::time`].
//! - Observations carry no status: Open mHealth does not say one.

mod schema;

pub use schema::OMH_CODES;

use std::ops::ControlFlow;

use medgate_core::{Observation, Reference, Warning};
use serde_json::value::RawValue;

use crate::json::{self, Object, Ptr, ROOT};
use crate::time;
use crate::{ParseContext, ParseError};

use schema::Schema;

const DATA: Ptr<'static> = Ptr::Text("/data");

/// Parses an Open mHealth payload, handing each observation to `emit` as soon as it is read
/// and stopping when `emit` breaks. Only the envelope can fail, before the first observation.
pub(crate) fn parse(
    root: &RawValue,
    ctx: &ParseContext,
    emit: &mut impl FnMut(Observation) -> ControlFlow<()>,
) -> Result<(), ParseError> {
    let Some((base, array)) = data_points(root)? else {
        // One data point at the root.
        if let Some(observation) = data_point(root, &ROOT, ctx) {
            let _ = emit(observation);
        }
        return Ok(());
    };
    json::each(array, base, |i, point| {
        match data_point(point, &base.index(i), ctx) {
            Some(observation) => emit(observation),
            None => ControlFlow::Continue(()),
        }
    })?;
    Ok(())
}

/// The envelope, the only part of an Open mHealth payload whose shape can fail it: the array
/// of data points and its pointer, or `None` for one data point at the root.
fn data_points(root: &RawValue) -> Result<Option<(&'static Ptr<'static>, &RawValue)>, ParseError> {
    match json::kind(root) {
        "an array" => Ok(Some((&ROOT, root))),
        "an object" => {
            let obj = json::object(root, &ROOT)?;
            match obj.get("data") {
                // `json::each` refuses a member that is not an array, before any point.
                Some(data) => Ok(Some((&DATA, data))),
                None => Ok(None),
            }
        }
        other => Err(ParseError::shape(
            "",
            format!("expected an array of data points or an object, found {other}"),
        )),
    }
}

/// One data point → its observation, or `None` when it is not one of a known schema.
fn data_point(point: &RawValue, pointer: &Ptr<'_>, ctx: &ParseContext) -> Option<Observation> {
    let obj = json::object(point, pointer).ok()?;
    let header_ptr = pointer.at("header");
    let header = json::object(json::optional(&obj, "header")?, &header_ptr).ok()?;
    let schema = schema_of(&header, &header_ptr)?;
    let mut warnings = Vec::new();
    let id = header_id(&header, &header_ptr, pointer, &mut warnings);
    let mut o = ctx.observation(id);
    o.issued = creation_time(&header, &header_ptr, &mut warnings);
    o.device = device(&header, &header_ptr, &mut warnings);
    o.warnings = warnings;
    let body_ptr = pointer.at("body");
    let body = json::required(&obj, "body", pointer).and_then(|raw| json::object(raw, &body_ptr));
    let body = Body {
        obj: body.as_ref().map_err(Clone::clone),
        ptr: body_ptr,
    };
    schema::observe(schema, &body, &mut o);
    Some(o)
}

/// `header.schema_id`: the known `omh` schema it names, or `None` for anything else.
fn schema_of(header: &Object<'_>, header_ptr: &Ptr<'_>) -> Option<Schema> {
    let schema_id = json::object(json::optional(header, "schema_id")?, header_ptr).ok()?;
    let namespace = json::text(json::optional(&schema_id, "namespace")?, header_ptr).ok()?;
    let name = json::text(json::optional(&schema_id, "name")?, header_ptr).ok()?;
    (namespace == "omh")
        .then(|| Schema::from_name(&name))
        .flatten()
}

/// `header.id`, or the point's own pointer when it has none (stable for a given payload).
fn header_id(
    header: &Object<'_>,
    header_ptr: &Ptr<'_>,
    pointer: &Ptr<'_>,
    w: &mut Vec<Warning>,
) -> String {
    let id = json::required(header, "id", header_ptr)
        .and_then(|raw| json::scalar_text(raw, &header_ptr.at("id")));
    match id {
        Ok(id) => id,
        Err(e) => {
            w.push(Warning::new(
                e.at,
                format!("{}; the id is the data point's position", e.message),
            ));
            json::written(pointer)
        }
    }
}

fn creation_time(
    header: &Object<'_>,
    header_ptr: &Ptr<'_>,
    w: &mut Vec<Warning>,
) -> Option<medgate_core::DateTime> {
    let raw = json::optional(header, "creation_date_time")?;
    time::date_time(raw, &header_ptr.at("creation_date_time"))
        .map_err(|e| w.push(e))
        .ok()
}

/// `acquisition_provenance.source_name` as the device's display.
fn device(header: &Object<'_>, header_ptr: &Ptr<'_>, w: &mut Vec<Warning>) -> Option<Reference> {
    let ptr = header_ptr.at("acquisition_provenance");
    let provenance = json::object(json::optional(header, "acquisition_provenance")?, &ptr)
        .map_err(|e| w.push(e))
        .ok()?;
    let raw = json::optional(&provenance, "source_name")?;
    let name = json::string(raw, &ptr.at("source_name"))
        .map_err(|e| w.push(e))
        .ok()?;
    Some(Reference {
        reference: None,
        display: Some(name),
    })
}

/// A data point's body, or why it cannot be read.
pub(crate) struct Body<'a, 'b> {
    obj: Result<&'b Object<'a>, Warning>,
    ptr: Ptr<'b>,
}

impl<'a, 'b> Body<'a, 'b> {
    /// A required member, or where and why it is not there.
    fn member(&self, name: &str) -> Result<&'a RawValue, Warning> {
        json::required(self.obj.as_ref().map_err(Clone::clone)?, name, &self.ptr)
    }

    /// An optional member: absent (or no body) → `None`.
    fn optional(&self, name: &str) -> Option<&'a RawValue> {
        json::optional(self.obj.as_ref().ok()?, name)
    }

    /// An optional string member; a non-string is a warning and counts as absent.
    fn text(&self, name: &str, w: &mut Vec<Warning>) -> Option<String> {
        let raw = self.optional(name)?;
        json::string(raw, &self.ptr.at(name))
            .map_err(|e| w.push(e))
            .ok()
    }

    /// The body object, when there is one.
    fn object(&self) -> Option<&'b Object<'a>> {
        self.obj.as_ref().ok().copied()
    }
}

/// A warning unless the observation already has that exact one (a missing body would
/// otherwise be reported once per measure read from it).
fn warn_once(warnings: &mut Vec<Warning>, w: Warning) {
    if !warnings.contains(&w) {
        warnings.push(w);
    }
}
