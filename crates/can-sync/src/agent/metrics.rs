//! Prometheus metrics of a running agent (opt-in: `metrics_addr`, loopback only, since they
//! are not authenticated). `GET /metrics` answers in the OpenMetrics text format.
//!
//! The figures come from the engine's status at scrape time, plus counts of the events
//! that mean something went wrong, kept since the agent started.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::task::JoinHandle;

use crate::engine::EngineHandle;
use crate::events::{EngineEvent, Status};

/// The engine events counted in `can_sync_errors_total{kind}`.
pub fn error_kind(event: &EngineEvent) -> Option<&'static str> {
    Some(match event {
        EngineEvent::PeerMisbehaved { .. } => "peer_misbehaved",
        EngineEvent::AdmissionRefused { .. } => "admission_refused",
        EngineEvent::IncompatiblePeer { .. } => "incompatible_peer",
        EngineEvent::AssetRefused { .. } => "asset_refused",
        EngineEvent::StoreOffline { .. } => "store_offline",
        EngineEvent::StoreFull { .. } => "store_full",
        _ => return None,
    })
}

/// The exposition for one scrape (pure: status and error counts in, text out).
pub fn render(status: &Status, errors: &BTreeMap<&'static str, u64>) -> String {
    let mut registry = Registry::with_prefix("can_sync");
    let n = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
    let gauges = [
        ("peers", "Connected peers", n(status.peers.len())),
        (
            "candidates",
            "Endpoints with a dial loop",
            n(status.candidates),
        ),
        (
            "local_assets",
            "Assets in the local CAN Service",
            n(status.local_assets),
        ),
        (
            "pending_assets",
            "Assets known at peers and not stored here yet",
            n(status.pending),
        ),
        (
            "transfers_in_flight",
            "Downloads running now",
            n(status.in_flight),
        ),
        ("paused", "1 while sync is paused", i64::from(status.paused)),
        (
            "store_online",
            "1 while the local CAN Service answers",
            i64::from(status.store_online),
        ),
    ];
    for (name, help, value) in gauges {
        let g: Gauge = Gauge::default();
        g.set(value);
        registry.register(name, help, g);
    }
    // Registered without "_total": the encoder appends it to counters.
    let counters = [
        ("assets_sent", "Assets sent to peers", status.assets_sent),
        (
            "assets_received",
            "Assets received from peers",
            status.assets_received,
        ),
        ("bytes_sent", "Asset bytes sent to peers", status.bytes_sent),
        (
            "bytes_received",
            "Asset bytes received from peers",
            status.bytes_received,
        ),
        (
            "transfer_bytes_sent",
            "Content bytes sent to peers, in finished and interrupted transfers",
            status.transfer_bytes_sent,
        ),
        (
            "transfer_bytes_received",
            "Content bytes received from peers, in finished and interrupted transfers",
            status.transfer_bytes_received,
        ),
    ];
    for (name, help, value) in counters {
        let c: Counter = Counter::default();
        c.inc_by(value);
        registry.register(name, help, c);
    }
    let family = Family::<Vec<(String, String)>, Counter>::default();
    for (kind, count) in errors {
        family
            .get_or_create(&vec![("kind".to_owned(), (*kind).to_owned())])
            .inc_by(*count);
    }
    registry.register(
        "errors",
        "Problems since start, by kind (the engine event's name)",
        family,
    );
    let mut text = String::new();
    // Writing to a String cannot fail.
    let _ = encode(&mut text, &registry);
    text
}

/// The metrics endpoint; dropping it stops serving.
pub struct MetricsServer {
    pub addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

#[derive(Clone)]
struct Shared {
    engine: EngineHandle,
    errors: Arc<Mutex<BTreeMap<&'static str, u64>>>,
}

/// Serves `GET /metrics` on `addr` (the caller checked it is loopback).
pub async fn serve(addr: SocketAddr, engine: EngineHandle) -> std::io::Result<MetricsServer> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let shared = Shared {
        engine: engine.clone(),
        errors: Arc::default(),
    };
    let counting = {
        let errors = shared.errors.clone();
        let mut events = engine.subscribe();
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(event) => {
                        if let (Some(kind), Ok(mut e)) = (error_kind(&event), errors.lock()) {
                            *e.entry(kind).or_default() += 1;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => return,
                }
            }
        })
    };
    let app = Router::new()
        .route("/metrics", get(scrape))
        .with_state(shared);
    let server = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "metrics server stopped");
        }
    });
    Ok(MetricsServer {
        addr,
        tasks: vec![counting, server],
    })
}

async fn scrape(State(shared): State<Shared>) -> impl IntoResponse {
    let Ok(status) = shared.engine.status().await else {
        return (StatusCode::SERVICE_UNAVAILABLE, "the engine has stopped\n").into_response();
    };
    let errors = shared.errors.lock().map(|e| e.clone()).unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        render(&status, &errors),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_status_and_errors() {
        let status = Status {
            paused: true,
            store_online: true,
            local_assets: 12,
            pending: 3,
            in_flight: 1,
            assets_sent: 5,
            assets_received: 7,
            bytes_sent: 500,
            bytes_received: 700,
            candidates: 2,
            ..Status::default()
        };
        let errors = BTreeMap::from([("store_offline", 2)]);
        let text = render(&status, &errors);
        for line in [
            "can_sync_local_assets 12",
            "can_sync_pending_assets 3",
            "can_sync_paused 1",
            "can_sync_bytes_received_total 700",
            "can_sync_errors_total{kind=\"store_offline\"} 2",
            "# EOF",
        ] {
            assert!(text.contains(line), "{line} missing in:\n{text}");
        }
    }
}
