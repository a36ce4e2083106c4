//! Everything parsed from every fixture is valid FHIR R4: each observation, written by
//! core's FHIR JSON writer, deserializes strictly into an independent R4 model (fhirbolt).

use fhirbolt::element::Element;
use fhirbolt::model::r4::resources::Observation as R4Observation;
use fhirbolt::FhirReleases;
use medgate_core::{fhir, Observation};

use crate::util::{cda, cda_file, fhir, fhir_file};

const FHIR: &[&str] = &[
    "fhir/observation-example.xml",
    "fhir/observation-bp.xml",
    "fhir/observation-decimal.xml",
    "fhir/observation-example-20minute-apgar-score.xml",
    "fhir/observation-example-heart-rate.xml",
    "fhir/observation-ucum.xml",
    "fhir/Observation-blood-pressure.xml",
    "fhir/Observation-heart-rate.xml",
    "fhir/Observation-serum-potassium.xml",
    "fhir/bundle-ips-examples-bundle-01.xml",
    "fhir/bundle-slice-good.xml",
    "fhir/workload-P000001.xml",
];

const CDA: &[&str] = &[
    "cda/ccd-1.xml",
    "cda/ccd-2.xml",
    "cda/bmp-troponin.xml",
    "cda/co2.xml",
    "cda/coded-neg-pos.xml",
    "cda/covid-positive-cd.xml",
    "cda/greater-than-ivl.xml",
    "cda/growth-charts.xml",
    "cda/heart-rate-rhythm.xml",
    "cda/lab-location.xml",
    "cda/less-than-ivl.xml",
    "cda/multiple-reference-ranges.xml",
    "cda/non-numeric-pq.xml",
    "cda/pending-component.xml",
    "cda/radiology-ed.xml",
    "cda/translation-unit.xml",
    "cda/unit-non-ucum.xml",
    "cda/urine-color-st.xml",
    "cda/vital-signs-metric.xml",
    "cda/vital-signs-mixed-units.xml",
    "cda/vital-signs-oxygen.xml",
    "cda/guide-result-observation.xml",
    "cda/guide-vital-sign-observation.xml",
];

fn strict(path: &str, o: &Observation) {
    let mut out = Vec::new();
    fhir::write_observation(&mut out, o).unwrap();
    let text = String::from_utf8(out).unwrap();
    // fhirbolt 0.4 reads JSON numbers into decimals only through its element model.
    let element: Element<{ FhirReleases::R4 }> = fhirbolt::json::from_str(&text, None)
        .unwrap_or_else(|e| panic!("{path} {}: {e}\n{text}", o.id));
    let _: R4Observation = fhirbolt::element::from_element(element, None)
        .unwrap_or_else(|e| panic!("{path} {}: {e}\n{text}", o.id));
}

#[test]
fn every_parsed_observation_is_strict_fhir_r4() {
    let mut checked = 0;
    for path in FHIR {
        for o in fhir_file(path) {
            strict(path, &o);
            checked += 1;
        }
    }
    for path in CDA {
        for o in cda_file(path) {
            strict(path, &o);
            checked += 1;
        }
    }
    let handwritten = [
        fhir(crate::fhir::VALUE_TYPES.as_bytes()),
        fhir(crate::fhir::BAD_VALUES.as_bytes()),
        cda(crate::cda::TYPES.as_bytes()),
    ];
    for rows in handwritten {
        for o in rows.unwrap() {
            strict("handwritten", &o);
            checked += 1;
        }
    }
    assert_eq!(checked, 246);
}
