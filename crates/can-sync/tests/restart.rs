//! A restarted agent catches up within seconds, whichever side restarted — on two `lan`
//! sites of the WAN testbed (can_testkit::wan; on loopback where the testbed cannot run,
//! i.e. without root).
//!
//! The agent is SIGKILLed, so its peer still holds the dead connection; when the restarted
//! agent redials, its Hello brings a new `instance` and the new connection replaces the old
//! one even where the tie-break (smaller dialler wins) would keep the old one. Before this,
//! the larger id's restart waited for QUIC's idle timeout (31–38 s measured).

use std::time::{Duration, Instant};

use can_testkit::wan::{Profile, Testbed};
use can_testkit::*;

const PASS: &str = "ember quartz falcon meadow tidal beacon zephyr";

/// The figure the issue sets is < 3 s; the test fails only past 10 s (CI machines are slow),
/// and prints what it measured.
const FAIL_AFTER: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_agent_catches_up_within_seconds_whichever_side_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let tb = Testbed::available().then(|| Testbed::start(&[Profile::LAN, Profile::LAN]));
    if tb.is_none() {
        eprintln!("no WAN testbed (needs root): measuring on loopback");
    }
    // On the testbed a site's store listens on its veth and its agent runs in the site.
    let start = |i: usize, extra: &str| match &tb {
        Some(tb) => tb.store_and_agent(i, dir.path(), PASS, extra),
        None => {
            let svc = Service::with_key(&dir.path().join(format!("svc-{i}")));
            let agent = Agent::start(
                &dir.path().join(format!("agent-{i}")),
                &svc.url,
                KEY,
                PASS,
                extra,
            );
            (svc, agent)
        }
    };
    let c = client();
    let ticket = |i: usize| {
        format!(
            "connect_ticket_file: {}\n",
            dir.path()
                .join(format!("agent-{i}"))
                .join("ticket")
                .display()
        )
    };
    // Each follows the other's ticket file, as two machines that paired both ways.
    let (svc_a, mut a) = start(0, &ticket(1));
    let (svc_b, mut b) = start(1, &ticket(0));
    assert!(a.wait_for("ready", 60).await && b.wait_for("ready", 60).await);
    assert!(a.wait_for("peer_up", 60).await, "A and B never connected");
    let larger_is_a = a.ready("endpoint_id") > b.ready("endpoint_id");

    // Restart the larger id first (the case that used to wait for the idle timeout), then
    // the smaller one.
    let order = if larger_is_a { ["a", "b"] } else { ["b", "a"] };
    for (round, which) in order.into_iter().enumerate() {
        let (restarted, survivor_svc, restarted_svc) = match which {
            "a" => (&mut a, &svc_b, &svc_a),
            _ => (&mut b, &svc_a, &svc_b),
        };
        restarted.kill();
        // Uploaded on the survivor while the restarted agent is down: it can only arrive
        // through a new connection.
        let (status, meta) = upload(
            &c,
            survivor_svc,
            &format!("while {which} was down"),
            format!("round {round}: uploaded while agent {which} was down").into_bytes(),
        )
        .await;
        assert_eq!(status, 201);
        let hash = meta["hash"].as_str().unwrap().to_owned();
        let spawned = Instant::now();
        restarted.restart();
        assert!(
            restarted.wait_for("ready", 60).await,
            "agent {which} did not start again"
        );
        let started = Instant::now();
        let arrived = eventually_async(FAIL_AFTER.as_secs() + 5, || {
            has_asset(&c, &restarted_svc.url, &hash)
        })
        .await;
        let catch_up = started.elapsed();
        let side = if (which == "a") == larger_is_a {
            "larger"
        } else {
            "smaller"
        };
        println!(
            "restart of the {side} id: caught up {:.2} s after its engine started ({:.2} s after spawn)",
            catch_up.as_secs_f64(),
            spawned.elapsed().as_secs_f64()
        );
        assert!(arrived, "agent {which} ({side} id) never caught up");
        assert!(
            catch_up < FAIL_AFTER,
            "agent {which} ({side} id) took {catch_up:?} to catch up"
        );
        // And the survivor follows the restarted side live again.
        let (_, meta) = upload(
            &c,
            restarted_svc,
            &format!("after {which} restarted"),
            format!("round {round}: uploaded on {which} after its restart").into_bytes(),
        )
        .await;
        let back = meta["hash"].as_str().unwrap().to_owned();
        assert!(
            eventually_async(FAIL_AFTER.as_secs(), || has_asset(
                &c,
                &survivor_svc.url,
                &back
            ))
            .await,
            "the survivor did not receive from the restarted agent {which}"
        );
    }
}
