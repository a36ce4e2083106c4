//! Progress on stderr: an indicatif bar on a terminal, a plain line every few seconds when
//! stderr is a file or a pipe (CI logs, `nohup`), nothing with `--quiet`.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often a plain progress line is printed.
const LINE_EVERY: Duration = Duration::from_secs(2);

/// Where progress goes.
pub enum Progress {
    /// A bar redrawn in place.
    Bar(ProgressBar),
    /// A line now and then.
    Lines(Mutex<Lines>),
    /// Nothing.
    Quiet,
}

/// The last line printed (and when), and the latest counts.
#[derive(Default)]
pub struct Lines {
    printed: Option<(Instant, Counts)>,
    latest: Option<Counts>,
}

/// Patients done and total, failed, rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    done: u64,
    total: u64,
    failed: u64,
    rows: u64,
}

impl Progress {
    /// A bar when stderr is a terminal, lines otherwise, nothing when `quiet`.
    pub fn auto(quiet: bool) -> Progress {
        if quiet {
            Progress::Quiet
        } else if std::io::stderr().is_terminal() {
            Progress::Bar(bar())
        } else {
            Progress::Lines(Mutex::default())
        }
    }

    /// Reports the current counts.
    pub fn update(&self, done: u64, total: u64, failed: u64, rows: u64) {
        let counts = Counts {
            done,
            total,
            failed,
            rows,
        };
        match self {
            Progress::Bar(bar) => {
                bar.set_length(total);
                bar.set_position(done);
                bar.set_message(format!("{rows} rows, {failed} failed"));
            }
            Progress::Lines(lines) => {
                let mut lines = lines.lock().unwrap_or_else(|p| p.into_inner());
                lines.latest = Some(counts);
                let due = match lines.printed {
                    None => true,
                    Some((at, printed)) => printed != counts && at.elapsed() >= LINE_EVERY,
                };
                if due {
                    eprintln!("{}", line(counts));
                    lines.printed = Some((Instant::now(), counts));
                }
            }
            Progress::Quiet => {}
        }
    }

    /// Ends the bar (left on screen) or prints the last line if it was not printed yet.
    pub fn finish(&self) {
        match self {
            Progress::Bar(bar) => bar.finish(),
            Progress::Lines(lines) => {
                let lines = lines.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(latest) = lines.latest {
                    if lines.printed.map(|(_, printed)| printed) != Some(latest) {
                        eprintln!("{}", line(latest));
                    }
                }
            }
            Progress::Quiet => {}
        }
    }
}

fn line(c: Counts) -> String {
    format!(
        "progress: {}/{} patients, {} failed, {} rows",
        c.done, c.total, c.failed, c.rows
    )
}

fn bar() -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} patients  {msg}  eta {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}
