//! The commands through Tauri's real IPC layer (its mock runtime: no window system).

use tauri::ipc::{CallbackFn, InvokeBody};
use tauri::test::{INVOKE_KEY, get_ipc_response, mock_builder, mock_context, noop_assets};
use tauri::webview::InvokeRequest;

use crate::backend::tests::backend_for_tests;

fn call(webview: &tauri::WebviewWindow<tauri::test::MockRuntime>, cmd: &str) -> serde_json::Value {
    let request = InvokeRequest {
        cmd: cmd.into(),
        callback: CallbackFn(0),
        error: CallbackFn(1),
        url: "tauri://localhost".parse().expect("url"),
        body: InvokeBody::default(),
        headers: Default::default(),
        invoke_key: INVOKE_KEY.to_string(),
    };
    match get_ipc_response(webview, request) {
        Ok(body) => body.deserialize().expect("json"),
        Err(e) => panic!("{cmd} failed: {e}"),
    }
}

/// Issue #12, point 8: `app_state` used to retry starting the engine as a side effect, so
/// every read of the state (each app start, each wizard finish) could restart things.
#[test]
fn app_state_is_a_getter_and_retry_starts() {
    let (_dir, backend) = backend_for_tests();
    let app = mock_builder()
        .manage(backend)
        .invoke_handler(tauri::generate_handler![super::app_state, super::retry])
        .build(mock_context(noop_assets()))
        .expect("mock app");
    let webview = tauri::WebviewWindowBuilder::new(&app, "main", Default::default())
        .build()
        .expect("mock webview");
    for _ in 0..3 {
        let s = call(&webview, "app_state");
        assert_eq!(s["phase"], "error", "{s}");
        // Nothing tried to start: the reason is still "starting", not a start's failure.
        assert_eq!(s["error"]["code"], "not_ready", "{s}");
    }
    // Retry does try, and fails on the (absent) keychain with that error.
    let s = call(&webview, "retry");
    assert_eq!(s["phase"], "error", "{s}");
    assert_ne!(s["error"]["code"], "not_ready", "{s}");
}
