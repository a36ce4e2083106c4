//! medgate-alerts: the background work on pushed reports (issue #8): early-warning rules,
//! serious-adverse-event (SAE) alerts, the report worker pool, and signed webhook delivery.
//!
//! The path of a report after its 202: the store queued one outbox job for it (SAE jobs
//! first). A [`ReportWorkers`] worker claims the job, reads the report, evaluates the
//! [`Rules`] of its source (thresholds, answers, counts in a window) and completes the job
//! with the alerts that fired, in one transaction. The [`Deliveries`] loop then POSTs each
//! alert's JSON ([`payload`]) to its webhook, signed the Standard Webhooks way
//! ([`WebhookSecret::sign`]), retried with back-off and jitter, and dead-lettered after the
//! webhook's last attempt. `GET /v1/alerts` lists them ([`list_alerts`]). (The backlog's
//! depth and drain rate for admission control are the server's `backlog` poller's.)
//!
//! Layout: [`config`] (the `[[webhooks]]`/`[[rules]]` entries and their ranges),
//! [`webhooks`] (receivers, secrets, signing), [`rules`] (checking and evaluating),
//! [`payload`] (the alert JSON, documented field by field), [`worker`] (the pool),
//! [`delivery`] (the sender), [`backoff`], [`view`] (the listing).
//!
//! # What the server does
//! 1. In `load()` (so `medgate check` reports problems):
//!    `Alerting::build(&config.rules, &config.webhooks, sae_notify, &store_source_names,
//!    |var| std::env::var(var).ok())`, where `sae_notify` is `[ingest] sae_notify` as an
//!    `Option<&[String]>`: `None` when the key is absent (refused when webhooks and store
//!    sources exist: see [`RuleScope::sae_notify`]).
//! 2. After [`Store::open`](medgate_store::Store::open), inside the runtime:
//!    `Background::start(store.clone(), alerting, client.clone(), options, &shutdown)`
//!    with `options.pool.workers = config.ingest.workers`.
//! 3. After each successful ingest: `background.wake().notify()`.
//! 4. On SIGHUP, with a valid new config: `background.reload(alerting)`.
//! 5. At shutdown: `background.stop(grace).await`, then `store.close().await`.
//!
//! Design decisions: the workers read rules and webhooks through `ArcSwap`s so a reload
//! never stops them; there are no trait seams (the store and reqwest are used directly,
//! and tested for real); nothing here logs a patient identifier or a secret: logs name
//! workers, webhooks, alert ids and outcomes only.

pub mod backoff;
pub mod config;
pub mod delivery;
mod error;
pub mod payload;
pub mod rules;
pub mod view;
pub mod webhooks;
pub mod worker;

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use medgate_core::ConfigIssue;
use medgate_store::Store;
use tokio_util::sync::CancellationToken;

pub use backoff::Backoff;
pub use config::{RuleConfig, WebhookConfig};
pub use delivery::{Deliveries, DeliveryOptions};
pub use error::AlertsError;
pub use rules::{Rule, RuleScope, Rules, Window, SAE_RULE};
pub use view::{list_alerts, AlertList, AlertListParams, AlertStateView, AlertView};
pub use webhooks::{Webhook, WebhookSecret, Webhooks};
pub use worker::{PoolOptions, PoolStats, ReportWorkers, Wake};

/// The rules and webhooks of one config, checked together.
#[derive(Debug, Clone, Default)]
pub struct Alerting {
    /// The rules and SAE routing.
    pub rules: Rules,
    /// The webhooks with their secrets.
    pub webhooks: Webhooks,
}

impl Alerting {
    /// Reads `[[rules]]`, `[[webhooks]]` and `[ingest] sae_notify` (`None` when absent)
    /// against the names of the `store` sources, reading webhook secrets through `env`
    /// (pass `|var| std::env::var(var).ok()`).
    ///
    /// # Errors
    /// Every problem in both lists, keyed like `webhooks[0] (safety).secret_env` or
    /// `rules[1] (bp-high).notify[0]`.
    pub fn build(
        rules: &[toml::Table],
        webhooks: &[toml::Table],
        sae_notify: Option<&[String]>,
        store_sources: &[String],
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Alerting, Vec<ConfigIssue>> {
        let hooks = Webhooks::build(webhooks, env);
        let names = Webhooks::names(webhooks);
        let scope = RuleScope {
            webhooks: &names,
            store_sources,
            sae_notify,
        };
        match (Rules::build(rules, &scope), hooks) {
            (Ok(rules), Ok(webhooks)) => Ok(Alerting { rules, webhooks }),
            (rules, hooks) => {
                let mut issues = hooks.err().unwrap_or_default();
                issues.extend(rules.err().unwrap_or_default());
                Err(issues)
            }
        }
    }
}

/// Tuning of everything [`Background`] runs; [`Default`] suits a gateway.
#[derive(Debug, Clone, Default)]
pub struct BackgroundOptions {
    /// The report worker pool (set `workers` from `[ingest] workers`).
    pub pool: PoolOptions,
    /// The delivery loop.
    pub delivery: DeliveryOptions,
}

/// Everything that runs in the background for pushed reports: the worker pool and the
/// delivery loop.
#[derive(Debug)]
pub struct Background {
    rules: Arc<ArcSwap<Rules>>,
    webhooks: Arc<ArcSwap<Webhooks>>,
    workers: ReportWorkers,
    deliveries: Deliveries,
    stop: CancellationToken,
}

impl Background {
    /// Starts the workers and the delivery loop (on `client`, which must not follow
    /// redirects) on the current runtime. They stop when `shutdown` is cancelled or at
    /// [`stop`](Background::stop).
    pub fn start(
        store: Store,
        alerting: Alerting,
        client: reqwest::Client,
        options: BackgroundOptions,
        shutdown: &CancellationToken,
    ) -> Background {
        let stop = shutdown.child_token();
        let rules = Arc::new(ArcSwap::from_pointee(alerting.rules));
        let webhooks = Arc::new(ArcSwap::from_pointee(alerting.webhooks));
        let delivery_wake = Wake::new();
        let workers = ReportWorkers::spawn(
            store.clone(),
            rules.clone(),
            options.pool,
            delivery_wake.clone(),
            stop.clone(),
        );
        let deliveries = Deliveries::spawn(
            store,
            webhooks.clone(),
            client,
            options.delivery,
            delivery_wake,
            stop.clone(),
        );
        Background {
            rules,
            webhooks,
            workers,
            deliveries,
            stop,
        }
    }

    /// The waker to call after a report is stored (its job is then claimed at once).
    pub fn wake(&self) -> Wake {
        self.workers.wake()
    }

    /// What this process's report workers did so far.
    pub fn pool_stats(&self) -> PoolStats {
        self.workers.stats()
    }

    /// Swaps in the rules and webhooks of a new config; jobs and deliveries already under
    /// way finish with the old ones.
    pub fn reload(&self, alerting: Alerting) {
        self.rules.store(Arc::new(alerting.rules));
        self.webhooks.store(Arc::new(alerting.webhooks));
    }

    /// Stops claiming, lets the jobs and deliveries in hand finish within `grace`, then
    /// aborts the rest (their leases expire and another worker or the next start takes
    /// them). Returns whether everything finished in time. Close the store after this.
    pub async fn stop(self, grace: Duration) -> bool {
        self.stop.cancel();
        let deliveries_abort = self.deliveries.task_abort_handle();
        let finished = tokio::time::timeout(grace, async {
            tokio::join!(self.workers.join(), self.deliveries.join());
        })
        .await
        .is_ok();
        if !finished {
            deliveries_abort.abort();
            tracing::warn!("background work did not finish within the shutdown grace period; its jobs are taken up again after their lease");
        }
        finished
    }
}
