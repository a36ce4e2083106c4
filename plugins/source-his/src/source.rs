//! The `his-xml` [`DataSource`]: one GET per patient, then parse.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use medgate_core::{
    BuildContext, DataSource, Error, FetchRequest, Observation, ObservationStream, Result, Upstream,
};
use tokio::sync::mpsc;

use crate::error::Fail;
use crate::{parse, ParseContext, ParseError, Parser, Position, Sink};

/// Bodies at least this large are parsed on the blocking pool so they cannot stall the
/// async runtime.
pub const INLINE_PARSE_LIMIT: usize = 256 * 1024;

/// Bodies at least this large are streamed: the parser hands its observations over in
/// batches, through a bounded channel, as it reads them. Parsed records cost about 1.8 times
/// their XML (a 30 MB bundle became 55 MB of `Observation`s), so collecting them would
/// hold the body and almost twice it again; streamed, memory holds the body and a few
/// batches. While the reader is behind, the parse waits on its blocking-pool thread; the
/// body (and its share of the upstream body budget) is released as soon as the parse ends.
/// Smaller bodies are collected, so fewer parser threads wait on slow readers.
pub const STREAM_PARSE_MIN: usize = 4 * 1024 * 1024;

/// Observations per batch of a streamed parse, and batches the parser may run ahead.
const BATCH: usize = 128;
const BATCHES_AHEAD: usize = 2;

/// A configured HIS XML source.
pub struct HisSource {
    url: String,
    parser: Parser,
    max_depth: usize,
    /// The source name, shared by every observation this source produces.
    name: Arc<str>,
    upstream: Arc<dyn Upstream>,
}

impl HisSource {
    /// A source fetching `url` (with `{patient_id}`) and parsing with `parser`.
    pub fn new(url: String, parser: Parser, max_depth: usize, ctx: BuildContext) -> Self {
        HisSource {
            url,
            parser,
            max_depth,
            name: Arc::from(ctx.source_name),
            upstream: ctx.upstream,
        }
    }

    /// The URL for one patient, the id percent-encoded.
    pub fn url_for(&self, patient_id: &str) -> String {
        medgate_core::config::fill_url_template(&self.url, patient_id)
    }

    fn task_failed(&self, e: &tokio::task::JoinError) -> Error {
        Error::Internal(format!("source {}: parser task failed: {e}", self.name))
    }

    /// Parses `bytes` on the blocking pool, yielding observations as they are read. An error
    /// found before the first batch is returned here, as a collected parse would; one found
    /// later ends the stream.
    async fn stream(&self, bytes: Bytes, ctx: ParseContext) -> Result<ObservationStream> {
        let (tx, mut rx) = mpsc::channel(BATCHES_AHEAD);
        let parser = self.parser.clone();
        let task = tokio::task::spawn_blocking(move || {
            let mut sink = Batches {
                tx,
                batch: Vec::with_capacity(BATCH),
                count: 0,
            };
            let outcome = crate::parse_into(&parser, &bytes, &ctx, &mut sink);
            drop(bytes);
            // Errors here mean the reader went away: nothing is left to tell.
            let _ = sink.flush();
            if let Err(e) = outcome {
                let _ = sink.tx.blocking_send(Err(e.into_core(&ctx.source)));
            }
        });
        let first = match rx.recv().await {
            Some(first) => first?,
            None => {
                // Nothing was sent: an empty payload, or a parser that panicked.
                task.await.map_err(|e| self.task_failed(&e))?;
                return Ok(futures::stream::empty().boxed());
            }
        };
        let name = self.name.clone();
        let rest = futures::stream::unfold((rx, Some(task)), move |(mut rx, task)| {
            let name = name.clone();
            async move {
                if let Some(batch) = rx.recv().await {
                    return Some((batch, (rx, task)));
                }
                // The parser is done; say so if it panicked instead of finishing.
                match task?.await {
                    Ok(()) => None,
                    Err(e) => Some((
                        Err(Error::Internal(format!(
                            "source {name}: parser task failed: {e}"
                        ))),
                        (rx, None),
                    )),
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
}

/// The sink of a streamed parse: observations go to the reader in batches of [`BATCH`].
struct Batches {
    tx: mpsc::Sender<Result<Vec<Observation>>>,
    batch: Vec<Observation>,
    count: usize,
}

impl Batches {
    /// Sends the batch, waiting while the reader is [`BATCHES_AHEAD`] batches behind.
    fn flush(&mut self) -> std::result::Result<(), Fail> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
        self.tx.blocking_send(Ok(batch)).map_err(|_| {
            Box::new(ParseError::Content {
                detail: "the reader of this payload went away".to_owned(),
                at: Position { line: 0, column: 0 },
            })
        })
    }
}

impl Sink for Batches {
    fn emit(&mut self, observation: Observation) -> std::result::Result<(), Fail> {
        self.batch.push(observation);
        self.count += 1;
        if self.batch.len() == BATCH {
            self.flush()?;
        }
        Ok(())
    }

    fn count(&self) -> usize {
        self.count
    }
}

#[async_trait]
impl DataSource for HisSource {
    /// Fetches and parses one patient's payload. `request.filter` is not used here: the
    /// pipeline applies it to what the source returns.
    async fn fetch(&self, request: &FetchRequest) -> Result<ObservationStream> {
        let url = self.url_for(&request.patient_id);
        let body = self.upstream.get(&url, request).await?;
        let bytes = body.bytes;
        // One allocation of the patient id per fetch; every observation shares it.
        let ctx = ParseContext {
            source: self.name.clone(),
            patient_id: Arc::from(request.patient_id.as_str()),
            max_depth: self.max_depth,
        };
        if bytes.len() >= STREAM_PARSE_MIN {
            return self.stream(bytes, ctx).await;
        }
        let rows = if bytes.len() < INLINE_PARSE_LIMIT {
            parse_owned(&self.parser, &bytes, &ctx)?
        } else {
            let parser = self.parser.clone();
            tokio::task::spawn_blocking(move || parse_owned(&parser, &bytes, &ctx))
                .await
                .map_err(|e| self.task_failed(&e))??
        };
        Ok(futures::stream::iter(rows.into_iter().map(Ok)).boxed())
    }
}

fn parse_owned(parser: &Parser, bytes: &[u8], ctx: &ParseContext) -> Result<Vec<Observation>> {
    parse(parser, bytes, ctx).map_err(|e| e.into_core(&ctx.source))
}
