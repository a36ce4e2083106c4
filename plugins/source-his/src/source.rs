//! The `his-xml` [`DataSource`]: one GET per patient, then parse.

use async_trait::async_trait;
use futures::StreamExt;
use medgate_core::{
    BuildContext, DataSource, Error, FetchRequest, ObservationStream, Result, Upstream,
};
use std::sync::Arc;

use crate::{parse, ParseContext, Parser};

/// Bodies at least this large are parsed on the blocking pool so they cannot stall the
/// async runtime.
pub const INLINE_PARSE_LIMIT: usize = 256 * 1024;

/// A configured HIS XML source.
pub struct HisSource {
    url: String,
    parser: Parser,
    max_depth: usize,
    name: String,
    upstream: Arc<dyn Upstream>,
}

impl HisSource {
    /// A source fetching `url` (with `{patient_id}`) and parsing with `parser`.
    pub fn new(url: String, parser: Parser, max_depth: usize, ctx: BuildContext) -> Self {
        HisSource {
            url,
            parser,
            max_depth,
            name: ctx.source_name,
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
    async fn fetch(&self, request: &FetchRequest) -> Result<ObservationStream> {
        let url = self.url_for(&request.patient_id);
        let body = self.upstream.get(&url, request).await?;
        let bytes = body.bytes;
        let rows = if bytes.len() < INLINE_PARSE_LIMIT {
            parse_owned(
                &self.parser,
                &bytes,
                &self.name,
                &request.patient_id,
                self.max_depth,
            )?
        } else {
            let parser = self.parser.clone();
            let name = self.name.clone();
            let patient_id = request.patient_id.clone();
            let max_depth = self.max_depth;
            tokio::task::spawn_blocking(move || {
                parse_owned(&parser, &bytes, &name, &patient_id, max_depth)
            })
            .await
            .map_err(|e| {
                Error::Internal(format!("source {}: parser task failed: {e}", self.name))
            })??
        };
        Ok(futures::stream::iter(rows.into_iter().map(Ok)).boxed())
    }
}

fn parse_owned(
    parser: &Parser,
    bytes: &[u8],
    name: &str,
    patient_id: &str,
    max_depth: usize,
) -> Result<Vec<medgate_core::Observation>> {
    let ctx = ParseContext {
        source: name,
        patient_id,
        max_depth,
    };
    parse(parser, bytes, &ctx).map_err(|e| e.into_core(name))
}
