//! [`Decimal`]: a number kept exactly as written, in canonical JSON number form.
//!
//! Clinical numbers carry meaning in their written precision (`98.60` is not `98.6`), so
//! medgate never routes them through `f64`. Upstream formats allow more lexical forms than
//! JSON does (`xs:decimal` allows `00`, `+5`, `.5`, `5.`; CDA `REAL` allows `1E3`), so
//! [`Decimal::parse_lenient`] accepts those and rewrites them into JSON's grammar without
//! changing the value or the number of written digits (`00` → `0`, `.50` → `0.50`).

use serde::ser::{Serialize, SerializeStruct, Serializer};
use serde_json::value::RawValue;

/// The name under which serde_json's serializers recognize a raw JSON value and write its
/// text verbatim (`serde_json::value::RawValue` serializes as a struct of this name with one
/// field of this name). Writing that shape ourselves keeps the number verbatim in JSON
/// without building a `RawValue`, whose constructor runs serde_json's whole parser over text
/// that [`is_json_number`] has already checked. `decimals_serialize_as_written` fails if a
/// serde_json release ever changes the name.
const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";

/// A decimal number kept as its written text, in the JSON number grammar (which FHIR's
/// decimal grammar is a subset of), so it can be written to JSON verbatim.
///
/// The text is checked once against the JSON number grammar when the value is made, so
/// serializing to JSON copies it without allocating or re-validating.
#[derive(Debug, Clone)]
pub struct Decimal(Box<str>);

impl PartialEq for Decimal {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Decimal {}

impl std::hash::Hash for Decimal {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl Decimal {
    /// Accepts exactly the JSON number grammar
    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`; anything else is `None`.
    pub fn parse(text: &str) -> Option<Decimal> {
        if !is_json_number(text.as_bytes()) {
            return None;
        }
        Some(Decimal(Box::from(text)))
    }

    /// Accepts every lexical form of `xs:decimal` and `xs:double` finite numbers
    /// (`[+-]?(digits[.digits?] | .digits)([eE][+-]?digits)?`), surrounding whitespace
    /// ignored, and returns it in canonical JSON form with the same digits: a leading `+` is
    /// dropped, redundant leading zeros of the integer part are dropped (`007` → `7`), a bare
    /// `.` gets its `0` (`.5` → `0.5`, `5.` → `5`). `NaN`, `INF` and anything else is `None`.
    pub fn parse_lenient(text: &str) -> Option<Decimal> {
        let text = text.trim_matches(|c: char| c.is_ascii_whitespace());
        if is_json_number(text.as_bytes()) {
            return Decimal::parse(text);
        }
        canonicalize(text).map(|t| Decimal(t.into_boxed_str()))
    }

    /// A decimal from an integer.
    pub fn from_i64(n: i64) -> Decimal {
        // An integer's decimal text is always a JSON number.
        Decimal(n.to_string().into_boxed_str())
    }

    /// The number as written (canonical JSON form).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The nearest `f64` (for comparisons and rules; never for output).
    pub fn to_f64(&self) -> f64 {
        // The grammar check guarantees Rust's float parser accepts it.
        self.as_str().parse().unwrap_or(f64::NAN)
    }

    /// The `f64` that holds this number exactly, or `None` when an `f64` would change it
    /// (too many significant digits, underflow to 0, overflow to infinity). Formats whose
    /// numbers are binary floats (XLSX, Parquet doubles) write the text instead.
    pub fn to_f64_exact(&self) -> Option<f64> {
        let value = self.to_f64();
        if !value.is_finite() {
            return None;
        }
        // Compare the significant digits and exponent of the written number with those of
        // the shortest representation that round-trips the float.
        let shortest = format!("{value:e}");
        (normalized(self.as_str())? == normalized(&shortest)?).then_some(value)
    }

    /// The value as an `i64` if it is an integer written without fraction or exponent.
    pub fn to_i64(&self) -> Option<i64> {
        self.as_str().parse().ok()
    }

    /// Digits after the decimal point when written without an exponent (`98.60` → 2).
    pub fn fraction_digits(&self) -> Option<usize> {
        let s = self.as_str();
        if s.contains(['e', 'E']) {
            return None;
        }
        Some(s.split_once('.').map_or(0, |(_, f)| f.len()))
    }
}

impl Serialize for Decimal {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Exactly `RawValue`'s own shape: serde_json writes the text verbatim; other
        // serializers see a string-shaped struct, which is why exporters for other formats
        // use `as_str`.
        let mut raw = s.serialize_struct(RAW_VALUE_TOKEN, 1)?;
        raw.serialize_field(RAW_VALUE_TOKEN, &*self.0)?;
        raw.end()
    }
}

impl<'de> serde::Deserialize<'de> for Decimal {
    /// JSON only: the number's written text is kept.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let raw = Box::<RawValue>::deserialize(d)?;
        Decimal::parse(raw.get().trim()).ok_or_else(|| D::Error::custom("expected a JSON number"))
    }
}

impl std::fmt::Display for Decimal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Rewrites a lenient decimal into JSON's grammar, or `None` if it is not a number.
fn canonicalize(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let (negative, rest) = match b.first() {
        Some(b'-') => (true, &b[1..]),
        Some(b'+') => (false, &b[1..]),
        _ => (false, b),
    };
    let mantissa_end = rest
        .iter()
        .position(|&c| c == b'e' || c == b'E')
        .unwrap_or(rest.len());
    let (mantissa, exponent) = rest.split_at(mantissa_end);
    let (int, frac) = match mantissa.iter().position(|&c| c == b'.') {
        Some(dot) => (&mantissa[..dot], Some(&mantissa[dot + 1..])),
        None => (mantissa, None),
    };
    let all_digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    if !all_digits(int) || !frac.is_none_or(all_digits) {
        return None;
    }
    if int.is_empty() && frac.is_none_or(<[u8]>::is_empty) {
        return None;
    }
    let mut out = String::with_capacity(text.len() + 1);
    if negative {
        out.push('-');
    }
    let int = match int.iter().position(|&c| c != b'0') {
        Some(first) => &int[first..],
        None => b"0",
    };
    out.push_str(std::str::from_utf8(int).ok()?);
    if let Some(frac) = frac.filter(|f| !f.is_empty()) {
        out.push('.');
        out.push_str(std::str::from_utf8(frac).ok()?);
    }
    if !exponent.is_empty() {
        let digits = match exponent.get(1) {
            Some(b'+' | b'-') => &exponent[2..],
            _ => &exponent[1..],
        };
        if digits.is_empty() || !all_digits(digits) {
            return None;
        }
        out.push_str(std::str::from_utf8(exponent).ok()?);
    }
    is_json_number(out.as_bytes()).then_some(out)
}

/// (negative, significant digits without leading/trailing zeros, exponent of the last digit).
fn normalized(text: &str) -> Option<(bool, String, i64)> {
    let (negative, rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text),
    };
    let (mantissa, exp) = match rest.find(['e', 'E']) {
        Some(at) => (&rest[..at], rest[at + 1..].parse::<i64>().ok()?),
        None => (rest, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let mut digits: String = int.chars().chain(frac.chars()).collect();
    let mut exponent = exp - frac.len() as i64;
    let trimmed = digits.trim_start_matches('0').len();
    digits = digits[digits.len() - trimmed..].to_owned();
    while digits.ends_with('0') {
        digits.pop();
        exponent += 1;
    }
    if digits.is_empty() {
        return Some((false, String::new(), 0));
    }
    Some((negative, digits, exponent))
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

    fn strict(text: &str, ok: bool) {
        assert_eq!(Decimal::parse(text).is_some(), ok, "{text:?}");
    }

    fn lenient(text: &str, expected: Option<&str>) {
        assert_eq!(
            Decimal::parse_lenient(text).as_ref().map(Decimal::as_str),
            expected,
            "{text:?}"
        );
    }

    #[test]
    fn json_grammar() {
        for t in [
            "0",
            "98.60",
            "-1",
            "1e-22",
            "-1e+245",
            "1000000000000000000",
            "0.5E3",
        ] {
            strict(t, true);
        }
        for t in [
            "", "-", "01", "1.", ".5", "1e", "+1", "NaN", "1,5", " 1", "0x10", "1e+",
        ] {
            strict(t, false);
        }
    }

    #[test]
    fn lenient_forms_become_canonical_json_with_the_same_digits() {
        lenient("00", Some("0"));
        lenient("+5", Some("5"));
        lenient(".5", Some("0.5"));
        lenient(".50", Some("0.50"));
        lenient("5.", Some("5"));
        lenient("1E3", Some("1E3"));
        lenient("-007.10", Some("-7.10"));
        lenient("-.5e-3", Some("-0.5e-3"));
        lenient(" 98.60 ", Some("98.60"));
        lenient("98.60", Some("98.60"));
        for bad in [
            "", ".", "+", "-", "e3", "1e", "1.2.3", "NaN", "INF", "1,5", "0x1", "--1",
        ] {
            lenient(bad, None);
        }
    }

    #[test]
    fn exact_f64_only_when_nothing_changes() {
        let exact = |t: &str| Decimal::parse(t).unwrap().to_f64_exact();
        assert_eq!(exact("98.60"), Some(98.6));
        assert_eq!(exact("1e-22"), Some(1e-22));
        assert_eq!(exact("-0"), Some(0.0));
        assert_eq!(exact("1000000000000000000"), Some(1e18));
        assert_eq!(exact("1e-400"), None);
        assert_eq!(exact("1e400"), None);
        assert_eq!(exact("123456789012345678901234567890"), None);
        assert_eq!(exact("0.1000000000000000055511151231257827"), None);
    }

    #[test]
    fn decimals_serialize_as_written() {
        let v = vec![
            Decimal::parse("98.60").unwrap(),
            Decimal::parse("1e-22").unwrap(),
        ];
        assert_eq!(serde_json::to_string(&v).unwrap(), "[98.60,1e-22]");
        // serde_json's Value keeps the written digits too (arbitrary precision).
        assert_eq!(
            serde_json::to_value(&v).unwrap().to_string(),
            "[98.60,1e-22]"
        );
        assert_eq!(
            serde_json::to_string_pretty(&v[0]).unwrap(),
            "98.60",
            "every serde_json formatter writes raw values verbatim"
        );
        let back: Vec<Decimal> = serde_json::from_str("[98.60, 1e-22]").unwrap();
        assert_eq!(back, v);
        assert_eq!(v[0].fraction_digits(), Some(2));
        assert_eq!(v[1].fraction_digits(), None);
    }
}
