//! `can-sync status|pause|resume` against a running agent, over its control socket, and
//! the opt-in Prometheus metrics. Real agents and stores; the CLI is the real binary.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

use can_testkit::*;

const PASS: &str = "ember quartz falcon meadow tidal beacon zephyr";

fn cli(args: &[&str]) -> Output {
    command("can-sync", None)
        .args(args)
        .output()
        .expect("run can-sync")
}

fn ok_stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "can-sync failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn status_json(config: &Path) -> serde_json::Value {
    let out = cli(&["status", "--json", "--config", config.to_str().unwrap()]);
    serde_json::from_str(&ok_stdout(&out)).expect("status --json prints JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_pause_resume_and_metrics_of_a_running_agent() {
    let dir = tempfile::tempdir().unwrap();
    let svc_a = Service::with_key(&dir.path().join("svc-a"));
    let svc_b = Service::with_key(&dir.path().join("svc-b"));
    let c = client();
    for i in 0..3 {
        upload(
            &c,
            &svc_a,
            &format!("a{i}"),
            format!("asset {i} of A").into_bytes(),
        )
        .await;
    }
    // A's socket in a directory anyone may enter, so that only the socket's own
    // permissions keep another user out.
    let open_dir = dir.path().join("open");
    std::fs::create_dir_all(&open_dir).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&open_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let socket = open_dir.join("a.sock");
    let a = Agent::start(
        &dir.path().join("agent-a"),
        &svc_a.url,
        KEY,
        PASS,
        &format!(
            "control_socket: {}\nmetrics_addr: 127.0.0.1:0\n",
            socket.display()
        ),
    );
    let mut b = Agent::start(
        &dir.path().join("agent-b"),
        &svc_b.url,
        KEY,
        PASS,
        &a.connect_line(),
    );
    assert!(a.wait_for("ready", 60).await && b.wait_for("ready", 60).await);
    assert_eq!(a.ready("control_socket"), socket.display().to_string());
    assert!(
        eventually_async(60, || async { list_all(&c, &svc_b.url).await.len() == 3 }).await,
        "B never mirrored A"
    );

    // status --json: A's peers and counts.
    let status = status_json(&a.config);
    assert_eq!(status["endpoint_id"], a.ready("endpoint_id"));
    assert_eq!(status["local_assets"], 3);
    assert_eq!(status["paused"], false);
    let peers = status["peers"].as_array().expect("peers");
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0]["endpoint_id"], b.ready("endpoint_id"));
    assert_eq!(status["assets_sent"], 3);
    // The same through --socket, for people.
    let text = ok_stdout(&cli(&["status", "--socket", socket.to_str().unwrap()]));
    assert!(text.contains("up to date"), "{text}");
    assert!(text.contains("peers: 1"), "{text}");

    // pause: nothing moves; resume: it catches up.
    let config_b = b.config.to_str().unwrap().to_owned();
    assert_eq!(
        ok_stdout(&cli(&["pause", "-c", &config_b])).trim(),
        "paused"
    );
    assert!(b.wait_for("paused", 10).await);
    assert_eq!(status_json(&b.config)["paused"], true);
    let (_, meta) = upload(&c, &svc_a, "while paused", b"sent while B paused".to_vec()).await;
    let hash = meta["hash"].as_str().unwrap().to_owned();
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert!(
        !has_asset(&c, &svc_b.url, &hash).await,
        "B fetched while paused"
    );
    assert_eq!(
        ok_stdout(&cli(&["resume", "-c", &config_b])).trim(),
        "resumed"
    );
    assert!(
        eventually_async(30, || has_asset(&c, &svc_b.url, &hash)).await,
        "B did not catch up after resume"
    );
    assert_eq!(status_json(&b.config)["paused"], false);

    // Metrics on the opt-in loopback address.
    let metrics_addr = a.ready("metrics_addr");
    let body = c
        .get(format!("http://{metrics_addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "can_sync_peers 1",
        "can_sync_local_assets 4",
        "can_sync_paused 0",
        "can_sync_assets_sent_total 4",
    ] {
        assert!(body.contains(line), "{line} not in metrics:\n{body}");
    }

    // Another user cannot connect to the socket (the test runs as root; `nobody` tries).
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let out = std::process::Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                // The system's Python: another user may not reach a per-user one.
                "/usr/bin/python3",
                "-c",
                "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\ns.sendall(b'{\"cmd\":\"pause\"}\\n')\nprint(s.recv(100))",
                socket.to_str().unwrap(),
            ])
            .output()
            .expect("setpriv");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("PermissionError"),
            "another user reached the socket: {err} {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert_eq!(status_json(&a.config)["paused"], false);
    } else {
        eprintln!("not root: the second-user check needs setpriv as root; skipped");
    }

    // A killed agent leaves a stale socket: the CLI says nobody runs, a restart takes it over.
    let b_socket = config_b.replace("config.yaml", "state/control.sock");
    b.kill();
    assert!(
        Path::new(&b_socket).exists(),
        "no stale socket to test with"
    );
    let out = cli(&["status", "-c", &config_b]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no agent is running"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    b.restart();
    assert!(b.wait_for("ready", 60).await);
    assert_eq!(
        status_json(&b.config)["endpoint_id"],
        b.ready("endpoint_id")
    );
}

/// The systemd user unit README tells servers to use names a real file and parses.
#[test]
fn the_systemd_user_unit_verifies() {
    let unit = include_str!("../../../scripts/systemd/can-sync.service");
    let Ok(which) = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
    else {
        eprintln!("systemd-analyze not installed; skipped");
        return;
    };
    assert!(which.status.success());
    let home = tempfile::tempdir().unwrap();
    let bin = home.path().join(".cargo/bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(workspace_bin("can-sync"), bin.join("can-sync")).unwrap();
    let file = home.path().join("can-sync.service");
    std::fs::write(&file, unit.replace("%h", home.path().to_str().unwrap())).unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
