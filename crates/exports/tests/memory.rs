//! Memory stays flat whatever the job's size: a counting global allocator (this binary only)
//! measures the peak heap above the baseline during a 10k-row and a 100k-row job, through
//! the whole path — loopback HIS upstream, parser, pipeline, exporter, file, store.

#[path = "jobs/util.rs"]
mod util;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use util::*;

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let now = CURRENT.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is forwarded to the system allocator unchanged; the counters only
// observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(new_size);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const MIB: usize = 1024 * 1024;

/// Peak heap above the level at its start, in bytes, of a job over `patients` × 100
/// observations in `format`.
async fn peak_of_job(h: &Harness, patients: u32, format: &str) -> usize {
    let list = ids(patients);
    let refs: Vec<&str> = list.iter().map(String::as_str).collect();
    let baseline = CURRENT.load(Ordering::Relaxed);
    PEAK.store(baseline, Ordering::Relaxed);
    let job = h.kick_off(request(&["his"], &refs, format)).await;
    let m = h.manifest(&job.id).await;
    assert_eq!(m.extension.rows, u64::from(patients) * 100, "{format}");
    PEAK.load(Ordering::Relaxed).saturating_sub(baseline)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_flat_from_10k_to_100k_rows() {
    let h = harness(Setup {
        patients: 1000,
        observations: 100,
        ..Setup::default()
    })
    .await;
    let runner = h.exports.start(h.shutdown.clone());
    // Warm-up: connection pools, the catalog's lazy state, first-use allocations.
    peak_of_job(&h, 10, "csv").await;
    for format in ["csv", "fhir-ndjson", "xlsx", "parquet"] {
        let small = peak_of_job(&h, 100, format).await;
        let started = std::time::Instant::now();
        let large = peak_of_job(&h, 1000, format).await;
        let seconds = started.elapsed().as_secs_f64();
        eprintln!(
            "{format}: peak heap above baseline {:.1} MiB for 10k rows, {:.1} MiB for 100k rows \
             ({:.0} rows/s, {} build)",
            small as f64 / MIB as f64,
            large as f64 / MIB as f64,
            100_000.0 / seconds,
            if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            }
        );
        assert!(large < 24 * MIB, "{format}: {large} bytes for 100k rows");
        if format != "parquet" {
            // Flat: ten times the rows, not ten times the memory (a collected job would hold
            // ~100 MiB of observations here).
            assert!(
                large < small + 4 * MIB,
                "{format}: {small} bytes for 10k rows, {large} for 100k"
            );
        }
    }
    h.shutdown.cancel();
    runner.stopped().await;
}
