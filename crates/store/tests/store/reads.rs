//! Reads through `ObservationStore`: filters, order, streaming; rule windows.

use futures::{StreamExt, TryStreamExt};
use jiff::Timestamp;
use medgate_core::{CodeFilter, Decimal, FetchRequest, Filter, ObservationStore};
use medgate_store::{ValueTest, WindowQuery};

use crate::common::*;

fn at(text: &str) -> Timestamp {
    text.parse().expect("timestamp")
}

async fn fetch(db: &Db, patient: &str, filter: Filter) -> Vec<String> {
    let mut request = FetchRequest::new(patient, "req-1");
    request.filter = filter;
    let stream = ObservationStore::observations(&db.store, "epro", &request)
        .await
        .expect("stream");
    stream.map(|o| o.expect("row").id).collect::<Vec<_>>().await
}

mod filters_and_order {
    crate::both!(super::filters_and_order);
}

async fn filters_and_order(db: &Db) {
    let mut undated = numeric("8867-4", "60", "/min", "2026-03-01");
    undated.effective = None;
    undated.id = "undated".into();
    let mut multi = numeric("9999-9", "1", "1", "2026-03-02T00:00:00Z");
    multi
        .code
        .coding
        .push(medgate_core::Coding::new("urn:local", "HR", None));
    multi.id = "multi".into();
    let reports = vec![
        report(
            "P-a",
            vec![
                numeric("8867-4", "70", "/min", "2026-03-03T10:00:00+02:00"),
                numeric("8867-4", "71", "/min", "2026-03-01T10:00:00Z"),
                answer("72514-3", "2", "2026-03-02T12:00:00Z"),
                undated,
                numeric("8310-5", "36.6", "Cel", "2026-03-02"),
                blood_pressure("150", "90", "2026-03-04T00:00:00Z"),
                multi,
            ],
        ),
        report(
            "P-b",
            vec![numeric("8867-4", "99", "/min", "2026-03-02T00:00:00Z")],
        ),
    ];
    db.store.ingest(batch(reports)).await.unwrap();

    // Order: no time first, then by effective start (an instant with an offset is compared
    // as its UTC instant; a date starts at its UTC midnight).
    assert_eq!(
        fetch(db, "P-a", Filter::default()).await,
        [
            "undated",
            "8867-4@2026-03-01T10:00:00Z",
            "8310-5@2026-03-02",
            "multi",
            "72514-3@2026-03-02T12:00:00Z",
            "8867-4@2026-03-03T10:00:00+02:00",
            "bp@2026-03-04T00:00:00Z",
        ]
    );
    let window = Filter {
        since: Some(at("2026-03-02T06:00:00Z")),
        until: Some(at("2026-03-03T08:00:00Z")),
        codes: vec![],
    };
    // 2026-03-03T10:00+02:00 is 08:00Z: inside (until is inclusive); the date 03-02 reaches
    // past 06:00Z, so it is inside too.
    assert_eq!(
        fetch(db, "P-a", window).await,
        [
            "8310-5@2026-03-02",
            "72514-3@2026-03-02T12:00:00Z",
            "8867-4@2026-03-03T10:00:00+02:00",
        ]
    );
    let heart = Filter {
        codes: vec![CodeFilter::parse("http://loinc.org|8867-4")],
        ..Filter::default()
    };
    assert_eq!(
        fetch(db, "P-a", heart).await,
        [
            "undated",
            "8867-4@2026-03-01T10:00:00Z",
            "8867-4@2026-03-03T10:00:00+02:00",
        ]
    );
    // A second coding and a component code match too.
    let local = Filter {
        codes: vec![
            CodeFilter::parse("urn:local|HR"),
            CodeFilter::parse("8480-6"),
        ],
        ..Filter::default()
    };
    assert_eq!(
        fetch(db, "P-a", local).await,
        ["multi", "bp@2026-03-04T00:00:00Z"]
    );
    let wrong_system = Filter {
        codes: vec![CodeFilter::parse("urn:other|8867-4")],
        ..Filter::default()
    };
    assert!(fetch(db, "P-a", wrong_system).await.is_empty());
    assert!(fetch(db, "P-nobody", Filter::default()).await.is_empty());
    assert_eq!(fetch(db, "P-b", Filter::default()).await.len(), 1);
    let listed: Vec<String> = ObservationStore::patients(&db.store, "epro")
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(listed, ["P-a", "P-b"]);
    assert!(patients_of(db, "his").await.is_empty());
}

async fn patients_of(db: &Db, source: &str) -> Vec<String> {
    db.store
        .patients_stream(source)
        .try_collect()
        .await
        .unwrap()
}

mod streaming {
    crate::both!(super::streaming);
}

/// 6,000 observations stream in order; a consumer that stops early just drops the stream.
async fn streaming(db: &Db) {
    for chunk in 0..6 {
        let observations = (0..1000)
            .map(|i| {
                let n = chunk * 1000 + i;
                numeric(
                    "8867-4",
                    &format!("{}", 50 + n % 50),
                    "/min",
                    &format!("2026-01-01T00:00:{:02}Z", n % 60),
                )
            })
            .collect();
        db.store
            .ingest(batch(vec![report("P-many", observations)]))
            .await
            .unwrap();
    }
    let request = FetchRequest::new("P-many", "r");
    let mut stream = db.store.observations_stream("epro", &request);
    let mut n = 0;
    let mut last = None;
    while let Some(o) = stream.next().await {
        let o = o.unwrap();
        let start = o
            .effective
            .as_ref()
            .and_then(|e| e.start())
            .map(|d| d.bounds().0);
        assert!(last <= start, "ordered by effective start");
        last = start;
        n += 1;
    }
    assert_eq!(n, 6000);
    let mut early = db.store.observations_stream("epro", &request);
    assert!(early.next().await.is_some());
    drop(early);
    // The store keeps serving after an abandoned stream.
    assert_eq!(
        db.store.observations_stream("epro", &request).count().await,
        6000
    );
}

mod rule_windows {
    crate::both!(super::rule_windows);
}

/// "3 systolic readings > 160 within 24 h": components count, comparisons are exact,
/// the window is inclusive and per patient.
async fn rule_windows(db: &Db) {
    let reports = vec![
        report(
            "P-bp",
            vec![
                blood_pressure("161", "90", "2026-03-01T08:00:00Z"),
                numeric(
                    "8480-6",
                    "160.0000001",
                    "mm[Hg]",
                    "2026-03-01T20:00:00+02:00",
                ),
                numeric("8480-6", "160.0", "mm[Hg]", "2026-03-01T19:00:00Z"),
                blood_pressure("170", "100", "2026-03-02T08:00:00Z"),
                blood_pressure("180", "100", "2026-03-03T09:00:00Z"),
            ],
        ),
        report(
            "P-other",
            vec![blood_pressure("200", "100", "2026-03-01T09:00:00Z")],
        ),
    ];
    db.store.ingest(batch(reports)).await.unwrap();
    let query = |since: &str, until: &str, test: ValueTest| WindowQuery {
        source: "epro".into(),
        patient_id: "P-bp".into(),
        code: CodeFilter::parse("http://loinc.org|8480-6"),
        since: at(since),
        until: at(until),
        test,
    };
    let above = || ValueTest::Above(Decimal::parse("160").unwrap());
    let count = |q| async move { db.store.count_matching(&q).await.unwrap() };
    assert_eq!(
        count(query(
            "2026-03-01T08:00:00Z",
            "2026-03-02T08:00:00Z",
            above()
        ))
        .await,
        3
    );
    assert_eq!(
        count(query(
            "2026-03-01T08:00:01Z",
            "2026-03-02T08:00:00Z",
            above()
        ))
        .await,
        2
    );
    assert_eq!(
        count(query(
            "2026-03-02T09:00:00Z",
            "2026-03-03T09:00:00Z",
            above()
        ))
        .await,
        1
    );
    let below = ValueTest::Below(Decimal::parse("161").unwrap());
    assert_eq!(
        count(query("2026-03-01T00:00:00Z", "2026-03-04T00:00:00Z", below)).await,
        2
    );
    let equals = ValueTest::Equals("160".into());
    assert_eq!(
        count(query(
            "2026-03-01T00:00:00Z",
            "2026-03-04T00:00:00Z",
            equals
        ))
        .await,
        1
    );
    db.store
        .ingest(batch(vec![report(
            "P-q",
            vec![answer("44250-9", "yes", "2026-03-01T10:00:00Z")],
        )]))
        .await
        .unwrap();
    let q = WindowQuery {
        patient_id: "P-q".into(),
        code: CodeFilter::parse("44250-9"),
        ..query(
            "2026-03-01T00:00:00Z",
            "2026-03-02T00:00:00Z",
            ValueTest::Equals("yes".into()),
        )
    };
    assert_eq!(count(q).await, 1);
}
