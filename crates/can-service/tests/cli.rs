//! The binary's command line and config handling.

use std::process::{Command, Stdio};
use std::time::Duration;

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_can-service"))
        .args(args)
        .output()
        .expect("run can-service");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_and_version() {
    let (code, out, _) = run(&["--help"]);
    assert_eq!(code, 0);
    for flag in ["--config", "--listen", "--data-dir"] {
        assert!(out.contains(flag), "{out}");
    }
    let (code, out, _) = run(&["--version"]);
    assert_eq!(code, 0);
    assert!(out.contains(env!("CARGO_PKG_VERSION")), "{out}");
}

#[test]
fn bad_configs_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "unknown.yaml",
            "listen: 127.0.0.1:0\nsync_api_kye: abc\n",
            "sync_api_kye",
        ),
        ("value.yaml", "max_asset_bytes: plenty\n", "max_asset_bytes"),
        ("zero.yaml", "max_asset_bytes: 0\n", "max_asset_bytes"),
        ("listen.yaml", "listen: not-an-address\n", "listen"),
        ("yaml.yaml", "listen: [unclosed\n", "yaml.yaml"),
        (
            "origins.yaml",
            "allowed_origins: [\"https://ok.example\", \"https://bad.example/path\"]\n",
            "bad.example/path",
        ),
        (
            "origins2.yaml",
            "allowed_origins: https://x\n",
            "allowed_origins",
        ),
        (
            "hosts.yaml",
            "allowed_hosts: [\"http://nas\"]\n",
            "allowed_hosts",
        ),
        ("pubkey.yaml", "public_api_key: \"\"\n", "public_api_key"),
        ("typo.yaml", "allowed_host: [nas]\n", "allowed_host"),
    ];
    for (file, text, needle) in cases {
        let path = dir.path().join(file);
        std::fs::write(&path, text).unwrap();
        let (code, _, err) = run(&["--config", path.to_str().unwrap()]);
        assert_ne!(code, 0, "{file}");
        assert!(err.contains(needle), "{file}: {err}");
        assert!(err.contains(file), "{file} not named: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let (code, _, err) = run(&["--config", "/nonexistent/can.yaml"]);
    assert_ne!(code, 0);
    assert!(err.contains("/nonexistent/can.yaml"), "{err}");
    let (code, _, err) = run(&["--listen", "nowhere"]);
    assert_ne!(code, 0);
    assert!(err.contains("--listen"), "{err}");
}

#[tokio::test]
async fn keys_never_reach_the_logs() {
    let dir = tempfile::tempdir().unwrap();
    let key = "very-secret-sync-key-4242";
    let public_key = "very-secret-public-key-4343";
    let config = dir.path().join("c.yaml");
    std::fs::write(
        &config,
        format!(
            "sync_api_key: {key}\npublic_api_key: {public_key}\ndata_dir: {}\n",
            dir.path().join("d").display()
        ),
    )
    .unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_can-service"))
        .args([
            "--config",
            config.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .env("RUST_LOG", "trace")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let url = line
        .trim_start_matches("can-service listening on ")
        .to_owned();
    let c = can_testkit::client();
    for token in [key, "wrong"] {
        let _ = c
            .get(format!("{url}/sync/v1/hashes"))
            .header("Authorization", format!("Bearer {token}"))
            .send()
            .await
            .unwrap();
    }
    for token in [public_key, "wrong"] {
        let _ = c
            .get(format!("{url}/api/assets"))
            .header("Authorization", format!("Bearer {token}"))
            .send()
            .await
            .unwrap();
    }
    // SIGTERM: a clean shutdown, then read everything it logged.
    let pid = child.id().unwrap().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("stops within 20 s on SIGTERM")
        .unwrap();
    assert!(out.status.success(), "exit status {:?}", out.status);
    let logs = String::from_utf8_lossy(&out.stderr);
    assert!(logs.contains("can-service started"), "{logs}");
    assert!(!logs.contains(key), "the sync key was logged");
    assert!(!logs.contains(public_key), "the public key was logged");
}
