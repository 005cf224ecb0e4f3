//! The long chaos run: seed after seed of `can_testkit::chaos` (uploads and deletions on
//! every side, agents and stores SIGKILLed and restarted) until the time is up; prints one
//! row per seed and stops at the first failure, with its replay command.

use std::time::{Duration, Instant};

use clap::Args as ClapArgs;

#[derive(ClapArgs)]
pub struct Args {
    /// Sites (a CAN Service and an agent each).
    #[arg(long, default_value_t = 16)]
    sites: usize,
    /// Steps per seed.
    #[arg(long, default_value_t = 120)]
    steps: usize,
    /// Run seeds until this many minutes have passed.
    #[arg(long, default_value_t = 30)]
    minutes: u64,
    /// First seed (then +1 each run).
    #[arg(long)]
    seed: Option<u64>,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let until = Instant::now() + Duration::from_secs(args.minutes * 60);
    let mut seed = args
        .seed
        .unwrap_or_else(|| u64::from(rand::random::<u32>()));
    println!(
        "## Chaos: {} sites, {} steps a seed, {} min\n",
        args.sites, args.steps, args.minutes
    );
    println!(
        "| seed | uploads | deletions | agent kills | store crashes | stored | deleted | converged in | crossings |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut runs = 0;
    while Instant::now() < until {
        let dir = tempfile::tempdir()?;
        let s = can_testkit::chaos::run(dir.path(), seed, args.sites, args.steps)
            .await
            .map_err(anyhow::Error::msg)?;
        println!(
            "| {seed} | {} | {} | {} | {} | {} | {} | {:.1} s | {:.2} × |",
            s.uploads,
            s.deletions,
            s.agent_kills,
            s.store_crashes,
            s.stored,
            s.deleted,
            s.converged_in.as_secs_f64(),
            s.crossings()
        );
        runs += 1;
        seed += 1;
    }
    println!("\n{runs} seeds, all converged.");
    Ok(())
}
