//! A job's patients in batches, so that neither the pipeline nor "all the store's patients"
//! is ever one list in memory.
//!
//! `"all"` over one `store` source streams the store's (ordered) patient listing; over
//! several it merges them into one ordered set first (each listing's order is the database
//! collation's, which medgate does not control, so they are not merged as streams) — memory
//! then grows with the number of patients (tens of bytes each), never with rows.

use std::collections::BTreeSet;
use std::sync::Arc;

use futures::stream::BoxStream;
use futures::StreamExt;
use medgate_core::{Error, ObservationStore};

use crate::request::PatientSet;

/// Patients per pipeline run.
pub const BATCH: usize = 1024;

/// Yields the patients of a job, [`BATCH`] at a time.
pub(crate) enum Batches {
    List {
        ids: Arc<Vec<String>>,
        next: usize,
    },
    /// `None` once the listing ended (it must not be polled again).
    Listing(Option<BoxStream<'static, medgate_core::Result<String>>>),
    Set(std::collections::btree_set::IntoIter<String>),
}

impl Batches {
    /// The batches of `set` and how many patients there are.
    ///
    /// # Errors
    /// The store's listing failed.
    pub async fn open(set: &PatientSet) -> Result<(Batches, u64), Error> {
        match set {
            PatientSet::List(ids) => Ok((
                Batches::List {
                    ids: ids.clone(),
                    next: 0,
                },
                ids.len() as u64,
            )),
            PatientSet::All { index, sources } if sources.len() == 1 => {
                // Counted first (an index scan) for the progress total, then streamed.
                let total = count(index, &sources[0]).await?;
                let listing = index.patients(&sources[0]).await?;
                Ok((Batches::Listing(Some(listing)), total))
            }
            PatientSet::All { index, sources } => {
                let mut all = BTreeSet::new();
                for source in sources {
                    let mut listing = index.patients(source).await?;
                    while let Some(id) = listing.next().await {
                        all.insert(id?);
                    }
                }
                let total = all.len() as u64;
                Ok((Batches::Set(all.into_iter()), total))
            }
        }
    }

    /// The next batch; `None` at the end.
    ///
    /// # Errors
    /// The store's listing failed midway.
    pub async fn next(&mut self) -> Result<Option<Vec<String>>, Error> {
        let batch: Vec<String> = match self {
            Batches::List { ids, next } => {
                let end = (*next + BATCH).min(ids.len());
                let batch = ids[*next..end].to_vec();
                *next = end;
                batch
            }
            Batches::Listing(slot) => {
                let mut batch = Vec::with_capacity(BATCH);
                while let Some(listing) = slot.as_mut().filter(|_| batch.len() < BATCH) {
                    match listing.next().await {
                        Some(id) => batch.push(id?),
                        None => *slot = None,
                    }
                }
                batch
            }
            Batches::Set(ids) => ids.by_ref().take(BATCH).collect(),
        };
        Ok((!batch.is_empty()).then_some(batch))
    }
}

async fn count(index: &Arc<dyn ObservationStore>, source: &str) -> Result<u64, Error> {
    let mut listing = index.patients(source).await?;
    let mut n = 0u64;
    while let Some(id) = listing.next().await {
        id?;
        n += 1;
    }
    Ok(n)
}
