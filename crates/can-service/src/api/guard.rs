//! Refusing the web: the `Host` and `Origin` checks in front of `/api/` and `/sync/v1/`
//! (why: [`crate::web`]). They run before any handler, so a refused upload's body is never
//! read, and the connection is closed rather than drained.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::{ApiError, closing};
use crate::config::{Config, ConfigError};
use crate::web::{HostPolicy, OriginPolicy};

/// The Host and Origin policies of one running service.
#[derive(Clone)]
pub struct WebGuard {
    hosts: Arc<HostPolicy>,
    origins: Arc<OriginPolicy>,
}

impl WebGuard {
    /// From the config's allow-lists and the address actually listened on; the error
    /// names the key and the bad entry.
    pub fn new(config: &Config, listen: SocketAddr) -> Result<Self, ConfigError> {
        let bad = |key, message| ConfigError::Value {
            path: None,
            key,
            message,
        };
        Ok(Self {
            hosts: Arc::new(
                HostPolicy::new(&config.allowed_hosts).map_err(|m| bad("allowed_hosts", m))?,
            ),
            origins: Arc::new(
                OriginPolicy::new(&config.allowed_origins, listen)
                    .map_err(|m| bad("allowed_origins", m))?,
            ),
        })
    }

    /// The refusal for a request, if any: 400 without a Host, 421 for a Host that DNS could
    /// re-point here, 403 for a foreign Origin.
    fn refusal(&self, request: &Request) -> Option<ApiError> {
        let host = match request.headers().get(header::HOST) {
            Some(v) => Some(v.to_str().unwrap_or("\u{FFFD}")),
            None => None,
        };
        // An absolute-form target (`POST http://name/...`) names the host too; both count.
        let target = request.uri().authority().map(|a| a.as_str());
        if host.is_none() && target.is_none() {
            return Some(ApiError::bad_request("a Host header is required"));
        }
        for name in [host, target].into_iter().flatten() {
            if !self.hosts.accepts(name) {
                tracing::debug!(host = name, "refused a request for a foreign Host");
                return Some(ApiError::new(
                    StatusCode::MISDIRECTED_REQUEST,
                    "this service answers only requests addressed to an IP address, \
                     localhost or a name in its allowed_hosts setting",
                ));
            }
        }
        let origin = request.headers().get(header::ORIGIN)?;
        let accepted = origin
            .to_str()
            .is_ok_and(|o| self.origins.accepts(o, host.or(target)));
        if accepted {
            return None;
        }
        tracing::debug!(origin = ?origin, "refused a request from a foreign web origin");
        Some(ApiError::new(
            StatusCode::FORBIDDEN,
            "requests from web pages of other origins are refused \
             (see allowed_origins in the service's config)",
        ))
    }
}

pub async fn check(State(guard): State<WebGuard>, request: Request, next: Next) -> Response {
    match guard.refusal(&request) {
        None => next.run(request).await,
        Some(e) => closing(e.into_response()),
    }
}
