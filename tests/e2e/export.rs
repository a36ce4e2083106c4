//! Downloads in every format, read back with real parsers.

use std::io::Cursor;

use calamine::{Data, Reader, Xlsx};
use medgate_core::{Observation, Value, COLUMNS};

use crate::util::{flat, header, start, Gateway};

fn expected(gw: &Gateway, patients: &[u32]) -> Vec<Observation> {
    patients
        .iter()
        .flat_map(|&p| (0..gw.workload.observations).map(move |j| (p, j)))
        .map(|(p, j)| gw.workload.observation(p, j))
        .collect()
}

/// Every cell of the observation's rows as CSV text.
fn text_rows(o: &Observation) -> Vec<Vec<String>> {
    medgate_core::rows(o)
        .map(|row| row.cells.iter().map(|c| c.as_text().into_owned()).collect())
        .collect()
}

async fn download(gw: &Gateway, query: &str, content_type: &str, filename: &str) -> Vec<u8> {
    let response = gw.get(&format!("/v1/export?{query}")).await;
    assert_eq!(response.status(), 200, "{query}");
    assert_eq!(header(&response, "content-type"), content_type);
    assert_eq!(
        header(&response, "content-disposition"),
        format!("attachment; filename=\"{filename}\"")
    );
    response.bytes().await.expect("whole body").to_vec()
}

#[tokio::test]
async fn csv_parses_back_to_the_same_rows_in_the_order_asked() {
    let gw = start("").await;
    let body = download(
        &gw,
        "source=his&patient_id=P000003,P000001&format=csv",
        "text/csv; charset=utf-8",
        "medgate-his.csv",
    )
    .await;
    let mut reader = csv::Reader::from_reader(body.as_slice());
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        COLUMNS.to_vec()
    );
    let rows: Vec<Vec<String>> = reader
        .records()
        .map(|r| r.unwrap().iter().map(String::from).collect())
        .collect();
    let want: Vec<Vec<String>> = expected(&gw, &[2, 0]).iter().flat_map(text_rows).collect();
    assert_eq!(rows, want);
    // Spot checks against the upstream's own text, independent of the projection code.
    assert_eq!(rows[0][0], "P000003");
    assert_eq!(rows[0][4], "http://loinc.org");
    assert!(rows[0][9].ends_with("+08:00"));
    assert_eq!(rows[0][10], "final");
}

#[tokio::test]
async fn json_and_ndjson_parse_back_with_precision() {
    let gw = start("").await;
    let body = download(
        &gw,
        "source=his&patient_id=P000002&format=json",
        "application/json",
        "medgate-his.json",
    )
    .await;
    let rows: serde_json::Value = serde_json::from_slice(&body).expect("a JSON array of rows");
    assert_eq!(rows, flat(&expected(&gw, &[1])));

    let body = download(
        &gw,
        "source=his&patient_id=P000002,P000004&format=ndjson",
        "application/x-ndjson",
        "medgate-his.ndjson",
    )
    .await;
    let text = String::from_utf8(body).unwrap();
    let rows: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("one object per line"))
        .collect();
    assert_eq!(
        serde_json::Value::Array(rows),
        flat(&expected(&gw, &[1, 3]))
    );
}

#[tokio::test]
async fn xlsx_reopens_with_header_numbers_and_datetimes() {
    let gw = start("").await;
    let body = download(
        &gw,
        "source=his&patient_id=P000001,P000002&format=xlsx",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "medgate-his.xlsx",
    )
    .await;
    let mut book: Xlsx<_> =
        calamine::open_workbook_from_rs(Cursor::new(body)).expect("a valid xlsx");
    let range = book
        .worksheet_range("observations")
        .expect("sheet observations");
    let want = expected(&gw, &[0, 1]);
    assert_eq!(range.height(), want.len() + 1);
    let header: Vec<String> = range
        .rows()
        .next()
        .unwrap()
        .iter()
        .map(|c| c.to_string())
        .collect();
    assert_eq!(header, COLUMNS.to_vec());
    for (row, o) in range.rows().skip(1).zip(&want) {
        assert_eq!(row[0], Data::String(o.patient_id.to_string()));
        let code = o.code.primary().and_then(|c| c.code.clone()).unwrap();
        assert_eq!(row[5], Data::String(code));
        let Value::Quantity(q) = &o.value else {
            panic!("workload values are quantities")
        };
        let d = q.value.as_ref().unwrap();
        match &row[7] {
            Data::Float(f) => assert_eq!(*f, d.to_f64()),
            Data::Int(i) => assert_eq!(*i as f64, d.to_f64()),
            cell => panic!("value cell {cell:?} for {d}"),
        }
        let Data::DateTime(dt) = &row[9] else {
            panic!("effective is a real datetime, got {:?}", row[9])
        };
        // The wall-clock time as written upstream (its +08:00 offset is shown by the cell format).
        let shown = format!("{:?}", dt.as_datetime().expect("valid datetime"));
        let effective = o.effective.unwrap().start().unwrap().to_string();
        assert_eq!(format!("{shown}+08:00"), effective);
    }
}

#[tokio::test]
async fn export_errors_before_the_first_byte_are_problems() {
    let gw = start("").await;
    let body = gw
        .json(
            "/v1/export?source=his&patient_id=P000001&format=pdf",
            400,
            "application/problem+json",
        )
        .await;
    assert_eq!(
        body["formats"],
        serde_json::json!(["csv", "fhir-ndjson", "json", "ndjson", "xlsx"])
    );
    assert!(body["detail"]
        .as_str()
        .unwrap()
        .contains("unsupported format `pdf`"));
    let body = gw
        .json(
            "/v1/export?source=nope&patient_id=P000001&format=csv",
            404,
            "application/problem+json",
        )
        .await;
    assert!(body["detail"].as_str().unwrap().contains("unknown source"));
    let body = gw
        .json(
            "/v1/export?source=his&format=csv",
            400,
            "application/problem+json",
        )
        .await;
    assert!(body["detail"]
        .as_str()
        .unwrap()
        .contains("patient_id is required"));
    let body = gw
        .json(
            "/v1/export?source=his&patient_id=P000001,,P2&format=csv",
            400,
            "application/problem+json",
        )
        .await;
    assert!(
        body["detail"].as_str().unwrap().contains("patient_id #2"),
        "{body}"
    );
    let many = (1..=51)
        .map(|i| format!("P{i:06}"))
        .collect::<Vec<_>>()
        .join(",");
    let body = gw
        .json(
            &format!("/v1/export?source=his&patient_id={many}&format=csv"),
            400,
            "application/problem+json",
        )
        .await;
    assert!(body["detail"]
        .as_str()
        .unwrap()
        .contains("at most 50 patients"));
    let body = gw
        .json(
            "/v1/export?source=his&patient_id=P999999&format=csv",
            404,
            "application/problem+json",
        )
        .await;
    assert_eq!(body["detail"], "patient not found in source his");
}

#[tokio::test]
async fn a_failed_patient_is_skipped_and_recorded_or_cuts_the_download_on_request() {
    let gw = start("").await;
    // Default: the unknown patient is left out, the file is complete, the audit says so.
    let body = download(
        &gw,
        "source=his&patient_id=P000001,P999999,P000002&format=json",
        "application/json",
        "medgate-his.json",
    )
    .await;
    let rows: serde_json::Value = serde_json::from_slice(&body).expect("a complete JSON array");
    assert_eq!(rows, flat(&expected(&gw, &[0, 1])));
    let entries = crate::util::audit_entries(&gw);
    let last = entries.last().unwrap();
    assert_eq!(last["outcome"], "partial", "{last}");
    assert_eq!(last["records"], 2 * gw.workload.observations);
    assert_eq!(
        last["details"]["failed_fetches"],
        serde_json::json!([{ "patient_id": "P999999", "source": "his", "error": "patient-not-found" }])
    );

    // on_error=fail: the transfer is cut at the failure, never ended cleanly.
    let response = gw
        .get("/v1/export?source=his&patient_id=P000001,P999999&format=json&on_error=fail")
        .await;
    assert_eq!(
        response.status(),
        200,
        "the first patient streamed before the failure was known"
    );
    let read = response.bytes().await;
    assert!(
        read.is_err(),
        "the body must end in a transfer error, got {} clean bytes",
        read.map(|b| b.len()).unwrap_or(0)
    );
}
