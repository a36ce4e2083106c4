//! S4 "exporter alone" as a whole process, like for like with the references in
//! `shared/bench/reference` (`go-gin export`, `py-export/export.py`): N rows of
//! `gen_fhir.py`'s shape are generated in memory, then one registered exporter writes them
//! to a file. Timing goes to stderr as one line (`gen_s` building the rows, `write_s` the
//! export alone); run it under `/usr/bin/time -v` for the process's peak RSS.
//!
//! ```text
//! cargo run --release -p medgate --example export_rows -- csv 1000000 /tmp/obs.csv
//! cargo run --release -p medgate --example export_rows -- xlsx 1000000 /tmp/obs.xlsx --stream
//! ```
//!
//! `--stream` generates the rows while the exporter writes them (how the gateway runs: no
//! row set is ever held), so peak RSS is the exporter's own; `write_s` then includes the
//! generation.

use std::time::Instant;

use futures::StreamExt;
use medgate_core::{Observation, ObservationStream};
use medgate_demo::Workload;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let positional: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let stream = args.iter().any(|a| a == "--stream");
    let [format, rows, out] = positional[..] else {
        eprintln!("usage: export_rows FORMAT ROWS OUT_FILE [--stream]");
        std::process::exit(2);
    };
    let Ok(rows) = rows.parse::<u64>() else {
        eprintln!("export_rows: ROWS must be a whole number, not {rows}");
        std::process::exit(2);
    };
    let registry = medgate::registry();
    let Some(exporter) = registry.exporter(format).cloned() else {
        let known = registry.formats().join(", ");
        eprintln!("export_rows: unknown format {format}; registered: {known}");
        std::process::exit(2);
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");

    let started = Instant::now();
    let source: ObservationStream = if stream {
        futures::stream::iter(Workload::default().rows(rows).map(Ok)).boxed()
    } else {
        let held: Vec<Observation> = Workload::default().rows(rows).collect();
        futures::stream::iter(held.into_iter().map(Ok)).boxed()
    };
    let gen_s = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let written = runtime.block_on(async {
        // 64 KiB of buffering, as the Go reference's bufio.Writer.
        let file = tokio::fs::File::create(out).await?;
        let mut file = tokio::io::BufWriter::with_capacity(1 << 16, file);
        let summary = exporter
            .export(source, &mut file)
            .await
            .map_err(std::io::Error::other)?;
        tokio::io::AsyncWriteExt::flush(&mut file).await?;
        Ok::<_, std::io::Error>(summary.rows)
    });
    let write_s = started.elapsed().as_secs_f64();
    match written {
        Ok(written) => eprintln!(
            "medgate export_rows format={format} rows={written} stream={stream} gen_s={gen_s:.3} write_s={write_s:.3} rows_per_s={:.0}",
            written as f64 / write_s
        ),
        Err(e) => {
            eprintln!("export_rows: writing {out} failed: {e}");
            std::process::exit(1);
        }
    }
}
