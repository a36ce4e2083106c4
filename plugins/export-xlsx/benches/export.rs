//! Throughput of the XLSX exporter: 100k synthetic rows into `tokio::io::sink()`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use futures::stream;
use medgate_core::{Decimal, Exporter, Observation, ObservationStream, Value};
use medgate_export_xlsx::XlsxExporter;

const ROWS: u64 = 100_000;

/// A deterministic synthetic row; generated lazily so the bench itself holds no row set.
fn row(i: u64) -> Observation {
    let value = if i.is_multiple_of(2) { "72" } else { "36.5" };
    Observation {
        patient_id: format!("P{:06}", i % 1000 + 1),
        source: "his".into(),
        id: format!("obs-{i}"),
        category: Some("vital-signs".into()),
        code_system: Some("http://loinc.org".into()),
        code: Some("8867-4".into()),
        display: Some("Heart rate".into()),
        value: Value::Number(Decimal::parse(value).unwrap_or_else(|| unreachable!())),
        unit: Some("/min".into()),
        effective: Some("2024-01-01T08:00:00+08:00".into()),
    }
}

fn rows() -> ObservationStream {
    Box::pin(stream::iter((0..ROWS).map(|i| Ok(row(i)))))
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("export");
    group.sample_size(10);
    group.throughput(Throughput::Elements(ROWS));
    group.bench_function("xlsx", |b| {
        b.to_async(&runtime).iter(|| async {
            let mut sink = tokio::io::sink();
            let summary = XlsxExporter::default()
                .export(rows(), &mut sink)
                .await
                .unwrap();
            assert_eq!(summary.rows, ROWS);
        });
    });
    group.finish();
    check_peak_memory();
}

/// Peak resident memory of the whole bench process (Linux `VmHWM`); the rows are generated
/// lazily, so this bounds what the exporter holds while streaming 100k rows.
fn check_peak_memory() {
    const LIMIT_KIB: u64 = 64 * 1024;
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return;
    };
    let peak_kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
    if let Some(peak_kib) = peak_kib {
        eprintln!("peak RSS: {peak_kib} KiB");
        assert!(
            peak_kib < LIMIT_KIB,
            "peak RSS {peak_kib} KiB over {LIMIT_KIB} KiB"
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
