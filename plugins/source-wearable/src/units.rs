//! The one unit table: units as wearables write them → UCUM codes, with their dimension.
//!
//! Open mHealth writes its own unit symbols (`beats/min`, `mmHg`, `lb`, `C`, `sec`, `Mo`);
//! configs and vendor payloads mostly write UCUM already (`/min`, `kg`, `mg/dL`). Both go
//! through [`lookup`], so a unit means the same thing in every format this crate reads.
//!
//! The display unit is always the text as sent; the table only adds the UCUM system and
//! code. A unit the table does not know is kept verbatim as the display unit with no system
//! or code (the partner sees exactly what the device said), and the caller adds a warning.
//! Each entry carries its dimension so that a known unit of the wrong kind (`km` for a body
//! weight, `g` for an oxygen saturation) is caught too.

use medgate_core::model::UCUM;
use medgate_core::{Decimal, Quantity};

/// What a unit measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dim {
    /// Body weight.
    Mass,
    /// Height, distance.
    Length,
    /// Body temperature.
    Temperature,
    /// Events per time: heart rate, respiratory rate.
    Rate,
    /// Blood pressure.
    Pressure,
    /// A fraction: oxygen saturation.
    Percent,
    /// A step count.
    Steps,
    /// Calories burned.
    Energy,
    /// Sleep duration, exercise duration, time interval lengths.
    Duration,
    /// Glucose in mg/dL.
    MassConcentration,
    /// Glucose in mmol/L.
    SubstanceConcentration,
    /// Body mass index.
    AreaDensity,
    /// Supplemental oxygen flow.
    Flow,
}

impl Dim {
    /// For messages: "a mass unit".
    pub(crate) fn name(self) -> &'static str {
        match self {
            Dim::Mass => "mass",
            Dim::Length => "length",
            Dim::Temperature => "temperature",
            Dim::Rate => "rate (per time)",
            Dim::Pressure => "pressure",
            Dim::Percent => "percentage",
            Dim::Steps => "step count",
            Dim::Energy => "energy",
            Dim::Duration => "duration",
            Dim::MassConcentration => "mass concentration",
            Dim::SubstanceConcentration => "substance concentration",
            Dim::AreaDensity => "mass per area",
            Dim::Flow => "flow",
        }
    }
}

/// `(as written, UCUM code, dimension)`. Open mHealth's symbols first, then the UCUM codes
/// themselves so that payloads already in UCUM pass unchanged. Lookup is case-sensitive
/// (UCUM is: `Mo` is not `mo`'s only spelling, `m` is not `M`), except for a few spellings of
/// concentrations that are unambiguous.
const TABLE: &[(&str, &str, Dim)] = &[
    // Rates.
    ("beats/min", "/min", Dim::Rate),
    ("breaths/min", "/min", Dim::Rate),
    ("/min", "/min", Dim::Rate),
    ("{beats}/min", "{beats}/min", Dim::Rate),
    ("{breaths}/min", "{breaths}/min", Dim::Rate),
    // Pressure.
    ("mmHg", "mm[Hg]", Dim::Pressure),
    ("mm[Hg]", "mm[Hg]", Dim::Pressure),
    // Mass (Open mHealth mass-unit-value).
    ("kg", "kg", Dim::Mass),
    ("g", "g", Dim::Mass),
    ("mg", "mg", Dim::Mass),
    ("ug", "ug", Dim::Mass),
    ("lb", "[lb_av]", Dim::Mass),
    ("[lb_av]", "[lb_av]", Dim::Mass),
    ("oz", "[oz_av]", Dim::Mass),
    ("[oz_av]", "[oz_av]", Dim::Mass),
    // Temperature.
    ("C", "Cel", Dim::Temperature),
    ("Cel", "Cel", Dim::Temperature),
    ("F", "[degF]", Dim::Temperature),
    ("[degF]", "[degF]", Dim::Temperature),
    ("K", "K", Dim::Temperature),
    // Length (Open mHealth length-unit-value).
    ("mm", "mm", Dim::Length),
    ("cm", "cm", Dim::Length),
    ("m", "m", Dim::Length),
    ("km", "km", Dim::Length),
    ("in", "[in_i]", Dim::Length),
    ("[in_i]", "[in_i]", Dim::Length),
    ("ft", "[ft_i]", Dim::Length),
    ("[ft_i]", "[ft_i]", Dim::Length),
    ("yd", "[yd_i]", Dim::Length),
    ("[yd_i]", "[yd_i]", Dim::Length),
    ("mi", "[mi_i]", Dim::Length),
    ("[mi_i]", "[mi_i]", Dim::Length),
    // Fractions and counts.
    ("%", "%", Dim::Percent),
    ("steps", "{steps}", Dim::Steps),
    ("{steps}", "{steps}", Dim::Steps),
    // Energy.
    ("kcal", "kcal", Dim::Energy),
    // Concentrations (blood glucose).
    ("mg/dL", "mg/dL", Dim::MassConcentration),
    ("mg/dl", "mg/dL", Dim::MassConcentration),
    ("mmol/L", "mmol/L", Dim::SubstanceConcentration),
    ("mmol/l", "mmol/L", Dim::SubstanceConcentration),
    // Body mass index.
    ("kg/m^2", "kg/m2", Dim::AreaDensity),
    ("kg/m2", "kg/m2", Dim::AreaDensity),
    // Durations (Open mHealth duration-unit-value: UCUM differs for sec, Mo and yr).
    ("ps", "ps", Dim::Duration),
    ("ns", "ns", Dim::Duration),
    ("us", "us", Dim::Duration),
    ("ms", "ms", Dim::Duration),
    ("sec", "s", Dim::Duration),
    ("s", "s", Dim::Duration),
    ("min", "min", Dim::Duration),
    ("h", "h", Dim::Duration),
    ("d", "d", Dim::Duration),
    ("wk", "wk", Dim::Duration),
    ("Mo", "mo", Dim::Duration),
    ("mo", "mo", Dim::Duration),
    ("yr", "a", Dim::Duration),
    ("a", "a", Dim::Duration),
    // Flow (supplemental oxygen).
    ("L/min", "L/min", Dim::Flow),
    ("mL/min", "mL/min", Dim::Flow),
];

/// The UCUM code and dimension of a unit as written; `None` for a unit not in the table.
pub(crate) fn lookup(unit: &str) -> Option<(&'static str, Dim)> {
    TABLE
        .iter()
        .find(|(written, _, _)| *written == unit)
        .map(|&(_, code, dim)| (code, dim))
}

/// The UCUM code of a duration unit as written (`sec` → `s`), for time arithmetic.
pub(crate) fn duration_code(unit: &str) -> Option<&'static str> {
    lookup(unit)
        .filter(|(_, dim)| *dim == Dim::Duration)
        .map(|(code, _)| code)
}

/// A quantity of `value` in `unit` as written: the display unit is `unit`, and the UCUM
/// system and code are set when the table knows it. The second item says what is wrong with
/// the unit (unknown, or not one of `expected`), for the caller's warning.
pub(crate) fn quantity(
    value: Option<Decimal>,
    unit: &str,
    expected: &[Dim],
) -> (Quantity, Option<String>) {
    let mut q = Quantity {
        value,
        unit: Some(unit.to_owned()),
        ..Quantity::default()
    };
    let problem = match lookup(unit) {
        None => Some("unit is not a known UCUM unit; kept as sent without a UCUM code".to_owned()),
        Some((code, dim)) => {
            q.system = Some(UCUM.to_owned());
            q.code = Some(code.to_owned());
            (!expected.is_empty() && !expected.contains(&dim)).then(|| {
                let names: Vec<&str> = expected.iter().map(|d| d.name()).collect();
                format!(
                    "unit is a {} unit, expected {}",
                    dim.name(),
                    names.join(" or ")
                )
            })
        }
    };
    (q, problem)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ucum(unit: &str) -> Option<&'static str> {
        lookup(unit).map(|(code, _)| code)
    }

    #[test]
    fn open_mhealth_symbols_map_to_ucum() {
        for (written, code) in [
            ("kg/m^2", "kg/m2"),
            ("beats/min", "/min"),
            ("breaths/min", "/min"),
            ("mmHg", "mm[Hg]"),
            ("lb", "[lb_av]"),
            ("C", "Cel"),
            ("F", "[degF]"),
            ("in", "[in_i]"),
            ("ft", "[ft_i]"),
            ("mi", "[mi_i]"),
            ("steps", "{steps}"),
            ("kcal", "kcal"),
            ("mg/dL", "mg/dL"),
            ("mmol/L", "mmol/L"),
            ("sec", "s"),
            ("Mo", "mo"),
            ("yr", "a"),
            ("h", "h"),
            ("min", "min"),
            ("%", "%"),
        ] {
            assert_eq!(ucum(written), Some(code), "{written}");
        }
    }

    #[test]
    fn every_ucum_code_maps_to_itself() {
        for &(_, code, dim) in TABLE {
            assert_eq!(lookup(code), Some((code, dim)), "{code}");
        }
    }

    #[test]
    fn unknown_and_wrong_kinds_are_reported() {
        let d = Decimal::parse("60").unwrap();
        let (q, problem) = quantity(Some(d.clone()), "beat/min", &[Dim::Rate]);
        assert_eq!(
            (q.unit.as_deref(), q.system, q.code),
            (Some("beat/min"), None, None)
        );
        assert!(problem.unwrap().contains("not a known UCUM unit"));
        let (q, problem) = quantity(Some(d.clone()), "km", &[Dim::Mass]);
        assert_eq!(q.code.as_deref(), Some("km"));
        assert_eq!(
            problem.as_deref(),
            Some("unit is a length unit, expected mass")
        );
        let (q, problem) = quantity(Some(d), "beats/min", &[Dim::Rate]);
        assert_eq!(
            (q.unit.as_deref(), q.system.as_deref(), q.code.as_deref()),
            (Some("beats/min"), Some(UCUM), Some("/min"))
        );
        assert_eq!(problem, None);
        assert_eq!(duration_code("sec"), Some("s"));
        assert_eq!(duration_code("kg"), None);
    }
}
