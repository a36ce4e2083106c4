//! S5: parse throughput of the FHIR R4 workload bundle (100 observations, ~91 KB) into the
//! lossless record, against quick-xml's bare event loop over the same bytes in the same run
//! (the reference of SCENARIOS.md: quick-xml's reader reading every event and building
//! nothing). `tokenizer_only` is medgate's own hardened reader over the same bytes, building
//! nothing: the parse's floor. Also CCD 1 (176 KB C-CDA) for reference.
//!
//! The gateway's allocator (mimalloc) is used, as in production: the record is made of
//! small strings, so the allocator is part of what is measured.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use medgate_source_his::{parse, scan_only, ParseContext, Parser};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/");

fn bare_event_loop(bytes: &[u8]) -> u64 {
    let mut reader = quick_xml::Reader::from_reader(bytes);
    reader.config_mut().trim_text(true);
    let mut events = 0u64;
    while !matches!(reader.read_event().unwrap(), quick_xml::events::Event::Eof) {
        events += 1;
    }
    events
}

fn bench_parse(c: &mut Criterion) {
    let ctx = ParseContext::new("his", "P000001");
    let workload = std::fs::read(format!("{FIXTURES}fhir/workload-P000001.xml")).unwrap();
    let mut group = c.benchmark_group("his_parse");
    group.throughput(Throughput::Bytes(workload.len() as u64));
    group.bench_function("fhir_r4_workload", |b| {
        b.iter(|| parse(&Parser::FhirR4, std::hint::black_box(&workload), &ctx).unwrap())
    });
    // Reference: quick-xml alone reading every event, no attributes, no records.
    group.bench_function("quick_xml_events_baseline", |b| {
        b.iter(|| bare_event_loop(std::hint::black_box(&workload)))
    });
    group.bench_function("tokenizer_only", |b| {
        b.iter(|| scan_only(std::hint::black_box(&workload)).unwrap())
    });
    group.finish();

    let ccd = std::fs::read(format!("{FIXTURES}cda/ccd-1.xml")).unwrap();
    let mut group = c.benchmark_group("his_parse_cda");
    group.throughput(Throughput::Bytes(ccd.len() as u64));
    group.bench_function("ccd_1", |b| {
        b.iter(|| parse(&Parser::Cda, std::hint::black_box(&ccd), &ctx).unwrap())
    });
    group.bench_function("quick_xml_events_baseline", |b| {
        b.iter(|| bare_event_loop(std::hint::black_box(&ccd)))
    });
    group.finish();
}

criterion_group!(benches, bench_parse);
criterion_main!(benches);
