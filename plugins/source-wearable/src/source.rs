//! The `wearable-json` [`DataSource`].

use std::ops::ControlFlow;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use medgate_core::{
    BuildContext, DataSource, Error, FetchRequest, Observation, ObservationStream, Result, Upstream,
};
use tokio::sync::mpsc;

use crate::{parse, ParseContext, PayloadFormat};

/// Bodies larger than this are parsed on the blocking pool so a big payload does not stall
/// the async workers serving other requests.
pub const BLOCKING_PARSE_THRESHOLD: usize = 256 * 1024;

/// Bodies at least this large are streamed: the parser hands its observations over in
/// batches, through a bounded channel, as it reads them. Parsed records cost several times
/// their JSON (a 30 MB Open mHealth body became over 200 MB of `Observation`s), so
/// collecting them would hold the body and many times it again; streamed, memory holds the
/// body and a few batches. While the reader is behind, the parse waits on its blocking-pool
/// thread; the body (and its share of the upstream body budget) is released as soon as the
/// parse ends. Smaller bodies are collected, so fewer parser threads wait on slow readers.
pub const STREAM_PARSE_MIN: usize = 4 * 1024 * 1024;

/// Observations per batch of a streamed parse, and batches the parser may run ahead.
const BATCH: usize = 128;
const BATCHES_AHEAD: usize = 2;

/// Fetches one patient's wearable JSON and turns it into observations.
pub struct WearableSource {
    /// Shared by every observation of every fetch.
    name: Arc<str>,
    upstream: Arc<dyn Upstream>,
    url: String,
    format: Arc<PayloadFormat>,
    max_depth: usize,
}

impl WearableSource {
    /// A source named `ctx.source_name` reading `url` (with `{patient_id}`) in `format`.
    pub fn new(ctx: BuildContext, url: &str, format: PayloadFormat, max_depth: usize) -> Self {
        WearableSource {
            name: Arc::from(ctx.source_name),
            upstream: ctx.upstream,
            url: url.to_owned(),
            format: Arc::new(format),
            max_depth,
        }
    }

    /// The upstream URL for `patient_id`, percent-encoded into the template.
    pub fn url_for(&self, patient_id: &str) -> String {
        medgate_core::config::fill_url_template(&self.url, patient_id)
    }

    fn task_failed(&self, e: &tokio::task::JoinError) -> Error {
        Error::Internal(format!("source {} parser task failed: {e}", self.name))
    }

    /// Parses `bytes`, on the blocking pool when they are large, streamed when they are
    /// very large. `patient` is the one shared string every observation of this fetch
    /// carries.
    async fn parse_body(&self, bytes: Bytes, patient: Arc<str>) -> Result<ObservationStream> {
        let ctx = ParseContext {
            source: Arc::clone(&self.name),
            patient_id: patient,
            max_depth: self.max_depth,
        };
        let format = Arc::clone(&self.format);
        if bytes.len() >= STREAM_PARSE_MIN {
            return stream(self.name.clone(), move |emit| {
                let parsed = crate::parse::parse_into(&format, &bytes, &ctx, &mut |o| emit(o));
                drop(bytes);
                parsed.map_err(|e| e.into_core(&ctx.source))
            })
            .await;
        }
        let large = bytes.len() > BLOCKING_PARSE_THRESHOLD;
        let run = move || parse(&format, &bytes, &ctx).map_err(|e| e.into_core(&ctx.source));
        let rows = if large {
            tokio::task::spawn_blocking(run)
                .await
                .map_err(|e| self.task_failed(&e))??
        } else {
            run()?
        };
        Ok(futures::stream::iter(rows.into_iter().map(Ok)).boxed())
    }
}

/// Runs `parse` on the blocking pool, yielding the observations it emits as they are read.
/// `parse` must drop what it parses (the body, with its budget reservation) before it
/// returns. An error returned before the first batch is returned here, as a collected parse
/// would; one returned later ends the stream. Dropping the stream stops the parse at its next
/// hand-over.
async fn stream<P>(name: Arc<str>, parse: P) -> Result<ObservationStream>
where
    P: FnOnce(&mut dyn FnMut(Observation) -> ControlFlow<()>) -> Result<()> + Send + 'static,
{
    let (tx, mut rx) = mpsc::channel(BATCHES_AHEAD);
    let task = tokio::task::spawn_blocking(move || {
        let mut sink = Batches {
            tx,
            batch: Vec::with_capacity(BATCH),
        };
        let outcome = parse(&mut |o| sink.emit(o));
        // Errors here mean the reader went away: nothing is left to tell.
        let _ = sink.flush();
        if let Err(e) = outcome {
            let _ = sink.tx.blocking_send(Err(e));
        }
    });
    let task_failed = |name: &str, e: tokio::task::JoinError| {
        Error::Internal(format!("source {name} parser task failed: {e}"))
    };
    let first = match rx.recv().await {
        Some(first) => first?,
        None => {
            // Nothing was sent: a payload without observations, or a parser that panicked.
            task.await.map_err(|e| task_failed(&name, e))?;
            return Ok(futures::stream::empty().boxed());
        }
    };
    let rest = futures::stream::unfold((rx, Some(task)), move |(mut rx, task)| {
        let name = name.clone();
        async move {
            if let Some(batch) = rx.recv().await {
                return Some((batch, (rx, task)));
            }
            // The parser is done; say so if it panicked instead of finishing.
            match task?.await {
                Ok(()) => None,
                Err(e) => Some((Err(task_failed(&name, e)), (rx, None))),
            }
        }
    });
    Ok(futures::stream::once(std::future::ready(Ok(first)))
        .chain(rest)
        .flat_map(|batch| match batch {
            Ok(batch) => futures::stream::iter(batch.into_iter().map(Ok)).left_stream(),
            Err(e) => futures::stream::once(std::future::ready(Err(e))).right_stream(),
        })
        .boxed())
}

/// The sink of a streamed parse: observations go to the reader in batches of [`BATCH`].
struct Batches {
    tx: mpsc::Sender<Result<Vec<Observation>>>,
    batch: Vec<Observation>,
}

impl Batches {
    fn emit(&mut self, observation: Observation) -> ControlFlow<()> {
        self.batch.push(observation);
        if self.batch.len() == BATCH {
            return self.flush();
        }
        ControlFlow::Continue(())
    }

    /// Sends the batch, waiting while the reader is [`BATCHES_AHEAD`] batches behind; breaks
    /// when the reader went away.
    fn flush(&mut self) -> ControlFlow<()> {
        if self.batch.is_empty() {
            return ControlFlow::Continue(());
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
        match self.tx.blocking_send(Ok(batch)) {
            Ok(()) => ControlFlow::Continue(()),
            Err(_) => ControlFlow::Break(()),
        }
    }
}

#[async_trait]
impl DataSource for WearableSource {
    async fn fetch(&self, request: &FetchRequest) -> Result<ObservationStream> {
        if request.patient_id.is_empty() {
            return Err(Error::BadRequest("the patient id is empty".into()));
        }
        let url = self.url_for(&request.patient_id);
        let body = self.upstream.get(&url, request).await?;
        // `request.filter` is applied by the pipeline to whatever a source returns; an Open
        // mHealth or vendor URL has no standard place for it.
        let patient: Arc<str> = Arc::from(request.patient_id.as_str());
        self.parse_body(body.bytes, patient).await
    }
}

#[cfg(test)]
mod tests {
    //! The streaming hand-over itself, driven by parse functions that fail where a JSON
    //! payload cannot (the parser checks the whole body before its first record).

    use super::*;

    fn observation(i: usize) -> Observation {
        Observation::new(Arc::from("P1"), Arc::from("band"), i.to_string())
    }

    fn malformed() -> Error {
        Error::malformed("band", "broken at the end")
    }

    async fn collect(stream: ObservationStream) -> Vec<Result<Observation>> {
        stream.collect().await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_error_before_the_first_hand_over_is_returned_up_front() {
        // Fewer than a batch, then an error: the partial batch is handed over first (as in
        // the HIS source), then the error ends the stream.
        let rows = stream(Arc::from("band"), |emit| {
            for i in 0..BATCH - 1 {
                let _ = emit(observation(i));
            }
            Err(malformed())
        })
        .await;
        let rows = collect(rows.unwrap()).await;
        assert_eq!(rows.len(), BATCH);
        assert!(matches!(rows[BATCH - 1], Err(Error::Malformed { .. })));

        // An error before any record: the stream is never made.
        let err = stream(Arc::from("band"), |_| Err(malformed()))
            .await
            .err()
            .unwrap();
        assert!(matches!(err, Error::Malformed { .. }), "{err:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_late_error_ends_the_stream_after_the_good_records() {
        let n = BATCH * (BATCHES_AHEAD + 5) + 7;
        let rows = collect(
            stream(Arc::from("band"), move |emit| {
                for i in 0..n {
                    let _ = emit(observation(i));
                }
                Err(malformed())
            })
            .await
            .unwrap(),
        )
        .await;
        assert_eq!(rows.len(), n + 1);
        for (i, row) in rows[..n].iter().enumerate() {
            assert_eq!(row.as_ref().unwrap().id, i.to_string());
        }
        assert!(
            matches!(rows[n], Err(Error::Malformed { .. })),
            "{:?}",
            rows[n]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_parser_panic_after_records_ends_the_stream_with_an_error() {
        let n = BATCH * 3;
        let rows = collect(
            stream(Arc::from("band"), move |emit| {
                for i in 0..n {
                    let _ = emit(observation(i));
                }
                panic!("parser bug");
            })
            .await
            .unwrap(),
        )
        .await;
        assert_eq!(rows.len(), n + 1);
        let Err(Error::Internal(detail)) = &rows[n] else {
            panic!("{:?}", rows[n])
        };
        assert!(
            detail.contains("source band parser task failed"),
            "{detail}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dropping_the_stream_stops_the_parse() {
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let mut rows = stream(Arc::from("band"), move |emit| {
            let mut sent = 0;
            while emit(observation(sent)).is_continue() {
                sent += 1;
            }
            done_tx.send(sent).unwrap();
            Ok(())
        })
        .await
        .unwrap();
        assert_eq!(rows.next().await.unwrap().unwrap().id, "0");
        drop(rows);
        let sent = tokio::task::spawn_blocking(move || {
            done_rx.recv_timeout(std::time::Duration::from_secs(10))
        })
        .await
        .unwrap()
        .expect("the parse stopped");
        // At most the batches in flight were read ahead of the reader.
        assert!(sent < BATCH * (BATCHES_AHEAD + 3), "{sent}");
    }
}
