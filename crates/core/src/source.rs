//! The [`DataSource`] trait: where observations come from.

use std::time::Instant;

use async_trait::async_trait;
use futures::stream::BoxStream;

use jiff::Timestamp;

use crate::{Observation, Result};

/// Observations as they are produced; an `Err` item ends the stream.
pub type ObservationStream = BoxStream<'static, Result<Observation>>;

/// One fetch for one patient.
#[derive(Debug, Clone)]
pub struct FetchRequest {
    /// The patient's id in the source's own namespace.
    pub patient_id: String,
    /// Correlates logs and is forwarded upstream as `X-Request-Id`.
    pub request_id: String,
    /// The caller's overall deadline; sources must not work past it.
    pub deadline: Option<Instant>,
    /// Which observations the caller wants. Sources may use it to ask their upstream for
    /// less (a store uses its indexes); the pipeline applies it to whatever they return.
    pub filter: Filter,
}

/// A selection of observations by time and code (FHIR search `date=` and `code=`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only observations whose effective time reaches this instant or later (`date=ge…`).
    pub since: Option<Timestamp>,
    /// Only observations whose effective time starts at this instant or earlier (`date=le…`).
    pub until: Option<Timestamp>,
    /// Only observations with one of these codes (any of them; empty = all).
    pub codes: Vec<CodeFilter>,
}

/// One `code=` token: `code`, `system|code`, or `|code` (no system).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeFilter {
    /// `None`: any system; `Some("")`: a coding without system.
    pub system: Option<String>,
    /// The code.
    pub code: String,
}

impl CodeFilter {
    /// Parses a FHIR token (`8867-4`, `http://loinc.org|8867-4`).
    pub fn parse(token: &str) -> CodeFilter {
        match token.split_once('|') {
            Some((system, code)) => CodeFilter {
                system: Some(system.to_owned()),
                code: code.to_owned(),
            },
            None => CodeFilter {
                system: None,
                code: token.to_owned(),
            },
        }
    }

    fn matches(&self, concept: &crate::CodeableConcept) -> bool {
        concept.coding.iter().any(|c| {
            c.code.as_deref() == Some(self.code.as_str())
                && match &self.system {
                    None => true,
                    Some(s) => c.system.as_deref().unwrap_or("") == s,
                }
        })
    }
}

impl Filter {
    /// Whether the filter selects everything.
    pub fn is_empty(&self) -> bool {
        self.since.is_none() && self.until.is_none() && self.codes.is_empty()
    }

    /// Whether `o` passes. An observation without an effective time fails a time filter; a
    /// code matches on the observation's code or on any component's code.
    pub fn matches(&self, o: &Observation) -> bool {
        if !self.codes.is_empty() {
            let concepts = std::iter::once(&o.code).chain(o.components.iter().map(|c| &c.code));
            let mut concepts = concepts;
            if !concepts.any(|c| self.codes.iter().any(|f| f.matches(c))) {
                return false;
            }
        }
        if self.since.is_none() && self.until.is_none() {
            return true;
        }
        let Some(effective) = &o.effective else {
            return false;
        };
        let start = effective.start().map(|d| d.bounds().0);
        let end = effective.end().or(effective.start()).map(|d| d.bounds().1);
        // `bounds` ends are exclusive for dates and equal to the start for instants.
        let after_since = match (self.since, start, end) {
            (Some(since), Some(start), Some(end)) => start >= since || end > since,
            _ => true,
        };
        let before_until = match (self.until, start) {
            (Some(until), Some(start)) => start <= until,
            (Some(_), None) => true,
            (None, _) => true,
        };
        after_since && before_until
    }
}

impl FetchRequest {
    /// A request with no deadline.
    pub fn new(patient_id: impl Into<String>, request_id: impl Into<String>) -> Self {
        FetchRequest {
            patient_id: patient_id.into(),
            request_id: request_id.into(),
            deadline: None,
            filter: Filter::default(),
        }
    }
}

/// A configured place observations come from: a hospital system, a wearable cloud, a store.
///
/// Implementors write **one** method, [`fetch`](DataSource::fetch); [`health_check`](DataSource::health_check)
/// has a default. Name, kind and format are kept by the registry, not by the source.
#[async_trait]
pub trait DataSource: Send + Sync + 'static {
    /// Fetches one patient's observations as a stream.
    ///
    /// # Errors
    /// Errors that are known before the first observation (patient unknown, upstream down,
    /// timeout) are returned here; a payload that turns out malformed midway ends the stream
    /// with an `Err` item.
    async fn fetch(&self, request: &FetchRequest) -> Result<ObservationStream>;

    /// Checks that the source can serve at all. Defaults to healthy.
    ///
    /// # Errors
    /// The reason the source cannot serve.
    async fn health_check(&self) -> Result<()> {
        Ok(())
    }
}
