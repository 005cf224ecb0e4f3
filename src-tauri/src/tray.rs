//! The tray icon: its look and tooltip follow the state; its menu has a status line, Open,
//! Pause/Resume and Quit.

use std::sync::Arc;

use can_sync::Status;
use can_sync::human::{is_syncing, peers, syncing_line};
use tauri::image::Image;
use tauri::menu::{Menu, MenuItem, PredefinedMenuItem};
use tauri::tray::{MouseButton, MouseButtonState, TrayIcon, TrayIconBuilder, TrayIconEvent};
use tauri::{AppHandle, Wry};

use crate::backend::conditions::PausedReason;
use crate::backend::{AppState, Backend, Phase};

/// What the tray shows, derived from state and status alone (unit-tested).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrayKind {
    UpToDate,
    Syncing,
    Paused,
    Error,
    NoPeers,
    Setup,
    /// Deletions from other devices wait for the user's answer (the mass-deletion guard).
    Attention,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrayView {
    pub kind: TrayKind,
    /// The menu's status line, e.g. "Up to date · 2 peers".
    pub line: String,
    pub pause_label: &'static str,
}

/// "Paused", or why the app paused by itself.
fn paused_line(state: &AppState) -> &'static str {
    match state.paused_reason {
        Some(PausedReason::Metered) => "Paused (metered)",
        Some(PausedReason::Battery) => "Paused (on battery)",
        Some(PausedReason::User) | None => "Paused",
    }
}

pub fn view(state: &AppState, status: Option<&Status>) -> TrayView {
    let pause_label = if state.paused {
        "Resume sync"
    } else {
        "Pause sync"
    };
    let (kind, line) = match (state.phase, status) {
        (Phase::Setup, _) => (TrayKind::Setup, "Not set up yet".to_owned()),
        (Phase::Error, _) => (TrayKind::Error, "Not syncing: see CAN Sync".to_owned()),
        // Before everything else a running app says: nothing happens until the user answers.
        (Phase::Running, Some(s)) if s.mass_delete_held.is_some() => {
            let count = s.mass_delete_held.as_ref().map_or(0, |h| h.count);
            let noun = if count == 1 { "deletion" } else { "deletions" };
            (
                TrayKind::Attention,
                format!("{count} {noun} held: open CAN Sync"),
            )
        }
        (Phase::Running, _) if state.paused => (TrayKind::Paused, paused_line(state).to_owned()),
        (Phase::Running, None) => (TrayKind::Syncing, "Starting…".to_owned()),
        (Phase::Running, Some(s)) if !s.store_online => {
            (TrayKind::Error, "Store offline".to_owned())
        }
        (Phase::Running, Some(s)) if s.peers.is_empty() => {
            (TrayKind::NoPeers, "No peers connected".to_owned())
        }
        (Phase::Running, Some(s)) if is_syncing(s) => (TrayKind::Syncing, syncing_line(s)),
        (Phase::Running, Some(s)) => (
            TrayKind::UpToDate,
            format!("Up to date · {}", peers(s.peers.len())),
        ),
    };
    TrayView {
        kind,
        line,
        pause_label,
    }
}

/// A 32×32 disc in the state's colour (drawn, so no icon files per state are needed).
pub fn icon_rgba(kind: TrayKind) -> Vec<u8> {
    let (r, g, b) = match kind {
        TrayKind::UpToDate => (0x2e, 0xa0, 0x43),
        TrayKind::Syncing => (0x1f, 0x6f, 0xeb),
        TrayKind::Paused => (0x8b, 0x94, 0x9e),
        TrayKind::Error => (0xd1, 0x24, 0x2f),
        TrayKind::NoPeers | TrayKind::Setup | TrayKind::Attention => (0xbf, 0x87, 0x00),
    };
    const N: i32 = 32;
    let mut out = Vec::with_capacity((N * N * 4) as usize);
    for y in 0..N {
        for x in 0..N {
            let (dx, dy) = (x * 2 - N + 1, y * 2 - N + 1);
            let d2 = dx * dx + dy * dy;
            let (outer, inner) = ((N - 2) * (N - 2), (N - 12) * (N - 12));
            if d2 <= outer && d2 >= inner {
                out.extend_from_slice(&[r, g, b, 0xff]);
            } else if d2 < inner {
                out.extend_from_slice(&[r, g, b, 0x60]);
            } else {
                out.extend_from_slice(&[0, 0, 0, 0]);
            }
        }
    }
    out
}

pub struct Tray {
    icon: TrayIcon<Wry>,
    status: MenuItem<Wry>,
    pause: MenuItem<Wry>,
    /// What the icon shows now.
    kind: TrayKind,
}

impl Tray {
    pub fn create(app: &AppHandle, backend: Arc<Backend>) -> tauri::Result<Self> {
        let status = MenuItem::with_id(app, "status", "Starting…", false, None::<&str>)?;
        let open = MenuItem::with_id(app, "open", "Open CAN Sync", true, None::<&str>)?;
        let pause = MenuItem::with_id(app, "pause", "Pause sync", true, None::<&str>)?;
        let quit = MenuItem::with_id(app, "quit", "Quit", true, None::<&str>)?;
        let menu = Menu::with_items(
            app,
            &[
                &status,
                &PredefinedMenuItem::separator(app)?,
                &open,
                &pause,
                &PredefinedMenuItem::separator(app)?,
                &quit,
            ],
        )?;
        let icon = TrayIconBuilder::with_id("main")
            .icon(Image::new_owned(icon_rgba(TrayKind::Setup), 32, 32))
            .tooltip("CAN Sync")
            .menu(&menu)
            .show_menu_on_left_click(false)
            .on_menu_event(move |app, event| match event.id().as_ref() {
                "open" => crate::window::show_main(app),
                "pause" => {
                    let b = backend.clone();
                    tauri::async_runtime::spawn(async move {
                        // "Resume sync" while a condition pauses syncs through it until it
                        // clears (docs/app-ipc.md).
                        if let Err(e) = b.toggle_paused().await {
                            tracing::warn!(error = %e, "pause from the tray failed");
                        }
                    });
                }
                "quit" => app.exit(0),
                _ => {}
            })
            .on_tray_icon_event(|tray, event| {
                // Left click opens the window (what Windows users expect; the menu is on
                // the right button).
                if let TrayIconEvent::Click {
                    button: MouseButton::Left,
                    button_state: MouseButtonState::Up,
                    ..
                } = event
                {
                    crate::window::show_main(tray.app_handle());
                }
            })
            .build(app)?;
        Ok(Self {
            icon,
            status,
            pause,
            kind: TrayKind::Setup,
        })
    }

    pub fn update(&mut self, v: &TrayView) {
        // The line changes every few seconds during transfers; the icon (on Linux a PNG
        // written and a D-Bus signal) only with the kind.
        if self.kind != v.kind {
            let _ = self
                .icon
                .set_icon(Some(Image::new_owned(icon_rgba(v.kind), 32, 32)));
            self.kind = v.kind;
        }
        let _ = self
            .icon
            .set_tooltip(Some(format!("CAN Sync — {}", v.line)));
        let _ = self.status.set_text(&v.line);
        let _ = self.pause.set_text(v.pause_label);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use can_sync::PeerStatus;

    fn state(phase: Phase, paused: bool) -> AppState {
        AppState {
            phase,
            error: None,
            store: None,
            paused,
            paused_reason: paused.then_some(PausedReason::User),
        }
    }

    fn status(peers: usize, pending: usize, online: bool) -> Status {
        Status {
            store_online: online,
            pending,
            peers: (0..peers)
                .map(|i| PeerStatus {
                    endpoint_id: format!("p{i}"),
                    device_name: format!("P{i}"),
                    path: "direct".into(),
                    rtt_ms: None,
                    assets_sent: 0,
                    assets_received: 0,
                    bytes_sent: 0,
                    bytes_received: 0,
                    last_activity: String::new(),
                })
                .collect(),
            ..Status::default()
        }
    }

    #[test]
    fn tray_reflects_state() {
        let run = state(Phase::Running, false);
        let v = view(&run, Some(&status(2, 0, true)));
        assert_eq!(
            (v.kind, v.line.as_str()),
            (TrayKind::UpToDate, "Up to date · 2 peers")
        );
        assert_eq!(v.pause_label, "Pause sync");
        assert_eq!(
            view(&run, Some(&status(1, 3, true))).line,
            "Syncing 3 assets"
        );
        let mut moving = status(1, 2, true);
        moving.pending = 3;
        moving.in_flight = 3;
        moving.bytes_left = 1_200_000_000;
        assert_eq!(
            view(&run, Some(&moving)).line,
            "Syncing 3 assets · 1.2 GB left"
        );
        moving.download_rate = 10_000_000.0;
        assert_eq!(
            view(&run, Some(&moving)).line,
            "Syncing 3 assets · 1.2 GB left · about 2 min"
        );
        // More pending than in flight: the bytes left are not all that is left.
        moving.pending = 300;
        assert_eq!(view(&run, Some(&moving)).line, "Syncing 300 assets");
        moving.bytes_left = 34_000_000;
        (moving.pending, moving.in_flight) = (1, 1);
        assert_eq!(
            view(&run, Some(&moving)).line,
            "Syncing 1 asset · 34 MB left · less than a minute"
        );
        assert_eq!(
            view(&run, Some(&status(0, 0, true))).kind,
            TrayKind::NoPeers
        );
        assert_eq!(view(&run, Some(&status(2, 0, false))).kind, TrayKind::Error);
        let paused = view(&state(Phase::Running, true), Some(&status(2, 0, true)));
        assert_eq!(
            (paused.kind, paused.line.as_str(), paused.pause_label),
            (TrayKind::Paused, "Paused", "Resume sync")
        );
        // Paused by a condition: the line says which; Resume is offered (it overrides).
        for (reason, line) in [
            (PausedReason::Metered, "Paused (metered)"),
            (PausedReason::Battery, "Paused (on battery)"),
        ] {
            let s = AppState {
                paused_reason: Some(reason),
                ..state(Phase::Running, true)
            };
            let v = view(&s, Some(&status(2, 3, true)));
            assert_eq!(
                (v.kind, v.line.as_str(), v.pause_label),
                (TrayKind::Paused, line, "Resume sync")
            );
        }
        // Deletions held by the guard: said first, paused or not, until answered.
        let mut held = status(2, 0, true);
        held.mass_delete_held = Some(can_sync::events::HeldDeletions {
            count: 120,
            sample: vec!["a.jpg".into()],
            applied: 0,
        });
        for s in [&run, &state(Phase::Running, true)] {
            let v = view(s, Some(&held));
            assert_eq!(
                (v.kind, v.line.as_str()),
                (TrayKind::Attention, "120 deletions held: open CAN Sync")
            );
        }
        assert_eq!(
            view(&state(Phase::Error, false), None).kind,
            TrayKind::Error
        );
        assert_eq!(
            view(&state(Phase::Setup, false), None).kind,
            TrayKind::Setup
        );
    }

    #[test]
    fn icons_differ_per_state() {
        let a = icon_rgba(TrayKind::UpToDate);
        assert_eq!(a.len(), 32 * 32 * 4);
        assert_ne!(a, icon_rgba(TrayKind::Paused));
    }
}
