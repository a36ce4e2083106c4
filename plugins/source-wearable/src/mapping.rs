//! Config-described JSON (`format = "mapping"`) → observations.
//!
//! `records` points at an array; every element is one observation whose fields are read
//! through pointers relative to it, falling back to `[mapping.constants]`.
//!
//! Choices:
//! - A value that is a JSON string holding a valid JSON number becomes a number, because
//!   vendors such as Fitbit send numbers as strings (`"64.2"`); any other string stays text.
//! - A record without a value gives `Value::Null` rather than failing the payload (a pending
//!   or absent measurement is still a row); a value that is an object or array is an error.
//! - Without an id pointer (or when it finds nothing) the record's own pointer is the id,
//!   which is stable for a given payload (e.g. `/weight/2`).

use medgate_core::{Decimal, Observation, Value};
use serde_json::value::RawValue;

use crate::config::Mapping;
use crate::json::{self, child};
use crate::{ParseContext, ParseError};

/// Parses a payload described by `mapping`.
pub(crate) fn parse(
    mapping: &Mapping,
    root: &RawValue,
    ctx: &ParseContext<'_>,
) -> Result<Vec<Observation>, ParseError> {
    let Some(records) = json::resolve(root, &mapping.records, "")? else {
        return Err(ParseError::shape(
            mapping.records.as_str(),
            "records pointer finds nothing",
        ));
    };
    let records = json::array(records, &mapping.records)?;
    records
        .into_iter()
        .enumerate()
        .map(|(i, record)| {
            let pointer = child(&mapping.records, &i.to_string());
            Record {
                mapping,
                raw: record,
                pointer,
            }
            .observation(ctx)
        })
        .collect()
}

/// One record being read.
struct Record<'a> {
    mapping: &'a Mapping,
    raw: &'a RawValue,
    pointer: String,
}

impl Record<'_> {
    fn observation(&self, ctx: &ParseContext<'_>) -> Result<Observation, ParseError> {
        let f = &self.mapping.fields;
        let c = &self.mapping.constants;
        let id = self.text(&f.id)?.unwrap_or_else(|| self.pointer.clone());
        let mut row = ctx.observation(id);
        row.category = self.text_or(&f.category, &c.category)?;
        row.code_system = self.text_or(&f.code_system, &c.code_system)?;
        row.code = self.text_or(&f.code, &c.code)?;
        row.display = self.text_or(&f.display, &c.display)?;
        row.unit = self.text_or(&f.unit, &c.unit)?;
        row.value = self.value()?;
        row.effective = join_time(self.text(&f.effective)?, self.text(&f.effective_time)?);
        Ok(row)
    }

    /// The node at a field pointer, if the pointer is set and finds a non-null node.
    fn node(&self, field: &Option<String>) -> Result<Option<(&RawValue, String)>, ParseError> {
        let Some(pointer) = field else {
            return Ok(None);
        };
        let at = format!("{}{pointer}", self.pointer);
        Ok(json::resolve(self.raw, pointer, &self.pointer)?
            .filter(|raw| !json::is_null(raw))
            .map(|raw| (raw, at)))
    }

    /// A field as text: strings as they are, numbers and booleans as written.
    fn text(&self, field: &Option<String>) -> Result<Option<String>, ParseError> {
        let Some((raw, at)) = self.node(field)? else {
            return Ok(None);
        };
        match json::kind(raw) {
            "a string" => json::string(raw, &at).map(Some),
            "a number" | "a boolean" => Ok(Some(raw.get().trim().to_owned())),
            other => Err(ParseError::shape(
                at,
                format!("expected a string or number, found {other}"),
            )),
        }
    }

    fn text_or(
        &self,
        field: &Option<String>,
        constant: &Option<String>,
    ) -> Result<Option<String>, ParseError> {
        Ok(self.text(field)?.or_else(|| constant.clone()))
    }

    fn value(&self) -> Result<Value, ParseError> {
        let Some((raw, at)) = self.node(&self.mapping.fields.value)? else {
            return Ok(Value::Null);
        };
        match json::kind(raw) {
            "a number" => json::number(raw, &at).map(Value::Number),
            "a boolean" => Ok(Value::Bool(raw.get().trim() == "true")),
            "a string" => {
                let text = json::string(raw, &at)?;
                Ok(Decimal::parse(&text).map_or(Value::Text(text), Value::Number))
            }
            other => Err(ParseError::shape(
                at,
                format!("expected a number, string or boolean, found {other}"),
            )),
        }
    }
}

/// Joins a time of day to a date-only effective (`2024-01-02` + `08:30:00`).
///
/// An effective that already has a time is kept as is; a time with no date is dropped,
/// because a bare time of day is not a point in time.
fn join_time(effective: Option<String>, time: Option<String>) -> Option<String> {
    match (effective, time) {
        (Some(date), Some(time)) if is_date_only(&date) => Some(format!("{date}T{time}")),
        (effective, _) => effective,
    }
}

fn is_date_only(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_time_only_to_dates() {
        let s = |v: &str| Some(v.to_owned());
        assert_eq!(
            join_time(s("2024-01-02"), s("08:30:00")),
            s("2024-01-02T08:30:00")
        );
        assert_eq!(
            join_time(s("2024-01-02T07:00:00Z"), s("08:30:00")),
            s("2024-01-02T07:00:00Z")
        );
        assert_eq!(join_time(None, s("08:30:00")), None);
        assert_eq!(join_time(s("2024-01-02"), None), s("2024-01-02"));
    }
}
