//! Parse throughput of the FHIR R4 workload bundle (100 observations, ~91 KB).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use medgate_source_his::{parse, ParseContext, Parser, DEFAULT_MAX_DEPTH};

const WORKLOAD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/fixtures/fhir/workload-P000001.xml"
);

fn bench_parse(c: &mut Criterion) {
    let bytes = std::fs::read(WORKLOAD).unwrap();
    let ctx = ParseContext {
        source: "his",
        patient_id: "P000001",
        max_depth: DEFAULT_MAX_DEPTH,
    };
    let mut group = c.benchmark_group("his_parse");
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("fhir_r4_workload", |b| {
        b.iter(|| parse(&Parser::FhirR4, std::hint::black_box(&bytes), &ctx).unwrap())
    });
    // Ceiling: quick-xml alone reading every event, no attributes, no rows.
    group.bench_function("quick_xml_events_baseline", |b| {
        b.iter(|| {
            let mut reader = quick_xml::Reader::from_reader(std::hint::black_box(&bytes[..]));
            reader.config_mut().trim_text(true);
            let mut events = 0u64;
            while !matches!(reader.read_event().unwrap(), quick_xml::events::Event::Eof) {
                events += 1;
            }
            events
        })
    });
    group.finish();
}

criterion_group!(benches, bench_parse);
criterion_main!(benches);
