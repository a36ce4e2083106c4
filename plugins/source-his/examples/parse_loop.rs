//! A profiling driver for the S5 parse: parses the workload bundle (or any file) N times, or
//! runs quick-xml's bare event loop over it, with the gateway's allocator.
//!
//! `cargo run --release -p medgate-source-his --example parse_loop -- fhir 1000 [file]`;
//! under `valgrind --tool=callgrind` the difference between two counts of runs gives the
//! instructions of one parse without start-up.

use medgate_source_his::{parse, ParseContext, Parser};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "fhir".into());
    let runs: u64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(1000);
    let path = args.next().unwrap_or_else(|| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/fhir/workload-P000001.xml"
        )
        .into()
    });
    let bytes = std::fs::read(&path).expect("readable input");
    let ctx = ParseContext::new("his", "P000001");
    let mut total = 0u64;
    for _ in 0..runs {
        total += match mode.as_str() {
            "bare" => bare_event_loop(std::hint::black_box(&bytes)),
            "scan" => {
                medgate_source_his::scan_only(std::hint::black_box(&bytes)).expect("well-formed")
            }
            _ => parse(&Parser::FhirR4, std::hint::black_box(&bytes), &ctx)
                .expect("the workload parses")
                .len() as u64,
        };
    }
    println!("{mode}: {runs} runs, {total} items");
}

fn bare_event_loop(bytes: &[u8]) -> u64 {
    let mut reader = quick_xml::Reader::from_reader(bytes);
    reader.config_mut().trim_text(true);
    let mut events = 0u64;
    while !matches!(
        reader.read_event().expect("well-formed"),
        quick_xml::events::Event::Eof
    ) {
        events += 1;
    }
    events
}
