//! The memory budget at scale: 1,000,000 workload rows exported to a file while a counting
//! global allocator records the peak heap, then read back. Too slow for CI; run with
//! `cargo test --release -p medgate-export-parquet --test million -- --ignored --nocapture`.
//!
//! Alone in its test binary, so the allocator counts nothing but this export (and the
//! runtime around it). It sees the Rust heap only: zstd's compression contexts are allocated
//! by its C library, which the peak RSS printed alongside includes.

#[path = "../../export-csv/tests/fixture/mod.rs"]
mod fixture;

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, TimestampMicrosecondType};
use medgate_core::{Effective, Exporter, Value};
use medgate_export_parquet::ParquetExporter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// Counts live heap bytes and their high-water mark.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    let live = LIVE.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(live, Ordering::Relaxed);
}

fn shrank(bytes: usize) {
    LIVE.fetch_sub(bytes, Ordering::Relaxed);
}

// SAFETY: every call is forwarded to `System` unchanged; only the counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        unsafe { System.dealloc(p, layout) };
        shrank(layout.size());
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let q = unsafe { System.realloc(p, layout, new_size) };
        if !q.is_null() {
            if new_size > layout.size() {
                grew(new_size - layout.size());
            } else {
                shrank(layout.size() - new_size);
            }
        }
        q
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// A file output that notes when the first byte arrived and the largest single write.
struct FileOutput {
    file: std::fs::File,
    first_write: Option<Instant>,
    largest: usize,
}

impl tokio::io::AsyncWrite for FileOutput {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.first_write.get_or_insert_with(Instant::now);
        self.largest = self.largest.max(buf.len());
        Poll::Ready(self.file.write_all(buf).map(|()| buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(self.file.flush())
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

const ROWS: u64 = 1_000_000;

/// The budget for the whole process (issue #9); the exporter's own heap must stay well under.
const BUDGET: usize = 32 * 1024 * 1024;

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?;
    line.trim().trim_end_matches("kB").trim().parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "exports 1,000,000 rows; run explicitly in release mode"]
async fn a_million_rows_stay_within_the_memory_budget() {
    // What generating the rows costs on its own, to read the export rate against.
    let started = Instant::now();
    let generated = (0..ROWS)
        .map(fixture::workload)
        .filter(|o| o.value.is_some())
        .count();
    let generation = started.elapsed().as_secs_f64();
    assert_eq!(generated as u64, ROWS);

    // `MEDGATE_PARQUET_KEEP=FILE` keeps the file there, for `tests/bench/read_back.py`.
    let keep = std::env::var_os("MEDGATE_PARQUET_KEEP").map(std::path::PathBuf::from);
    let path = keep.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("medgate-parquet-{}.parquet", std::process::id()))
    });
    let mut out = FileOutput {
        file: std::fs::File::create(&path).unwrap(),
        first_write: None,
        largest: 0,
    };
    let observations = futures::stream::iter((0..ROWS).map(|i| Ok(fixture::workload(i))));
    let rss_before = peak_rss_kib();
    let baseline = LIVE.load(Ordering::Relaxed);
    PEAK.store(baseline, Ordering::Relaxed);
    let started = Instant::now();
    let summary = ParquetExporter::default()
        .export(Box::pin(observations), &mut out)
        .await
        .unwrap();
    let seconds = started.elapsed().as_secs_f64();
    let peak = PEAK.load(Ordering::Relaxed) - baseline;
    let rss = peak_rss_kib();
    assert_eq!(summary.rows, ROWS);
    let first_byte = out
        .first_write
        .unwrap()
        .duration_since(started)
        .as_secs_f64();
    let bytes = std::fs::metadata(&path).unwrap().len();
    eprintln!(
        "{ROWS} rows in {seconds:.2} s: {:.0} rows/s (generating the rows alone: {:.0} rows/s); \
         {bytes} bytes ({:.1} bytes/row); first byte after {:.0} ms; largest write {} bytes",
        ROWS as f64 / seconds,
        ROWS as f64 / generation,
        bytes as f64 / ROWS as f64,
        first_byte * 1000.0,
        out.largest,
    );
    let kib = |k: Option<u64>| k.map_or("unknown".to_owned(), |k| format!("{k} KiB"));
    eprintln!(
        "peak heap of the export (counting allocator): {:.1} MiB; peak RSS of the process: {} \
         ({} before the export)",
        peak as f64 / 1048576.0,
        kib(rss),
        kib(rss_before),
    );
    assert!(peak < BUDGET / 2, "peak heap {peak} bytes");
    if let Some(kib) = rss {
        assert!(kib < 32 * 1024, "peak RSS {kib} KiB");
    }
    assert!(out.largest <= 64 * 1024, "a write of {} bytes", out.largest);

    // Read back: the row count, row groups of 64 Ki rows, and a sample of values.
    let file = std::fs::File::open(&path).unwrap();
    let reader = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    assert_eq!(reader.metadata().num_row_groups(), 16);
    let mut row = 0u64;
    for batch in reader.build().unwrap() {
        let batch = batch.unwrap();
        let ids = batch.column_by_name("id").unwrap().as_string::<i32>();
        let values = batch
            .column_by_name("value")
            .unwrap()
            .as_primitive::<Float64Type>();
        let effective = batch
            .column_by_name("effective")
            .unwrap()
            .as_primitive::<TimestampMicrosecondType>();
        for i in 0..batch.num_rows() {
            let n = row + i as u64;
            if n.is_multiple_of(9_973) || n == ROWS - 1 {
                let o = fixture::workload(n);
                assert_eq!(ids.value(i), o.id);
                let Value::Quantity(q) = &o.value else {
                    unreachable!()
                };
                let expected = q.value.as_ref().unwrap().to_f64_exact().unwrap();
                assert_eq!(values.value(i), expected, "row {n}");
                let Some(Effective::DateTime(at)) = &o.effective else {
                    unreachable!()
                };
                assert_eq!(
                    effective.value(i),
                    at.timestamp().unwrap().as_microsecond(),
                    "row {n}"
                );
            }
        }
        row += batch.num_rows() as u64;
    }
    assert_eq!(row, ROWS);
    if keep.is_none() {
        std::fs::remove_file(&path).unwrap();
    }
}
