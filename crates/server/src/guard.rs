//! The partner guard in front of `/v1/*`: authenticate, rate-limit, cap concurrency.

use std::sync::Arc;

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body::{Frame, SizeHint};
use medgate_ratelimit::Decision;

use crate::access::Partner;
use crate::problem::ApiError;
use crate::state::AppState;

/// Middleware: the request proceeds with its [`Partner`] in the extensions, or is refused
/// with 401, 429 (with `Retry-After`) or 503.
pub async fn partner_guard(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let runtime = state.runtime();
    let partner = match runtime
        .access
        .authenticate(request.headers().get(AUTHORIZATION))
    {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    if let Err(e) = check_rate(&state, &partner).await {
        metrics::counter!("medgate_rate_limit_rejections_total", "partner" => partner.name.clone())
            .increment(1);
        return e.into_response();
    }
    let Ok(slot) = partner.in_flight.clone().try_acquire_owned() else {
        metrics::counter!("medgate_rate_limit_rejections_total", "partner" => partner.name.clone())
            .increment(1);
        return ApiError::RateLimited {
            detail: "too many concurrent requests for this partner",
            retry_after: 1,
        }
        .into_response();
    };
    request.extensions_mut().insert(partner);
    // The slot is held until the body is fully sent (or dropped): a streamed download counts
    // against the partner's concurrency for as long as it runs, not just until its headers.
    hold_until_sent(next.run(request).await, slot)
}

/// A response body that holds a permit until it ends or is dropped.
struct Held<P> {
    body: Body,
    _slot: P,
}

impl<P: Send + Unpin + 'static> HttpBody for Held<P> {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Wraps `response`'s body so that `permit` is released only when the body is done.
pub fn hold_until_sent<P: Send + Unpin + 'static>(response: Response, permit: P) -> Response {
    response.map(|body| {
        Body::new(Held {
            body,
            _slot: permit,
        })
    })
}

async fn check_rate(state: &AppState, partner: &Arc<Partner>) -> Result<(), ApiError> {
    let Some(quota) = partner.quota else {
        return Ok(());
    };
    let services = state.services();
    match services.limiter.check(&partner.name, quota).await {
        Ok(Decision::Allow { .. }) => Ok(()),
        Ok(Decision::Deny { retry_after }) => Err(ApiError::RateLimited {
            detail: "rate limit exceeded for this partner",
            retry_after: retry_after.as_secs_f64().ceil().max(1.0) as u64,
        }),
        Err(e) if services.fail_open => {
            tracing::warn!(error = %e, partner = %partner.name, "rate limiter unavailable; letting the request through");
            metrics::counter!("medgate_rate_limit_backend_errors_total").increment(1);
            Ok(())
        }
        Err(e) => {
            tracing::error!(error = %e, partner = %partner.name, "rate limiter unavailable; refusing the request");
            metrics::counter!("medgate_rate_limit_backend_errors_total").increment(1);
            Err(ApiError::Core(medgate_core::Error::Unavailable {
                name: "rate-limiter".into(),
                reason: "rate limiting is temporarily unavailable".into(),
                retry_after: Some(std::time::Duration::from_secs(1)),
            }))
        }
    }
}
