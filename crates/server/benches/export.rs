//! Every registered export format over the same 100k workload rows (the rows of
//! `shared/bench/gen/gen_fhir.py`), written to `tokio::io::sink()`. A new exporter is measured
//! as soon as it is registered.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use futures::StreamExt;
use medgate_core::ObservationStream;
use medgate_demo::Workload;

const ROWS: u64 = 100_000;

/// Generated lazily, so the bench holds no row set of its own.
fn rows() -> ObservationStream {
    futures::stream::iter(Workload::default().rows(ROWS).map(Ok)).boxed()
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let registry = medgate::registry();
    let mut group = c.benchmark_group("export_100k");
    group.sample_size(10);
    group.throughput(Throughput::Elements(ROWS));
    // The row generator alone, to separate its cost from the exporters'.
    group.bench_function("generator-only", |b| {
        b.to_async(&runtime)
            .iter(|| async { assert_eq!(rows().count().await as u64, ROWS) });
    });
    for format in registry.formats() {
        let exporter = registry.exporter(format).expect("registered").clone();
        group.bench_function(format, |b| {
            b.to_async(&runtime).iter(|| async {
                let mut sink = tokio::io::sink();
                let summary = exporter.export(rows(), &mut sink).await.expect("export");
                assert_eq!(summary.rows, ROWS);
            });
        });
    }
    group.finish();
    report_peak_memory();
}

/// Peak resident memory of the bench process (Linux `VmHWM`): rows are generated lazily, so
/// this bounds what the exporters hold while streaming.
fn report_peak_memory() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if let Some(peak) = status.lines().find_map(|l| l.strip_prefix("VmHWM:")) {
        eprintln!("peak RSS of the export bench process: {}", peak.trim());
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
