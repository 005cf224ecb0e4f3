//! HTTP client for the local CAN Service's sync API (docs/sync-api.md).

use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use can_proto::frame::read_head;
use can_proto::sync_api as pb;
use can_proto::{MAX_META_FRAME, PROTOBUF_MEDIA_TYPE};
use eventsource_stream::Eventsource;
use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt};
use prost::Message;

use crate::secret::Secret;

/// Why a call to the CAN Service failed.
#[derive(Debug, thiserror::Error)]
pub enum CanError {
    #[error("CAN Service at {url} is unreachable: {message}")]
    Unreachable { url: String, message: String },
    #[error("CAN Service rejected the sync API key (401): check sync_api_key")]
    Unauthorized,
    #[error("CAN Service has no sync API (404): set sync_api_key in its config")]
    NoSyncApi,
    #[error("asset not found")]
    NotFound,
    #[error("CAN Service refused the asset: {0}")]
    Rejected(String),
    #[error("the asset was deleted here by a later change: {0}")]
    Deleted(String),
    #[error("CAN Service answered {status}: {message}")]
    Status { status: u16, message: String },
    #[error("unexpected answer from CAN Service: {0}")]
    Protocol(String),
}

impl CanError {
    /// The error for a status the sync API answered with `message` (both store links).
    pub fn from_status(status: u16, message: String) -> Self {
        match status {
            401 => CanError::Unauthorized,
            404 if message.contains("sync API") => CanError::NoSyncApi,
            404 => CanError::NotFound,
            410 => CanError::Deleted(message),
            422 => CanError::Rejected(message),
            _ => CanError::Status { status, message },
        }
    }

    /// Whether the service itself is unavailable (as opposed to refusing one request).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, CanError::Unreachable { .. })
            || matches!(self, CanError::Status { status, .. } if *status >= 500)
    }
}

/// iroh builds reqwest without a TLS crypto provider; we use ring, as iroh does. Installing
/// it twice is harmless (the second call reports the first one).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The service sends a keep-alive on its event stream every 15 s; this long without a byte
/// means the stream is dead even if its connection is not.
const EVENTS_READ_TIMEOUT: Duration = Duration::from_secs(45);

#[derive(Clone)]
pub struct CanClient {
    http: reqwest::Client,
    /// For the event stream only: reqwest's read timeout also runs while a request body is
    /// sent, which would cut a slow upload (an asset arriving from a rate-limited peer).
    events_http: reqwest::Client,
    base: String,
    auth: String,
    /// The service lists deletions (`?deleted=true`); cleared when one that predates
    /// deletion refuses the parameter.
    deletions: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// Result of an ingest.
#[derive(Debug, Clone)]
pub struct Ingested {
    pub asset: pb::Asset,
    pub created: bool,
}

impl CanClient {
    pub fn new(base: &str, key: &Secret) -> Result<Self, CanError> {
        install_crypto_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| CanError::Protocol(e.to_string()))?;
        let events_http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .read_timeout(EVENTS_READ_TIMEOUT)
            .build()
            .map_err(|e| CanError::Protocol(e.to_string()))?;
        Ok(Self {
            http,
            events_http,
            base: base.trim_end_matches('/').to_owned(),
            auth: format!("Bearer {}", key.expose()),
            deletions: std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true)),
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn unreachable(&self, e: reqwest::Error) -> CanError {
        CanError::Unreachable {
            url: self.base.clone(),
            message: e.without_url().to_string(),
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, CanError> {
        let resp = req
            .header("Authorization", &self.auth)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let status = resp.status().as_u16();
        if resp.status().is_success() {
            return Ok(resp);
        }
        let message = resp
            .json::<serde_json::Value>()
            .await
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or_default();
        Err(CanError::from_status(status, message))
    }

    /// One page of hashes (and deletions, where the service has them) after `after`.
    pub async fn hashes(&self, after: u64, limit: usize) -> Result<pb::HashPage, CanError> {
        use std::sync::atomic::Ordering;
        let get = |deleted: bool| {
            let extra = if deleted { "&deleted=true" } else { "" };
            self.http
                .get(format!(
                    "{}/sync/v1/hashes?after={after}&limit={limit}{extra}",
                    self.base
                ))
                .timeout(Duration::from_secs(30))
        };
        let resp = if self.deletions.load(Ordering::Relaxed) {
            match self.send(get(true)).await {
                Err(CanError::Status { status: 400, .. }) => {
                    tracing::info!("the CAN Service predates deletion; syncing without it");
                    self.deletions.store(false, Ordering::Relaxed);
                    self.send(get(false)).await?
                }
                other => other?,
            }
        } else {
            self.send(get(false)).await?
        };
        let body = resp.bytes().await.map_err(|e| self.unreachable(e))?;
        pb::HashPage::decode(body).map_err(|e| CanError::Protocol(e.to_string()))
    }

    /// Every hash after `after`, and the last seq seen.
    pub async fn all_hashes(&self, after: u64) -> Result<(Vec<pb::HashEntry>, u64), CanError> {
        crate::store_link::collect_pages(after, |cursor| self.hashes(cursor, 10_000)).await
    }

    /// How many bytes of `hash` an interrupted upload left in the service (`None`: none, or
    /// a service that does not resume).
    pub async fn partial(&self, hash: &[u8; 32]) -> Result<Option<u64>, CanError> {
        let url = format!("{}/sync/v1/partials/{}", self.base, hex::encode(hash));
        match self.send(self.http.get(url)).await {
            Ok(resp) => {
                let bytes = resp.bytes().await.map_err(|e| self.unreachable(e))?;
                let p =
                    pb::Partial::decode(bytes).map_err(|e| CanError::Protocol(e.to_string()))?;
                Ok(Some(p.received))
            }
            Err(CanError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// An asset's metadata and its content from byte `offset` on, as a stream.
    pub async fn fetch(
        &self,
        hash: &[u8; 32],
        offset: u64,
    ) -> Result<(pb::Asset, BoxStream<'static, Result<Bytes, CanError>>), CanError> {
        let query = if offset > 0 {
            format!("?offset={offset}")
        } else {
            String::new()
        };
        let resp = self
            .send(self.http.get(format!(
                "{}/sync/v1/assets/{}{query}",
                self.base,
                hex::encode(hash)
            )))
            .await?;
        let base = self.base.clone();
        let mut stream = resp.bytes_stream().map(move |r| {
            r.map_err(|e| CanError::Unreachable {
                url: base.clone(),
                message: e.without_url().to_string(),
            })
        });
        let (asset, rest): (pb::Asset, Bytes) = read_head(&mut stream, MAX_META_FRAME, "Asset")
            .await
            .map_err(|e| CanError::Protocol(e.to_string()))?;
        let content =
            futures_util::stream::iter((!rest.is_empty()).then_some(Ok(rest))).chain(stream);
        Ok((asset, content.boxed()))
    }

    /// Stores an asset whose content from byte `offset` on arrives as a stream (the bytes
    /// before it are the service's partial upload of it); the service re-hashes it whole.
    pub async fn ingest<S>(
        &self,
        asset: pb::Asset,
        offset: u64,
        content: S,
    ) -> Result<Ingested, CanError>
    where
        S: Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
    {
        let request = pb::IngestRequest {
            asset: Some(asset),
            offset,
        };
        let head = Bytes::from(request.encode_length_delimited_to_vec());
        let body = futures_util::stream::once(async move { Ok(head) }).chain(content);
        let resp = self
            .send(
                self.http
                    .post(format!("{}/sync/v1/assets", self.base))
                    .header("Content-Type", PROTOBUF_MEDIA_TYPE)
                    .body(reqwest::Body::wrap_stream(body)),
            )
            .await?;
        let bytes = resp.bytes().await.map_err(|e| self.unreachable(e))?;
        let reply =
            pb::IngestResponse::decode(bytes).map_err(|e| CanError::Protocol(e.to_string()))?;
        let asset = reply
            .asset
            .ok_or_else(|| CanError::Protocol("IngestResponse without asset".into()))?;
        Ok(Ingested {
            asset,
            created: reply.created,
        })
    }

    /// Applies a peer's change of one hash (a deletion, or the asset live again).
    pub async fn apply_record(&self, record: pb::Record) -> Result<pb::RecordResponse, CanError> {
        let resp = self
            .send(
                self.http
                    .post(format!("{}/sync/v1/records", self.base))
                    .header("Content-Type", PROTOBUF_MEDIA_TYPE)
                    .body(record.encode_to_vec())
                    .timeout(Duration::from_secs(30)),
            )
            .await?;
        let bytes = resp.bytes().await.map_err(|e| self.unreachable(e))?;
        pb::RecordResponse::decode(bytes).map_err(|e| CanError::Protocol(e.to_string()))
    }

    /// What the service holds (assets, trash, tombstones).
    pub async fn totals(&self) -> Result<pb::Totals, CanError> {
        let resp = self
            .send(
                self.http
                    .get(format!("{}/sync/v1/totals", self.base))
                    .timeout(Duration::from_secs(30)),
            )
            .await?;
        let bytes = resp.bytes().await.map_err(|e| self.unreachable(e))?;
        pb::Totals::decode(bytes).map_err(|e| CanError::Protocol(e.to_string()))
    }

    /// Ingest and delete events after `after`, live. The stream ends when the connection drops.
    pub async fn events(
        &self,
        after: u64,
    ) -> Result<BoxStream<'static, Result<pb::IngestEvent, CanError>>, CanError> {
        let resp = self
            .send(
                self.events_http
                    .get(format!("{}/sync/v1/events?after={after}", self.base)),
            )
            .await?;
        let base = self.base.clone();
        let stream = resp.bytes_stream().eventsource().filter_map(move |e| {
            let base = base.clone();
            async move {
                match e {
                    Ok(e) if e.event == "ingest" || e.event == "delete" => Some(
                        base64::engine::general_purpose::STANDARD
                            .decode(e.data.trim())
                            .map_err(|e| CanError::Protocol(e.to_string()))
                            .and_then(|raw| {
                                pb::IngestEvent::decode(raw.as_slice())
                                    .map_err(|e| CanError::Protocol(e.to_string()))
                            }),
                    ),
                    Ok(_) => None,
                    Err(e) => Some(Err(CanError::Unreachable {
                        url: base,
                        message: e.to_string(),
                    })),
                }
            }
        });
        Ok(stream.boxed())
    }
}
