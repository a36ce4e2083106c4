//! The `wearable-json` [`DataSource`].

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use medgate_core::{
    BuildContext, DataSource, Error, FetchRequest, Observation, ObservationStream, Result, Upstream,
};

use crate::{parse, ParseContext, PayloadFormat};

/// Bodies larger than this are parsed on the blocking pool so a big payload does not stall
/// the async workers serving other requests.
pub const BLOCKING_PARSE_THRESHOLD: usize = 256 * 1024;

/// Fetches one patient's wearable JSON and turns it into observations.
pub struct WearableSource {
    name: String,
    upstream: Arc<dyn Upstream>,
    url: String,
    format: Arc<PayloadFormat>,
    max_depth: usize,
}

impl WearableSource {
    /// A source named `ctx.source_name` reading `url` (with `{patient_id}`) in `format`.
    pub fn new(ctx: BuildContext, url: &str, format: PayloadFormat, max_depth: usize) -> Self {
        WearableSource {
            name: ctx.source_name,
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

    async fn parse_body(&self, bytes: bytes::Bytes, patient_id: &str) -> Result<Vec<Observation>> {
        let name = self.name.clone();
        let patient = patient_id.to_owned();
        let format = Arc::clone(&self.format);
        let max_depth = self.max_depth;
        let large = bytes.len() > BLOCKING_PARSE_THRESHOLD;
        let run = move || {
            let ctx = ParseContext {
                source: &name,
                patient_id: &patient,
                max_depth,
            };
            parse(&format, &bytes, &ctx).map_err(|e| e.into_core(&name))
        };
        if !large {
            return run();
        }
        tokio::task::spawn_blocking(run)
            .await
            .map_err(|e| Error::Internal(format!("source {} parser task failed: {e}", self.name)))?
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
        let rows = self.parse_body(body.bytes, &request.patient_id).await?;
        Ok(futures::stream::iter(rows.into_iter().map(Ok)).boxed())
    }
}
