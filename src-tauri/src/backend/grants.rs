//! Which local files the UI may add to the store. The webview is less trusted than the
//! backend (a bug or an injected script there must not read `~/.ssh/id_ed25519` into a
//! store every peer mirrors), so `add_files` accepts only paths the user handed over
//! outside the page: dropped on the window (the backend sees the OS drag-and-drop event
//! itself) or chosen in the backend's own file dialog. Those are recorded here, briefly.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A drop is turned into an `add_files` call at once; this is ample.
pub const TTL: Duration = Duration::from_secs(120);
/// Bounded, so a flood of drops cannot grow memory; the oldest go first.
pub const MAX: usize = 10_000;

#[derive(Debug, Default)]
pub struct Grants {
    /// Oldest first.
    paths: VecDeque<(PathBuf, Instant)>,
}

impl Grants {
    pub fn new() -> Self {
        Self::default()
    }

    /// The user handed over `paths` at `now`.
    pub fn grant(&mut self, now: Instant, paths: &[PathBuf]) {
        self.expire(now);
        for p in paths {
            self.paths.push_back((p.clone(), now));
        }
        while self.paths.len() > MAX {
            self.paths.pop_front();
        }
    }

    /// Takes every one of `paths` out of the grants, or none of them: the ones that were
    /// never granted (or expired) are returned.
    pub fn take(&mut self, now: Instant, paths: &[PathBuf]) -> Result<(), Vec<PathBuf>> {
        self.expire(now);
        let missing: Vec<PathBuf> = paths
            .iter()
            .filter(|p| !self.contains(p))
            .cloned()
            .collect();
        if !missing.is_empty() {
            return Err(missing);
        }
        for p in paths {
            if let Some(i) = self.paths.iter().position(|(g, _)| g == p) {
                self.paths.remove(i);
            }
        }
        Ok(())
    }

    fn contains(&self, p: &Path) -> bool {
        self.paths.iter().any(|(g, _)| g == p)
    }

    fn expire(&mut self, now: Instant) {
        while self
            .paths
            .front()
            .is_some_and(|(_, at)| now.saturating_duration_since(*at) >= TTL)
        {
            self.paths.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    #[test]
    fn only_granted_paths_are_taken_and_only_once() {
        let t0 = Instant::now();
        let mut g = Grants::new();
        g.grant(t0, &[p("/home/me/a.txt"), p("/home/me/b.txt")]);
        assert_eq!(
            g.take(t0, &[p("/home/me/a.txt"), p("/home/me/.ssh/id_ed25519")]),
            Err(vec![p("/home/me/.ssh/id_ed25519")])
        );
        // All or nothing: a.txt is still granted after the refused call.
        assert_eq!(g.take(t0, &[p("/home/me/a.txt")]), Ok(()));
        assert_eq!(
            g.take(t0, &[p("/home/me/a.txt")]),
            Err(vec![p("/home/me/a.txt")])
        );
        assert_eq!(g.take(t0, &[p("/home/me/b.txt")]), Ok(()));
    }

    #[test]
    fn grants_expire() {
        let t0 = Instant::now();
        let mut g = Grants::new();
        g.grant(t0, &[p("/a")]);
        assert!(g.take(t0 + TTL, &[p("/a")]).is_err());
        g.grant(t0 + TTL, &[p("/a")]);
        assert!(g.take(t0 + TTL + TTL / 2, &[p("/a")]).is_ok());
    }

    #[test]
    fn grants_are_bounded() {
        let t0 = Instant::now();
        let mut g = Grants::new();
        let many: Vec<PathBuf> = (0..MAX + 5).map(|i| p(&format!("/f{i}"))).collect();
        g.grant(t0, &many);
        assert_eq!(g.paths.len(), MAX);
        assert!(g.take(t0, &[p("/f0")]).is_err(), "the oldest went first");
        assert!(g.take(t0, &[p(&format!("/f{}", MAX + 4))]).is_ok());
    }
}
