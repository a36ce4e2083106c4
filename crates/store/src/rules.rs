//! Rule support: does an observation's value of a code pass a [`ValueTest`]?
//!
//! Numbers are compared exactly as decimals (`160.0000001 > 160`), never through `f64`.

use std::cmp::Ordering;

use medgate_core::{CodeFilter, Decimal, Observation, Value};

use crate::types::ValueTest;

/// Whether `obs` has a value of `code` that passes `test`: the observation's own value when
/// one of its codings matches, else the value of a matching component.
pub fn observation_passes(obs: &Observation, code: &CodeFilter, test: &ValueTest) -> bool {
    if concept_matches(&obs.code, code) && value_passes(&obs.value, test) {
        return true;
    }
    obs.components
        .iter()
        .any(|c| concept_matches(&c.code, code) && value_passes(&c.value, test))
}

fn concept_matches(concept: &medgate_core::CodeableConcept, f: &CodeFilter) -> bool {
    concept.coding.iter().any(|c| {
        c.code.as_deref() == Some(f.code.as_str())
            && match &f.system {
                None => true,
                Some(s) => c.system.as_deref().unwrap_or("") == s,
            }
    })
}

/// Whether `value` passes `test`.
pub fn value_passes(value: &Value, test: &ValueTest) -> bool {
    let number = match value {
        Value::Quantity(q) => q.value.as_ref().map(|d| d.as_str().to_owned()),
        Value::Integer(i) => Some(i.to_string()),
        _ => None,
    };
    match test {
        ValueTest::Above(limit) => {
            number.is_some_and(|n| compare_decimals(&n, limit.as_str()) == Some(Ordering::Greater))
        }
        ValueTest::Below(limit) => {
            number.is_some_and(|n| compare_decimals(&n, limit.as_str()) == Some(Ordering::Less))
        }
        ValueTest::Equals(expected) => match value {
            Value::CodeableConcept(c) => {
                c.coding
                    .iter()
                    .any(|k| k.code.as_deref() == Some(expected.as_str()))
                    || c.text.as_deref() == Some(expected.as_str())
            }
            Value::String(s) => s == expected,
            Value::Boolean(b) => expected == if *b { "true" } else { "false" },
            _ => match (number, Decimal::parse_lenient(expected)) {
                (Some(n), Some(e)) => compare_decimals(&n, e.as_str()) == Some(Ordering::Equal),
                _ => false,
            },
        },
    }
}

/// Compares two numbers in JSON number form exactly; `None` if either is not one.
pub fn compare_decimals(a: &str, b: &str) -> Option<Ordering> {
    let a = Parts::parse(a)?;
    let b = Parts::parse(b)?;
    Some(a.cmp_value(&b))
}

/// A number as sign, significant digits (no leading or trailing zeros) and the exponent of
/// the first digit's place (`123.4` → digits `1234`, point after 3 digits).
struct Parts {
    negative: bool,
    digits: Vec<u8>,
    /// Number of digits before the decimal point when the digits are written `0.d1d2…×10^point`.
    point: i64,
}

impl Parts {
    fn parse(text: &str) -> Option<Parts> {
        let b = text.as_bytes();
        let (negative, rest) = match b.first()? {
            b'-' => (true, &b[1..]),
            _ => (false, b),
        };
        let (mantissa, exponent) = match rest.iter().position(|c| *c == b'e' || *c == b'E') {
            Some(i) => (&rest[..i], parse_exponent(&rest[i + 1..])?),
            None => (rest, 0),
        };
        let (int, frac) = match mantissa.iter().position(|c| *c == b'.') {
            Some(i) => (&mantissa[..i], &mantissa[i + 1..]),
            None => (mantissa, &[][..]),
        };
        if int.is_empty() || !int.iter().chain(frac).all(u8::is_ascii_digit) {
            return None;
        }
        let all: Vec<u8> = int.iter().chain(frac).map(|d| d - b'0').collect();
        let lead = all.iter().take_while(|d| **d == 0).count();
        let digits: Vec<u8> = all[lead..].to_vec();
        let trail = digits.iter().rev().take_while(|d| **d == 0).count();
        let digits = digits[..digits.len() - trail].to_vec();
        let point = int.len() as i64 - lead as i64 + exponent;
        Some(Parts {
            negative: negative && !digits.is_empty(),
            digits,
            point,
        })
    }

    fn cmp_value(&self, other: &Parts) -> Ordering {
        match (self.negative, other.negative) {
            (false, true) => return Ordering::Greater,
            (true, false) => return Ordering::Less,
            _ => {}
        }
        let magnitude = self.cmp_magnitude(other);
        if self.negative {
            magnitude.reverse()
        } else {
            magnitude
        }
    }

    fn cmp_magnitude(&self, other: &Parts) -> Ordering {
        match (self.digits.is_empty(), other.digits.is_empty()) {
            (true, true) => return Ordering::Equal,
            (true, false) => return Ordering::Less,
            (false, true) => return Ordering::Greater,
            _ => {}
        }
        self.point
            .cmp(&other.point)
            .then_with(|| self.digits.cmp(&other.digits))
    }
}

/// An exponent, saturated far beyond any difference that matters between two numbers.
fn parse_exponent(b: &[u8]) -> Option<i64> {
    let (negative, digits) = match b.first()? {
        b'-' => (true, &b[1..]),
        b'+' => (false, &b[1..]),
        _ => (false, b),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut n: i64 = 0;
    for d in digits {
        n = (n * 10 + i64::from(d - b'0')).min(1 << 50);
    }
    Some(if negative { -n } else { n })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmp(a: &str, b: &str) -> Ordering {
        compare_decimals(a, b).unwrap()
    }

    #[test]
    fn decimals_compare_exactly() {
        assert_eq!(cmp("160", "160.0"), Ordering::Equal);
        assert_eq!(cmp("160.0000000000000001", "160"), Ordering::Greater);
        assert_eq!(cmp("159.99999999999999999", "160"), Ordering::Less);
        assert_eq!(cmp("1.6e2", "160"), Ordering::Equal);
        assert_eq!(cmp("-5", "-4.9"), Ordering::Less);
        assert_eq!(cmp("0", "-0.0"), Ordering::Equal);
        assert_eq!(cmp("0.001", "0"), Ordering::Greater);
        assert_eq!(cmp("1e-22", "0"), Ordering::Greater);
        assert_eq!(cmp("99", "100"), Ordering::Less);
        assert_eq!(cmp("1E400", "9e399"), Ordering::Greater);
        assert!(compare_decimals("abc", "1").is_none());
    }

    #[test]
    fn values_pass_tests() {
        let q = |s: &str| Value::number(Decimal::parse(s).unwrap());
        let above = ValueTest::Above(Decimal::parse("160").unwrap());
        assert!(value_passes(&q("161"), &above));
        assert!(!value_passes(&q("160.0"), &above));
        assert!(value_passes(&Value::Integer(200), &above));
        assert!(!value_passes(&Value::String("200".into()), &above));
        let below = ValueTest::Below(Decimal::parse("90").unwrap());
        assert!(value_passes(&q("89.9"), &below));
        let yes = ValueTest::Equals("yes".into());
        assert!(value_passes(&Value::String("yes".into()), &yes));
        assert!(value_passes(
            &Value::CodeableConcept(medgate_core::CodeableConcept::coded("x", "yes", None)),
            &yes
        ));
        assert!(value_passes(
            &Value::Boolean(true),
            &ValueTest::Equals("true".into())
        ));
        assert!(value_passes(&q("3.0"), &ValueTest::Equals("3".into())));
    }
}
