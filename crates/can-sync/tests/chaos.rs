//! The seeded chaos run (can_testkit::chaos) with 5 agents: uploads and deletions on every
//! side, agents and stores SIGKILLed and restarted; all stores must end alike and whole.
//! `CHAOS_SEED=<n>` replays one seed; otherwise a few fresh seeds run (printed).

use can_testkit::chaos;

const SITES: usize = 5;
const STEPS: usize = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_agents_survive_a_seeded_schedule_of_uploads_deletions_kills_and_crashes() {
    let seeds: Vec<u64> = match std::env::var("CHAOS_SEED") {
        Ok(s) => vec![s.parse().expect("CHAOS_SEED is a number")],
        Err(_) => {
            let base = u64::from(rand::random::<u32>());
            vec![base, base + 1]
        }
    };
    for seed in seeds {
        eprintln!("chaos seed {seed}");
        let dir = tempfile::tempdir().unwrap();
        match chaos::run(dir.path(), seed, SITES, STEPS).await {
            Ok(summary) => eprintln!("chaos seed {seed}: {summary:?}"),
            Err(e) => panic!("{e}"),
        }
    }
}
