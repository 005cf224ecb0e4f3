//! The CAN Service the app syncs: the built-in one (the reference service, in-process) or
//! an external one. Also the few public-API calls the UI needs in built-in mode: add a
//! file, download an asset to open or save it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use can_sync::Secret;
use can_sync::can_client::CanClient;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use super::error::{AppError, ErrorCode};

/// The reference CAN Service running inside the app.
pub struct Builtin {
    service: can_service::RunningService,
    pub url: String,
    /// Fresh per launch and never stored: only this process talks to the built-in sync API.
    pub sync_key: Secret,
}

pub const BUILTIN_LISTEN: &str = "127.0.0.1:3210";

impl Builtin {
    /// The store itself, for the engine to reach through its library.
    pub fn store(&self) -> &can_service::Store {
        self.service.store()
    }

    /// Starts the store on `data_dir`. It listens on `listen` (default 127.0.0.1:3210 so
    /// other local tools find it where they expect a CAN Service); if that port is taken,
    /// on any free loopback port.
    pub async fn start(data_dir: &Path, listen: Option<&str>) -> Result<Self, AppError> {
        let wanted: SocketAddr = listen
            .unwrap_or(BUILTIN_LISTEN)
            .parse()
            .map_err(|_| AppError::invalid("advanced.builtin_listen is not an address"))?;
        let sync_key = hex::encode(rand::random::<[u8; 32]>());
        let mut config = can_service::config::Config {
            listen: wanted,
            data_dir: data_dir.to_owned(),
            sync_api_key: Some(can_service::secret::Secret::new(sync_key.clone())),
            ..Default::default()
        };
        let service = match can_service::start(&config).await {
            Ok(s) => s,
            Err(can_service::StartError::Bind { .. }) => {
                tracing::info!(addr = %wanted, "built-in store: address taken, using a free port");
                config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
                can_service::start(&config).await.map_err(start_error)?
            }
            Err(e) => return Err(start_error(e)),
        };
        let url = format!("http://{}", service.local_addr());
        tracing::info!(%url, dir = %data_dir.display(), "built-in store started");
        Ok(Self {
            service,
            url,
            sync_key: Secret::new(sync_key),
        })
    }

    pub async fn shutdown(self) {
        self.service.shutdown().await;
    }
}

fn start_error(e: can_service::StartError) -> AppError {
    AppError::new(
        ErrorCode::Io,
        format!("The built-in store could not start: {e}"),
    )
}

/// Connects to a CAN Service's sync API and counts its assets (the wizard's Test button).
pub async fn test(url: &str, key: &Secret) -> Result<u64, AppError> {
    super::wizard::validate_url(url)?;
    let client = CanClient::new(url, key)?;
    let (hashes, _) = client.all_hashes(0).await?;
    Ok(hashes.len() as u64)
}

pub(super) fn http() -> Result<reqwest::Client, AppError> {
    can_sync::can_client::install_crypto_provider();
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| AppError::io("HTTP client", e))
}

/// Uploads one file through the public API, streamed (never read whole into memory).
pub async fn add_file(base_url: &str, path: &Path) -> Result<(), AppError> {
    let shown = path.display().to_string();
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| AppError::io(&format!("cannot read {shown}"), e))?;
    let meta = file
        .metadata()
        .await
        .map_err(|e| AppError::io(&format!("cannot read {shown}"), e))?;
    if !meta.is_file() {
        return Err(AppError::invalid(format!("{shown} is not a file")));
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut url = reqwest::Url::parse(&format!("{base_url}/api/assets"))
        .map_err(|e| AppError::invalid(format!("store URL: {e}")))?;
    url.query_pairs_mut().append_pair("name", &name);
    let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file));
    let resp = http()?
        .post(url)
        .header(reqwest::header::CONTENT_LENGTH, meta.len())
        .body(body)
        .send()
        .await
        .map_err(|e| {
            AppError::new(
                ErrorCode::StoreUnreachable,
                format!("upload of {name} failed: {}", e.without_url()),
            )
        })?;
    if !resp.status().is_success() {
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        return Err(AppError::new(
            ErrorCode::StoreUnreachable,
            format!("the store refused {name} ({status}): {text}"),
        ));
    }
    Ok(())
}

/// Downloads an asset to `dest` whole or not at all: a temp file beside it, fsync, rename.
pub async fn download(base_url: &str, hash: &str, dest: &Path) -> Result<(), AppError> {
    check_hash(hash)?;
    let resp = get_content(base_url, hash, None).await?;
    let tmp = temp_beside(dest);
    let write = async {
        let mut f = tokio::fs::File::create(&tmp).await?;
        let mut body = resp.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(std::io::Error::other)?;
            f.write_all(&chunk).await?;
        }
        f.sync_all().await?;
        tokio::fs::rename(&tmp, dest).await
    };
    if let Err(e) = write.await {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(AppError::io(&format!("cannot write {}", dest.display()), e));
    }
    Ok(())
}

/// The first bytes of an asset and the content type the store has for it (which is what
/// the peer that sent it declared): enough to tell what it is before writing it anywhere.
#[derive(Debug)]
pub struct Head {
    pub content_type: Option<String>,
    pub bytes: Vec<u8>,
}

/// Reads at most `max` leading bytes of an asset (a Range request; a store that ignores
/// it still costs only `max` bytes: the rest of the body is dropped unread).
pub async fn head(base_url: &str, hash: &str, max: usize) -> Result<Head, AppError> {
    check_hash(hash)?;
    let resp = get_content(base_url, hash, Some(max)).await?;
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut bytes = Vec::with_capacity(max.min(64 * 1024));
    // An empty asset answers 416 to any range: its head is empty.
    if resp.status() != reqwest::StatusCode::RANGE_NOT_SATISFIABLE {
        let mut body = resp.bytes_stream();
        while bytes.len() < max
            && let Some(chunk) = body.next().await
        {
            let chunk = chunk.map_err(|e| {
                AppError::new(ErrorCode::StoreUnreachable, e.without_url().to_string())
            })?;
            let room = max - bytes.len();
            bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
        }
    }
    Ok(Head {
        content_type,
        bytes,
    })
}

/// GET of an asset's content (optionally only its first `range` bytes), status checked.
async fn get_content(
    base_url: &str,
    hash: &str,
    range: Option<usize>,
) -> Result<reqwest::Response, AppError> {
    let mut req = http()?.get(format!("{base_url}/api/assets/{hash}"));
    if let Some(n) = range {
        req = req.header(
            reqwest::header::RANGE,
            format!("bytes=0-{}", n.saturating_sub(1)),
        );
    }
    let resp = req
        .send()
        .await
        .map_err(|e| AppError::new(ErrorCode::StoreUnreachable, e.without_url().to_string()))?;
    let status = resp.status();
    if status == reqwest::StatusCode::NOT_FOUND {
        return Err(AppError::new(
            ErrorCode::NotFound,
            "This asset is not in the store.",
        ));
    }
    if status == reqwest::StatusCode::GONE {
        return Err(AppError::new(
            ErrorCode::NotFound,
            "This asset was deleted. Restore it from the Trash to open or save it.",
        ));
    }
    // An empty asset has no first byte: 416 to a range request is its (empty) head.
    let empty_head = range.is_some() && status == reqwest::StatusCode::RANGE_NOT_SATISFIABLE;
    if !status.is_success() && !empty_head {
        return Err(AppError::new(
            ErrorCode::StoreUnreachable,
            format!("the store answered {status}"),
        ));
    }
    Ok(resp)
}

/// An asset hash as the UI must send it: exactly 64 lowercase hex digits (BLAKE3). Checked
/// before any file or HTTP call: the hash goes into URLs and directory names.
pub fn check_hash(hash: &str) -> Result<(), AppError> {
    if hash.len() == 64 && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(AppError::invalid(
            "Asset hash: expected 64 lowercase hexadecimal characters.",
        ))
    }
}

fn temp_beside(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dest.with_file_name(format!(".{name}.can-sync-part"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_64_lowercase_hex_digits() {
        let good = "0123456789abcdef".repeat(4);
        assert!(check_hash(&good).is_ok());
        for bad in [
            String::new(),
            good.to_uppercase(),
            good[..63].to_owned(),
            format!("{good}0"),
            format!("../{}", &good[3..]),
            format!("{}%2F", &good[..61]),
            format!("{}é", &good[..62]),
            format!("{} ", &good[..63]),
        ] {
            let e = check_hash(&bad).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidInput, "{bad:?}");
            assert!(e.message.contains("64 lowercase"), "{e}");
        }
    }
}
