//! The export stage: a run's observations into an [`Exporter`], with panic isolation and a
//! count of what the exporter actually took.

use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::{FutureExt, Stream, StreamExt};
use medgate_core::{Error, Exporter, Observation, ObservationStream};
use tokio::io::AsyncWrite;
use tokio_util::sync::CancellationToken;

/// How an export ended.
#[derive(Debug)]
pub struct Exported {
    /// Observations the exporter consumed (for a failed or interrupted export: those it took
    /// before it stopped).
    pub observations: u64,
    /// Rows written as the exporter counts them (`None` when it failed).
    pub rows: Option<u64>,
    /// `Ok` when the output is complete.
    pub result: Result<(), Error>,
}

/// Writes `rows` to `out` with `exporter`, until `stop` is cancelled (then the export ends
/// as [`Error::Interrupted`] even if the exporter is blocked writing to a client that stopped
/// reading). A panicking exporter fails this export with an internal error, never the
/// process.
pub async fn export(
    exporter: &Arc<dyn Exporter>,
    rows: ObservationStream,
    out: &mut (dyn AsyncWrite + Send + Unpin),
    stop: &CancellationToken,
) -> Exported {
    let counted = Counted {
        inner: rows,
        count: Arc::default(),
    };
    let count = counted.count.clone();
    let exporting = AssertUnwindSafe(exporter.export(counted.boxed(), out)).catch_unwind();
    let result = tokio::select! {
        result = exporting => result,
        () = stop.cancelled() => Ok(Err(Error::Interrupted("the gateway is shutting down".into()))),
    };
    let observations = count.load(Ordering::Relaxed);
    match result {
        Ok(Ok(summary)) => Exported {
            observations,
            rows: Some(summary.rows),
            result: Ok(()),
        },
        Ok(Err(e)) => Exported {
            observations,
            rows: None,
            result: Err(e),
        },
        Err(_) => {
            tracing::error!(format = exporter.format(), "exporter panicked");
            metrics::counter!("medgate_panics_total", "exporter" => exporter.format()).increment(1);
            Exported {
                observations,
                rows: None,
                result: Err(Error::Internal(format!(
                    "exporter {} failed unexpectedly",
                    exporter.format()
                ))),
            }
        }
    }
}

/// Counts the observations that pass through.
struct Counted {
    inner: ObservationStream,
    count: Arc<AtomicU64>,
}

impl Stream for Counted {
    type Item = Result<Observation, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = self.inner.poll_next_unpin(cx);
        if let Poll::Ready(Some(Ok(_))) = &polled {
            self.count.fetch_add(1, Ordering::Relaxed);
        }
        polled
    }
}
