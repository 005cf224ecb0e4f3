//! The throughput chart's samples, kept by the backend too: the window (and the page that
//! samples the rates it draws) is destroyed when closed, and a new one starts its chart from
//! these (`throughput`). The same rule as the UI's `recordStatus` (ui/src/lib/state.svelte.ts):
//! at most one sample a second (a newer status in the same second replaces it), the last
//! 10 minutes, 600 at most, plus the newest sample from before the window, which says where
//! the line starts.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::Serialize;

pub const WINDOW_MS: u64 = 10 * 60_000;
pub const SAMPLE_MS: u64 = 1000;
pub const MAX_SAMPLES: usize = 600;

/// Download and upload rates (bytes/s) as a status reported them at `t` (ms since the Unix
/// epoch, as the UI's `Date.now()`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RateSample {
    pub t: u64,
    pub down: f64,
    pub up: f64,
}

#[derive(Default)]
pub struct Throughput(Mutex<VecDeque<RateSample>>);

fn rate(n: f64) -> f64 {
    if n.is_finite() && n > 0.0 { n } else { 0.0 }
}

impl Throughput {
    pub fn record(&self, now: u64, down: f64, up: f64) {
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let (down, up) = (rate(down), rate(up));
        match s.back_mut() {
            Some(last) if now >= last.t && now - last.t < SAMPLE_MS => {
                last.down = down;
                last.up = up;
            }
            _ => s.push_back(RateSample { t: now, down, up }),
        }
        while s.len() > 1 && s[1].t.saturating_add(WINDOW_MS) <= now {
            s.pop_front();
        }
        while s.len() > MAX_SAMPLES {
            s.pop_front();
        }
    }

    /// Oldest first.
    pub fn samples(&self) -> Vec<RateSample> {
        let s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        s.iter().copied().collect()
    }

    /// The engine stopped (setup starts over, another store): the chart starts anew.
    pub fn clear(&self) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_sample_a_second_over_ten_minutes() {
        let t = Throughput::default();
        t.record(1_000, 5.0, 1.0);
        t.record(1_400, 7.0, f64::NAN);
        assert_eq!(
            t.samples(),
            vec![RateSample {
                t: 1_000,
                down: 7.0,
                up: 0.0
            }],
            "a newer status in the same second replaces the sample"
        );
        t.record(2_000, 3.0, 2.0);
        assert_eq!(t.samples().len(), 2);
        // Ten minutes on: the first falls out, the second stays as where the line starts.
        t.record(2_500 + WINDOW_MS, 1.0, 1.0);
        let s = t.samples();
        assert_eq!(
            s.iter().map(|x| x.t).collect::<Vec<_>>(),
            [2_000, 2_500 + WINDOW_MS]
        );
        t.clear();
        assert!(t.samples().is_empty());
    }

    #[test]
    fn never_more_than_the_cap() {
        let t = Throughput::default();
        for i in 0..(MAX_SAMPLES as u64 + 50) {
            t.record(i * SAMPLE_MS, 1.0, 1.0);
        }
        let s = t.samples();
        assert_eq!(s.len(), MAX_SAMPLES);
        assert_eq!(s.last().unwrap().t, (MAX_SAMPLES as u64 + 49) * SAMPLE_MS);
    }
}
