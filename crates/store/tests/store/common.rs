//! Shared helpers: real databases (SQLite in a temp dir; PostgreSQL from
//! `MEDGATE_TEST_POSTGRES_URL` in a schema of its own), report builders and counters.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use medgate_core::{
    CodeableConcept, Component, DateTime, Decimal, Effective, Observation, Quantity, Value,
};
use medgate_store::{IdempotencyKey, IngestBatch, NewReport, Store, StoreOptions};

/// The environment variable naming the test PostgreSQL server.
pub const PG_ENV: &str = "MEDGATE_TEST_POSTGRES_URL";

/// A database under test; dropping it removes it (the temp dir or the schema).
pub struct Db {
    pub store: Store,
    pub url: String,
    pub schema: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl Db {
    /// A fresh SQLite store in a temp dir.
    pub async fn sqlite() -> Db {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}/nested/dir/medgate.db", dir.path().display());
        let store = Store::open(&url).await.expect("open sqlite");
        Db {
            store,
            url,
            schema: None,
            _dir: Some(dir),
        }
    }

    /// A fresh PostgreSQL store in a schema of its own, or `None` (with a message) when
    /// `MEDGATE_TEST_POSTGRES_URL` is unset. Panics when it is set and unreachable.
    pub async fn postgres() -> Option<Db> {
        let Ok(url) = std::env::var(PG_ENV) else {
            eprintln!("skipped: {PG_ENV} is not set (CI sets it; .ci/run)");
            return None;
        };
        static N: AtomicU32 = AtomicU32::new(0);
        let schema = format!(
            "medgate_test_{}_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed),
            jiff::Timestamp::now().as_millisecond() % 1_000_000
        );
        let store = Self::open_pg(&url, &schema).await;
        Some(Db {
            store,
            url,
            schema: Some(schema),
            _dir: None,
        })
    }

    /// Another store on the same database (a second replica, or a reopen).
    pub async fn reopen(&self) -> Store {
        match &self.schema {
            Some(schema) => Self::open_pg(&self.url, schema).await,
            None => Store::open(&self.url).await.expect("reopen sqlite"),
        }
    }

    async fn open_pg(url: &str, schema: &str) -> Store {
        let options = StoreOptions {
            pg_schema: Some(schema.to_owned()),
            pg_max_connections: 8,
            ..StoreOptions::default()
        };
        match Store::open_with(url, options).await {
            Ok(s) => s,
            Err(e) => panic!("{PG_ENV} is set but PostgreSQL is not usable: {e}"),
        }
    }

    /// Closes the store and drops the test schema.
    pub async fn finish(self) {
        self.store.close().await;
        if let Some(schema) = &self.schema {
            drop_schema(&self.url, schema).await;
        }
    }
}

async fn drop_schema(url: &str, schema: &str) {
    use sqlx::Connection;
    if let Ok(mut conn) = sqlx::PgConnection::connect(url).await {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
        )))
        .execute(&mut conn)
        .await;
    }
}

/// Runs a scenario against SQLite and, when configured, PostgreSQL.
#[macro_export]
macro_rules! both {
    ($scenario:path) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn sqlite() {
            let db = $crate::common::Db::sqlite().await;
            $scenario(&db).await;
            db.finish().await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn postgres() {
            let Some(db) = $crate::common::Db::postgres().await else {
                return;
            };
            $scenario(&db).await;
            db.finish().await;
        }
    };
}

/// A numeric observation of `code` at `effective` (RFC 3339).
pub fn numeric(code: &str, value: &str, unit: &str, effective: &str) -> Observation {
    let mut o = Observation::new("".into(), "".into(), format!("{code}@{effective}"));
    o.code = CodeableConcept::coded(medgate_core::model::LOINC, code, Some("Test"));
    o.category = vec![CodeableConcept::category("vital-signs")];
    o.effective = Some(Effective::DateTime(
        DateTime::parse(effective).expect("time"),
    ));
    o.value = Value::Quantity(Quantity::ucum(Decimal::parse(value).expect("number"), unit));
    o
}

/// A blood-pressure panel with systolic/diastolic components.
pub fn blood_pressure(systolic: &str, diastolic: &str, effective: &str) -> Observation {
    let mut o = Observation::new("".into(), "".into(), format!("bp@{effective}"));
    o.code = CodeableConcept::coded(medgate_core::model::LOINC, "85354-9", Some("BP panel"));
    o.effective = Some(Effective::DateTime(
        DateTime::parse(effective).expect("time"),
    ));
    let part = |code: &str, v: &str| Component {
        code: CodeableConcept::coded(medgate_core::model::LOINC, code, None),
        value: Value::Quantity(Quantity::ucum(Decimal::parse(v).expect("number"), "mm[Hg]")),
        ..Component::default()
    };
    o.components = vec![part("8480-6", systolic), part("8462-4", diastolic)];
    o
}

/// A questionnaire answer.
pub fn answer(code: &str, text: &str, effective: &str) -> Observation {
    let mut o = Observation::new("".into(), "".into(), format!("{code}@{effective}"));
    o.code = CodeableConcept::coded(medgate_core::model::LOINC, code, None);
    o.category = vec![CodeableConcept::category("survey")];
    o.effective = Some(Effective::DateTime(
        DateTime::parse(effective).expect("time"),
    ));
    o.value = Value::String(text.to_owned());
    o
}

/// A report of `patient` with these observations (patient and source set as the server
/// would).
pub fn report(patient: &str, observations: Vec<Observation>) -> NewReport {
    let patient_arc: Arc<str> = patient.into();
    NewReport {
        patient_id: patient.to_owned(),
        kind: "epro".into(),
        reported_at: Some(DateTime::parse("2026-03-01T08:00:00+08:00").expect("time")),
        serious_adverse_event: false,
        meta: Some(serde_json::json!({"app": "diary", "version": "1.2"})),
        observations: observations
            .into_iter()
            .map(|mut o| {
                o.patient_id = patient_arc.clone();
                o.source = "epro".into();
                o
            })
            .collect(),
    }
}

/// A diary report of eight items.
pub fn diary(patient: &str, day: u32) -> NewReport {
    let at = format!("2026-03-{:02}T07:58:00+08:00", day.clamp(1, 28));
    report(
        patient,
        vec![
            numeric("8867-4", "72", "/min", &at),
            numeric("8480-6", "120", "mm[Hg]", &at),
            numeric("8462-4", "80", "mm[Hg]", &at),
            numeric("8310-5", "36.60", "Cel", &at),
            numeric("29463-7", "70.5", "kg", &at),
            numeric("59408-5", "98", "%", &at),
            answer("72514-3", "2", &at),
            answer("44250-9", "no", &at),
        ],
    )
}

/// A batch for the `epro` source.
pub fn batch(reports: Vec<NewReport>) -> IngestBatch {
    IngestBatch {
        partner: "app".into(),
        source: "epro".into(),
        idempotency: None,
        reports,
    }
}

/// A batch with an idempotency key and the SHA-256 of `body`.
pub fn keyed(reports: Vec<NewReport>, key: &str, body: &str) -> IngestBatch {
    use sha2::Digest;
    IngestBatch {
        idempotency: Some(IdempotencyKey {
            key: key.to_owned(),
            body_sha256: sha2::Sha256::digest(body.as_bytes()).into(),
        }),
        ..batch(reports)
    }
}

/// Every observation of `patient` in `epro`.
pub async fn all_of(store: &Store, patient: &str) -> Vec<Observation> {
    use futures::TryStreamExt;
    store
        .observations_stream("epro", &medgate_core::FetchRequest::new(patient, "test"))
        .try_collect()
        .await
        .expect("read observations")
}

/// Every patient in `epro`.
pub async fn patients(store: &Store) -> Vec<String> {
    use futures::TryStreamExt;
    store
        .patients_stream("epro")
        .try_collect()
        .await
        .expect("list patients")
}
