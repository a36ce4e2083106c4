//! The record: a typed, lossless subset of the FHIR R4 Observation.
//!
//! Every source fills what its format says (FHIR, CDA, Open mHealth, config mappings, pushed
//! reports) and nothing it does not: an absent status stays `None`, a date stays a date, a
//! comparator stays a comparator, a number keeps its written digits. Output formats project
//! from here: FHIR JSON ([`crate::fhir`]) keeps everything, the tabular [`Row`](crate::Row)
//! (CSV, Excel, the flat JSON API) flattens it into fixed columns.
//!
//! Every type (de)serializes with serde in medgate's own lossless JSON form (used by the
//! store); FHIR JSON is a separate projection.
//!
//! `patient_id` and `source` are shared, reference-counted strings: every row of a payload
//! carries the same two, and cloning them must not allocate.

use std::sync::Arc;

use crate::{DateTime, Decimal};

/// FHIR code system of `dataAbsentReason`.
pub const DATA_ABSENT_REASON_SYSTEM: &str =
    "http://terminology.hl7.org/CodeSystem/data-absent-reason";
/// FHIR code system of observation interpretations (H, L, N, A, …).
pub const INTERPRETATION_SYSTEM: &str =
    "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation";
/// FHIR code system of observation categories (vital-signs, laboratory, survey, …).
pub const CATEGORY_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/observation-category";
/// LOINC.
pub const LOINC: &str = "http://loinc.org";
/// UCUM.
pub const UCUM: &str = "http://unitsofmeasure.org";

/// One clinical observation (a panel keeps its components; the tabular projection gives
/// each component its own row).
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Observation {
    /// The patient id as the partner asked for it (FHIR `subject`; never logged).
    pub patient_id: Arc<str>,
    /// Name of the configured source this came from.
    pub source: Arc<str>,
    /// The upstream's id of the observation (its `id`, CDA `id/@root` + `/` + `@extension`,
    /// the data point id …), or a position-based id when the upstream gives none.
    pub id: String,
    /// `registered | preliminary | final | amended | …`; `None` when the upstream does not say.
    pub status: Option<Status>,
    /// Categories (`vital-signs`, `laboratory`, `survey` …) with their code systems.
    pub category: Vec<CodeableConcept>,
    /// What was observed: every coding the upstream gave (plus mapped ones) and the text.
    pub code: CodeableConcept,
    /// When it was true: a date-time (any precision) or a period.
    pub effective: Option<Effective>,
    /// When it was made available (FHIR `issued`, an instant).
    pub issued: Option<DateTime>,
    /// The result.
    pub value: Value,
    /// Why there is no value (FHIR `dataAbsentReason`); set when a value could not be read.
    pub data_absent_reason: Option<CodeableConcept>,
    /// High, low, normal, abnormal … (FHIR `interpretation`).
    pub interpretation: Vec<CodeableConcept>,
    /// Normal ranges the result is judged against.
    pub reference_range: Vec<ReferenceRange>,
    /// The parts of a panel (blood pressure's systolic and diastolic, Apgar's scores).
    pub components: Vec<Component>,
    /// Observations this one groups (FHIR `hasMember`).
    pub has_member: Vec<Reference>,
    /// Observations this one was derived from (FHIR `derivedFrom`).
    pub derived_from: Vec<Reference>,
    /// The device that measured it.
    pub device: Option<Reference>,
    /// What could not be read without failing the whole payload, with where it was.
    pub warnings: Vec<Warning>,
}

impl Observation {
    /// An empty observation of `patient_id` from `source` with `id`; fill in the rest.
    pub fn new(patient_id: Arc<str>, source: Arc<str>, id: impl Into<String>) -> Self {
        Observation {
            patient_id,
            source,
            id: id.into(),
            ..Observation::default()
        }
    }

    /// Marks the value as unreadable: no value, `dataAbsentReason = error`, and a warning.
    pub fn value_unreadable(&mut self, at: impl Into<String>, message: impl Into<String>) {
        self.value = Value::None;
        self.data_absent_reason = Some(CodeableConcept::data_absent("error", "Error"));
        self.warnings.push(Warning::new(at, message));
    }

    /// Every coded concept of this observation, its components' included, for transforms
    /// such as code maps.
    pub fn concepts_mut(&mut self) -> impl Iterator<Item = &mut CodeableConcept> {
        std::iter::once(&mut self.code).chain(self.components.iter_mut().map(|c| &mut c.code))
    }

    /// Every date-time in this observation, for transforms such as time zones and date
    /// shifting.
    pub fn date_times_mut(&mut self) -> impl Iterator<Item = &mut DateTime> {
        let effective = self
            .effective
            .iter_mut()
            .flat_map(Effective::date_times_mut);
        let value = self.value.date_times_mut();
        let components = self
            .components
            .iter_mut()
            .flat_map(|c| c.value.date_times_mut());
        effective
            .chain(self.issued.iter_mut())
            .chain(value)
            .chain(components)
    }
}

/// FHIR `ObservationStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Known to exist, no result yet.
    Registered,
    /// Verified early results.
    Preliminary,
    /// Complete and verified.
    Final,
    /// Changed after being final.
    Amended,
    /// Corrected after being final.
    Corrected,
    /// Cancelled before a result.
    Cancelled,
    /// Entered in error.
    EnteredInError,
    /// The source does not know.
    Unknown,
}

impl Status {
    /// The FHIR code.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Registered => "registered",
            Status::Preliminary => "preliminary",
            Status::Final => "final",
            Status::Amended => "amended",
            Status::Corrected => "corrected",
            Status::Cancelled => "cancelled",
            Status::EnteredInError => "entered-in-error",
            Status::Unknown => "unknown",
        }
    }

    /// The status for a FHIR code; `None` for anything else.
    pub fn from_fhir(code: &str) -> Option<Status> {
        Some(match code {
            "registered" => Status::Registered,
            "preliminary" => Status::Preliminary,
            "final" => Status::Final,
            "amended" => Status::Amended,
            "corrected" => Status::Corrected,
            "cancelled" => Status::Cancelled,
            "entered-in-error" => Status::EnteredInError,
            "unknown" => Status::Unknown,
            _ => return None,
        })
    }
}

/// A code in a code system (FHIR `Coding`).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Coding {
    /// The code system URI, e.g. `http://loinc.org` (CDA OIDs are mapped or `urn:oid:…`).
    pub system: Option<String>,
    /// The code.
    pub code: Option<String>,
    /// The code system's display text.
    pub display: Option<String>,
    /// Added by a configured code map (the upstream's own coding is kept beside it).
    pub mapped: bool,
}

impl Coding {
    /// A coding with system, code and display.
    pub fn new(system: &str, code: &str, display: Option<&str>) -> Coding {
        Coding {
            system: Some(system.to_owned()),
            code: Some(code.to_owned()),
            display: display.map(str::to_owned),
            mapped: false,
        }
    }

    /// Neither system, code nor display.
    pub fn is_empty(&self) -> bool {
        self.system.is_none() && self.code.is_none() && self.display.is_none()
    }
}

/// Codings plus free text (FHIR `CodeableConcept`).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct CodeableConcept {
    /// Codings in upstream order; a mapped coding is inserted first.
    pub coding: Vec<Coding>,
    /// The upstream's text for the concept.
    pub text: Option<String>,
}

impl CodeableConcept {
    /// One coding.
    pub fn coded(system: &str, code: &str, display: Option<&str>) -> CodeableConcept {
        CodeableConcept {
            coding: vec![Coding::new(system, code, display)],
            text: None,
        }
    }

    /// Text only.
    pub fn text(text: impl Into<String>) -> CodeableConcept {
        CodeableConcept {
            coding: Vec::new(),
            text: Some(text.into()),
        }
    }

    /// A FHIR `data-absent-reason` code.
    pub fn data_absent(code: &str, display: &str) -> CodeableConcept {
        CodeableConcept::coded(DATA_ABSENT_REASON_SYSTEM, code, Some(display))
    }

    /// An observation category from FHIR's category code system.
    pub fn category(code: &str) -> CodeableConcept {
        let display = match code {
            "vital-signs" => "Vital Signs",
            "laboratory" => "Laboratory",
            "survey" => "Survey",
            "activity" => "Activity",
            "social-history" => "Social History",
            "imaging" => "Imaging",
            "procedure" => "Procedure",
            "exam" => "Exam",
            "therapy" => "Therapy",
            _ => code,
        };
        CodeableConcept::coded(CATEGORY_SYSTEM, code, Some(display))
    }

    /// No coding and no text.
    pub fn is_empty(&self) -> bool {
        self.coding.iter().all(Coding::is_empty) && self.text.is_none()
    }

    /// The coding that represents the concept in one column: a mapped coding first, then
    /// a LOINC coding, then the first one.
    pub fn primary(&self) -> Option<&Coding> {
        self.coding
            .iter()
            .find(|c| c.mapped)
            .or_else(|| {
                self.coding
                    .iter()
                    .find(|c| c.system.as_deref() == Some(LOINC))
            })
            .or_else(|| self.coding.first())
    }

    /// The upstream's own coding that a code map replaced as [`primary`](Self::primary).
    pub fn mapped_from(&self) -> Option<&Coding> {
        if !self.coding.iter().any(|c| c.mapped) {
            return None;
        }
        self.coding.iter().find(|c| !c.mapped)
    }

    /// Human-readable: the primary coding's display, else the text, else the code.
    pub fn display(&self) -> Option<&str> {
        let primary = self.primary();
        primary
            .and_then(|c| c.display.as_deref())
            .or(self.text.as_deref())
            .or_else(|| primary.and_then(|c| c.code.as_deref()))
    }
}

/// A measured amount (FHIR `Quantity`).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Quantity {
    /// The number as written.
    pub value: Option<Decimal>,
    /// `<`, `<=`, `>=` or `>`: the real value is beyond `value`.
    pub comparator: Option<Comparator>,
    /// The unit as displayed upstream (`beats/minute`).
    pub unit: Option<String>,
    /// The unit's code system (UCUM: `http://unitsofmeasure.org`).
    pub system: Option<String>,
    /// The unit's code (UCUM `/min`).
    pub code: Option<String>,
}

impl Quantity {
    /// A UCUM quantity whose display unit is its code.
    pub fn ucum(value: Decimal, code: &str) -> Quantity {
        Quantity {
            value: Some(value),
            comparator: None,
            unit: Some(code.to_owned()),
            system: Some(UCUM.to_owned()),
            code: Some(code.to_owned()),
        }
    }

    /// The unit for one column: the code (UCUM) if given, else the display unit.
    pub fn unit_code(&self) -> Option<&str> {
        self.code.as_deref().or(self.unit.as_deref())
    }

    /// Nothing given.
    pub fn is_empty(&self) -> bool {
        self.value.is_none()
            && self.comparator.is_none()
            && self.unit.is_none()
            && self.system.is_none()
            && self.code.is_none()
    }
}

/// FHIR `QuantityComparator`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Comparator {
    /// `<`
    Less,
    /// `<=`
    LessOrEqual,
    /// `>=`
    GreaterOrEqual,
    /// `>`
    Greater,
}

impl Comparator {
    /// The FHIR code.
    pub fn as_str(self) -> &'static str {
        match self {
            Comparator::Less => "<",
            Comparator::LessOrEqual => "<=",
            Comparator::GreaterOrEqual => ">=",
            Comparator::Greater => ">",
        }
    }

    /// The comparator for a FHIR code.
    pub fn parse(code: &str) -> Option<Comparator> {
        Some(match code {
            "<" => Comparator::Less,
            "<=" => Comparator::LessOrEqual,
            ">=" => Comparator::GreaterOrEqual,
            ">" => Comparator::Greater,
            _ => return None,
        })
    }
}

/// Low and high bounds (FHIR `Range`; both inclusive).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Range {
    /// The low bound.
    pub low: Option<Quantity>,
    /// The high bound.
    pub high: Option<Quantity>,
}

/// A ratio of two quantities (FHIR `Ratio`), e.g. a titer `1:128`.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Ratio {
    /// The numerator.
    pub numerator: Option<Quantity>,
    /// The denominator.
    pub denominator: Option<Quantity>,
}

/// A time span (FHIR `Period`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Period {
    /// The start, inclusive.
    pub start: Option<DateTime>,
    /// The end, inclusive.
    pub end: Option<DateTime>,
}

/// FHIR `effective[x]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Effective {
    /// `effectiveDateTime` or `effectiveInstant`.
    DateTime(DateTime),
    /// `effectivePeriod`.
    Period(Period),
}

impl Effective {
    /// The date-time or the period's start.
    pub fn start(&self) -> Option<&DateTime> {
        match self {
            Effective::DateTime(d) => Some(d),
            Effective::Period(p) => p.start.as_ref(),
        }
    }

    /// The period's end.
    pub fn end(&self) -> Option<&DateTime> {
        match self {
            Effective::DateTime(_) => None,
            Effective::Period(p) => p.end.as_ref(),
        }
    }

    fn date_times_mut(&mut self) -> impl Iterator<Item = &mut DateTime> {
        let (a, b) = match self {
            Effective::DateTime(d) => (Some(d), None),
            Effective::Period(p) => (p.start.as_mut(), p.end.as_mut()),
        };
        a.into_iter().chain(b)
    }
}

/// FHIR `value[x]` of an Observation or a component.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub enum Value {
    /// No value (a panel, a pending result, or see `dataAbsentReason`).
    #[default]
    None,
    /// `valueQuantity`.
    Quantity(Quantity),
    /// `valueCodeableConcept`.
    CodeableConcept(CodeableConcept),
    /// `valueString`.
    String(String),
    /// `valueBoolean`.
    Boolean(bool),
    /// `valueInteger` (FHIR integers are 32-bit).
    Integer(i32),
    /// `valueRange`.
    Range(Range),
    /// `valueRatio`.
    Ratio(Ratio),
    /// `valuePeriod`.
    Period(Period),
    /// `valueDateTime`.
    DateTime(DateTime),
    /// `valueTime` (`hh:mm:ss`, as written).
    Time(String),
}

impl Value {
    /// A quantity without unit.
    pub fn number(value: Decimal) -> Value {
        Value::Quantity(Quantity {
            value: Some(value),
            ..Quantity::default()
        })
    }

    /// The FHIR type name (`Quantity`, `string` …); empty for no value.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::None => "",
            Value::Quantity(_) => "Quantity",
            Value::CodeableConcept(_) => "CodeableConcept",
            Value::String(_) => "string",
            Value::Boolean(_) => "boolean",
            Value::Integer(_) => "integer",
            Value::Range(_) => "Range",
            Value::Ratio(_) => "Ratio",
            Value::Period(_) => "Period",
            Value::DateTime(_) => "dateTime",
            Value::Time(_) => "time",
        }
    }

    /// Whether there is a value.
    pub fn is_some(&self) -> bool {
        !matches!(self, Value::None)
    }

    fn date_times_mut(&mut self) -> impl Iterator<Item = &mut DateTime> {
        let (a, b) = match self {
            Value::DateTime(d) => (Some(d), None),
            Value::Period(p) => (p.start.as_mut(), p.end.as_mut()),
            _ => (None, None),
        };
        a.into_iter().chain(b)
    }
}

/// A normal range (FHIR `Observation.referenceRange`).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ReferenceRange {
    /// The low bound.
    pub low: Option<Quantity>,
    /// The high bound.
    pub high: Option<Quantity>,
    /// Which kind of range (normal, recommended, treatment …).
    pub kind: Option<CodeableConcept>,
    /// The range as text (`<200 mg/dL`, `negative`).
    pub text: Option<String>,
}

impl ReferenceRange {
    /// Nothing given.
    pub fn is_empty(&self) -> bool {
        self.low.is_none() && self.high.is_none() && self.kind.is_none() && self.text.is_none()
    }
}

/// One part of a panel (FHIR `Observation.component`).
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Component {
    /// What the part measures.
    pub code: CodeableConcept,
    /// Its result.
    pub value: Value,
    /// Why there is no value.
    pub data_absent_reason: Option<CodeableConcept>,
    /// High, low, normal …
    pub interpretation: Vec<CodeableConcept>,
    /// Its normal ranges.
    pub reference_range: Vec<ReferenceRange>,
}

/// A reference to another resource (FHIR `Reference`).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Reference {
    /// `Observation/123`, `urn:uuid:…`, or an absolute URL.
    pub reference: Option<String>,
    /// Text for the reference.
    pub display: Option<String>,
}

impl Reference {
    /// A literal reference.
    pub fn to(reference: impl Into<String>) -> Reference {
        Reference {
            reference: Some(reference.into()),
            display: None,
        }
    }
}

/// Something in the payload that could not be read, with where it was. Never contains a
/// patient identifier.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Warning {
    /// Where: `line 12, column 5` (XML) or a JSON Pointer (`/data/3/body/heart_rate/value`).
    pub at: String,
    /// What: `value "1,5" is not a number`.
    pub message: String,
}

impl Warning {
    /// A warning at `at`.
    pub fn new(at: impl Into<String>, message: impl Into<String>) -> Warning {
        Warning {
            at: at.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.at.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.at, self.message)
        }
    }
}
