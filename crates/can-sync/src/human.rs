//! Figures for people, written the same way by the app's tray, the UI
//! (ui/src/lib/format.ts) and `can-sync status`: decimal units, rough times.

use crate::events::Status;

/// "850 B", "1.2 GB", "34 MB" (1 KB = 1000 bytes, as file managers show them).
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KB", "MB", "GB", "TB", "PB"];
    if n < 1000 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1000.0;
    let mut i = 0;
    while v >= 999.5 && i < UNITS.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    if v < 9.95 {
        format!("{v:.1} {}", UNITS[i])
    } else {
        format!("{} {}", v.round(), UNITS[i])
    }
}

/// "less than a minute", "about 2 min", "about 1 h 25 min" (to 5 minutes), "about 14 h",
/// "about 3 days"; empty when unknown.
pub fn time_left(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return String::new();
    }
    if secs < 60.0 {
        return "less than a minute".into();
    }
    let min = (secs / 60.0).round() as u64;
    if min < 60 {
        return format!("about {min} min");
    }
    if min < 600 {
        let rounded = ((min as f64 / 5.0).round() as u64) * 5;
        let (h, m) = (rounded / 60, rounded % 60);
        return if m == 0 {
            format!("about {h} h")
        } else {
            format!("about {h} h {m} min")
        };
    }
    let h = (min as f64 / 60.0).round() as u64;
    if h < 48 {
        format!("about {h} h")
    } else {
        format!("about {} days", (h as f64 / 24.0).round())
    }
}

/// "1 peer", "2 peers".
pub fn peers(n: usize) -> String {
    if n == 1 {
        "1 peer".into()
    } else {
        format!("{n} peers")
    }
}

/// Whether anything is still to arrive (`pending` includes the assets in flight).
pub fn is_syncing(s: &Status) -> bool {
    s.pending.max(s.in_flight) > 0
}

/// "Syncing 3 assets · 1.2 GB left · about 2 min", leaving out what is not known yet. The
/// bytes left are those of the transfers in flight: they stand for all that is left only
/// when every pending asset is in flight (the others' sizes are unknown until they start).
pub fn syncing_line(s: &Status) -> String {
    let n = s.pending.max(s.in_flight);
    let mut line = format!("Syncing {n} {}", if n == 1 { "asset" } else { "assets" });
    if s.bytes_left > 0 && s.pending <= s.in_flight {
        line += &format!(" · {} left", bytes(s.bytes_left));
        if s.download_rate > 0.0 {
            line += &format!(" · {}", time_left(s.bytes_left as f64 / s.download_rate));
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_as_the_ui_writes_them() {
        assert_eq!(bytes(999), "999 B");
        assert_eq!(bytes(1_200_000_000), "1.2 GB");
        assert_eq!(bytes(34_000_000), "34 MB");
        assert_eq!(time_left(30.0), "less than a minute");
        assert_eq!(time_left(120.0), "about 2 min");
        assert_eq!(time_left(3.0 * 3600.0 + 20.0 * 60.0), "about 3 h 20 min");
        assert_eq!(time_left(f64::NAN), "");
        assert_eq!(peers(1), "1 peer");
        let mut s = Status {
            pending: 3,
            in_flight: 3,
            ..Status::default()
        };
        assert!(is_syncing(&s));
        assert_eq!(syncing_line(&s), "Syncing 3 assets");
        s.bytes_left = 1_200_000_000;
        s.download_rate = 10_000_000.0;
        assert_eq!(
            syncing_line(&s),
            "Syncing 3 assets · 1.2 GB left · about 2 min"
        );
        // Assets not started yet: their sizes are unknown, so nothing is said of bytes.
        s.pending = 300;
        assert_eq!(syncing_line(&s), "Syncing 300 assets");
    }
}
