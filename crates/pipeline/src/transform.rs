//! The transform stage: what happens to every observation between its source and its output.
//!
//! Per source (from config): its time zone is applied to times that carry no offset, and its
//! code maps add a standard coding beside each local one they know. Per request: the caller's
//! filter, and any further [`Transform`] (de-identification plugs in here). Transforms run in
//! that order on every path — single-source data, fan-out, downloads, FHIR output, jobs — so
//! no output ever sees an unmapped or unzoned record that another output would not.

use std::collections::HashMap;
use std::sync::Arc;

use jiff::tz::TimeZone;
use medgate_core::{Catalog, CodeableConcept, Filter, Observation, Value};

use crate::codemap::{CodeMap, CodeMaps};

/// One step applied to each observation.
///
/// Implementors write [`apply`](Transform::apply).
pub trait Transform: Send + Sync + 'static {
    /// Changes `o` in place; returns `false` to drop it from the output.
    fn apply(&self, o: &mut Observation) -> bool;
}

/// The caller's filter as a transform.
impl Transform for Filter {
    fn apply(&self, o: &mut Observation) -> bool {
        self.matches(o)
    }
}

/// What config says to do with one source's observations.
pub struct SourceTransform {
    source: String,
    time_zone: Option<TimeZone>,
    maps: Vec<Arc<CodeMap>>,
}

impl SourceTransform {
    /// A transform for `source` with an optional zone and maps in priority order.
    pub fn new(
        source: impl Into<String>,
        time_zone: Option<TimeZone>,
        maps: Vec<Arc<CodeMap>>,
    ) -> Self {
        SourceTransform {
            source: source.into(),
            time_zone,
            maps,
        }
    }

    /// Whether it changes anything at all (the fast path skips it otherwise).
    pub fn is_identity(&self) -> bool {
        self.time_zone.is_none() && self.maps.is_empty()
    }

    /// Maps every coding of `concept` that a map knows, once per concept; returns (mapped,
    /// unmapped) counts of codings.
    fn map_concept(&self, concept: &mut CodeableConcept) -> (u64, u64) {
        if concept.coding.iter().any(|c| c.mapped) {
            return (0, 0);
        }
        let found = concept.coding.iter().find_map(|c| {
            let code = c.code.as_deref()?;
            let system = c.system.as_deref().unwrap_or("");
            self.maps.iter().find_map(|m| m.lookup(system, code))
        });
        match found {
            Some(target) => {
                concept.coding.insert(0, target.clone());
                (1, 0)
            }
            None if concept.coding.iter().any(|c| c.code.is_some()) => (0, 1),
            None => (0, 0),
        }
    }
}

impl Transform for SourceTransform {
    fn apply(&self, o: &mut Observation) -> bool {
        if let Some(tz) = &self.time_zone {
            for t in o.date_times_mut() {
                *t = t.assume_zone(tz);
            }
        }
        if !self.maps.is_empty() {
            let (mut mapped, mut unmapped) = (0, 0);
            for concept in coded(o) {
                let (m, u) = self.map_concept(concept);
                mapped += m;
                unmapped += u;
            }
            if mapped > 0 {
                metrics::counter!("medgate_codes_mapped_total", "source" => self.source.clone())
                    .increment(mapped);
            }
            if unmapped > 0 {
                metrics::counter!("medgate_codes_unmapped_total", "source" => self.source.clone())
                    .increment(unmapped);
            }
        }
        true
    }
}

/// Every code and coded value of `o`, its components' included.
fn coded(o: &mut Observation) -> impl Iterator<Item = &mut CodeableConcept> {
    fn value(v: &mut Value) -> Option<&mut CodeableConcept> {
        match v {
            Value::CodeableConcept(c) => Some(c),
            _ => None,
        }
    }
    let Observation {
        code,
        value: own,
        components,
        ..
    } = o;
    let parts = components
        .iter_mut()
        .flat_map(|c| std::iter::once(&mut c.code).chain(value(&mut c.value)));
    std::iter::once(code).chain(value(own)).chain(parts)
}

/// Every source's transform, built once per config (and swapped with it on reload).
#[derive(Default, Clone)]
pub struct Transforms {
    by_source: HashMap<String, Arc<SourceTransform>>,
}

impl Transforms {
    /// Builds each catalog source's transform from its `timezone` and `code_maps` keys.
    ///
    /// # Errors
    /// A time zone or map name that validation should have refused (named in the message).
    pub fn build(catalog: &Catalog, maps: &CodeMaps) -> Result<Transforms, String> {
        let mut by_source = HashMap::new();
        for handle in catalog.sources() {
            let common = &handle.common;
            let time_zone = common
                .time_zone()
                .map_err(|e| format!("sources ({}).timezone: {e}", common.name))?;
            let maps = common
                .code_maps
                .iter()
                .map(|name| {
                    maps.get(name).cloned().ok_or_else(|| {
                        format!("sources ({}).code_maps: no map named `{name}`", common.name)
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let transform = SourceTransform::new(common.name.clone(), time_zone, maps);
            by_source.insert(common.name.clone(), Arc::new(transform));
        }
        Ok(Transforms { by_source })
    }

    /// Sets `source`'s transform (tools and tests; start-up uses [`Transforms::build`]).
    pub fn insert(&mut self, source: impl Into<String>, transform: SourceTransform) {
        self.by_source.insert(source.into(), Arc::new(transform));
    }

    /// The transform of `source`, if it does anything.
    pub fn for_source(&self, source: &str) -> Option<Arc<SourceTransform>> {
        self.by_source
            .get(source)
            .filter(|t| !t.is_identity())
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use medgate_core::model::LOINC;
    use medgate_core::{Coding, DateTime, Effective};

    fn map() -> Arc<CodeMap> {
        let text = "source_system,source_code,target_system,target_code,target_display\n\
                    urn:oid:1.2.3,GLU,http://loinc.org,2345-7,Glucose\n";
        Arc::new(CodeMap::parse("lis", "lis.csv", text.as_bytes()).unwrap())
    }

    fn observation(system: &str, code: &str) -> Observation {
        let mut o = Observation::new(Arc::from("P1"), Arc::from("lis"), "1");
        o.code = CodeableConcept::coded(system, code, Some("local glucose"));
        o.effective = Some(Effective::DateTime(
            DateTime::parse("2024-03-01T07:58:00").unwrap(),
        ));
        o
    }

    #[test]
    fn maps_keep_the_original_coding_beside_the_mapped_one() {
        let t = SourceTransform::new("lis", None, vec![map()]);
        let mut o = observation("urn:oid:1.2.3", "GLU");
        assert!(t.apply(&mut o));
        assert_eq!(o.code.coding.len(), 2);
        assert_eq!(o.code.primary().unwrap().code.as_deref(), Some("2345-7"));
        assert_eq!(o.code.primary().unwrap().system.as_deref(), Some(LOINC));
        assert_eq!(o.code.mapped_from().unwrap().code.as_deref(), Some("GLU"));
        // Applying twice (a retried stage) maps nothing twice.
        t.apply(&mut o);
        assert_eq!(o.code.coding.len(), 2);
        let mut unknown = observation("urn:oid:1.2.3", "NA");
        t.apply(&mut unknown);
        assert_eq!(
            unknown.code.coding,
            vec![Coding::new("urn:oid:1.2.3", "NA", Some("local glucose"))]
        );
    }

    #[test]
    fn the_source_zone_applies_only_to_local_times() {
        let tz = jiff::tz::db().get("Asia/Shanghai").unwrap();
        let t = SourceTransform::new("lis", Some(tz), vec![]);
        let mut o = observation("s", "c");
        t.apply(&mut o);
        let effective = o.effective.unwrap();
        assert_eq!(
            effective.start().unwrap().to_string(),
            "2024-03-01T07:58:00+08:00"
        );
        let mut written = observation("s", "c");
        written.effective = Some(Effective::DateTime(
            DateTime::parse("2024-03-01T07:58:00-05:00").unwrap(),
        ));
        t.apply(&mut written);
        assert_eq!(
            written.effective.unwrap().start().unwrap().to_string(),
            "2024-03-01T07:58:00-05:00"
        );
    }
}
