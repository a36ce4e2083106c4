//! The synthetic workload: bundles, data points and the rows they normalize to.

use std::fmt::Write as _;

use std::sync::Arc;

use medgate_core::{
    CodeableConcept, Coding, DateTime, Decimal, Effective, Observation, Period, Quantity,
    Reference, Status, Value,
};

const MASK32: u64 = 0xFFFF_FFFF;
/// 2024-01-01T00:00:00+08:00 (a Beijing-time HIS); offsets are kept in every output.
const BASE_EPOCH: i64 = 1_704_038_400;
const TZ_OFFSET_S: i32 = 8 * 3600;

const LOINC: &str = "http://loinc.org";
const UCUM: &str = "http://unitsofmeasure.org";
const CAT_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/observation-category";

/// One row of `gen_fhir.py`'s `CODES` table.
struct Code {
    code: &'static str,
    display: &'static str,
    category: &'static str,
    /// UCUM code (`valueQuantity.code`, and the normalized row's unit).
    ucum: &'static str,
    /// Human unit text (`valueQuantity.unit`).
    unit: &'static str,
    /// Value range in units of `10^-decimals`, inclusive.
    lo: u64,
    hi: u64,
    decimals: u32,
}

/// The eight LOINC codes of the workload, in the generator's order (the order matters: the
/// random draw indexes into it).
const CODES: [Code; 8] = [
    Code {
        code: "8867-4",
        display: "Heart rate",
        category: "vital-signs",
        ucum: "/min",
        unit: "/min",
        lo: 45,
        hi: 140,
        decimals: 0,
    },
    Code {
        code: "8480-6",
        display: "Systolic blood pressure",
        category: "vital-signs",
        ucum: "mm[Hg]",
        unit: "mmHg",
        lo: 90,
        hi: 180,
        decimals: 0,
    },
    Code {
        code: "8462-4",
        display: "Diastolic blood pressure",
        category: "vital-signs",
        ucum: "mm[Hg]",
        unit: "mmHg",
        lo: 50,
        hi: 110,
        decimals: 0,
    },
    Code {
        code: "2339-0",
        display: "Glucose [Mass/volume] in Blood",
        category: "laboratory",
        ucum: "mg/dL",
        unit: "mg/dL",
        lo: 600,
        hi: 2500,
        decimals: 1,
    },
    Code {
        code: "29463-7",
        display: "Body weight",
        category: "vital-signs",
        ucum: "kg",
        unit: "kg",
        lo: 300,
        hi: 1200,
        decimals: 1,
    },
    Code {
        code: "8310-5",
        display: "Body temperature",
        category: "vital-signs",
        ucum: "Cel",
        unit: "Cel",
        lo: 355,
        hi: 400,
        decimals: 1,
    },
    Code {
        code: "59408-5",
        display: "Oxygen saturation in Arterial blood by Pulse oximetry",
        category: "vital-signs",
        ucum: "%",
        unit: "%",
        lo: 88,
        hi: 100,
        decimals: 0,
    },
    Code {
        code: "9279-1",
        display: "Respiratory rate",
        category: "vital-signs",
        ucum: "/min",
        unit: "/min",
        lo: 10,
        hi: 30,
        decimals: 0,
    },
];

fn category_display(category: &str) -> &'static str {
    if category == "laboratory" {
        "Laboratory"
    } else {
        "Vital Signs"
    }
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The id of the patient with 0-based `index`: `P000001` for 0.
pub fn patient_id(index: u32) -> String {
    pid_of(u64::from(index))
}

/// The 0-based index of a patient id of the form `P` + six digits (`P000001` → 0).
pub fn parse_patient_id(id: &str) -> Option<u32> {
    let digits = id.strip_prefix('P')?;
    if digits.len() != 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u32>().ok()?.checked_sub(1)
}

/// A deterministic synthetic workload: `patients` patients with `observations` each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    /// The generator's seed (42 in the benchmarks).
    pub seed: u64,
    /// Number of patients, `P000001` upwards.
    pub patients: u32,
    /// Observations per patient.
    pub observations: u32,
    /// Base URL written into bundle links and `fullUrl`s, verbatim as `gen_fhir.py` does
    /// (so it must not contain `&`, `<` or `"`).
    pub base_url: String,
}

impl Default for Workload {
    /// The benchmark workload: seed 42, 1000 patients, 100 observations each.
    fn default() -> Self {
        Workload {
            seed: 42,
            patients: 1000,
            observations: 100,
            base_url: "http://his.example.org/fhir".to_owned(),
        }
    }
}

/// One drawn HIS observation, before formatting.
struct Drawn {
    code: &'static Code,
    value: String,
    effective: String,
}

/// Observation `j` of patient `p` with `k` observations per patient (`gen_fhir.py`
/// `observation()`). Python's integers are unbounded, but `splitmix64` masks its input to 64
/// bits first, so wrapping `u64` arithmetic yields the same draw for every input.
fn draw(seed: u64, k: u64, p: u64, j: u32) -> Drawn {
    let n = p.wrapping_mul(k).wrapping_add(u64::from(j));
    let r = splitmix64(((seed & MASK32) << 32) ^ n);
    // The remainders below are < 8 and < 3600: the casts cannot truncate.
    let code = &CODES[(r % CODES.len() as u64) as usize];
    let vint = code.lo + ((r >> 16) % (code.hi - code.lo + 1));
    let t = BASE_EPOCH + i64::from(j) * 21_600 + ((r >> 40) % 3600) as i64;
    Drawn {
        code,
        value: fixed(vint, code.decimals),
        effective: local_time(t),
    }
}

/// `P` + the 1-based index with at least six digits; `u64` so `rows` can run past `u32`.
fn pid_of(p: u64) -> String {
    format!("P{:06}", u128::from(p) + 1)
}

fn obs_id(pid: &str, j: u32) -> String {
    format!("{pid}-obs-{:05}", u64::from(j) + 1)
}

/// The observation the HIS parser must produce from observation `j` of patient `p`.
fn his_row(seed: u64, k: u64, p: u64, j: u32) -> Observation {
    let d = draw(seed, k, p, j);
    let pid = pid_of(p);
    let c = d.code;
    let mut o = Observation::new(Arc::from(pid.as_str()), Arc::from("his"), obs_id(&pid, j));
    o.status = Some(Status::Final);
    o.category = vec![CodeableConcept {
        coding: vec![Coding::new(
            CAT_SYSTEM,
            c.category,
            Some(category_display(c.category)),
        )],
        text: None,
    }];
    o.code = CodeableConcept {
        coding: vec![Coding::new(LOINC, c.code, Some(c.display))],
        text: Some(c.display.to_owned()),
    };
    o.effective = date_time(&d.effective).map(Effective::DateTime);
    o.value = Value::Quantity(Quantity {
        value: Decimal::parse(&d.value),
        comparator: None,
        unit: Some(c.unit.to_owned()),
        system: Some(UCUM.to_owned()),
        code: Some(c.ucum.to_owned()),
    });
    o
}

fn date_time(text: &str) -> Option<DateTime> {
    DateTime::parse(text).ok()
}

/// Bytes reserved up front per bundle entry / data point; capped so a huge (mis)configured
/// `observations` grows the buffer on demand instead of failing one giant allocation.
const ENTRY_BYTES: usize = 950;
const POINT_BYTES: usize = 420;
const MAX_RESERVED_ITEMS: usize = 10_000;

fn reserve(items: u32, per_item: usize) -> usize {
    1024 + per_item * (items as usize).min(MAX_RESERVED_ITEMS)
}

impl Workload {
    /// The index of `id` if it is one of this workload's patients.
    pub fn contains(&self, id: &str) -> Option<u32> {
        parse_patient_id(id).filter(|&i| i < self.patients)
    }

    /// The normalized row a gateway must produce from observation `j` of [`Self::fhir_bundle`].
    pub fn observation(&self, index: u32, j: u32) -> Observation {
        his_row(self.seed, u64::from(self.observations), u64::from(index), j)
    }

    /// The first `n` HIS rows in patient-major order, generated lazily (may run past
    /// `patients`: row `i` is observation `i % observations` of patient `i / observations`).
    /// Empty when `observations` is 0. The iterator owns what it needs, so it outlives `self`.
    pub fn rows(&self, n: u64) -> impl Iterator<Item = Observation> {
        let (seed, k) = (self.seed, u64::from(self.observations));
        let n = if k == 0 { 0 } else { n };
        // `i % k < k <= u32::MAX`, so the cast cannot truncate.
        (0..n).map(move |i| his_row(seed, k, i / k, (i % k) as u32))
    }

    /// The FHIR R4 XML searchset bundle of patient `index`, as `gen_fhir.py` writes it.
    pub fn fhir_bundle(&self, index: u32) -> String {
        let pid = patient_id(index);
        let base = &self.base_url;
        let mut out = String::with_capacity(reserve(self.observations, ENTRY_BYTES));
        // `write!` into a `String` cannot fail; here and below the `fmt::Result` is moot.
        let _ = write!(
            out,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Bundle xmlns=\"http://hl7.org/fhir\">\n  \
             <id value=\"searchset-{pid}\"/>\n  <meta><lastUpdated value=\"2024-03-01T00:00:00+08:00\"/></meta>\n  \
             <type value=\"searchset\"/>\n  <total value=\"{k}\"/>\n  \
             <link><relation value=\"self\"/><url value=\"{base}/Observation?patient={pid}\"/></link>\n",
            k = self.observations
        );
        for j in 0..self.observations {
            self.write_entry(&mut out, &pid, index, j);
        }
        out.push_str("</Bundle>\n");
        out
    }

    fn write_entry(&self, out: &mut String, pid: &str, index: u32, j: u32) {
        let d = draw(self.seed, u64::from(self.observations), u64::from(index), j);
        let c = d.code;
        let id = obs_id(pid, j);
        let display = quoteattr(c.display);
        let _ = write!(
            out,
            "  <entry>\n    <fullUrl value=\"{base}/Observation/{id}\"/>\n    <resource>\n      <Observation>\n        \
             <id value=\"{id}\"/>\n        <status value=\"final\"/>\n        \
             <category><coding><system value=\"{CAT_SYSTEM}\"/><code value=\"{cat}\"/><display value=\"{catd}\"/></coding></category>\n        \
             <code><coding><system value=\"{LOINC}\"/><code value=\"{code}\"/><display value={display}/></coding><text value={display}/></code>\n        \
             <subject><reference value=\"Patient/{pid}\"/></subject>\n        \
             <effectiveDateTime value=\"{eff}\"/>\n        \
             <valueQuantity><value value=\"{value}\"/><unit value=\"{unit}\"/><system value=\"{UCUM}\"/><code value=\"{ucum}\"/></valueQuantity>\n      \
             </Observation>\n    </resource>\n    <search><mode value=\"match\"/></search>\n  </entry>\n",
            base = self.base_url,
            cat = c.category,
            catd = category_display(c.category),
            code = c.code,
            eff = d.effective,
            value = d.value,
            unit = c.unit,
            ucum = c.ucum,
        );
    }

    fn omh_draw(&self, index: u32, j: u32) -> u64 {
        let k = u64::from(self.observations);
        splitmix64(
            ((self.seed.wrapping_add(1) & MASK32) << 32) ^ (u64::from(index) * k + u64::from(j)),
        )
    }

    /// The Open mHealth data points of patient `index` (alternating heart-rate 1.0 and
    /// step-count 2.0), as compact JSON exactly as `gen_fhir.py --omh` writes it.
    pub fn omh_json(&self, index: u32) -> String {
        let pid = patient_id(index);
        let mut out = String::with_capacity(reserve(self.observations, POINT_BYTES));
        out.push('[');
        for j in 0..self.observations {
            if j > 0 {
                out.push(',');
            }
            let r = self.omh_draw(index, j);
            let t = BASE_EPOCH + i64::from(j) * 900;
            let start = local_time(t);
            let _ = write!(
                out,
                "{{\"header\":{{\"id\":\"{pid}-omh-{n:05}\",\"creation_date_time\":\"{start}\",\
                 \"acquisition_provenance\":{{\"source_name\":\"SyntheticBand\",\"modality\":\"sensed\"}},\
                 \"user_id\":\"{pid}\",\"schema_id\":{{\"namespace\":\"omh\",",
                n = u64::from(j) + 1
            );
            if j.is_multiple_of(2) {
                let _ = write!(
                    out,
                    "\"name\":\"heart-rate\",\"version\":\"1.0\"}}}},\"body\":{{\"heart_rate\":\
                     {{\"value\":{v},\"unit\":\"beats/min\"}},\"effective_time_frame\":{{\"date_time\":\"{start}\"}}}}}}",
                    v = 50 + r % 90
                );
            } else {
                let end = local_time(t + 900);
                let _ = write!(
                    out,
                    "\"name\":\"step-count\",\"version\":\"2.0\"}}}},\"body\":{{\"step_count\":\
                     {{\"value\":{v},\"unit\":\"steps\"}},\"effective_time_frame\":{{\"time_interval\":\
                     {{\"start_date_time\":\"{start}\",\"end_date_time\":\"{end}\"}}}}}}}}",
                    v = r % 2000
                );
            }
        }
        out.push(']');
        out
    }

    /// The observation the Open mHealth parser must produce from data point `j` of
    /// [`Self::omh_json`].
    pub fn wearable_observation(&self, index: u32, j: u32) -> Observation {
        let pid = patient_id(index);
        let r = self.omh_draw(index, j);
        let t = BASE_EPOCH + i64::from(j) * 900;
        let start = date_time(&local_time(t));
        let id = format!("{pid}-omh-{:05}", u64::from(j) + 1);
        let mut o = Observation::new(Arc::from(pid.as_str()), Arc::from("wearable"), id);
        let (category, code, display, unit, ucum, value) = if j.is_multiple_of(2) {
            (
                "vital-signs",
                "8867-4",
                "Heart rate",
                "beats/min",
                "/min",
                50 + r % 90,
            )
        } else {
            (
                "activity",
                "55423-8",
                "Number of steps in unspecified time Pedometer",
                "steps",
                "{steps}",
                r % 2000,
            )
        };
        o.category = vec![CodeableConcept::category(category)];
        o.code = CodeableConcept::coded(LOINC, code, Some(display));
        o.value = Value::Quantity(Quantity {
            unit: Some(unit.to_owned()),
            ..Quantity::ucum(Decimal::from_i64(value as i64), ucum)
        });
        o.effective = if j.is_multiple_of(2) {
            start.map(Effective::DateTime)
        } else {
            Some(Effective::Period(Period {
                start,
                end: date_time(&local_time(t + 900)),
            }))
        };
        o.issued = start;
        o.device = Some(Reference {
            reference: None,
            display: Some("SyntheticBand".to_owned()),
        });
        o
    }
}

/// `vint / 10^decimals` written with exactly `decimals` fraction digits (`fmt_value` "fixed").
fn fixed(vint: u64, decimals: u32) -> String {
    if decimals == 0 {
        return vint.to_string();
    }
    let scale = 10u64.pow(decimals);
    format!(
        "{}.{:0width$}",
        vint / scale,
        vint % scale,
        width = decimals as usize
    )
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SS+08:00` (Python's `isoformat` in the +08:00 zone).
/// Beyond jiff's range (years -9999..=9999) the time saturates at the range's end, where
/// Python would raise.
fn local_time(t: i64) -> String {
    let ts = jiff::Timestamp::from_second(t).unwrap_or(if t < 0 {
        jiff::Timestamp::MIN
    } else {
        jiff::Timestamp::MAX
    });
    let offset = jiff::tz::Offset::from_seconds(TZ_OFFSET_S).unwrap_or(jiff::tz::Offset::UTC);
    let at = offset.to_datetime(ts);
    DateTime::from_parts(at, 0, medgate_core::Zone::Offset(offset)).to_string()
}

/// Python's `xml.sax.saxutils.quoteattr`: escaped and quoted for an attribute.
fn quoteattr(value: &str) -> String {
    let escaped = value
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\n', "&#10;")
        .replace('\r', "&#13;")
        .replace('\t', "&#9;");
    if escaped.contains('"') {
        if escaped.contains('\'') {
            format!("\"{}\"", escaped.replace('"', "&quot;"))
        } else {
            format!("'{escaped}'")
        }
    } else {
        format!("\"{escaped}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        assert_eq!(patient_id(0), "P000001");
        assert_eq!(parse_patient_id("P000001"), Some(0));
        assert_eq!(parse_patient_id("P001000"), Some(999));
        for bad in ["P000000", "P00001", "X000001", "P00000a", "P0000001", ""] {
            assert_eq!(parse_patient_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn times_are_local_with_offset() {
        assert_eq!(local_time(BASE_EPOCH), "2024-01-01T00:00:00+08:00");
        assert_eq!(
            local_time(BASE_EPOCH + 59 * 86_400 + 3661),
            "2024-02-29T01:01:01+08:00"
        );
    }

    #[test]
    fn quoting_follows_python() {
        assert_eq!(quoteattr("a<b"), "\"a&lt;b\"");
        assert_eq!(quoteattr("say \"x\""), "'say \"x\"'");
        assert_eq!(quoteattr("'\""), "\"'&quot;\"");
    }

    #[test]
    fn splitmix_matches_python() {
        // gen_fhir.splitmix64(0) and splitmix64(2**64 - 1).
        assert_eq!(splitmix64(0), 16_294_208_416_658_607_535);
        assert_eq!(splitmix64(u64::MAX), 16_490_336_266_968_443_936);
    }

    #[test]
    fn times_cover_epoch_negative_and_far_dates() {
        assert_eq!(local_time(0), "1970-01-01T08:00:00+08:00");
        assert_eq!(local_time(-86_400 * 365), "1969-01-01T08:00:00+08:00");
        assert_eq!(local_time(253_402_000_000), "9999-12-28T20:26:40+08:00");
        // Near and past jiff's range Python raises; the port saturates instead of panicking.
        assert!(local_time(253_402_271_999).starts_with("9999-12-31T"));
        assert!(local_time(i64::MAX / 2).ends_with("+08:00"));
    }

    #[test]
    fn quoting_escapes_markup_and_whitespace() {
        assert_eq!(quoteattr("a&b>c"), "\"a&amp;b&gt;c\"");
        assert_eq!(quoteattr("x\ny\tz\r"), "\"x&#10;y&#9;z&#13;\"");
        assert_eq!(quoteattr("it's"), "\"it's\"");
    }

    #[test]
    fn draws_match_python_for_a_far_patient() {
        // gen_fhir.observation(42, 5000, 3, 100)
        let o = Workload::default().observation(5000, 3);
        assert_eq!(&*o.patient_id, "P005001");
        assert_eq!(o.id, "P005001-obs-00004");
        let row = medgate_core::rows(&o).next().unwrap();
        assert_eq!(row.cells[5].as_text(), "59408-5");
        assert_eq!(row.cells[7].as_text(), "93");
        assert_eq!(row.cells[8].as_text(), "%");
        assert_eq!(row.cells[9].as_text(), "2024-01-01T18:35:06+08:00");
    }

    #[test]
    fn extreme_indices_do_not_panic() {
        let w = Workload {
            observations: u32::MAX,
            ..Workload::default()
        };
        let o = w.observation(u32::MAX, u32::MAX);
        assert_eq!(&*o.patient_id, "P4294967296");
        assert_eq!(o.id, "P4294967296-obs-4294967296");
        let wear = w.wearable_observation(u32::MAX, u32::MAX);
        assert_eq!(wear.id, "P4294967296-omh-4294967296");
        assert_eq!(pid_of(u64::MAX), "P18446744073709551616");
        assert_eq!(
            reserve(u32::MAX, ENTRY_BYTES),
            1024 + ENTRY_BYTES * MAX_RESERVED_ITEMS
        );
    }

    #[test]
    fn fixed_keeps_trailing_zeros() {
        assert_eq!(fixed(360, 1), "36.0");
        assert_eq!(fixed(72, 0), "72");
        assert_eq!(fixed(605, 2), "6.05");
    }
}
