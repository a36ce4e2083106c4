//! Parser throughput on the bench workload's Open mHealth shape (gen_fhir.py `omh_points`):
//! bytes to typed observations (decimals, date-times with offsets, UCUM quantities, periods).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use medgate_source_wearable::{parse, ParseContext, PayloadFormat};

/// `n` points alternating heart-rate 1.0 and step-count 2.0, as the generator writes them.
fn payload(n: usize) -> String {
    let points: Vec<String> = (0..n)
        .map(|j| {
            let id = format!("P000001-omh-{:05}", j + 1);
            if j % 2 == 0 {
                format!(
                    r#"{{"header":{{"id":"{id}","creation_date_time":"2024-01-01T00:00:00+08:00","acquisition_provenance":{{"source_name":"SyntheticBand","modality":"sensed"}},"user_id":"P000001","schema_id":{{"namespace":"omh","name":"heart-rate","version":"1.0"}}}},"body":{{"heart_rate":{{"value":{},"unit":"beats/min"}},"effective_time_frame":{{"date_time":"2024-01-01T00:00:00+08:00"}}}}}}"#,
                    50 + j % 90
                )
            } else {
                format!(
                    r#"{{"header":{{"id":"{id}","creation_date_time":"2024-01-01T00:15:00+08:00","acquisition_provenance":{{"source_name":"SyntheticBand","modality":"sensed"}},"user_id":"P000001","schema_id":{{"namespace":"omh","name":"step-count","version":"2.0"}}}},"body":{{"step_count":{{"value":{},"unit":"steps"}},"effective_time_frame":{{"time_interval":{{"start_date_time":"2024-01-01T00:15:00+08:00","end_date_time":"2024-01-01T00:30:00+08:00"}}}}}}}}"#,
                    j % 2000
                )
            }
        })
        .collect();
    format!("[{}]", points.join(","))
}

fn bench_omh(c: &mut Criterion) {
    let mut group = c.benchmark_group("omh");
    for n in [100, 10_000] {
        let body = payload(n);
        // The measured path is the clean one: every point read, nothing to warn about. (Checked
        // in a scope of its own so that its observations are freed before measuring.)
        {
            let once = parse(
                &PayloadFormat::OpenMHealth,
                body.as_bytes(),
                &ParseContext::new("wearable", "P000001"),
            )
            .expect("the workload parses");
            assert_eq!(once.len(), n);
            assert!(once.iter().all(|o| o.warnings.is_empty()));
        }
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &body, |b, body| {
            b.iter(|| {
                let ctx = ParseContext::new("wearable", "P000001");
                parse(&PayloadFormat::OpenMHealth, body.as_bytes(), &ctx).map(|rows| rows.len())
            })
        });
        // Reference point: a plain serde_json DOM parse of the same bytes (no mapping at all).
        group.bench_with_input(BenchmarkId::new("serde_json_value", n), &body, |b, body| {
            b.iter(|| serde_json::from_str::<serde_json::Value>(body).map(|v| v.is_array()))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_omh);
criterion_main!(benches);
