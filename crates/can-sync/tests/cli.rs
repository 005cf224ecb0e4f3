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

#[test]
fn a_weak_passphrase_is_refused_unless_allowed_and_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.yaml");
    let base = format!(
        "can_service_url: http://127.0.0.1:9\nsync_api_key: k\nsync_passphrase: hunter2\n\
         data_dir: {}\nrelay_urls: []\npkarr_relays: []\nlocal_discovery: false\nbind_addr: 127.0.0.1:0\n",
        dir.path().join("state").display()
    );
    // Below 50 bits: the agent does not start, and says which key and why.
    std::fs::write(&path, &base).unwrap();
    let (code, out, err) = run(&[path.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(
        err.contains("sync_passphrase") && err.contains("too weak"),
        "{err}"
    );
    assert!(err.contains("allow_weak_passphrase"), "{err}");
    assert!(
        !err.contains("hunter2") && !out.contains("hunter2"),
        "passphrase leaked: {err}"
    );

    // Allowed explicitly (test beds): it starts and warns.
    std::fs::write(&path, format!("{base}allow_weak_passphrase: true\n")).unwrap();
    let mut child = Command::new(can_testkit::workspace_bin("can-sync"))
        .arg(&path)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Read the log until the warning shows up (it comes before the key derivation).
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        let mut seen = String::new();
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            seen.push_str(&line);
            seen.push('\n');
            if line.contains("weak") {
                break;
            }
        }
        let _ = tx.send(seen);
    });
    let err = rx
        .recv_timeout(std::time::Duration::from_secs(30))
        .unwrap_or_default();
    let running = child.try_wait().map(|s| s.is_none()).unwrap_or(false);
    let _ = child.kill();
    let _ = child.wait();
    assert!(running, "the agent did not start: {err}");
    assert!(err.contains("weak"), "{err}");
    assert!(!err.contains("hunter2"), "passphrase leaked: {err}");
}
