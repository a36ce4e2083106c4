//! Downloads in every format, read back with real parsers.

use std::io::Cursor;

use calamine::{Data, Reader, Xlsx};
use medgate_core::model::COLUMNS;
use medgate_core::{Observation, Value};

use crate::util::{header, start, Gateway};

fn expected(gw: &Gateway, patients: &[u32]) -> Vec<Observation> {
    patients
        .iter()
        .flat_map(|&p| (0..gw.workload.observations).map(move |j| (p, j)))
        .map(|(p, j)| gw.workload.observation(p, j))
        .collect()
}

fn text_row(o: &Observation) -> Vec<String> {
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    vec![
        o.patient_id.clone(),
        o.source.clone(),
        o.id.clone(),
        opt(&o.category),
        opt(&o.code_system),
        opt(&o.code),
        opt(&o.display),
        o.value.as_text().into_owned(),
        opt(&o.unit),
        opt(&o.effective),
    ]
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
    let want: Vec<Vec<String>> = expected(&gw, &[2, 0]).iter().map(text_row).collect();
    assert_eq!(rows, want);
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
    let rows: Vec<Observation> =
        serde_json::from_slice(&body).expect("a JSON array of observations");
    assert_eq!(rows, expected(&gw, &[1]));

    let body = download(
        &gw,
        "source=his&patient_id=P000002,P000004&format=ndjson",
        "application/x-ndjson",
        "medgate-his.ndjson",
    )
    .await;
    let text = String::from_utf8(body).unwrap();
    let rows: Vec<Observation> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("one object per line"))
        .collect();
    assert_eq!(rows, expected(&gw, &[1, 3]));
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
        assert_eq!(row[0], Data::String(o.patient_id.clone()));
        assert_eq!(row[5], Data::String(o.code.clone().unwrap()));
        match (&row[7], &o.value) {
            (Data::Float(f), Value::Number(d)) => assert_eq!(*f, d.to_f64()),
            (Data::Int(i), Value::Number(d)) => assert_eq!(*i as f64, d.to_f64()),
            (cell, value) => panic!("value cell {cell:?} for {value:?}"),
        }
        let Data::DateTime(dt) = &row[9] else {
            panic!("effective is a real datetime, got {:?}", row[9])
        };
        // The wall-clock time as written upstream (its +08:00 offset is shown by the cell format).
        let shown = format!("{:?}", dt.as_datetime().expect("valid datetime"));
        assert_eq!(format!("{shown}+08:00"), o.effective.clone().unwrap());
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
        serde_json::json!(["csv", "json", "ndjson", "xlsx"])
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
async fn a_failure_midway_cuts_the_download_instead_of_ending_it_cleanly() {
    let gw = start("").await;
    let response = gw
        .get("/v1/export?source=his&patient_id=P000001,P999999&format=json")
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
