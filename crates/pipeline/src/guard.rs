//! Calling plugins safely: a panic in a source or an exporter fails its own work with an
//! internal error, never the process, and a stream that panicked is never polled again.

use std::panic::AssertUnwindSafe;

use futures::{FutureExt, StreamExt};
use medgate_core::{Error, FetchRequest, ObservationStream, SourceHandle};

/// Fetches from a source with panics turned into [`Error::Internal`], in the call and while
/// the stream is polled.
///
/// # Errors
/// The source's own error, or an internal error if it panicked.
pub async fn fetch(
    handle: &SourceHandle,
    request: &FetchRequest,
) -> Result<ObservationStream, Error> {
    let name = handle.info.name.clone();
    let call = AssertUnwindSafe(handle.source.fetch(request))
        .catch_unwind()
        .await;
    let stream = match call {
        Ok(result) => result?,
        Err(_) => return Err(plugin_panicked(&name)),
    };
    let guarded = AssertUnwindSafe(stream)
        .catch_unwind()
        .map(move |item| match item {
            Ok(result) => result,
            Err(_) => Err(plugin_panicked(&name)),
        });
    // After a panic the inner stream must not be polled again; stop at the first error.
    Ok(stop_after_error(guarded.boxed()))
}

fn plugin_panicked(name: &str) -> Error {
    tracing::error!(source = name, "source plugin panicked");
    metrics::counter!("medgate_panics_total", "source" => name.to_owned()).increment(1);
    Error::Internal(format!("source {name} failed unexpectedly"))
}

/// Ends a stream right after its first `Err` item.
pub fn stop_after_error(stream: ObservationStream) -> ObservationStream {
    stream
        .scan(false, |failed, item| {
            if *failed {
                return futures::future::ready(None);
            }
            *failed = item.is_err();
            futures::future::ready(Some(item))
        })
        .boxed()
}
