//! Calling sources safely: patient-id validation, panic isolation, collecting a stream.

use std::panic::AssertUnwindSafe;

use futures::{FutureExt, StreamExt, TryStreamExt};
use medgate_core::{Error, FetchRequest, Observation, ObservationStream, SourceHandle};

use crate::problem::ApiError;

/// Longest patient id accepted.
pub const MAX_PATIENT_ID_LEN: usize = 128;

/// Checks a patient id: 1–128 ASCII letters, digits or `-._:@~`.
///
/// # Errors
/// A 400 problem saying what is wrong (without echoing the id).
pub fn validate_patient_id(id: &str) -> Result<(), ApiError> {
    if id.is_empty() {
        return Err(ApiError::BadRequest("patient_id is empty".into()));
    }
    if id.len() > MAX_PATIENT_ID_LEN {
        return Err(ApiError::BadRequest(format!(
            "patient_id is longer than {MAX_PATIENT_ID_LEN} characters"
        )));
    }
    if let Some(pos) = id
        .bytes()
        .position(|b| !(b.is_ascii_alphanumeric() || b"-._:@~".contains(&b)))
    {
        return Err(ApiError::BadRequest(format!(
            "patient_id has a character that is not allowed at position {}; allowed: A-Z a-z 0-9 - . _ : @ ~",
            pos + 1
        )));
    }
    Ok(())
}

/// Fetches from a source with panics turned into [`Error::Internal`], in the call and while
/// the stream is polled: a panicking plugin fails its request, never the process.
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

/// Fetches and collects one patient's observations (a single patient's payload is bounded by
/// the source's `max_body_bytes`).
pub async fn collect(
    handle: &SourceHandle,
    request: &FetchRequest,
) -> Result<Vec<Observation>, Error> {
    fetch(handle, request).await?.try_collect().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patient_ids() {
        for ok in ["P000001", "a", "12345", "urn:oid:1.2.3", "x_y-z.w@h~"] {
            assert!(validate_patient_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "a/b", "a?b", "é", "a%2F", &"x".repeat(129)] {
            assert!(validate_patient_id(bad).is_err(), "{bad}");
        }
    }
}
