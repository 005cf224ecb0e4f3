//! The `auto` congestion controller: CUBIC on a path whose round trip is that of a LAN,
//! BBRv3 everywhere else.
//!
//! BBRv3 keeps its rate under random loss (Wi-Fi, mobile, long paths), where CUBIC halves
//! its window at every lost packet. On a fast, short path it costs: its pacing and rate
//! probing held one QUIC stream on loopback to 239 MB/s where CUBIC reached 366 MB/s, and
//! the app's in-process mirror to 120 MB/s instead of 166 MB/s (bench/README, "sync"). A
//! LAN's round trip is well under a millisecond, so a loss there is recovered from almost at
//! once and CUBIC's reaction to it costs little.
//!
//! Both controllers see every event from the start; the path's minimum RTT picks whose
//! window and pacing apply. It only falls, so a path is judged by its best round trip and
//! stays on CUBIC once it showed a LAN's (from then on BBRv3 is no longer fed).

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
            bbr: self.bbr.clone().build(now, current_mtu),
            cubic: self.cubic.clone().build(now, current_mtu),
            lan: false,
        })
    }
}

/// One path's controller: both, one of them in charge.
#[derive(Debug)]
pub struct Auto {
    bbr: Box<dyn Controller>,
    cubic: Box<dyn Controller>,
    /// The path's minimum RTT so far is a LAN's: CUBIC is in charge.
    lan: bool,
}

impl Auto {
    fn active(&self) -> &dyn Controller {
        if self.lan {
            self.cubic.as_ref()
        } else {
            self.bbr.as_ref()
        }
    }

    /// Whether CUBIC is in charge (for tests and logs).
    pub fn is_lan(&self) -> bool {
        self.lan
    }

    /// Hands an event to both controllers while BBRv3 is in charge, and to CUBIC alone once
    /// it took over: BBRv3 never gets the path back, and its per-packet work is not free.
    fn both(&mut self, mut f: impl FnMut(&mut dyn Controller)) {
        if !self.lan {
            f(self.bbr.as_mut());
        }
        f(self.cubic.as_mut());
    }
}

/// Whether a path with this minimum round trip is a LAN's (zero: no sample yet).
pub fn is_lan_rtt(min_rtt: Duration) -> bool {
    !min_rtt.is_zero() && min_rtt < LAN_RTT
}

impl Controller for Auto {
    fn on_sent(&mut self, now: Instant, bytes: u64, largest_pn: u64) {
        self.both(|c| c.on_sent(now, bytes, largest_pn));
    }

    fn on_packet_sent(&mut self, now: Instant, bytes: u16, pn: u64) {
        self.both(|c| c.on_packet_sent(now, bytes, pn));
    }

    fn on_cwnd_limited(&mut self) {
        self.both(|c| c.on_cwnd_limited());
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
        self.lan = self.lan || is_lan_rtt(rtt.min());
        self.both(|c| c.on_ack(now, sent, bytes, pn, app_limited, rtt));
    }

    fn on_end_acks(
        &mut self,
        now: Instant,
        in_flight: u64,
        app_limited: bool,
        largest_packet_num_acked: Option<u64>,
    ) {
        self.both(|c| c.on_end_acks(now, in_flight, app_limited, largest_packet_num_acked));
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
        self.both(|c| {
            c.on_congestion_event(
                now,
                sent,
                is_persistent_congestion,
                is_ecn,
                lost_bytes,
                largest_lost_pn,
            )
        });
    }

    fn on_packet_lost(&mut self, lost_bytes: u16, pn: u64, now: Instant) {
        self.both(|c| c.on_packet_lost(lost_bytes, pn, now));
    }

    fn on_spurious_congestion_event(&mut self) {
        self.both(|c| c.on_spurious_congestion_event());
    }

    fn on_mtu_update(&mut self, new_mtu: u16) {
        self.both(|c| c.on_mtu_update(new_mtu));
    }

    fn on_ack_frequency_update(
        &mut self,
        ack_eliciting_threshold: u64,
        requested_max_ack_delay: Duration,
    ) {
        self.both(|c| c.on_ack_frequency_update(ack_eliciting_threshold, requested_max_ack_delay));
    }

    fn window(&self) -> u64 {
        self.active().window()
    }

    fn metrics(&self) -> ControllerMetrics {
        self.active().metrics()
    }

    fn clone_box(&self) -> Box<dyn Controller> {
        Box::new(Auto {
            bbr: self.bbr.clone_box(),
            cubic: self.cubic.clone_box(),
            lan: self.lan,
        })
    }

    fn initial_window(&self) -> u64 {
        self.active().initial_window()
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lan_round_trip_puts_cubic_in_charge_and_nothing_else_does() {
        assert!(!is_lan_rtt(Duration::ZERO), "no sample yet: BBR");
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
