//! The FHIR facade and the lossless record end to end: FHIR JSON that an independent strict
//! R4 model (fhirbolt) accepts, FHIR XML that survives to every output with the same values,
//! search filters, OperationOutcome errors, code maps, time zones and data-quality warnings.

use std::io::Cursor;

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use fhirbolt::element::Element;
use fhirbolt::model::r4::resources::{
    Bundle, CapabilityStatement, Observation as R4, ObservationEffective, ObservationValue,
    OperationOutcome,
};
use fhirbolt::model::r4::types::{CodeableConcept, Quantity};
use fhirbolt::model::r4::Resource;
use fhirbolt::FhirReleases;
use medgate_core::Observation;

use crate::util::{header, start, start_with, tempdir, Gateway, OBS};

const FHIR: &str = "application/fhir+json";

/// Strict R4 reading of JSON. fhirbolt 0.4's direct typed JSON path cannot read JSON numbers
/// into decimals, so the text goes through its generic element model first (also strict).
fn strict<T>(text: &str) -> T
where
    T: fhirbolt::serde::DeserializeResourceOwned + for<'a> fhirbolt::serde::DeserializeResource<'a>,
    Element<{ FhirReleases::R4 }>: for<'a> fhirbolt::serde::DeserializeResource<'a>,
{
    let element: Element<{ FhirReleases::R4 }> = fhirbolt::json::from_str(text, None)
        .unwrap_or_else(|e| panic!("not strict R4 JSON: {e}\n{text}"));
    fhirbolt::element::from_element(element, None)
        .unwrap_or_else(|e| panic!("not a strict R4 resource: {e}\n{text}"))
}

fn observations(bundle: &Bundle) -> Vec<R4> {
    bundle
        .entry
        .iter()
        .filter_map(|e| match e.resource.as_ref() {
            Some(Resource::Observation(o)) => Some((**o).clone()),
            _ => None,
        })
        .collect()
}

fn outcome(bundle: &Bundle) -> Option<OperationOutcome> {
    bundle.entry.iter().find_map(|e| match e.resource.as_ref() {
        Some(Resource::OperationOutcome(o)) => Some((**o).clone()),
        _ => None,
    })
}

async fn fhir_get(gw: &Gateway, path: &str, status: u16) -> String {
    let response = gw
        .client
        .get(format!("{}{path}", gw.base))
        .header("accept", FHIR)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), status, "status of {path}");
    assert_eq!(
        header(&response, "content-type"),
        FHIR,
        "content type of {path}"
    );
    response.text().await.unwrap()
}

/// What a reader of an R4 Observation sees, rendered so two readings can be compared.
fn seen(o: &R4) -> Vec<String> {
    let mut lines = vec![
        format!("status {:?}", o.status.value),
        format!("code {}", concept(&o.code)),
        format!(
            "category {:?}",
            o.category.iter().map(concept).collect::<Vec<_>>()
        ),
        format!("effective {}", effective(o.effective.as_ref())),
        format!("value {}", value(o.value.as_ref())),
        format!(
            "interpretation {:?}",
            o.interpretation.iter().map(concept).collect::<Vec<_>>()
        ),
    ];
    for r in &o.reference_range {
        lines.push(format!(
            "range {} .. {} {:?}",
            r.low.as_deref().map_or(String::new(), quantity),
            r.high.as_deref().map_or(String::new(), quantity),
            r.text.as_ref().and_then(|t| t.value.clone())
        ));
    }
    for c in &o.component {
        lines.push(format!(
            "component {} = {}",
            concept(&c.code),
            value_c(c.value.as_ref())
        ));
    }
    lines
}

fn concept(c: &CodeableConcept) -> String {
    let codings: Vec<String> = c
        .coding
        .iter()
        .map(|c| {
            format!(
                "{}|{}|{}",
                c.system
                    .as_ref()
                    .and_then(|s| s.value.clone())
                    .unwrap_or_default(),
                c.code
                    .as_ref()
                    .and_then(|s| s.value.clone())
                    .unwrap_or_default(),
                c.display
                    .as_ref()
                    .and_then(|s| s.value.clone())
                    .unwrap_or_default()
            )
        })
        .collect();
    format!(
        "{codings:?} text={:?}",
        c.text.as_ref().and_then(|t| t.value.clone())
    )
}

fn quantity(q: &Quantity) -> String {
    // serde_json (under fhirbolt) rewrites an exponent `e0` as `e+0` when it reads JSON; the
    // bytes medgate wrote are checked verbatim in the test itself.
    let number = q
        .value
        .as_ref()
        .and_then(|v| v.value.clone())
        .unwrap_or_default()
        .replace("e+", "e")
        .replace("E+", "E");
    format!(
        "{} {} {} {} {}",
        q.comparator
            .as_ref()
            .and_then(|c| c.value.clone())
            .unwrap_or_default(),
        number,
        q.unit
            .as_ref()
            .and_then(|v| v.value.clone())
            .unwrap_or_default(),
        q.system
            .as_ref()
            .and_then(|v| v.value.clone())
            .unwrap_or_default(),
        q.code
            .as_ref()
            .and_then(|v| v.value.clone())
            .unwrap_or_default(),
    )
}

fn effective(e: Option<&ObservationEffective>) -> String {
    match e {
        Some(ObservationEffective::DateTime(d)) => format!("{:?}", d.value),
        Some(ObservationEffective::Instant(d)) => format!("{:?}", d.value),
        Some(ObservationEffective::Period(p)) => format!(
            "{:?}/{:?}",
            p.start.as_ref().and_then(|d| d.value.clone()),
            p.end.as_ref().and_then(|d| d.value.clone())
        ),
        Some(other) => format!("{other:?}"),
        None => "-".into(),
    }
}

fn value(v: Option<&ObservationValue>) -> String {
    match v {
        None => "-".into(),
        Some(ObservationValue::Quantity(q)) => quantity(q),
        Some(ObservationValue::CodeableConcept(c)) => concept(c),
        Some(ObservationValue::String(s)) => format!("{:?}", s.value),
        Some(ObservationValue::Boolean(b)) => format!("{:?}", b.value),
        Some(ObservationValue::Integer(i)) => format!("{:?}", i.value),
        Some(other) => format!("{other:?}"),
    }
}

fn value_c(v: Option<&fhirbolt::model::r4::resources::ObservationComponentValue>) -> String {
    use fhirbolt::model::r4::resources::ObservationComponentValue as V;
    match v {
        None => "-".into(),
        Some(V::Quantity(q)) => quantity(q),
        Some(V::CodeableConcept(c)) => concept(c),
        Some(V::String(s)) => format!("{:?}", s.value),
        Some(V::Integer(i)) => format!("{:?}", i.value),
        Some(other) => format!("{other:?}"),
    }
}

/// The R4 Observations of a FHIR XML fixture, read independently by fhirbolt.
fn fixture_observations(name: &str) -> Vec<R4> {
    let text = std::fs::read_to_string(fixture_path("fhir", name)).unwrap();
    match fhirbolt::xml::from_str::<Resource>(&text, None).expect("fixture parses as R4 XML") {
        Resource::Observation(o) => vec![*o],
        Resource::Bundle(b) => observations(&b),
        other => panic!("unexpected fixture resource {other:?}"),
    }
}

fn fixture_path(family: &str, name: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(family)
        .join(format!("{name}.xml"))
}

/// Upstream serving `tests/fixtures/<family>/<id>.xml` for patient `<id>`.
fn fixture_upstream() -> Router {
    Router::new().route(
        "/fixture/{family}/{id}",
        get(|Path((family, id)): Path<(String, String)>| async move {
            match std::fs::read(fixture_path(&family, &id)) {
                Ok(bytes) => ([("content-type", "application/xml")], bytes).into_response(),
                Err(_) => StatusCode::NOT_FOUND.into_response(),
            }
        }),
    )
}

const FIXTURE_SOURCES: &str = r#"
[[sources]]
name = "files"
kind = "his-xml"
url = "http://{faulty}/fixture/fhir/{patient_id}"
format = "fhir-r4"
"#;

#[tokio::test]
async fn v1_data_answers_a_strict_r4_searchset_on_request() {
    let gw = start("").await;
    for path in [
        "/v1/data/his?patient_id=P000002",
        "/v1/data/his?patient_id=P000002&_format=fhir%2Bjson",
    ] {
        let text = fhir_get(&gw, path, 200).await;
        let bundle: Bundle = strict(&text);
        assert_eq!(bundle.r#type.value.as_deref(), Some("searchset"));
        assert_eq!(bundle.total.as_ref().and_then(|t| t.value), Some(OBS));
        let got = observations(&bundle);
        assert_eq!(got.len(), OBS as usize);
        // Each entry's values equal the workload's, written as the upstream wrote them.
        for (j, o) in got.iter().enumerate() {
            let want = gw.workload.observation(1, j as u32);
            let medgate_core::Value::Quantity(q) = &want.value else {
                unreachable!()
            };
            let Some(ObservationValue::Quantity(got_q)) = &o.value else {
                panic!("a quantity")
            };
            assert_eq!(
                got_q.value.as_ref().and_then(|v| v.value.as_deref()),
                q.value.as_ref().map(|d| d.as_str())
            );
            assert_eq!(
                effective(o.effective.as_ref()),
                format!(
                    "{:?}",
                    Some(want.effective.unwrap().start().unwrap().to_string())
                )
            );
            assert_eq!(
                o.subject
                    .as_ref()
                    .and_then(|s| s.reference.as_ref())
                    .and_then(|r| r.value.as_deref()),
                Some("Patient/P000002")
            );
        }
        assert!(text.contains("\"value\":"), "numbers are JSON numbers");
    }
    // Without Accept or _format the partner still gets the flat shape.
    let body = gw
        .json("/v1/data/his?patient_id=P000002", 200, "application/json")
        .await;
    assert!(body["observations"].is_array());
    let bad = gw
        .json(
            "/v1/data/his?patient_id=P000002&_format=xml",
            400,
            "application/problem+json",
        )
        .await;
    assert!(bad["detail"].as_str().unwrap().contains("_format"));
}

#[tokio::test]
async fn metadata_is_a_strict_capability_statement_without_a_key() {
    let gw = start("").await;
    let response = reqwest::get(format!("{}/fhir/metadata", gw.base))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "content-type"), FHIR);
    let statement: CapabilityStatement = strict(&response.text().await.unwrap());
    assert_eq!(statement.fhir_version.value.as_deref(), Some("4.0.1"));
    let resource = &statement.rest[0].resource[0];
    assert_eq!(resource.r#type.value.as_deref(), Some("Observation"));
    let params: Vec<&str> = resource
        .search_param
        .iter()
        .filter_map(|p| p.name.value.as_deref())
        .collect();
    assert_eq!(params, ["patient", "code", "date", "_source"]);
}

#[tokio::test]
async fn fhir_search_reads_every_permitted_source_and_filters() {
    let gw = start("").await;
    let all: Bundle = strict(&fhir_get(&gw, "/fhir/Observation?patient=P000001", 200).await);
    assert_eq!(observations(&all).len(), 2 * OBS as usize);
    assert!(outcome(&all).is_none(), "nothing failed, nothing to report");
    let ids: std::collections::HashSet<_> = observations(&all)
        .iter()
        .map(|o| o.id.as_ref().and_then(|i| i.value.clone()).unwrap())
        .collect();
    assert_eq!(ids.len(), 2 * OBS as usize, "ids are unique across sources");

    let his: Bundle = strict(
        &fhir_get(
            &gw,
            "/fhir/Observation?patient=Patient/P000001&_source=his",
            200,
        )
        .await,
    );
    assert_eq!(observations(&his).len(), OBS as usize);

    // code: only heart rates, from both sources.
    let wanted: Vec<Observation> = (0..OBS)
        .map(|j| gw.workload.observation(0, j))
        .chain((0..OBS).map(|j| gw.workload.wearable_observation(0, j)))
        .filter(|o| o.code.coding[0].code.as_deref() == Some("8867-4"))
        .collect();
    let hr: Bundle = strict(
        &fhir_get(
            &gw,
            "/fhir/Observation?patient=P000001&code=http%3A%2F%2Floinc.org%7C8867-4",
            200,
        )
        .await,
    );
    assert_eq!(observations(&hr).len(), wanted.len());
    assert!(!wanted.is_empty());

    // date: the workload's HIS times are six hours apart from 2024-01-01T00:00+08:00.
    let from = "2024-01-01T06:00:00%2B08:00";
    let to = "2024-01-01T23:59:59%2B08:00";
    let window: Bundle = strict(
        &fhir_get(
            &gw,
            &format!("/fhir/Observation?patient=P000001&_source=his&date=ge{from}&date=le{to}"),
            200,
        )
        .await,
    );
    let since = jiff::Timestamp::from_second(1_704_038_400 + 6 * 3600).unwrap();
    let until = jiff::Timestamp::from_second(1_704_038_400 + 24 * 3600 - 1).unwrap();
    let expected = (0..OBS)
        .map(|j| gw.workload.observation(0, j))
        .filter(|o| {
            let t = o.effective.unwrap().start().unwrap().timestamp().unwrap();
            t >= since && t <= until
        })
        .count();
    assert_eq!(observations(&window).len(), expected);
    assert!(
        expected > 0 && expected < OBS as usize,
        "the window selects some, not all"
    );

    // An unknown patient is an empty searchset with the reason as an outcome entry.
    let none: Bundle = strict(&fhir_get(&gw, "/fhir/Observation?patient=P999999", 200).await);
    assert!(observations(&none).is_empty());
    let issues = outcome(&none).expect("an outcome entry").issue;
    assert!(issues
        .iter()
        .all(|i| i.code.value.as_deref() == Some("not-found")));
}

#[tokio::test]
async fn fhir_errors_are_operation_outcomes_with_the_same_status() {
    let gw = start("").await;
    let text = fhir_get(&gw, "/fhir/Observation?code=8867-4", 400).await;
    let oo: OperationOutcome = strict(&text);
    assert_eq!(oo.issue[0].code.value.as_deref(), Some("invalid"));
    assert!(oo.issue[0]
        .diagnostics
        .as_ref()
        .unwrap()
        .value
        .as_ref()
        .unwrap()
        .contains("patient"));

    let anonymous = reqwest::Client::new()
        .get(format!("{}/fhir/Observation?patient=P000001", gw.base))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(header(&anonymous, "content-type"), FHIR);
    assert!(header(&anonymous, "www-authenticate").starts_with("Bearer"));
    let oo: OperationOutcome = strict(&anonymous.text().await.unwrap());
    assert_eq!(oo.issue[0].code.value.as_deref(), Some("login"));

    let text = fhir_get(&gw, "/fhir/Observation?patient=P000001&_source=nope", 404).await;
    let oo: OperationOutcome = strict(&text);
    assert_eq!(oo.issue[0].code.value.as_deref(), Some("not-found"));
}

#[tokio::test]
async fn fhir_xml_survives_to_fhir_json_csv_and_xlsx_with_the_same_values() {
    let gw = start_with(FIXTURE_SOURCES, fixture_upstream()).await;
    let fixtures = [
        "observation-example",
        "Observation-blood-pressure",
        "observation-decimal",
        "observation-example-20minute-apgar-score",
        "Observation-serum-potassium",
    ];
    for name in fixtures {
        let original = fixture_observations(name);
        let text = fhir_get(
            &gw,
            &format!("/fhir/Observation?patient={name}&_source=files"),
            200,
        )
        .await;
        let through: Vec<R4> = observations(&strict(&text));
        if name == "observation-decimal" {
            for written in [
                "1.0e0",
                "0.0000000000000000000001",
                "-1.000000000000000000e245",
            ] {
                assert!(
                    text.contains(&format!("\"value\":{written},")),
                    "{written} verbatim"
                );
            }
        }
        assert_eq!(through.len(), original.len(), "{name}");
        for (a, b) in original.iter().zip(&through) {
            assert_eq!(
                seen(a),
                seen(b),
                "{name}: a FHIR reader sees the same values"
            );
        }
    }

    // The same fixtures downloaded as CSV and XLSX: every result row carries the value text
    // the XML carried (checked against fhirbolt's own reading of the XML).
    let patients = fixtures.join(",");
    let csv_body = gw
        .get(&format!(
            "/v1/export?source=files&patient_id={patients}&format=csv"
        ))
        .await
        .bytes()
        .await
        .unwrap();
    let mut reader = csv::Reader::from_reader(csv_body.as_ref());
    let csv_rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let mut want = Vec::new();
    for name in fixtures {
        for o in fixture_observations(name) {
            let own = match &o.value {
                Some(ObservationValue::Quantity(q)) => {
                    q.value.as_ref().and_then(|v| v.value.clone())
                }
                _ => None,
            };
            if o.value.is_some() || o.component.is_empty() {
                want.push(own.unwrap_or_default());
            }
            for c in &o.component {
                use fhirbolt::model::r4::resources::ObservationComponentValue as V;
                want.push(match &c.value {
                    Some(V::Quantity(q)) => q
                        .value
                        .as_ref()
                        .and_then(|v| v.value.clone())
                        .unwrap_or_default(),
                    _ => String::new(),
                });
            }
        }
    }
    let got: Vec<String> = csv_rows
        .iter()
        .map(|r| {
            if &r[11] == "Quantity" {
                r[7].to_owned()
            } else {
                String::new()
            }
        })
        .collect();
    assert_eq!(got, want, "CSV value column");

    let xlsx = gw
        .get(&format!(
            "/v1/export?source=files&patient_id={patients}&format=xlsx"
        ))
        .await
        .bytes()
        .await
        .unwrap();
    use calamine::Reader as _;
    let mut book: calamine::Xlsx<_> =
        calamine::open_workbook_from_rs(Cursor::new(xlsx.to_vec())).unwrap();
    let range = book.worksheet_range("observations").unwrap();
    let cells: Vec<String> = range
        .rows()
        .skip(1)
        .map(|r| match (&r[7], r[11].to_string().as_str()) {
            (calamine::Data::Float(f), "Quantity") => f.to_string(),
            (calamine::Data::Int(i), "Quantity") => i.to_string(),
            (calamine::Data::String(s), "Quantity") => s.clone(),
            _ => String::new(),
        })
        .collect();
    assert_eq!(cells.len(), want.len());
    for (cell, text) in cells.iter().zip(&want) {
        if text.is_empty() {
            continue;
        }
        let exact: f64 = text.parse().unwrap();
        let got: f64 = cell.parse().unwrap_or(f64::NAN);
        assert!(got == exact || cell == text, "xlsx {cell} for {text}");
    }

    // FHIR NDJSON of the same: every line strict R4, the same readings again.
    let ndjson = gw
        .get(&format!(
            "/v1/export?source=files&patient_id={patients}&format=fhir-ndjson"
        ))
        .await
        .text()
        .await
        .unwrap();
    let lines: Vec<R4> = ndjson.lines().map(strict).collect();
    let originals: Vec<R4> = fixtures
        .iter()
        .flat_map(|n| fixture_observations(n))
        .collect();
    assert_eq!(lines.len(), originals.len());
    for (a, b) in originals.iter().zip(&lines) {
        assert_eq!(seen(a), seen(b));
    }
}

/// A CDA document with two local lab codes, a wall-clock time without offset, and one value
/// that cannot be read.
const LOCAL_CDA: &str = r#"<?xml version="1.0"?>
<ClinicalDocument xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
 <component><structuredBody><component><section>
  <code code="30954-2" codeSystem="2.16.840.1.113883.6.1"/>
  <entry><organizer classCode="BATTERY" moodCode="EVN">
   <component><observation classCode="OBS" moodCode="EVN">
    <id root="1.2.3" extension="glu"/>
    <code code="GLU" codeSystem="2.16.840.1.113883.19.5.99999.1" displayName="Glucose (local)"/>
    <statusCode code="completed"/>
    <effectiveTime value="20240301075800"/>
    <value xsi:type="PQ" value="5.40" unit="mmol/L"/>
   </observation></component>
   <component><observation classCode="OBS" moodCode="EVN">
    <id root="1.2.3" extension="na"/>
    <code code="NA" codeSystem="2.16.840.1.113883.19.5.99999.1" displayName="Sodium (local)"/>
    <statusCode code="completed"/>
    <effectiveTime value="20240301075800"/>
    <value xsi:type="PQ" value="1,5" unit="mmol/L"/>
   </observation></component>
   <component><observation classCode="OBS" moodCode="EVN">
    <id root="1.2.3" extension="zz"/>
    <code code="ZZ" codeSystem="2.16.840.1.113883.19.5.99999.1" displayName="Unknown local test"/>
    <statusCode code="completed"/>
    <effectiveTime value="20240301075800"/>
    <value xsi:type="PQ" value="00" unit="1"/>
   </observation></component>
  </organizer></entry>
 </section></component></structuredBody></component>
</ClinicalDocument>
"#;

fn lab_upstream() -> Router {
    Router::new().route(
        "/cda/{id}",
        get(|| async { ([("content-type", "application/xml")], LOCAL_CDA) }),
    )
}

fn lab_config(map: &std::path::Path) -> String {
    format!(
        r#"
[[sources]]
name = "lab"
kind = "his-xml"
url = "http://{{faulty}}/cda/{{patient_id}}"
format = "cda"
code_maps = ["lis"]
timezone = "Asia/Shanghai"

[[code_maps]]
name = "lis"
file = {:?}
"#,
        map.display().to_string()
    )
}

const MAP_HEADER: &str = "source_system,source_code,target_system,target_code,target_display\n";

#[tokio::test]
async fn code_maps_and_time_zones_apply_on_every_path_and_swap_on_reload() {
    let dir = tempdir();
    let map = dir.join("lis.csv");
    std::fs::write(
        &map,
        format!("{MAP_HEADER}urn:oid:2.16.840.1.113883.19.5.99999.1,GLU,http://loinc.org,2345-7,Glucose [Mass/volume] in Serum or Plasma\n"),
    )
    .unwrap();
    let gw = start_with(&lab_config(&map), lab_upstream()).await;

    let body = gw
        .json("/v1/data/lab?patient_id=P1", 200, "application/json")
        .await;
    let rows = body["observations"].as_array().unwrap();
    let glucose = &rows[0];
    assert_eq!(glucose["code_system"], "http://loinc.org");
    assert_eq!(glucose["code"], "2345-7");
    assert_eq!(
        glucose["display"],
        "Glucose [Mass/volume] in Serum or Plasma"
    );
    assert_eq!(
        glucose["mapped_from"],
        "urn:oid:2.16.840.1.113883.19.5.99999.1|GLU"
    );
    assert_eq!(glucose["value"].to_string(), "5.40");
    assert_eq!(glucose["effective"], "2024-03-01T07:58:00+08:00");
    assert_eq!(glucose["effective_zone"], "assumed");
    // Unmapped codes stay as sent, and are counted.
    assert_eq!(rows[1]["code"], "NA");
    assert!(rows[1].get("mapped_from").is_none());

    // One unreadable value costs that value only: no value, a reason, a warning with its place.
    assert!(rows[1]["value"].is_null());
    assert_eq!(rows[1]["data_absent_reason"], "error");
    assert!(
        rows[1]["warnings"].as_str().unwrap().contains("line 18"),
        "{}",
        rows[1]
    );
    assert_eq!(body["warnings"]["count"], 1);
    assert!(body["warnings"]["first"][0]["at"]
        .as_str()
        .unwrap()
        .starts_with("line 18"));
    // `00` is a valid xs:decimal: read as 0, not a failed document.
    assert_eq!(rows[2]["value"].to_string(), "0");

    // The FHIR output keeps both codings and marks the assumed offset.
    let bundle: Bundle =
        strict(&fhir_get(&gw, "/fhir/Observation?patient=P1&_source=lab", 200).await);
    let first = &observations(&bundle)[0];
    let codes: Vec<_> = first
        .code
        .coding
        .iter()
        .filter_map(|c| c.code.as_ref()?.value.clone())
        .collect();
    assert_eq!(codes, ["2345-7", "GLU"]);
    let issues = outcome(&bundle).expect("the warning is reported").issue;
    assert!(issues
        .iter()
        .any(|i| i.severity.value.as_deref() == Some("warning")));
    let text = fhir_get(&gw, "/fhir/Observation?patient=P1&_source=lab", 200).await;
    assert!(text.contains("urn:medgate:fhir:extension:offset-assumed"));

    // Downloads go through the same transforms.
    let csv_body = gw
        .get("/v1/export?source=lab&patient_id=P1&format=csv")
        .await
        .text()
        .await
        .unwrap();
    let mut reader = csv::Reader::from_reader(csv_body.as_bytes());
    let first = reader.records().next().unwrap().unwrap();
    assert_eq!(&first[5], "2345-7");
    assert_eq!(&first[9], "2024-03-01T07:58:00+08:00");

    let metrics = gw.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("medgate_codes_unmapped_total{source=\"lab\"}")),
        "unmapped codes are counted"
    );

    // A new map swaps in on reload; a broken one is refused and the old one keeps serving.
    std::fs::write(&map, format!("{MAP_HEADER}urn:oid:2.16.840.1.113883.19.5.99999.1,GLU,http://loinc.org,2339-0,Glucose [Mass/volume] in Blood\n")).unwrap();
    gw.handle.reload(&gw.config).expect("valid reload");
    let body = gw
        .json("/v1/data/lab?patient_id=P1", 200, "application/json")
        .await;
    assert_eq!(body["observations"][0]["code"], "2339-0");
    std::fs::write(&map, format!("{MAP_HEADER}a,b,c\n")).unwrap();
    let error = gw
        .handle
        .reload(&gw.config)
        .expect_err("a broken map is refused")
        .to_string();
    assert!(error.contains("lis.csv: line 2, column 4"), "{error}");
    let body = gw
        .json("/v1/data/lab?patient_id=P1", 200, "application/json")
        .await;
    assert_eq!(
        body["observations"][0]["code"], "2339-0",
        "the old map keeps serving"
    );
}

#[tokio::test]
async fn a_payload_that_is_not_well_formed_is_still_an_upstream_error() {
    let gw = start(
        r#"
[[sources]]
name = "garbled"
kind = "his-xml"
url = "http://{faulty}/truncated/{patient_id}"
format = "fhir-r4"
"#,
    )
    .await;
    let text = fhir_get(&gw, "/fhir/Observation?patient=P1&_source=garbled", 502).await;
    let oo: OperationOutcome = strict(&text);
    assert!(oo.issue[0]
        .diagnostics
        .as_ref()
        .unwrap()
        .value
        .as_ref()
        .unwrap()
        .contains("malformed"));
}
