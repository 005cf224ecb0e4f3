//! The `auto` congestion controller: CUBIC on a path whose round trip is that of a LAN,
//! BBRv3 everywhere else.
//!
//! BBRv3 keeps its rate under random loss (Wi-Fi, mobile, long paths), where CUBIC halves
//! its window at every lost packet. On a fast, short path it costs: its pacing and rate
//! probing held one QUIC stream on loopback to 239 MB/s where CUBIC reached 366 MB/s, and
//! the app's in-process mirror to 113 MB/s where CUBIC reached 187 MB/s (bench/README,
//! "sync"). A
//! LAN's round trip is well under a millisecond, so a loss there is recovered from almost at
//! once and CUBIC's reaction to it costs little.
//!
//! Each path starts on BBRv3. The first acknowledgement that shows the path's minimum round
//! trip under [`LAN_RTT`] replaces it with a fresh CUBIC (slow start from the initial
//! window: a few LAN round trips, well under a millisecond, to reach full rate). The
//! minimum only falls, so a path is judged by its best round trip and never goes back.
//! One controller runs at a time: no state of the other to keep or to pay for per packet.

use std::any::Any;
use std::sync::Arc;
use std::time::{Duration, Instant};

use noq_proto::RttEstimator;
use noq_proto::congestion::{
    Bbr3Config, Controller, ControllerFactory, ControllerMetrics, CubicConfig,
};

/// A path whose minimum round trip is below this is a LAN (or this machine).
pub const LAN_RTT: Duration = Duration::from_millis(3);

/// Builds [`Auto`] controllers.
#[derive(Debug, Default)]
pub struct AutoConfig {
    bbr: Arc<Bbr3Config>,
    cubic: Arc<CubicConfig>,
}

impl ControllerFactory for AutoConfig {
    fn build(self: Arc<Self>, now: Instant, current_mtu: u16) -> Box<dyn Controller> {
        Box::new(Auto {
            active: self.bbr.clone().build(now, current_mtu),
            cubic: self.cubic.clone(),
            mtu: current_mtu,
            lan: false,
        })
    }
}

/// One path's controller: BBRv3 until the path shows a LAN's round trip, then CUBIC.
#[derive(Debug)]
pub struct Auto {
    active: Box<dyn Controller>,
    /// Builds the CUBIC that takes over.
    cubic: Arc<CubicConfig>,
    /// The path's current MTU, for that CUBIC.
    mtu: u16,
    /// CUBIC is in charge.
    lan: bool,
}

impl Auto {
    /// Whether CUBIC is in charge (for tests and logs).
    pub fn is_lan(&self) -> bool {
        self.lan
    }
}

/// Whether a path with this minimum round trip is a LAN's. Before its first sample the
/// estimator reports the initial RTT (333 ms), never zero; a sample below the clock's
/// resolution is zero, and is a LAN's.
pub fn is_lan_rtt(min_rtt: Duration) -> bool {
    min_rtt < LAN_RTT
}

impl Controller for Auto {
    fn on_sent(&mut self, now: Instant, bytes: u64, largest_pn: u64) {
        self.active.on_sent(now, bytes, largest_pn);
    }

    fn on_packet_sent(&mut self, now: Instant, bytes: u16, pn: u64) {
        self.active.on_packet_sent(now, bytes, pn);
    }

    fn on_cwnd_limited(&mut self) {
        self.active.on_cwnd_limited();
    }

    fn on_ack(
        &mut self,
        now: Instant,
        sent: Instant,
        bytes: u64,
        pn: u64,
        app_limited: bool,
        rtt: &RttEstimator,
    ) {
        if !self.lan && is_lan_rtt(rtt.min()) {
            // CUBIC keeps no per-packet state, so packets BBRv3 sent are acknowledged to it
            // like its own.
            self.active = self.cubic.clone().build(now, self.mtu);
            self.lan = true;
        }
        self.active.on_ack(now, sent, bytes, pn, app_limited, rtt);
    }

    fn on_end_acks(
        &mut self,
        now: Instant,
        in_flight: u64,
        app_limited: bool,
        largest_packet_num_acked: Option<u64>,
    ) {
        self.active
            .on_end_acks(now, in_flight, app_limited, largest_packet_num_acked);
    }

    fn on_congestion_event(
        &mut self,
        now: Instant,
        sent: Instant,
        is_persistent_congestion: bool,
        is_ecn: bool,
        lost_bytes: u64,
        largest_lost_pn: u64,
    ) {
        self.active.on_congestion_event(
            now,
            sent,
            is_persistent_congestion,
            is_ecn,
            lost_bytes,
            largest_lost_pn,
        );
    }

    fn on_packet_lost(&mut self, lost_bytes: u16, pn: u64, now: Instant) {
        self.active.on_packet_lost(lost_bytes, pn, now);
    }

    fn on_spurious_congestion_event(&mut self) {
        self.active.on_spurious_congestion_event();
    }

    fn on_mtu_update(&mut self, new_mtu: u16) {
        self.mtu = new_mtu;
        self.active.on_mtu_update(new_mtu);
    }

    fn on_ack_frequency_update(
        &mut self,
        ack_eliciting_threshold: u64,
        requested_max_ack_delay: Duration,
    ) {
        self.active
            .on_ack_frequency_update(ack_eliciting_threshold, requested_max_ack_delay);
    }

    fn window(&self) -> u64 {
        self.active.window()
    }

    fn metrics(&self) -> ControllerMetrics {
        self.active.metrics()
    }

    fn clone_box(&self) -> Box<dyn Controller> {
        Box::new(Auto {
            active: self.active.clone_box(),
            cubic: self.cubic.clone(),
            mtu: self.mtu,
            lan: self.lan,
        })
    }

    fn initial_window(&self) -> u64 {
        self.active.initial_window()
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Congestion;
    use iroh::endpoint::{Connection, PortmapperConfig, presets};
    use iroh::{Endpoint, EndpointAddr, RelayMode};

    const ALPN: &[u8] = b"can-sync/test-congestion";

    async fn bind(cc: Congestion) -> Endpoint {
        Endpoint::builder(presets::Minimal)
            .relay_mode(RelayMode::Disabled)
            .clear_ip_transports()
            .bind_addr("127.0.0.1:0")
            .expect("loopback address")
            .portmapper_config(PortmapperConfig::Disabled)
            .transport_config(crate::engine::transport_config(cc))
            .alpns(vec![ALPN.to_vec()])
            .bind()
            .await
            .expect("bind")
    }

    const PINGS: usize = 20;

    /// Sends 4 MiB over loopback with the agents' transport settings and returns the
    /// sender's connection (still open) once the receiver has it all.
    async fn loopback_transfer(cc: Congestion) -> (Connection, Endpoint, Endpoint) {
        let server = bind(cc).await;
        let client = bind(cc).await;
        let addr = EndpointAddr::new(server.id()).with_ip_addr(server.bound_sockets()[0]);
        let accept = server.clone();
        let receiver = tokio::spawn(async move {
            let conn = accept
                .accept()
                .await
                .expect("incoming")
                .await
                .expect("accepted");
            let (mut send, mut recv) = conn.accept_bi().await.expect("stream");
            for _ in 0..PINGS {
                let mut b = [0u8; 1];
                recv.read_exact(&mut b).await.expect("ping");
                send.write_all(&b).await.expect("pong");
            }
            let got = recv.read_to_end(8 << 20).await.expect("read");
            send.write_all(&[1]).await.expect("reply");
            send.finish().expect("finish");
            (conn, got.len())
        });
        let conn = client.connect(addr, ALPN).await.expect("connect");
        let (mut send, mut recv) = conn.open_bi().await.expect("open");
        // Round trips of one byte first: samples of the path itself. Under a slow debug
        // build on a loaded VM, the bulk's samples also hold the time to process a whole
        // burst in this one thread, which can keep every one of them over 3 ms.
        for _ in 0..PINGS {
            send.write_all(&[1]).await.expect("ping");
            let mut b = [0u8; 1];
            recv.read_exact(&mut b).await.expect("pong");
        }
        send.write_all(&vec![7u8; 4 << 20]).await.expect("write");
        send.finish().expect("finish");
        assert_eq!(recv.read_to_end(1).await.expect("reply").len(), 1);
        let (_server_conn, got) = receiver.await.expect("receiver");
        assert_eq!(got, 4 << 20);
        (conn, client, server)
    }

    fn controller_of(conn: &Connection) -> Box<dyn Controller> {
        let path = conn
            .paths()
            .iter()
            .find(|p| p.is_selected())
            .map(|p| p.id())
            .expect("a selected path");
        conn.congestion_state(path).expect("its controller")
    }

    #[tokio::test]
    async fn a_loopback_path_goes_to_cubic_under_auto_and_stays_on_bbr_under_bbr() {
        let run = async {
            let (conn, a, b) = loopback_transfer(Congestion::Auto).await;
            let auto = controller_of(&conn).into_any().downcast::<Auto>();
            assert!(
                auto.expect("auto's controller").is_lan(),
                "loopback is a LAN"
            );
            a.close().await;
            b.close().await;

            let (conn, a, b) = loopback_transfer(Congestion::Bbr).await;
            assert!(
                controller_of(&conn).into_any().downcast::<Auto>().is_err(),
                "bbr is BBRv3 alone"
            );
            a.close().await;
            b.close().await;
        };
        tokio::time::timeout(Duration::from_secs(60), run)
            .await
            .expect("within 60 s");
    }

    #[test]
    fn a_lan_round_trip_puts_cubic_in_charge_and_nothing_else_does() {
        assert!(
            is_lan_rtt(Duration::ZERO),
            "a sample below the clock's resolution"
        );
        assert!(
            !is_lan_rtt(Duration::from_millis(333)),
            "no sample yet: BBR"
        );
        assert!(is_lan_rtt(Duration::from_micros(200)));
        assert!(is_lan_rtt(Duration::from_micros(2_999)));
        assert!(!is_lan_rtt(LAN_RTT));
        assert!(!is_lan_rtt(Duration::from_millis(20)));
    }

    #[test]
    fn starts_on_bbr_and_reports_the_active_window() {
        let now = Instant::now();
        let c = Arc::new(AutoConfig::default()).build(now, 1200);
        let bbr = Arc::new(Bbr3Config::default()).build(now, 1200);
        assert_eq!(c.window(), bbr.window());
        assert_eq!(c.initial_window(), bbr.initial_window());
        let auto = c.into_any().downcast::<Auto>().expect("an Auto");
        assert!(!auto.is_lan());
    }
}
