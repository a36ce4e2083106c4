//! HL7 v2.x ORU^R01 in ER7 (`x-application/hl7-v2+er7`, `application/hl7-v2`): lab results.
//!
//! A body is one message, several messages, or a batch (`FHS`/`BHS` … `BTS`/`FTS`). Each
//! `PID` of an ORU^R01 starts one [`Report`] (kind `lab`); the message's MSH-7 is its
//! `reported_at`, MSH-10 its `report_id`, MSH-3 (+ SFT-2) its `app`.
//!
//! Decisions:
//! - Patient: PID-3 chosen by [`crate::PatientIdRule`] (default: the `MR` identifier, else
//!   the first), PID-2 when PID-3 is empty; it must pass the server's patient id rule.
//! - OBR grouping: each OBR becomes a *panel* observation (code OBR-4, effective OBR-7
//!   [to OBR-8], issued OBR-22, status OBR-25, category `laboratory`, no value) whose
//!   `hasMember` lists the observations of its OBX segments, by the FHIR ids medgate serves
//!   them under. This is FHIR's own panel pattern; `derivedFrom` would claim the results
//!   were computed from the order. An OBX before any OBR stands alone.
//! - OBX: code OBX-3 (both triplets, systems mapped to URIs, see [`tables`]); value by
//!   OBX-2: `NM` → Quantity (written digits), `SN` → Quantity with comparator, Range
//!   (`a-b`) or Ratio (`a:b`, `a/b`), `ST`/`TX`/`FT` → string (repetitions are lines),
//!   `CE`/`CWE`/`CNE` → CodeableConcept, `DT`/`TS`/`DTM` → dateTime, `TM` → time; units
//!   OBX-6 → UCUM code when the system (or the alternate system) is `UCUM`, else the unit as
//!   text only (`ISO+`, `ANSI+` and local units are not UCUM and are not claimed to be);
//!   range OBX-7 → text, plus low/high when it reads `a-b`, `a - b`, `a_b` or `a to b`;
//!   flags OBX-8 → v3 interpretation; status OBX-11; effective OBX-14, else the OBR's.
//! - A time without offset stays local. NTE comments, ORC, SPM, PV1 and Z-segments are not
//!   part of the record and are skipped.
//! - Any field that cannot be read (a bad number, an unknown flag, a malformed time, a
//!   shifted field) refuses the body with its position, `OBX[3]-5`: the sender can correct
//!   and resend, and nothing half-understood is stored.

pub mod er7;
pub mod tables;

use std::sync::Arc;

use medgate_core::fhir::resource_id;
use medgate_core::model::{INTERPRETATION_SYSTEM, UCUM};
use medgate_core::{
    CodeableConcept, Coding, Comparator, DateTime, Decimal, Effective, Observation, Period,
    Quantity, Range, Ratio, Reference, ReferenceRange, Value,
};

use crate::{
    validate, IngestContext, IngestError, Issues, PatientIdRule, Report, ReportKind, Software,
    MAX_OBSERVATIONS, MAX_REPORTS,
};
use er7::{component, decode, repetitions, subcomponent, Message, Segment, Separators};

/// Reads an HL7 v2 body.
///
/// # Errors
/// See [`crate::parse`].
pub fn parse(body: &[u8], ctx: &IngestContext) -> Result<Vec<Report>, IngestError> {
    let parsed = er7::parse(body).map_err(|e| match e {
        er7::ParseError::Utf8(at) => IngestError::Malformed {
            format: "HL7 v2",
            at: format!("byte {at}"),
            detail: "the body is not valid UTF-8".into(),
        },
        er7::ParseError::Malformed(line, detail) => IngestError::Malformed {
            format: "HL7 v2",
            at: format!("line {line}"),
            detail,
        },
        er7::ParseError::TooLarge(what, limit) => IngestError::TooLarge { what, limit },
        er7::ParseError::Segments(bad) => {
            let mut issues = Issues::default();
            for (line, what) in bad {
                issues.push(format!("line {line}"), what);
            }
            issues.finish(()).unwrap_err()
        }
    })?;
    let mut issues = Issues::default();
    for (line, written, counted) in &parsed.batch_trailers {
        if !written.is_empty() && written.trim().parse::<usize>().ok() != Some(*counted) {
            issues.push(
                format!("line {line}"),
                format!("BTS-1 does not match the {counted} message(s) of the batch"),
            );
        }
    }
    let multi = parsed.messages.len() > 1;
    let mut reports = Vec::new();
    let mut observations = 0;
    for (m, message) in parsed.messages.iter().enumerate() {
        let prefix = if multi {
            format!("MSH[{}]/", m + 1)
        } else {
            String::new()
        };
        let mut mapper = Mapper {
            ctx,
            seps: message.separators,
            prefix,
            issues: &mut issues,
            counts: Vec::new(),
        };
        for report in mapper.message(message, reports.len()) {
            observations += report.observations.len();
            reports.push(report);
        }
        if reports.len() > MAX_REPORTS {
            return Err(IngestError::TooLarge {
                what: "reports in one body",
                limit: MAX_REPORTS,
            });
        }
        if observations > MAX_OBSERVATIONS {
            return Err(IngestError::TooLarge {
                what: "observations in one body",
                limit: MAX_OBSERVATIONS,
            });
        }
        if issues.is_full() {
            break;
        }
    }
    issues.finish(reports)
}

struct Mapper<'c, 'i> {
    ctx: &'c IngestContext,
    seps: Separators,
    prefix: String,
    issues: &'i mut Issues,
    /// How many segments of each name were seen so far in the message.
    counts: Vec<(&'static str, usize)>,
}

/// The report being built for one PID.
struct Group {
    report: Report,
    /// Index in `report.observations` of the current OBR's panel.
    panel: Option<usize>,
    /// The current OBR's effective time, issued time (defaults for its OBX).
    obr_effective: Option<Effective>,
    obr_issued: Option<DateTime>,
}

impl Mapper<'_, '_> {
    /// `OBX[3]-5`, prefixed by the message when the body has several.
    fn path(&self, seg: &str, n: usize, field: usize) -> String {
        format!("{}{seg}[{n}]-{field}", self.prefix)
    }

    fn ordinal(&mut self, name: &str) -> usize {
        let known: &'static str = match name {
            "PID" => "PID",
            "OBR" => "OBR",
            "OBX" => "OBX",
            "SFT" => "SFT",
            _ => "other",
        };
        match self.counts.iter_mut().find(|(n, _)| *n == known) {
            Some((_, c)) => {
                *c += 1;
                *c
            }
            None => {
                self.counts.push((known, 1));
                1
            }
        }
    }

    fn text(&self, raw: &str) -> String {
        decode(raw, &self.seps).trim().to_owned()
    }

    fn message(&mut self, message: &Message<'_>, first_report: usize) -> Vec<Report> {
        let msh = &message.segments[0];
        let kind = msh.field(9);
        let (ty, trigger) = (
            component(kind, &self.seps, 1),
            component(kind, &self.seps, 2),
        );
        if (ty, trigger) != ("ORU", "R01") {
            let shown: String = format!("{ty}^{trigger}")
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '^')
                .take(16)
                .collect();
            self.issues.push(
                self.path("MSH", 1, 9),
                format!("message type {shown} is not ORU^R01; only lab results are accepted"),
            );
            return Vec::new();
        }
        let version = msh.field(12);
        let version = component(version, &self.seps, 1);
        if !version.starts_with("2.") {
            self.issues.push(
                self.path("MSH", 1, 12),
                "version must be HL7 v2.x (2.1 to 2.9)",
            );
        }
        let reported_at = match self.time(msh.field(7)) {
            Ok(Some(t)) => Some(t),
            Ok(None) => {
                self.issues
                    .push(self.path("MSH", 1, 7), "message date/time is required");
                None
            }
            Err(m) => {
                self.issues.push(self.path("MSH", 1, 7), m);
                None
            }
        };
        let control_id = Some(self.text(msh.field(10))).filter(|s| !s.is_empty());
        let app_id = {
            let hd = msh.field(3);
            let ns = self.text(subcomponent(component(hd, &self.seps, 1), &self.seps, 1));
            let uid = self.text(component(hd, &self.seps, 2));
            Some(if ns.is_empty() { uid } else { ns }).filter(|s| !s.is_empty())
        };
        let software_version = message
            .segments
            .iter()
            .find(|s| s.name == "SFT")
            .map(|s| self.text(component(s.field(2), &self.seps, 1)))
            .filter(|v| !v.is_empty());
        let app = app_id.map(|id| Software {
            id,
            version: software_version,
        });
        let mut groups: Vec<Group> = Vec::new();
        let mut saw_pid = false;
        for seg in &message.segments[1..] {
            match seg.name {
                "PID" => {
                    saw_pid = true;
                    let k = self.ordinal("PID");
                    let patient = self.patient(seg, k);
                    groups.push(Group {
                        report: Report {
                            patient_id: patient.unwrap_or_else(|| Arc::from("")),
                            kind: ReportKind::Lab,
                            reported_at: reported_at.unwrap_or(self.ctx.received_at),
                            serious_adverse_event: false,
                            report_id: control_id.clone(),
                            app: app.clone(),
                            device: None,
                            questionnaire: None,
                            at: format!("{}PID[{k}]", self.prefix),
                            observations: Vec::new(),
                        },
                        panel: None,
                        obr_effective: None,
                        obr_issued: None,
                    });
                }
                "OBR" => {
                    let k = self.ordinal("OBR");
                    let report_index = first_report + groups.len().saturating_sub(1);
                    match groups.last_mut() {
                        Some(g) => {
                            let id = self
                                .ctx
                                .observation_id(report_index, g.report.observations.len());
                            let panel = self.obr(seg, k, id);
                            g.obr_effective = panel.effective;
                            g.obr_issued = panel.issued;
                            g.panel = Some(g.report.observations.len());
                            g.report.observations.push(panel);
                        }
                        None => self
                            .issues
                            .push(self.path("OBR", k, 1), "OBR before any PID: no patient"),
                    }
                }
                "OBX" => {
                    let k = self.ordinal("OBX");
                    let report_index = first_report + groups.len().saturating_sub(1);
                    let Some(g) = groups.last_mut() else {
                        self.issues
                            .push(self.path("OBX", k, 1), "OBX before any PID: no patient");
                        continue;
                    };
                    let id = self
                        .ctx
                        .observation_id(report_index, g.report.observations.len());
                    let mut o = self.obx(seg, k, id);
                    if o.effective.is_none() {
                        o.effective = g.obr_effective;
                    }
                    if o.issued.is_none() {
                        o.issued = g.obr_issued;
                    }
                    if let Some(p) = g.panel {
                        let link = Reference::to(format!("Observation/{}", resource_id(&o)));
                        g.report.observations[p].has_member.push(link);
                    }
                    g.report.observations.push(o);
                }
                _ => {}
            }
            if self.issues.is_full() {
                return Vec::new();
            }
        }
        if !saw_pid {
            self.issues.push(
                format!("{}PID", self.prefix),
                "the message has no PID segment",
            );
        }
        groups
            .into_iter()
            .map(|mut g| {
                let patient = g.report.patient_id.clone();
                for o in &mut g.report.observations {
                    o.patient_id = patient.clone();
                }
                g.report
            })
            .collect()
    }

    fn patient(&mut self, pid: &Segment<'_>, k: usize) -> Option<Arc<str>> {
        let chosen = choose_identifier(pid.field(3), &self.seps, &self.ctx.hl7_patient_id)
            .map(|id| self.text(id))
            .filter(|id| !id.is_empty());
        let (field, id) = match chosen {
            Some(id) => (3, id),
            None => {
                let external = self.text(component(pid.field(2), &self.seps, 1));
                if external.is_empty() {
                    self.issues.push(
                        self.path("PID", k, 3),
                        "no patient identifier (PID-3, or PID-2 in older messages)",
                    );
                    return None;
                }
                (2, external)
            }
        };
        match validate::patient_id(&id) {
            Ok(()) => Some(Arc::from(id)),
            Err(m) => {
                self.issues.push(self.path("PID", k, field), m);
                None
            }
        }
    }

    /// An HL7 date/time, `Ok(None)` when empty.
    fn time(&self, raw: &str) -> Result<Option<DateTime>, String> {
        let text = self.text(component(raw, &self.seps, 1));
        if text.is_empty() {
            return Ok(None);
        }
        DateTime::parse_hl7(&text).map(Some).map_err(|e| {
            format!("not an HL7 date/time (YYYY[MM[DD[HH[MM[SS[.S]]]]]][+/-ZZZZ]): {e}")
        })
    }

    fn field_time(
        &mut self,
        seg: &Segment<'_>,
        name: &str,
        k: usize,
        field: usize,
    ) -> Option<DateTime> {
        match self.time(seg.field(field)) {
            Ok(t) => t,
            Err(m) => {
                self.issues.push(self.path(name, k, field), m);
                None
            }
        }
    }

    /// A CE/CWE/CNE repetition as a concept: both triplets, and CWE-9 original text.
    fn concept(&self, raw: &str) -> CodeableConcept {
        let c = |n| self.text(component(raw, &self.seps, n));
        let mut concept = CodeableConcept::default();
        for (code, display, system) in [(c(1), c(2), c(3)), (c(4), c(5), c(6))] {
            if code.is_empty() && display.is_empty() {
                continue;
            }
            if code.is_empty() {
                concept.text.get_or_insert(display);
                continue;
            }
            concept.coding.push(Coding {
                system: tables::system_uri(&system),
                code: Some(code),
                display: Some(display).filter(|d| !d.is_empty()),
                mapped: false,
            });
        }
        let original = c(9);
        if !original.is_empty() {
            concept.text = Some(original);
        }
        concept
    }

    fn obr(&mut self, seg: &Segment<'_>, k: usize, id: String) -> Observation {
        let mut o = Observation::new(Arc::from(""), self.ctx.source.clone(), id);
        o.category = vec![CodeableConcept::category("laboratory")];
        o.code = self.concept(first_repetition(seg.field(4), &self.seps));
        if o.code.is_empty() {
            self.issues.push(
                self.path("OBR", k, 4),
                "universal service identifier (the panel code) is required",
            );
        }
        let start = self.field_time(seg, "OBR", k, 7);
        let end = self.field_time(seg, "OBR", k, 8);
        o.effective = match (start, end) {
            (Some(s), Some(e)) => Some(Effective::Period(Period {
                start: Some(s),
                end: Some(e),
            })),
            (Some(s), None) => Some(Effective::DateTime(s)),
            (None, Some(e)) => Some(Effective::Period(Period {
                start: None,
                end: Some(e),
            })),
            (None, None) => None,
        };
        o.issued = self.field_time(seg, "OBR", k, 22);
        let status = self.text(seg.field(25));
        if !status.is_empty() {
            o.status = tables::obr_status(&status);
            if o.status.is_none() {
                self.issues.push(
                    self.path("OBR", k, 25),
                    "result status is not a code of HL7 table 0123 (O, I, S, A, P, C, R, F, X, Y, Z)",
                );
            }
        }
        o
    }

    fn obx(&mut self, seg: &Segment<'_>, k: usize, id: String) -> Observation {
        let mut o = Observation::new(Arc::from(""), self.ctx.source.clone(), id);
        o.category = vec![CodeableConcept::category("laboratory")];
        o.code = self.concept(first_repetition(seg.field(3), &self.seps));
        if o.code.is_empty() {
            self.issues
                .push(self.path("OBX", k, 3), "observation identifier is required");
        }
        let status = self.text(seg.field(11));
        if !status.is_empty() {
            o.status = tables::obx_status(&status);
            if o.status.is_none() {
                self.issues.push(
                    self.path("OBX", k, 11),
                    "result status is not a code of HL7 table 0085 (C, D, F, I, N, O, P, R, S, U, W, X)",
                );
            }
        }
        let unit = self.unit(first_repetition(seg.field(6), &self.seps));
        o.value = self.value(seg, k, &unit);
        o.reference_range = self.range(seg.field(7), &unit).into_iter().collect();
        o.interpretation = self.flags(seg, k);
        if let Some(t) = self.field_time(seg, "OBX", k, 14) {
            o.effective = Some(Effective::DateTime(t));
        }
        o
    }

    /// OBX-6 as the unit part of a quantity.
    fn unit(&self, raw: &str) -> Quantity {
        let c = |n| self.text(component(raw, &self.seps, n));
        let (code, text, system) = (c(1), c(2), c(3));
        let (alt_code, alt_system) = (c(4), c(6));
        let display = Some(if text.is_empty() {
            code.clone()
        } else {
            text.clone()
        })
        .filter(|d| !d.is_empty());
        if system == "UCUM" && !code.is_empty() {
            return Quantity {
                unit: display,
                system: Some(UCUM.to_owned()),
                code: Some(code),
                ..Quantity::default()
            };
        }
        if alt_system == "UCUM" && !alt_code.is_empty() {
            return Quantity {
                unit: display,
                system: Some(UCUM.to_owned()),
                code: Some(alt_code),
                ..Quantity::default()
            };
        }
        Quantity {
            unit: Some(code).filter(|c| !c.is_empty()).or(display),
            ..Quantity::default()
        }
    }

    fn value(&mut self, seg: &Segment<'_>, k: usize, unit: &Quantity) -> Value {
        let kind = self.text(seg.field(2));
        let raw = seg.field(5);
        let at = self.path("OBX", k, 5);
        if raw.is_empty() {
            return Value::None;
        }
        if kind.is_empty() {
            self.issues.push(
                self.path("OBX", k, 2),
                "value type is required when OBX-5 holds a value",
            );
            return Value::None;
        }
        let reps: Vec<&str> = repetitions(raw, &self.seps).collect();
        let textual = matches!(kind.as_str(), "ST" | "TX" | "FT");
        if reps.len() > 1 && !textual {
            self.issues
                .push(at, "only text values (ST, TX, FT) may repeat");
            return Value::None;
        }
        let first = reps[0];
        let result = match kind.as_str() {
            "NM" => self.number(first).map(|v| Value::Quantity(with_value(unit, v, None))),
            "SN" => self.structured_numeric(first, unit),
            "ST" | "TX" | "FT" => {
                let text = reps
                    .iter()
                    .map(|r| decode(r, &self.seps).into_owned())
                    .collect::<Vec<_>>()
                    .join("\n");
                let text = text.trim_end().to_owned();
                Ok(if text.is_empty() {
                    Value::None
                } else {
                    Value::String(text)
                })
            }
            "CE" | "CWE" | "CNE" | "CF" => {
                let c = self.concept(first);
                if c.is_empty() {
                    Err("a coded value needs a code or a text".to_owned())
                } else {
                    Ok(Value::CodeableConcept(c))
                }
            }
            "DT" | "TS" | "DTM" => match self.time(first) {
                Ok(Some(t)) => Ok(Value::DateTime(t)),
                Ok(None) => Ok(Value::None),
                Err(m) => Err(m),
            },
            "TM" => time_of_day(&self.text(first)).map(Value::Time),
            other => Err(format!(
                "value type {} is not supported (NM, SN, ST, TX, FT, CE, CWE, CNE, DT, TS, DTM, TM are)",
                other.chars().filter(char::is_ascii_alphanumeric).take(4).collect::<String>()
            )),
        };
        match result {
            Ok(v) => v,
            Err(m) => {
                self.issues.push(at, m);
                Value::None
            }
        }
    }

    fn number(&self, raw: &str) -> Result<Decimal, String> {
        Decimal::parse_lenient(&self.text(raw)).ok_or_else(|| "not a number".to_owned())
    }

    /// SN: `comparator^num1^separator^num2`.
    fn structured_numeric(&self, raw: &str, unit: &Quantity) -> Result<Value, String> {
        let c = |n| self.text(component(raw, &self.seps, n));
        let (comp, n1, sep, n2) = (c(1), c(2), c(3), c(4));
        let first = self
            .number(&n1)
            .map_err(|_| "SN: the first number is missing or not a number".to_owned())?;
        match (comp.as_str(), sep.as_str(), n2.is_empty()) {
            ("" | "=", "", true) => Ok(Value::Quantity(with_value(unit, first, None))),
            (cmp, "", true) => match Comparator::parse(cmp) {
                Some(c) => Ok(Value::Quantity(with_value(unit, first, Some(c)))),
                None => Err("SN: the comparator must be >, <, >=, <= or =".into()),
            },
            ("" | "=", "-", false) => {
                let second = self.number(&n2)?;
                Ok(Value::Range(Range {
                    low: Some(with_value(unit, first, None)),
                    high: Some(with_value(unit, second, None)),
                }))
            }
            ("" | "=", ":" | "/", false) => {
                let second = self.number(&n2)?;
                Ok(Value::Ratio(Ratio {
                    numerator: Some(plain(first)),
                    denominator: Some(plain(second)),
                }))
            }
            ("" | "=", "+", true) => Ok(Value::String(format!("{}+", first.as_str()))),
            _ => Err("SN: this combination of comparator and separator is not supported".into()),
        }
    }

    /// OBX-7 as a reference range: always the text; low/high when it is a plain interval.
    fn range(&self, raw: &str, unit: &Quantity) -> Option<ReferenceRange> {
        let text = self.text(raw);
        if text.is_empty() {
            return None;
        }
        let bounds = [" to ", " - ", "_", "-"].iter().find_map(|sep| {
            let cut = text.get(1..)?.find(sep)? + 1;
            let low = Decimal::parse_lenient(&text[..cut])?;
            let high = Decimal::parse_lenient(&text[cut + sep.len()..])?;
            Some((low, high))
        });
        let (low, high) = match bounds {
            Some((l, h)) => (
                Some(with_value(unit, l, None)),
                Some(with_value(unit, h, None)),
            ),
            None => (None, None),
        };
        Some(ReferenceRange {
            low,
            high,
            kind: None,
            text: Some(text),
        })
    }

    fn flags(&mut self, seg: &Segment<'_>, k: usize) -> Vec<CodeableConcept> {
        let mut out = Vec::new();
        for rep in repetitions(seg.field(8), &self.seps) {
            let code = self.text(component(rep, &self.seps, 1));
            if code.is_empty() {
                continue;
            }
            match tables::interpretation(&code) {
                Ok(Some((c, d))) => {
                    out.push(CodeableConcept::coded(INTERPRETATION_SYSTEM, c, Some(d)))
                }
                Ok(None) => {}
                Err(()) => {
                    self.issues.push(
                        self.path("OBX", k, 8),
                        format!(
                            "abnormal flag is not a code of HL7 table 0078 ({}, …)",
                            tables::FLAG_EXAMPLES
                        ),
                    );
                    break;
                }
            }
        }
        out
    }
}

fn first_repetition<'a>(raw: &'a str, seps: &Separators) -> &'a str {
    repetitions(raw, seps).next().unwrap_or("")
}

/// A quantity of `value` in `unit`'s unit.
fn with_value(unit: &Quantity, value: Decimal, comparator: Option<Comparator>) -> Quantity {
    Quantity {
        value: Some(value),
        comparator,
        ..unit.clone()
    }
}

fn plain(value: Decimal) -> Quantity {
    Quantity {
        value: Some(value),
        ..Quantity::default()
    }
}

/// HL7 TM `HH[MM[SS[.S…]]]` as FHIR time `hh:mm:ss[.s…]`.
fn time_of_day(text: &str) -> Result<String, String> {
    let (clock, fraction) = text.split_once('.').unwrap_or((text, ""));
    let bad = || "not an HL7 time (HH[MM[SS[.S]]])".to_owned();
    if !matches!(clock.len(), 2 | 4 | 6) || !clock.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    if !fraction.bytes().all(|b| b.is_ascii_digit()) || (text.contains('.') && fraction.is_empty())
    {
        return Err(bad());
    }
    let part = |i: usize| clock.get(i..i + 2).unwrap_or("00");
    let (h, m, s) = (part(0), part(2), part(4));
    let ok = h < "24" && m < "60" && s < "60";
    if !ok {
        return Err(bad());
    }
    Ok(if fraction.is_empty() {
        format!("{h}:{m}:{s}")
    } else {
        format!("{h}:{m}:{s}.{fraction}")
    })
}

/// The PID-3 repetition `rule` picks: the CX-1 of the chosen repetition.
fn choose_identifier<'a>(raw: &'a str, seps: &Separators, rule: &PatientIdRule) -> Option<&'a str> {
    let reps: Vec<&str> = repetitions(raw, seps)
        .filter(|r| !component(r, seps, 1).trim().is_empty())
        .collect();
    let type_of = |r: &str| component(r, seps, 5).trim().to_owned();
    let authority_matches = |r: &str, want: &str| {
        let hd = component(r, seps, 4);
        subcomponent(hd, seps, 1).trim() == want || subcomponent(hd, seps, 2).trim() == want
    };
    let chosen = if rule.type_code.is_some() || rule.assigning_authority.is_some() {
        reps.iter().find(|r| {
            rule.type_code.as_deref().is_none_or(|t| type_of(r) == t)
                && rule
                    .assigning_authority
                    .as_deref()
                    .is_none_or(|a| authority_matches(r, a))
        })
    } else {
        reps.iter().find(|r| type_of(r) == "MR").or(reps.first())
    };
    chosen.map(|r| component(r, seps, 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hl7_times_of_day() {
        assert_eq!(time_of_day("0930").unwrap(), "09:30:00");
        assert_eq!(time_of_day("093015.25").unwrap(), "09:30:15.25");
        assert!(time_of_day("2560").is_err());
        assert!(time_of_day("9").is_err());
    }

    #[test]
    fn patient_identifier_rule() {
        let seps = Separators::default();
        let pid3 = "444^^^&2.16.840.1.113883.4.1^SS~363^^^MPI&2.16.1&ISO^MR";
        assert_eq!(
            choose_identifier(pid3, &seps, &PatientIdRule::default()),
            Some("363")
        );
        let ss = PatientIdRule {
            type_code: Some("SS".into()),
            assigning_authority: None,
        };
        assert_eq!(choose_identifier(pid3, &seps, &ss), Some("444"));
        let mpi = PatientIdRule {
            type_code: None,
            assigning_authority: Some("MPI".into()),
        };
        assert_eq!(choose_identifier(pid3, &seps, &mpi), Some("363"));
        assert_eq!(
            choose_identifier("555-44-4444", &seps, &PatientIdRule::default()),
            Some("555-44-4444")
        );
        assert_eq!(
            choose_identifier("", &seps, &PatientIdRule::default()),
            None
        );
    }
}
