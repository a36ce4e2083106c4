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

    /// Parses `bytes`, on the blocking pool when they are large. `patient` is the one shared
    /// string every observation of this fetch carries.
    async fn parse_body(&self, bytes: bytes::Bytes, patient: Arc<str>) -> Result<Vec<Observation>> {
        let ctx = ParseContext {
            source: Arc::clone(&self.name),
            patient_id: patient,
            max_depth: self.max_depth,
        };
        let format = Arc::clone(&self.format);
        let large = bytes.len() > BLOCKING_PARSE_THRESHOLD;
        let run = move || parse(&format, &bytes, &ctx).map_err(|e| e.into_core(&ctx.source));
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
        // `request.filter` is applied by the pipeline to whatever a source returns; an Open
        // mHealth or vendor URL has no standard place for it.
        let patient: Arc<str> = Arc::from(request.patient_id.as_str());
        let observations = self.parse_body(body.bytes, patient).await?;
        Ok(futures::stream::iter(observations.into_iter().map(Ok)).boxed())
    }
}
