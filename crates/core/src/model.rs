//! The normalized record: one observation, one row.
//!
//! Field order is the wire order of the JSON shape and the column order of CSV and Excel:
//! `patient_id, source, id, category, code_system, code, display, value, unit, effective`.

use serde::ser::{Serialize, Serializer};
use serde::Deserialize;

/// Column names in record order.
pub const COLUMNS: [&str; 10] = [
    "patient_id",
    "source",
    "id",
    "category",
    "code_system",
    "code",
    "display",
    "value",
    "unit",
    "effective",
];

/// One normalized clinical observation (a multi-component observation is one row per component).
#[derive(Debug, Clone, PartialEq, serde::Serialize, Deserialize)]
pub struct Observation {
    /// The patient id as the partner asked for it (never logged).
    pub patient_id: String,
    /// Name of the configured source this came from.
    pub source: String,
    /// The upstream's id of the observation (components get `id` + `#` + component index).
    pub id: String,
    /// Category code, e.g. `vital-signs`, `laboratory`.
    pub category: Option<String>,
    /// Code system URI (or OID for CDA), e.g. `http://loinc.org`.
    pub code_system: Option<String>,
    /// The code in that system, e.g. LOINC `8867-4`.
    pub code: Option<String>,
    /// Human-readable name of the code.
    pub display: Option<String>,
    /// The value: a number keeps its written text, text and booleans stay what they are.
    pub value: Value,
    /// UCUM code when the upstream gives one, else its unit text.
    pub unit: Option<String>,
    /// RFC 3339 with the upstream's offset kept; a date-only value stays a date.
    pub effective: Option<String>,
}

/// An observation's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A quantity or integer, kept as written (`98.60` stays `98.60`).
    Number(Decimal),
    /// Text, or a coded value's display (or code).
    Text(String),
    /// A boolean.
    Bool(bool),
    /// No value (a panel header, a pending result).
    Null,
}

impl Value {
    /// The value as CSV/plain text: numbers as written, `true`/`false`, empty for null.
    pub fn as_text(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Value::Number(d) => d.as_str().into(),
            Value::Text(s) => s.as_str().into(),
            Value::Bool(b) => if *b { "true" } else { "false" }.into(),
            Value::Null => "".into(),
        }
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Number(d) => d.serialize(s),
            Value::Text(t) => s.serialize_str(t),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Null => s.serialize_none(),
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    /// JSON only: numbers are read through serde_json's raw value so their written text survives.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let raw = Box::<serde_json::value::RawValue>::deserialize(d)?;
        let text = raw.get().trim();
        match text.as_bytes().first() {
            Some(b'"') => serde_json::from_str(text)
                .map(Value::Text)
                .map_err(D::Error::custom),
            Some(b't' | b'f') => serde_json::from_str(text)
                .map(Value::Bool)
                .map_err(D::Error::custom),
            Some(b'n') => Ok(Value::Null),
            _ => Decimal::parse(text)
                .map(Value::Number)
                .ok_or_else(|| D::Error::custom("value must be a number, string, bool or null")),
        }
    }
}

/// A decimal number kept as its written text, validated against the JSON number grammar
/// (which FHIR's decimal grammar is a subset of), so it can be written to JSON verbatim.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Decimal(String);

impl Decimal {
    /// Accepts `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`; anything else is `None`.
    pub fn parse(text: &str) -> Option<Decimal> {
        is_json_number(text.as_bytes()).then(|| Decimal(text.to_owned()))
    }

    /// The number exactly as written upstream.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The nearest `f64` (for formats whose numbers are binary floats, such as Excel).
    pub fn to_f64(&self) -> f64 {
        // The grammar check guarantees Rust's float parser accepts it.
        self.0.parse().unwrap_or(f64::NAN)
    }

    /// Digits after the decimal point when written without an exponent (`98.60` → 2).
    pub fn fraction_digits(&self) -> Option<usize> {
        if self.0.contains(['e', 'E']) {
            return None;
        }
        Some(self.0.split_once('.').map_or(0, |(_, f)| f.len()))
    }
}

impl Serialize for Decimal {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // RawValue writes the text verbatim through serde_json; other serializers get a float.
        match serde_json::value::RawValue::from_string(self.0.clone()) {
            Ok(raw) => raw.serialize(s),
            Err(_) => s.serialize_f64(self.to_f64()),
        }
    }
}

impl std::fmt::Display for Decimal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn is_json_number(b: &[u8]) -> bool {
    let mut i = 0;
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i > start
    };
    if b.first() == Some(&b'-') {
        i += 1;
    }
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(c) if c.is_ascii_digit() => {
            digits(&mut i);
        }
        _ => return false,
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        if !digits(&mut i) {
            return false;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if !digits(&mut i) {
            return false;
        }
    }
    i == b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, ok: bool) {
        assert_eq!(Decimal::parse(text).is_some(), ok, "{text:?}");
    }

    #[test]
    fn decimal_grammar() {
        for t in [
            "0",
            "98.60",
            "-1",
            "1e-22",
            "-1e+245",
            "1000000000000000000",
            "0.5E3",
        ] {
            check(t, true);
        }
        for t in [
            "", "-", "01", "1.", ".5", "1e", "+1", "NaN", "1,5", " 1", "0x10", "1e+",
        ] {
            check(t, false);
        }
    }

    #[test]
    fn decimals_serialize_as_written() {
        let v = vec![
            Value::Number(Decimal::parse("98.60").unwrap()),
            Value::Number(Decimal::parse("1e-22").unwrap()),
        ];
        assert_eq!(serde_json::to_string(&v).unwrap(), "[98.60,1e-22]");
    }

    #[test]
    fn values_round_trip_through_json() {
        let v: Vec<Value> = serde_json::from_str(r#"[98.60, "pos", true, null]"#).unwrap();
        assert_eq!(
            v,
            vec![
                Value::Number(Decimal::parse("98.60").unwrap()),
                Value::Text("pos".into()),
                Value::Bool(true),
                Value::Null
            ]
        );
        assert_eq!(Decimal::parse("98.60").unwrap().fraction_digits(), Some(2));
        assert_eq!(Decimal::parse("1e-22").unwrap().fraction_digits(), None);
    }
}
