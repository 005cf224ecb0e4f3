//! The ceiling on a shaped link: one raw iroh QUIC stream from site 1 to site 0 (the same
//! direction as the mirrors), with CAN Sync's own transport settings
//! (`can_sync::engine::transport_config`: BBRv3, the same idle timeout), so that the gap
//! between the two is what the sync protocol and the stores cost, not a different QUIC.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Instant;

use anyhow::{Context, ensure};
use can_sync::config::Congestion;
use can_testkit::wan::Testbed;
use iroh::endpoint::{PortmapperConfig, presets};
use iroh::{Endpoint, EndpointAddr, RelayMode};

use super::Run;

const ALPN: &[u8] = b"can-bench/raw";

async fn bind(ip: Ipv4Addr, cc: Congestion) -> anyhow::Result<Endpoint> {
    Endpoint::builder(presets::Minimal)
        .relay_mode(RelayMode::Disabled)
        .clear_ip_transports()
        .bind_addr(SocketAddr::new(ip.into(), 0))?
        .portmapper_config(PortmapperConfig::Disabled)
        .transport_config(can_sync::engine::transport_config(cc))
        .alpns(vec![ALPN.to_vec()])
        .bind()
        .await
        .context("bind")
}

/// `size` bytes from site 0 to site 1; timed from the stream's opening until the receiver
/// acknowledges the last byte (one byte back).
pub async fn stream(tb: &Testbed, size: usize, cc: Congestion) -> anyhow::Result<Run> {
    // Endpoints must be made on runtimes whose threads live in the sites' namespaces.
    let (rt_a, rt_b) = (tb.runtime_in(0), tb.runtime_in(1));
    let (ip_a, ip_b) = (tb.site(0).addr, tb.site(1).addr);
    let (tx, rx) = tokio::sync::oneshot::channel();
    let receiver = rt_b.spawn(async move {
        let ep = bind(ip_b, cc).await?;
        let socket = *ep.bound_sockets().first().context("no socket")?;
        let _ = tx.send(EndpointAddr::new(ep.id()).with_ip_addr(socket));
        let conn = ep.accept().await.context("accept")?.await?;
        let (mut send, mut recv) = conn.accept_bi().await?;
        let mut total = 0usize;
        while let Some(chunk) = recv.read_chunk(1 << 20).await? {
            total += chunk.len();
        }
        send.write_all(&[1]).await?;
        send.finish()?;
        // The sender closes once it has the acknowledgement.
        conn.closed().await;
        ep.close().await;
        anyhow::Ok(total)
    });
    let addr = rx.await.context("the receiver did not start")?;
    let before = tb.sent_bytes();
    let sender = rt_a.spawn(async move {
        let ep = bind(ip_a, cc).await?;
        let conn = ep.connect(addr, ALPN).await?;
        let chunk = bytes::Bytes::from(vec![7u8; 1 << 20]);
        let start = Instant::now();
        let (mut send, mut recv) = conn.open_bi().await?;
        let mut sent = 0usize;
        while sent < size {
            let n = chunk.len().min(size - sent);
            send.write_chunk(chunk.slice(..n)).await?;
            sent += n;
        }
        send.finish()?;
        let mut ack = [0u8; 1];
        recv.read_exact(&mut ack).await?;
        let secs = start.elapsed().as_secs_f64();
        conn.close(0u32.into(), b"done");
        ep.close().await;
        anyhow::Ok((sent, secs))
    });
    let (sent, secs) = sender.await??;
    let received = receiver.await??;
    ensure!(received == sent, "the raw stream lost data");
    Ok(Run {
        secs,
        wire: tb.sent_bytes() - before,
    })
}
