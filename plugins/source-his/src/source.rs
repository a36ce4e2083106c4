//! The `his-xml` [`DataSource`]: one GET per patient, then parse.

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use medgate_core::{
    BuildContext, DataSource, Error, FetchRequest, Observation, ObservationStream, Result, Upstream,
};

use crate::{parse, ParseContext, Parser};

/// Bodies at least this large are parsed on the blocking pool so they cannot stall the
/// async runtime.
pub const INLINE_PARSE_LIMIT: usize = 256 * 1024;

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
        let rows = if bytes.len() < INLINE_PARSE_LIMIT {
            parse_owned(&self.parser, &bytes, &ctx)?
        } else {
            let parser = self.parser.clone();
            tokio::task::spawn_blocking(move || parse_owned(&parser, &bytes, &ctx))
                .await
                .map_err(|e| {
                    Error::Internal(format!("source {}: parser task failed: {e}", self.name))
                })??
        };
        Ok(futures::stream::iter(rows.into_iter().map(Ok)).boxed())
    }
}

fn parse_owned(parser: &Parser, bytes: &[u8], ctx: &ParseContext) -> Result<Vec<Observation>> {
    parse(parser, bytes, ctx).map_err(|e| e.into_core(&ctx.source))
}
