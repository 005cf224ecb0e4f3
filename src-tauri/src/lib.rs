//! CAN Sync, the desktop app: a Tauri 2 tray app embedding the sync engine.
//!
//! - [`backend`]: all app logic, no window (settings, keychain, store, engine, history,
//!   notifications); tested headless.
//! - [`commands`]: the UI's commands (docs/app-ipc.md), thin wrappers over the backend.
//! - [`tray`], [`window`], [`autostart`]: the shell around it.
//! - [`updates`]: app updates (tauri-plugin-updater), off for .deb/.rpm installs.
//! - [`trim`]: memory given back once no window is left.

pub mod autostart;
pub mod backend;
pub mod commands;
pub mod tray;
pub mod trim;
pub mod updates;
pub mod window;

use std::sync::Arc;

use backend::{AppEvent, AppState, Backend, Paths};
use tauri::{DragDropEvent, Emitter, Manager, RunEvent, WindowEvent};
use tauri_plugin_autostart::MacosLauncher;

pub use backend::APP_ID;

pub fn run() {
    window::prepare_webkit_env();
    // The engine's runtime (spare workers on small machines: `can_sync::runtime`), as
    // Tauri's own, before any plugin spawns on it. It lives as long as this function,
    // which is the app's life.
    let runtime = match can_sync::runtime::build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    tauri::async_runtime::set(runtime.handle().clone());
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,iroh=warn,iroh_gossip=warn,tao=warn,wry=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let launched_hidden = std::env::args().any(|a| a == autostart::HIDDEN_ARG);
    let app = tauri::Builder::default()
        .plugin(tauri_plugin_single_instance::init(|app, _args, _cwd| {
            // A second launch focuses the first.
            window::show_main(app);
        }))
        .plugin(tauri_plugin_autostart::init(
            MacosLauncher::LaunchAgent,
            Some(vec![autostart::HIDDEN_ARG]),
        ))
        .plugin(tauri_plugin_dialog::init())
        .plugin(tauri_plugin_opener::init())
        // Driven from Rust only (crate::updates): the page has no permission for its commands.
        .plugin(tauri_plugin_updater::Builder::new().build())
        .setup(move |app| {
            let paths = Paths {
                config_dir: app.path().app_config_dir()?,
                data_dir: app.path().app_data_dir()?,
            };
            let backend = Backend::new(paths, APP_ID)?;
            app.manage(backend.clone());
            let updates =
                updates::Updates::new(app.handle().clone(), updates::Channel::for_this_build());
            app.manage(updates.clone());
            updates.spawn_checks();
            app.manage(backend::ui_view::UiViews::default());
            let tray = tray::Tray::create(app.handle(), backend.clone())?;
            tauri::async_runtime::spawn(forward(app.handle().clone(), backend.clone(), tray));
            let settings = backend.settings();
            let hidden = launched_hidden || (settings.start_hidden && settings.setup_complete);
            if !hidden {
                window::show_main(app.handle());
            } else {
                // macOS: started hidden, the app lives in the menu bar only (no Dock icon).
                #[cfg(target_os = "macos")]
                app.set_activation_policy(tauri::ActivationPolicy::Accessory);
                window::started_hidden(app.handle());
            }
            let b = backend.clone();
            tauri::async_runtime::spawn(async move { b.boot().await });
            Ok(())
        })
        .on_window_event(|window, event| match event {
            // Closing the window destroys it and its webview (WebKit's web process exits
            // with it); syncing goes on in the tray, and `ExitRequested` below keeps the
            // app alive without windows. Quit is in the tray menu.
            WindowEvent::Destroyed if window.label() == window::MAIN => {
                window::closed(window.app_handle());
            }
            WindowEvent::DragDrop(DragDropEvent::Drop { paths, .. })
                if window.label() == window::MAIN =>
            {
                record_drop(window.app_handle(), paths);
            }
            _ => {}
        })
        .invoke_handler(tauri::generate_handler![
            commands::app_state,
            commands::retry,
            commands::wizard_view,
            commands::wizard_submit,
            commands::test_store,
            commands::generate_passphrase,
            commands::check_passphrase,
            commands::status,
            commands::pause,
            commands::resume,
            commands::pairing,
            commands::reveal_passphrase,
            commands::connect_ticket,
            commands::history,
            commands::settings,
            commands::update_settings,
            commands::set_store,
            commands::change_passphrase,
            commands::reset_device,
            commands::add_files,
            commands::pick_files,
            commands::open_asset,
            commands::save_asset,
            commands::delete_asset,
            commands::trash,
            commands::restore_asset,
            commands::empty_trash,
            commands::release_deletions,
            commands::update_state,
            commands::check_update,
            commands::install_update,
            commands::ui_view,
            commands::set_ui_view,
            commands::throughput,
        ])
        .build(tauri::generate_context!());
    let app = match app {
        Ok(app) => app,
        Err(e) => {
            eprintln!("CAN Sync could not start: {e}");
            std::process::exit(1);
        }
    };
    app.run(|app, event| match event {
        // The last window closing asks to exit with no code; the app lives on in the tray.
        // Quit (the tray's `app.exit(0)`) asks with a code and is let through.
        RunEvent::ExitRequested { api, code, .. } if code.is_none() => api.prevent_exit(),
        RunEvent::Exit => {
            if let Some(b) = app.try_state::<Arc<Backend>>() {
                let b = b.inner().clone();
                tauri::async_runtime::block_on(async move { b.shutdown().await });
            }
        }
        _ => {}
    });
}

/// Files dropped on the window, as the OS reported them to us: the only paths besides our
/// own file dialog's that `add_files` accepts. Tauri hands the same event to the page
/// from this very dispatch, so the record exists before the page can ask.
fn record_drop(app: &tauri::AppHandle, paths: &[std::path::PathBuf]) {
    if let Some(b) = app.try_state::<Arc<Backend>>() {
        b.allow_paths(paths);
    }
}

/// Backend events → the UI (Tauri events, docs/app-ipc.md) and the tray.
async fn forward(app: tauri::AppHandle, backend: Arc<Backend>, mut tray: tray::Tray) {
    let mut events = backend.subscribe();
    let mut state: AppState = backend.app_state().await;
    let mut status = None;
    // Only touch the tray when what it shows changes (on Linux every icon change is a PNG
    // written and a D-Bus signal).
    let mut shown = tray::view(&state, status.as_ref());
    tray.update(&shown);
    loop {
        let ev = match events.recv().await {
            Ok(ev) => ev,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        };
        match ev {
            AppEvent::State(s) => {
                let _ = app.emit("app-state", &s);
                if s.phase != backend::Phase::Running {
                    status = None;
                }
                state = s;
            }
            AppEvent::Status(s) => {
                let _ = app.emit("status", &s);
                status = Some(s);
            }
            AppEvent::HistoryAdded(item) => {
                let _ = app.emit("history-added", &item);
                continue;
            }
            AppEvent::Engine(e) => {
                let _ = app.emit("engine-event", &e);
                continue;
            }
            AppEvent::Stopped => status = None,
            AppEvent::Notified(_) => continue,
        }
        let next = tray::view(&state, status.as_ref());
        if next != shown {
            tray.update(&next);
            shown = next;
        }
    }
}
