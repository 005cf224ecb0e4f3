//! Which desktop notifications to show for mirrored assets and deletions from other devices,
//! without spamming: a pure state machine fed arrivals and deletions and the clock,
//! returning notifications.
//!
//! Rules (per sending device, arrivals and deletions apart):
//! - a group starts with an arrival (or a deletion) and closes after `QUIET` without
//!   another, or `WINDOW` after it started;
//! - a closed group of up to `BURST` assets → one notification each ("New asset from
//!   Laptop" / "photo.jpg", "Asset deleted on Laptop" / "photo.jpg"); more → one summary
//!   ("12 new assets from Laptop", "12 assets deleted on Laptop");
//! - backlog (what arrives after sync starts, resumes, or a peer comes back): one summary
//!   for the whole catch-up, however long it takes — the group stays open while the engine
//!   is busy and until `BACKLOG_QUIET` passes without an arrival.
//!
//! Locally added or deleted assets never reach this module (the backend feeds only
//! `asset_received`, and `asset_deleted` with a peer).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub const QUIET: Duration = Duration::from_secs(1);
pub const WINDOW: Duration = Duration::from_secs(5);
pub const BURST: usize = 3;
pub const BACKLOG_QUIET: Duration = Duration::from_secs(2);
/// A catch-up that keeps the engine busy longer than this (a stuck transfer) is reported anyway.
pub const BACKLOG_MAX: Duration = Duration::from_secs(300);
/// A backlog mark with no arrival after this long was a catch-up with nothing to catch up.
pub const BACKLOG_MARK_TTL: Duration = Duration::from_secs(30);

/// What happened to the assets of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Arrived,
    Deleted,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub summary: String,
    pub body: String,
}

#[derive(Debug)]
struct Group {
    first: Instant,
    last: Instant,
    names: Vec<String>,
    count: usize,
    backlog: bool,
}

#[derive(Debug, Default)]
pub struct Coalescer {
    /// Open groups by device, then kind.
    groups: BTreeMap<(String, Kind), Group>,
    /// Devices (or every device: `None` key → `all_mark`) whose next group is a backlog.
    marks: BTreeMap<String, Instant>,
    all_mark: Option<Instant>,
    busy: bool,
}

/// Names kept per group for the summary's body.
const NAMES_SHOWN: usize = 3;

impl Coalescer {
    pub fn new() -> Self {
        Self::default()
    }

    /// The engine has work queued or in flight (a catch-up is still running).
    pub fn set_busy(&mut self, busy: bool) {
        self.busy = busy;
    }

    /// A catch-up begins: for one device (it came back) or for all (start, resume).
    pub fn begin_backlog(&mut self, now: Instant, device: Option<&str>) {
        match device {
            Some(d) => {
                let mut open = false;
                for ((device, _), g) in self.groups.iter_mut() {
                    if device == d {
                        g.backlog = true;
                        open = true;
                    }
                }
                if !open {
                    self.marks.insert(d.to_owned(), now);
                }
            }
            None => {
                for g in self.groups.values_mut() {
                    g.backlog = true;
                }
                self.all_mark = Some(now);
            }
        }
    }

    /// An asset arrived from `device`.
    pub fn push(&mut self, now: Instant, device: &str, name: &str) {
        self.push_kind(now, Kind::Arrived, device, name);
    }

    /// An asset arrived from `device`, or was deleted by a deletion from it.
    pub fn push_kind(&mut self, now: Instant, kind: Kind, device: &str, name: &str) {
        self.expire_marks(now);
        // A device's mark stands for its whole catch-up, arrivals and deletions alike: it
        // goes once a backlog group of that device is shown (or when it expires).
        let backlog_mark = self.all_mark.is_some() || self.marks.contains_key(device);
        let group = self
            .groups
            .entry((device.to_owned(), kind))
            .or_insert_with(|| Group {
                first: now,
                last: now,
                names: Vec::new(),
                count: 0,
                backlog: backlog_mark,
            });
        group.last = now;
        group.count += 1;
        if group.names.len() < NAMES_SHOWN.max(BURST) {
            group.names.push(name.to_owned());
        }
    }

    fn expire_marks(&mut self, now: Instant) {
        self.marks
            .retain(|_, at| now.saturating_duration_since(*at) < BACKLOG_MARK_TTL);
        if self
            .all_mark
            .is_some_and(|at| now.saturating_duration_since(at) >= BACKLOG_MARK_TTL)
        {
            self.all_mark = None;
        }
    }

    /// Notifications due at `now`, in device order.
    pub fn poll(&mut self, now: Instant) -> Vec<Note> {
        self.expire_marks(now);
        let busy = self.busy;
        let due: Vec<(String, Kind)> = self
            .groups
            .iter()
            .filter(|(_, g)| is_due(g, now, busy))
            .map(|(k, _)| k.clone())
            .collect();
        let mut out = Vec::new();
        for key in due {
            let Some(g) = self.groups.remove(&key) else {
                continue;
            };
            let (device, kind) = (&key.0, key.1);
            if g.backlog {
                // One catch-up, one notification; a later catch-up marks again.
                self.all_mark = None;
                self.marks.remove(device);
                out.push(summary(kind, device, &g));
            } else if g.count <= BURST {
                out.extend(g.names.iter().map(|n| single(kind, device, n)));
            } else {
                out.push(summary(kind, device, &g));
            }
        }
        out
    }

    /// When `poll` may next return something (for the driver's timer).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.groups
            .values()
            .map(|g| {
                if g.backlog {
                    (g.last + BACKLOG_QUIET).min(g.first + BACKLOG_MAX)
                } else {
                    (g.last + QUIET).min(g.first + WINDOW)
                }
            })
            .min()
    }
}

fn is_due(g: &Group, now: Instant, busy: bool) -> bool {
    if g.backlog {
        (!busy && now.saturating_duration_since(g.last) >= BACKLOG_QUIET)
            || now.saturating_duration_since(g.first) >= BACKLOG_MAX
    } else {
        now.saturating_duration_since(g.last) >= QUIET
            || now.saturating_duration_since(g.first) >= WINDOW
    }
}

fn single(kind: Kind, device: &str, name: &str) -> Note {
    Note {
        summary: match kind {
            Kind::Arrived => format!("New asset from {device}"),
            Kind::Deleted => format!("Asset deleted on {device}"),
        },
        body: name.to_owned(),
    }
}

fn summary(kind: Kind, device: &str, g: &Group) -> Note {
    if g.count == 1 {
        return single(
            kind,
            device,
            g.names.first().map(String::as_str).unwrap_or(""),
        );
    }
    let shown: Vec<&str> = g
        .names
        .iter()
        .take(NAMES_SHOWN)
        .map(String::as_str)
        .collect();
    let mut body = shown.join(", ");
    if g.count > shown.len() {
        body.push_str(&format!(" and {} more", g.count - shown.len()));
    }
    Note {
        summary: match kind {
            Kind::Arrived => format!("{} new assets from {device}", g.count),
            Kind::Deleted => format!("{} assets deleted on {device}", g.count),
        },
        body,
    }
}

/// Deletions from other devices wait for the user (the mass-deletion guard): said at once,
/// not coalesced, since nothing else tells a user whose window is closed.
pub fn held(count: usize, sample: &[String]) -> Note {
    let noun = if count == 1 { "deletion" } else { "deletions" };
    let mut body = sample
        .iter()
        .take(NAMES_SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    let shown = sample.len().min(NAMES_SHOWN);
    if count > shown {
        if body.is_empty() {
            body = format!("{count} assets");
        } else {
            body.push_str(&format!(" and {} more", count - shown));
        }
    }
    Note {
        summary: format!("{count} {noun} from other devices held"),
        body: format!("{body}. Open CAN Sync to apply or keep them."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn one_asset_one_notification_after_a_quiet_second() {
        let t0 = Instant::now();
        let mut c = Coalescer::new();
        c.push(t0, "Laptop", "photo.jpg");
        assert!(c.poll(ms(t0, 500)).is_empty());
        assert_eq!(c.next_deadline(), Some(ms(t0, 1000)));
        assert_eq!(
            c.poll(ms(t0, 1000)),
            vec![Note {
                summary: "New asset from Laptop".into(),
                body: "photo.jpg".into()
            }]
        );
        assert!(c.poll(ms(t0, 5000)).is_empty());
    }

    #[test]
    fn up_to_three_are_shown_each() {
        let t0 = Instant::now();
        let mut c = Coalescer::new();
        for (i, n) in ["a", "b", "c"].iter().enumerate() {
            c.push(ms(t0, i as u64 * 300), "Laptop", n);
        }
        let notes = c.poll(ms(t0, 2000));
        assert_eq!(notes.len(), 3);
        assert_eq!(notes[2].body, "c");
    }

    #[test]
    fn a_burst_becomes_one_summary() {
        let t0 = Instant::now();
        let mut c = Coalescer::new();
        for i in 0..12 {
            c.push(ms(t0, i * 100), "Laptop", &format!("f{i}"));
        }
        let notes = c.poll(ms(t0, 2200));
        assert_eq!(
            notes,
            vec![Note {
                summary: "12 new assets from Laptop".into(),
                body: "f0, f1, f2 and 9 more".into()
            }]
        );
    }

    #[test]
    fn a_steady_stream_is_summarised_every_window() {
        let t0 = Instant::now();
        let mut c = Coalescer::new();
        let mut notes = Vec::new();
        // One asset every 500 ms for 20 s: never quiet for a second.
        for i in 0..40u64 {
            let now = ms(t0, i * 500);
            notes.extend(c.poll(now));
            c.push(now, "Laptop", &format!("f{i}"));
        }
        notes.extend(c.poll(ms(t0, 40 * 500 + 1000)));
        assert!(notes.len() <= 5, "{notes:?}");
        assert!(
            notes
                .iter()
                .all(|n| n.summary.contains("new assets from Laptop"))
        );
    }

    #[test]
    fn devices_are_separate() {
        let t0 = Instant::now();
        let mut c = Coalescer::new();
        c.push(t0, "Laptop", "a");
        c.push(t0, "Desktop", "b");
        let notes = c.poll(ms(t0, 1000));
        assert_eq!(notes.len(), 2);
        assert!(notes.iter().any(|n| n.summary == "New asset from Desktop"));
    }

    #[test]
    fn backlog_is_one_summary_however_long_it_takes() {
        let t0 = Instant::now();
        let mut c = Coalescer::new();
        c.begin_backlog(t0, None);
        c.set_busy(true);
        // 50 assets over 15 s, with gaps up to 1.5 s while the engine is busy.
        let mut notes = Vec::new();
        for i in 0..50u64 {
            let now = ms(t0, i * 300);
            notes.extend(c.poll(now));
            c.push(now, "Laptop", &format!("f{i}"));
        }
        notes.extend(c.poll(ms(t0, 20_000)));
        assert!(notes.is_empty(), "still busy: {notes:?}");
        c.set_busy(false);
        let notes = c.poll(ms(t0, 20_000));
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert_eq!(notes[0].summary, "50 new assets from Laptop");
        // Live again afterwards: a single asset is a single notification.
        c.push(ms(t0, 21_000), "Laptop", "live.txt");
        assert_eq!(c.poll(ms(t0, 22_000))[0].body, "live.txt");
    }

    #[test]
    fn a_peer_coming_back_marks_only_its_own_backlog() {
        let t0 = Instant::now();
        let mut c = Coalescer::new();
        c.begin_backlog(t0, Some("Laptop"));
        for i in 0..5 {
            c.push(ms(t0, i * 100), "Laptop", &format!("l{i}"));
        }
        c.push(t0, "Desktop", "d");
        let notes = c.poll(ms(t0, 3000));
        assert_eq!(notes.len(), 2);
        assert!(notes.contains(&Note {
            summary: "New asset from Desktop".into(),
            body: "d".into()
        }));
        assert!(
            notes
                .iter()
                .any(|n| n.summary == "5 new assets from Laptop")
        );
    }

    #[test]
    fn stale_backlog_marks_expire() {
        let t0 = Instant::now();
        let mut c = Coalescer::new();
        c.begin_backlog(t0, None);
        c.set_busy(true);
        // Nothing arrived for a minute: the next asset is live, not backlog.
        c.push(ms(t0, 60_000), "Laptop", "late.txt");
        assert_eq!(c.poll(ms(t0, 61_000)).len(), 1);
    }

    #[test]
    fn deletions_are_grouped_apart_from_arrivals() {
        let t0 = Instant::now();
        let mut c = Coalescer::new();
        c.push(t0, "Laptop", "new.jpg");
        c.push_kind(t0, Kind::Deleted, "Laptop", "old.jpg");
        let notes = c.poll(ms(t0, 1000));
        assert_eq!(
            notes,
            vec![
                Note {
                    summary: "New asset from Laptop".into(),
                    body: "new.jpg".into()
                },
                Note {
                    summary: "Asset deleted on Laptop".into(),
                    body: "old.jpg".into()
                }
            ]
        );
        for i in 0..40 {
            c.push_kind(
                ms(t0, 2000 + i * 10),
                Kind::Deleted,
                "Laptop",
                &format!("d{i}"),
            );
        }
        assert_eq!(
            c.poll(ms(t0, 4000)),
            vec![Note {
                summary: "40 assets deleted on Laptop".into(),
                body: "d0, d1, d2 and 37 more".into()
            }]
        );
    }

    #[test]
    fn a_catch_up_of_arrivals_and_deletions_is_one_summary_each() {
        let t0 = Instant::now();
        let mut c = Coalescer::new();
        c.begin_backlog(t0, Some("Laptop"));
        c.set_busy(true);
        for i in 0..3 {
            c.push(ms(t0, i * 100), "Laptop", &format!("n{i}"));
            c.push_kind(ms(t0, i * 100), Kind::Deleted, "Laptop", &format!("d{i}"));
        }
        assert!(c.poll(ms(t0, 5000)).is_empty(), "still busy");
        c.set_busy(false);
        let notes = c.poll(ms(t0, 5000));
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert_eq!(notes[0].summary, "3 new assets from Laptop");
        assert_eq!(notes[1].summary, "3 assets deleted on Laptop");
        // The catch-up is over: the next deletion is live, shown by itself.
        c.push_kind(ms(t0, 6000), Kind::Deleted, "Laptop", "live.txt");
        assert_eq!(
            c.poll(ms(t0, 7000)),
            vec![Note {
                summary: "Asset deleted on Laptop".into(),
                body: "live.txt".into()
            }]
        );
    }

    #[test]
    fn held_deletions_say_how_many_and_what_to_do() {
        let sample: Vec<String> = (0..5).map(|i| format!("p{i}.jpg")).collect();
        assert_eq!(
            held(120, &sample),
            Note {
                summary: "120 deletions from other devices held".into(),
                body: "p0.jpg, p1.jpg, p2.jpg and 117 more. Open CAN Sync to apply or keep them."
                    .into()
            }
        );
        assert_eq!(
            held(1, &sample[..1]).summary,
            "1 deletion from other devices held"
        );
        assert_eq!(
            held(1, &sample[..1]).body,
            "p0.jpg. Open CAN Sync to apply or keep them."
        );
    }
}
