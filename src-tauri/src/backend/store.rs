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

fn http() -> Result<reqwest::Client, AppError> {
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
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(AppError::invalid("not an asset hash"));
    }
    let resp = http()?
        .get(format!("{base_url}/api/assets/{hash}"))
        .send()
        .await
        .map_err(|e| AppError::new(ErrorCode::StoreUnreachable, e.without_url().to_string()))?;
    if resp.status() == reqwest::StatusCode::NOT_FOUND {
        return Err(AppError::new(
            ErrorCode::NotFound,
            "This asset is not in the store.",
        ));
    }
    if !resp.status().is_success() {
        return Err(AppError::new(
            ErrorCode::StoreUnreachable,
            format!("the store answered {}", resp.status()),
        ));
    }
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

fn temp_beside(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dest.with_file_name(format!(".{name}.can-sync-part"))
}

/// A safe file name for an asset's name (no directories, no control characters).
pub fn safe_file_name(name: &str, hash: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c == '/' || c == '\\' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    let cleaned = cleaned.trim().trim_start_matches('.').to_owned();
    if cleaned.is_empty() {
        hash.chars().take(16).collect()
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_cannot_escape() {
        assert_eq!(safe_file_name("../../etc/passwd", "ab"), "_.._etc_passwd");
        assert_eq!(safe_file_name("", "0123456789abcdef99"), "0123456789abcdef");
        assert_eq!(safe_file_name("Fotos/ä.jpg", "x"), "Fotos_ä.jpg");
    }
}
