//! The CAN Service's HTTP API in process: the real router over a real store, fed requests
//! whose method, path, query, headers (Range, X-Filename, Host, Origin, keys, Last-Event-ID)
//! and bodies (sync API protobuf heads, uploads) the fuzzer chose.
//!
//! Checked beyond "no panic": no 500 (only a failing disk may cause one), the safety
//! headers on every response, JSON errors, and Range answers that hold exactly the bytes
//! asked for.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use arbitrary::Unstructured;
use axum::Router;
use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode, header};
use bytes::Bytes;
use can_proto::sync_api::{Asset, IngestRequest};
use can_service::store::NewAsset;
use can_service::{AssetHash, Config, Store};
use prost::Message;
use tower::ServiceExt;

use super::{some_bytes, structured};

const SYNC_KEY: &str = "fuzz-sync-key";
const PUBLIC_KEY: &str = "fuzz-public-key";
/// Largest body read back from a response (the stored contents are smaller).
const BODY_LIMIT: usize = 1 << 20;

/// Contents stored before the first input: empty, short, and one past a few Range edges.
fn seed_contents() -> Vec<Vec<u8>> {
    vec![
        Vec::new(),
        b"hello, world".to_vec(),
        (0..5000u32).map(|i| (i % 251) as u8).collect(),
    ]
}

struct World {
    runtime: tokio::runtime::Runtime,
    /// Open service (no public key) and a keyed one with allow-lists, over the same store.
    open: Router,
    keyed: Router,
    contents: Vec<(AssetHash, Vec<u8>)>,
}

/// The scratch folder of this process's store, removed by [`cleanup`].
static SCRATCH: Mutex<Option<tempfile::TempDir>> = Mutex::new(None);

/// Where scratch stores go: `CAN_FUZZ_TMP`, else `/dev/shm` (fsync there costs nothing, and
/// uploads fsync), else the system temp folder.
fn scratch_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("CAN_FUZZ_TMP") {
        return dir.into();
    }
    let shm = PathBuf::from("/dev/shm");
    if shm.is_dir() {
        shm
    } else {
        std::env::temp_dir()
    }
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("can-fuzz-")
            .tempdir_in(scratch_root())
            .expect("scratch folder for the fuzzed store");
        let data = dir.path().join("data");
        *SCRATCH.lock().unwrap_or_else(|p| p.into_inner()) = Some(dir);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let store = Store::open(&data, 1 << 20, Some(0)).expect("open the store");
        let contents = runtime.block_on(async {
            let mut out = Vec::new();
            for (i, content) in seed_contents().into_iter().enumerate() {
                let body = futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from(
                    content.clone(),
                ))]);
                let new = NewAsset {
                    name: format!("seed \u{e9}{i}.txt"),
                    content_type: "text/plain".into(),
                    created_at: None,
                    origin: "local".into(),
                    stamp: None,
                };
                let meta = store.ingest(body, new, None).await.expect("seed asset");
                out.push((meta.meta().hash, content));
            }
            out
        });
        let listen = SocketAddr::from(([127, 0, 0, 1], 3210));
        let mut config = Config {
            sync_api_key: Some(can_service::secret::Secret::new(SYNC_KEY.to_owned())),
            free_space_reserve_bytes: Some(0),
            max_asset_bytes: 1 << 20,
            ..Config::default()
        };
        let open = can_service::api::router(store.clone(), &config, listen).expect("router");
        config.public_api_key = Some(can_service::secret::Secret::new(PUBLIC_KEY.to_owned()));
        config.allowed_hosts = vec!["nas.example".into(), "box.example:8080".into()];
        config.allowed_origins = vec!["http://localhost:5173".into()];
        let keyed = can_service::api::router(store, &config, listen).expect("router");
        World {
            runtime,
            open,
            keyed,
            contents,
        }
    })
}

/// Removes this process's scratch store (the `cargo test` harness calls it at the end).
pub fn cleanup() {
    drop(SCRATCH.lock().unwrap_or_else(|p| p.into_inner()).take());
}

/// A short string that is mostly from `pool`, sometimes arbitrary.
fn pick(u: &mut Unstructured<'_>, pool: &[&str]) -> arbitrary::Result<String> {
    if u.ratio(1, 5)? {
        u.arbitrary()
    } else {
        Ok((*u.choose(pool)?).to_owned())
    }
}

fn number(u: &mut Unstructured<'_>, near: usize) -> arbitrary::Result<String> {
    Ok(match u.int_in_range(0..=5)? {
        0 => "0".into(),
        1 => near.to_string(),
        2 => near.saturating_sub(1).to_string(),
        3 => (near + 1).to_string(),
        4 => u.int_in_range(0..=near + 2)?.to_string(),
        _ => u.arbitrary::<u64>()?.to_string(),
    })
}

/// A Range header: mostly well-formed byte ranges near the content's edges.
fn range(u: &mut Unstructured<'_>, len: usize) -> arbitrary::Result<String> {
    if u.ratio(1, 6)? {
        return u.arbitrary();
    }
    let unit = if u.ratio(7, 8)? {
        "bytes".to_owned()
    } else {
        pick(u, &["Bytes", "items", ""])?
    };
    let mut specs = Vec::new();
    // One range mostly: the service serves single ranges (several get 416).
    let n = if u.ratio(3, 4)? {
        1
    } else {
        u.int_in_range(2..=3)?
    };
    for _ in 0..n {
        specs.push(match u.int_in_range(0..=3)? {
            0 => format!("{}-{}", number(u, len)?, number(u, len)?),
            1 => format!("{}-", number(u, len)?),
            2 => format!("-{}", number(u, len)?),
            _ => pick(u, &["-", "", " 0-1", "1-0", "x-y", "0--1"])?,
        });
    }
    Ok(format!("{unit}={}", specs.join(",")))
}

/// A percent-encoded query value made of arbitrary bytes, or the bytes raw.
fn query_value(u: &mut Unstructured<'_>) -> arbitrary::Result<String> {
    let raw: String = u.arbitrary()?;
    Ok(if u.arbitrary()? {
        percent_encoding::utf8_percent_encode(&raw, percent_encoding::NON_ALPHANUMERIC).to_string()
    } else {
        raw
    })
}

struct Case {
    request: Request<Body>,
    /// The stored content the request asks for, if it names one.
    content: Option<Vec<u8>>,
    events: bool,
}

fn case(u: &mut Unstructured<'_>, w: &World, keyed: bool) -> arbitrary::Result<Option<Case>> {
    let (hash, content) = match u.int_in_range(0..=4)? {
        i @ 0..=2 => {
            let (h, c) = &w.contents[i % w.contents.len()];
            let hex = h.to_hex();
            let hex = if u.ratio(1, 8)? {
                hex.to_uppercase()
            } else {
                hex
            };
            (hex, Some(c.clone()))
        }
        3 => (hex_of(&u.arbitrary::<[u8; 32]>()?), None),
        _ => (u.arbitrary()?, None),
    };
    // Content routes are where Range and ETag parsing happen: weighted up.
    let routes = [
        "/api/assets",
        "/api/assets/{h}",
        "/api/assets/{h}",
        "/api/assets/{h}",
        "/sync/v1/assets",
        "/api/assets/{h}/meta",
        "/api/events",
        "/sync/v1/hashes",
        "/sync/v1/assets",
        "/sync/v1/assets/{h}",
        "/sync/v1/events",
        "/healthz",
        "/",
    ];
    let template = pick(u, &routes)?;
    let mut path = template.replace("{h}", &hash);
    let names_content = template == "/api/assets/{h}";
    if u.ratio(3, 4)? {
        let keys = ["after", "limit", "name", "after", "x", ""];
        let mut pairs = Vec::new();
        for _ in 0..u.int_in_range(0..=3)? {
            let key = pick(u, &keys)?;
            let value = match key.as_str() {
                "after" | "limit" => number(u, 3)?,
                _ => query_value(u)?,
            };
            pairs.push(format!("{key}={value}"));
        }
        path = format!("{path}?{}", pairs.join("&"));
    }
    let method = match u.int_in_range(0..=6)? {
        0..=2 => Method::GET,
        3 | 4 => Method::POST,
        5 => Method::HEAD,
        _ => {
            let m: String = u.arbitrary()?;
            match Method::from_bytes(m.as_bytes()) {
                Ok(m) => m,
                Err(_) => Method::DELETE,
            }
        }
    };
    // An invalid URI makes `body()` below fail: such requests never reach a service.
    let mut builder = Request::builder().method(method.clone()).uri(&path);
    let len = content.as_ref().map_or(0, Vec::len);
    let mut headers: Vec<(HeaderName, String)> = Vec::new();
    if u.ratio(3, 4)? {
        headers.push((header::HOST, "127.0.0.1:3210".into()));
    } else if u.ratio(15, 16)? {
        let host = pick(
            u,
            &[
                "127.0.0.1:3210",
                "localhost",
                "[::1]:3210",
                "nas.example",
                "evil.example",
                "",
            ],
        )?;
        headers.push((header::HOST, host));
    }
    if u.ratio(1, 4)? {
        let origin = pick(
            u,
            &[
                "http://127.0.0.1:3210",
                "http://localhost:5173",
                "https://evil.example",
                "null",
            ],
        )?;
        headers.push((header::ORIGIN, origin));
    }
    let right_key = if path.starts_with("/sync/") {
        Some(SYNC_KEY)
    } else {
        keyed.then_some(PUBLIC_KEY)
    };
    if let Some(key) = right_key
        && u.ratio(7, 8)?
    {
        headers.push((header::AUTHORIZATION, format!("Bearer {key}")));
    } else if u.ratio(1, 4)? {
        let key = pick(
            u,
            &[
                &format!("Bearer {SYNC_KEY}"),
                &format!("Bearer {PUBLIC_KEY}"),
                "Bearer wrong",
                "Basic x",
            ],
        )?;
        headers.push((header::AUTHORIZATION, key));
    }
    if u.ratio(1, 2)? {
        headers.push((header::RANGE, range(u, len)?));
    }
    if u.ratio(1, 8)? {
        headers.push((header::IF_NONE_MATCH, format!("\"{hash}\"")));
    }
    if u.ratio(1, 4)? {
        headers.push((HeaderName::from_static("x-filename"), query_value(u)?));
    }
    if u.ratio(1, 4)? {
        let t = pick(
            u,
            &[
                "text/plain",
                "text/html; charset=utf-8",
                "image/svg+xml",
                "a/b/c",
            ],
        )?;
        headers.push((header::CONTENT_TYPE, t));
    }
    if u.ratio(1, 8)? {
        headers.push((HeaderName::from_static("last-event-id"), number(u, 3)?));
    }
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            builder = builder.header(name, v);
        }
    }
    let body = if method == Method::POST {
        body(u, w)?
    } else {
        Vec::new()
    };
    let Ok(request) = builder.body(Body::from(body)) else {
        return Ok(None);
    };
    Ok(Some(Case {
        request,
        content: content.filter(|_| names_content),
        events: template.ends_with("events"),
    }))
}

/// An ingest body: a sync API head (about known or fresh content, its size right or not)
/// and content, or arbitrary bytes.
fn body(u: &mut Unstructured<'_>, w: &World) -> arbitrary::Result<Vec<u8>> {
    if u.ratio(1, 4)? {
        return Ok(some_bytes(u, 256)?.to_vec());
    }
    let content: Vec<u8> = if u.ratio(1, 3)? {
        w.contents[u.choose_index(w.contents.len())?].1.clone()
    } else {
        some_bytes(u, 64)?.to_vec()
    };
    let hash = if u.ratio(7, 8)? {
        blake3_of(&content)
    } else {
        some_bytes(u, 33)?.to_vec()
    };
    let asset = Asset {
        hash,
        size: if u.ratio(7, 8)? {
            content.len() as u64
        } else {
            u.arbitrary()?
        },
        name: pick(
            u,
            &["a.txt", "", "dir/../x", "\u{202e}gpj.exe", "line\nbreak"],
        )?,
        content_type: pick(u, &["", "text/plain", "not a type", "image/png"])?,
        created_at: pick(
            u,
            &[
                "",
                "2024-05-06T07:08:09.123Z",
                "yesterday",
                "2024-13-40T25:61:61Z",
            ],
        )?,
        origin: pick(u, &["peer:a", "", "peer:\u{7}"])?,
        seq: u.arbitrary()?,
        ..Default::default()
    };
    let head = IngestRequest {
        asset: u.ratio(15, 16)?.then_some(asset),
        // Now and then a resume, often from further than any partial reaches.
        offset: if u.ratio(1, 8)? { u.arbitrary()? } else { 0 },
    };
    let mut out = head.encode_length_delimited_to_vec();
    out.extend_from_slice(&content);
    if u.ratio(1, 8)? {
        out.truncate(u.int_in_range(0..=out.len())?);
    }
    Ok(out)
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn blake3_of(content: &[u8]) -> Vec<u8> {
    can_service::hash::AssetHash::from(blake3::hash(content))
        .as_bytes()
        .to_vec()
}

/// `bytes START-END/TOTAL` of a 206.
fn content_range(response: &Response<Body>) -> Option<(usize, usize, usize)> {
    let v = response
        .headers()
        .get(header::CONTENT_RANGE)?
        .to_str()
        .ok()?;
    let (span, total) = v.strip_prefix("bytes ")?.split_once('/')?;
    let (start, end) = span.split_once('-')?;
    Some((start.parse().ok()?, end.parse().ok()?, total.parse().ok()?))
}

async fn check(case: Case, router: Router) {
    let method = case.request.method().clone();
    // What the failure messages show.
    let asked = format!(
        "{method} {} Range: {:?}",
        case.request.uri(),
        case.request.headers().get(header::RANGE)
    );
    let response = router.oneshot(case.request).await.expect("infallible");
    let status = response.status();
    assert!(
        status != StatusCode::INTERNAL_SERVER_ERROR,
        "500 for a request the service should have judged"
    );
    assert_eq!(
        response
            .headers()
            .get("x-content-type-options")
            .map(|v| v.as_bytes()),
        Some(&b"nosniff"[..]),
        "response without nosniff"
    );
    if case.events && status.is_success() {
        return; // an endless stream
    }
    let partial = content_range(&response);
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    let body = axum::body::to_bytes(response.into_body(), BODY_LIMIT)
        .await
        .expect("response body");
    if status.is_client_error() && json && method != Method::HEAD {
        let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON error body");
        assert!(v["error"].is_string(), "error body without an error: {v}");
    }
    let (Some(content), true) = (case.content, method == Method::GET) else {
        return;
    };
    match status {
        StatusCode::OK => assert_eq!(&body[..], &content[..], "200 with other bytes: {asked}"),
        StatusCode::PARTIAL_CONTENT => {
            let (start, end, total) = partial.expect("206 without a Content-Range");
            assert_eq!(total, content.len(), "{asked}");
            assert!(
                start <= end && end < total,
                "impossible Content-Range {start}-{end}/{total} for {asked}"
            );
            assert_eq!(
                &body[..],
                &content[start..=end],
                "206 with other bytes: {asked}"
            );
        }
        _ => {}
    }
}

/// One request to the router chosen by the input.
pub fn http(data: &[u8]) {
    let w = world();
    structured(data, |u| {
        let keyed = u.ratio(1, 4)?;
        let Some(case) = case(u, w, keyed)? else {
            return Ok(());
        };
        let router = if keyed {
            w.keyed.clone()
        } else {
            w.open.clone()
        };
        w.runtime.block_on(check(case, router));
        Ok(())
    })
}
