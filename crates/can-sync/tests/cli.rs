//! The agent binary's command line and config errors.

use std::process::Command;

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(can_testkit::workspace_bin("can-sync"))
        .args(args)
        .output()
        .expect("run can-sync");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_version_and_config_errors() {
    let (code, out, _) = run(&["--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("CONFIG"), "{out}");
    let (code, out, _) = run(&["--version"]);
    assert_eq!(code, 0);
    assert!(out.contains(env!("CARGO_PKG_VERSION")));

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.yaml");
    std::fs::write(
        &path,
        "can_service_url: http://127.0.0.1:1\nsync_api_key: k\nsync_passphrase: \"hunter2 secret words\"\nbogus_key: 1\n",
    )
    .unwrap();
    let (code, _, err) = run(&[path.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(
        err.contains("bogus_key") && err.contains("agent.yaml"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "passphrase leaked: {err}");
    assert!(!err.contains("panicked"), "{err}");

    std::fs::write(
        &path,
        "can_service_url: http://127.0.0.1:1\nsync_api_key: k\n",
    )
    .unwrap();
    let (code, _, err) = run(&[path.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("sync_passphrase"), "{err}");

    let (code, _, err) = run(&["/nonexistent/agent.yaml"]);
    assert_ne!(code, 0);
    assert!(err.contains("/nonexistent/agent.yaml"), "{err}");
}
