//! S4 "exporter alone" for CSV (`shared/bench/SCENARIOS.md`): 1M observations of the benchmark
//! workload's shape, built in memory before the clock starts (as the Go encoding/csv and
//! pandas references build their rows), exported to a file and to `tokio::io::sink()`; and,
//! as the floor, the same observations only streamed and dropped.
//! Criterion reports rows/s as elements/s.
//!
//! Run: `cargo bench -p medgate-export-csv --bench export`.

#[path = "../tests/fixture/mod.rs"]
mod fixture;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use futures::StreamExt;
use medgate_core::{Exporter, Observation};
use medgate_export_csv::CsvExporter;
use tokio::io::AsyncWrite;

const ROWS: u64 = 1_000_000;

fn observations() -> Vec<Observation> {
    (0..ROWS).map(fixture::workload).collect()
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let path = std::env::temp_dir().join(format!("medgate-csv-bench-{}.csv", std::process::id()));
    let mut group = c.benchmark_group("csv_exporter_1m");
    group.sample_size(10);
    group.throughput(Throughput::Elements(ROWS));
    for target in ["file", "sink"] {
        group.bench_function(target, |b| {
            b.to_async(&runtime).iter_batched(
                observations,
                |rows| async {
                    let mut out: Box<dyn AsyncWrite + Send + Unpin> = match target {
                        "file" => Box::new(tokio::fs::File::create(&path).await.expect("create")),
                        _ => Box::new(tokio::io::sink()),
                    };
                    let summary = CsvExporter
                        .export(fixture::ok_stream(rows), &mut out)
                        .await
                        .expect("export");
                    assert_eq!(summary.rows, ROWS);
                },
                BatchSize::PerIteration,
            );
        });
    }
    // The floor: moving the observations through the stream and dropping them, no encoding.
    group.bench_function("stream-only", |b| {
        b.to_async(&runtime).iter_batched(
            observations,
            |rows| async {
                let count = fixture::ok_stream(rows).count().await;
                assert_eq!(count as u64, ROWS);
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();
    if let Ok(meta) = std::fs::metadata(&path) {
        eprintln!("CSV file of {ROWS} rows: {} bytes", meta.len());
    }
    let _ = std::fs::remove_file(&path);
}

criterion_group!(benches, bench);
criterion_main!(benches);
