//! An idle agent does nothing periodic against its store: the event stream drives it, and the
//! fallback poll runs only while that stream is down.
//!
//! Agent A reaches its CAN Service through a TCP proxy made here that counts the bytes A sends
//! (every HTTP request is some) and can refuse A's event stream.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use can_testkit::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const PASS: &str = "quiet harbor lantern moss pebble orbit willow";

/// A loopback proxy to one upstream address.
struct Proxy {
    url: String,
    /// Bytes clients sent upstream.
    sent: Arc<AtomicU64>,
    /// Answer `GET /sync/v1/events` with 404, as a store without an event stream would.
    refuse_events: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream_url: &str) -> Proxy {
        let upstream = upstream_url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let sent = Arc::new(AtomicU64::new(0));
        let refuse_events = Arc::new(AtomicBool::new(false));
        let (s, r) = (sent.clone(), refuse_events.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(relay(client, upstream.clone(), s.clone(), r.clone()));
            }
        });
        Proxy {
            url,
            sent,
            refuse_events,
            task,
        }
    }

    fn sent(&self) -> u64 {
        self.sent.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(
    mut client: TcpStream,
    upstream: String,
    sent: Arc<AtomicU64>,
    refuse: Arc<AtomicBool>,
) {
    let mut first = vec![0u8; 4096];
    let n = match client.read(&mut first).await {
        Ok(0) | Err(_) => return,
        Ok(n) => n,
    };
    sent.fetch_add(n as u64, Ordering::SeqCst);
    // The agent's event stream has a connection (and HTTP client) of its own, so its first
    // request says what the whole connection is for.
    if refuse.load(Ordering::SeqCst) && first[..n].starts_with(b"GET /sync/v1/events") {
        let _ = client
            .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            .await;
        return;
    }
    let Ok(mut server) = TcpStream::connect(&upstream).await else {
        return;
    };
    if server.write_all(&first[..n]).await.is_err() {
        return;
    }
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match cr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    sent.fetch_add(n as u64, Ordering::SeqCst);
                    if sw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = sw.shutdown().await;
    };
    let down = async {
        let _ = tokio::io::copy(&mut sr, &mut cw).await;
        let _ = cw.shutdown().await;
    };
    tokio::join!(up, down);
}

/// Bytes A sends its store over `secs` seconds of nothing happening.
async fn sent_while_idle(proxy: &Proxy, secs: u64) -> u64 {
    let before = proxy.sent();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    proxy.sent() - before
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_agent_sends_its_store_nothing_and_polls_only_without_a_stream() {
    let dir = tempfile::tempdir().unwrap();
    let a = Service::with_key(&dir.path().join("svc-a"));
    let b = Service::with_key(&dir.path().join("svc-b"));
    let c = client();
    let proxy = Proxy::start(&a.url).await;
    // Polls every 2 s (the testkit's default) if it polled at all.
    let (agent_a, agent_b) = Agent::start_pair(dir.path(), &proxy.url, &b.url, PASS);
    assert!(agent_a.wait_for("peer_up", 60).await);
    assert!(agent_b.wait_for("peer_up", 60).await);
    let (_, m) = upload(&c, &b, "first", b"the first asset".to_vec()).await;
    let first = m["hash"].as_str().unwrap().to_owned();
    assert!(eventually_async(30, || has_asset(&c, &a.url, &first)).await);

    // Connected, in sync, nothing happening: not one request in 8 s (4 poll intervals).
    let idle = sent_while_idle(&proxy, 8).await;
    assert_eq!(idle, 0, "the idle agent sent its store {idle} bytes");

    // Live: an upload to A's store reaches B through the stream alone.
    let (_, m) = upload(&c, &a, "live", b"announced by the stream".to_vec()).await;
    let live = m["hash"].as_str().unwrap().to_owned();
    assert!(eventually_async(30, || has_asset(&c, &b.url, &live)).await);

    // A store without a working stream: A restarts against it and falls back to polling.
    drop(agent_a);
    proxy.refuse_events.store(true, Ordering::SeqCst);
    let agent_a = Agent::start(&dir.path().join("agent-a"), &proxy.url, KEY, PASS, "");
    assert!(agent_a.wait_for("peer_up", 60).await);
    let (_, m) = upload(&c, &a, "polled", b"found by the poll".to_vec()).await;
    let polled = m["hash"].as_str().unwrap().to_owned();
    assert!(
        eventually_async(30, || has_asset(&c, &b.url, &polled)).await,
        "without a stream the poll did not pick the asset up"
    );
    assert_eq!(
        agent_a.count("store_offline"),
        0,
        "the polled store was called offline"
    );
    assert!(
        sent_while_idle(&proxy, 5).await > 0,
        "no poll while the stream is down"
    );
}
