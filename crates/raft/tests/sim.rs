//! Runs the quorum core under the seeded simulator (see `fjord_raft::sim`).
//!
//! - `cargo test -p fjord-raft`: `FJORD_SIM_SEEDS` seeds (default 2,000),
//!   alternating 3 and 5 voters, with 0, 1 or 2 observers, with and without
//!   long-polling Fetch, with a static voter set or one the leader changes
//!   (KIP-853: voters added and removed under faults); snapshots are taken
//!   in every run.
//! - `FJORD_SIM_SEEDS=100000 cargo test -p fjord-raft --release -- sim_seeds`:
//!   the long run.
//! - `FJORD_SIM_SEED=1234 cargo test -p fjord-raft -- sim_seeds --nocapture`:
//!   replays one seed exactly, with a trace of its events.

use fjord_raft::node::PlantedBug;
use fjord_raft::sim::{run, SimConfig, SimReport};

const DEFAULT_SEEDS: u64 = 2_000;

fn config_for(seed: u64) -> SimConfig {
    let mut cfg = SimConfig::new(if seed & 1 == 0 { 3 } else { 5 });
    cfg.observers = ((seed >> 1) % 3) as usize;
    cfg.fetch_max_wait_ms = if (seed / 6) & 1 == 1 { 25 } else { 0 };
    cfg.reconfigurable = (seed / 12) & 1 == 1;
    cfg
}

/// Runs one seed; `Err` carries the message (an invariant or a core panic).
fn run_seed(seed: u64, cfg: &SimConfig) -> Result<SimReport, String> {
    fjord_sim::run_caught("fjord-raft", seed, || run(seed, cfg))
}

#[test]
fn sim_seeds() {
    if let Some(seed) = fjord_sim::env_u64("FJORD_SIM_SEED") {
        let mut cfg = config_for(seed);
        cfg.trace = true;
        let report = run_seed(seed, &cfg).unwrap_or_else(|e| panic!("{e}"));
        eprintln!("seed {seed}: {report:?}");
        return;
    }
    let seeds = fjord_sim::env_u64("FJORD_SIM_SEEDS").unwrap_or(DEFAULT_SEEDS);
    let start = std::time::Instant::now();
    // Seeds are independent: run them on a few threads, report in seed order.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8)) as u64;
    let reports: Vec<Result<SimReport, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    (t..seeds)
                        .step_by(threads as usize)
                        .map(|seed| (seed, run_seed(seed, &config_for(seed))))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<(u64, Result<SimReport, String>)> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect();
        all.sort_by_key(|(seed, _)| *seed);
        assert_eq!(all.len() as u64, seeds, "every seed ran");
        all.into_iter().map(|(_, r)| r).collect()
    });
    let (mut steps, mut committed, mut crashes, mut leaders, mut worst_heal) = (0, 0, 0, 0, 0);
    let (mut taken, mut installed, mut worst_converge, mut held) = (0, 0, 0, 0);
    let (mut changes_proposed, mut changes_committed) = (0, 0);
    for report in reports {
        let report = report.unwrap_or_else(|e| panic!("{e}"));
        steps += report.steps;
        committed += report.committed;
        crashes += report.crashes;
        leaders += report.epochs_with_leader;
        worst_heal = worst_heal.max(report.heal_to_commit_ms);
        worst_converge = worst_converge.max(report.heal_to_converge_ms);
        taken += report.snapshots_taken;
        installed += report.snapshots_installed;
        held += report.steps_with_held_fetch;
        changes_proposed += report.voter_changes_proposed;
        changes_committed += report.voter_changes_committed;
    }
    // The runs must have exercised something.
    assert!(
        committed as u64 > seeds,
        "few entries committed: {committed}"
    );
    assert!(crashes as u64 > seeds / 2, "few crashes: {crashes}");
    assert!(leaders as u64 > seeds, "few elections: {leaders}");
    assert!(taken as u64 > seeds, "few snapshots taken: {taken}");
    assert!(
        seeds < 12 || held as u64 > seeds,
        "long polling never held a fetch: {held} steps"
    );
    assert!(
        installed as u64 > seeds / 10,
        "few snapshots fetched and installed: {installed}"
    );
    assert!(
        seeds < 24 || changes_committed as u64 > seeds,
        "few voter changes committed: {changes_committed} of {changes_proposed}"
    );
    eprintln!(
        "{seeds} seeds, {steps} steps, {committed} committed entries, {crashes} crashes, \
         {leaders} leader epochs, {taken} snapshots taken, {installed} installed, \
         {held} steps with a held fetch, \
         {changes_proposed} voter changes appended ({changes_committed} committed), \
         worst heal-to-commit {worst_heal} ms, worst heal-to-converge {worst_converge} ms, in {:?}",
        start.elapsed()
    );
}

/// Seeds until the simulator reports a failure with `bug` planted.
fn seeds_to_catch(bug: PlantedBug, max_seeds: u64) -> Option<(u64, String)> {
    fjord_sim::first_failing_seed(max_seeds, |seed| {
        let mut cfg = config_for(seed);
        cfg.planted_bug = bug;
        run_seed(seed, &cfg).map(|_| ())
    })
}

/// How many of the first `n` seeds fail with `bug` planted, by a safety check.
fn safety_failures(bug: PlantedBug, n: u64) -> usize {
    (0..n)
        .filter(|&seed| {
            let mut cfg = config_for(seed);
            cfg.planted_bug = bug;
            run_seed(seed, &cfg).is_err_and(|e| !e.contains("liveness"))
        })
        .count()
}

#[test]
fn sim_catches_fetch_before_durable() {
    let found = seeds_to_catch(PlantedBug::FetchBeforeDurable, 500);
    let (seed, err) =
        found.expect("a follower reporting non-durable data went unnoticed in 500 seeds");
    assert!(
        !err.contains("liveness"),
        "caught, but not by a safety check: {err}"
    );
    let rate = safety_failures(PlantedBug::FetchBeforeDurable, 100);
    eprintln!(
        "FetchBeforeDurable caught at seed {seed} ({rate} of the first 100 seeds fail): {err}"
    );
}

#[test]
fn sim_catches_vote_without_log_check() {
    let found = seeds_to_catch(PlantedBug::VoteWithoutLogCheck, 500);
    let (seed, err) =
        found.expect("votes granted without the log check went unnoticed in 500 seeds");
    assert!(
        !err.contains("liveness"),
        "caught, but not by a safety check: {err}"
    );
    let rate = safety_failures(PlantedBug::VoteWithoutLogCheck, 100);
    eprintln!(
        "VoteWithoutLogCheck caught at seed {seed} ({rate} of the first 100 seeds fail): {err}"
    );
}

#[test]
fn sim_catches_snapshot_offered_by_offset_only() {
    let found = seeds_to_catch(PlantedBug::SnapshotOffsetOnly, 2_000);
    let (seed, err) =
        found.expect("a leader skipping the snapshot epoch checks went unnoticed in 2,000 seeds");
    assert!(
        !err.contains("liveness"),
        "caught, but not by a safety check: {err}"
    );
    eprintln!("SnapshotOffsetOnly caught at seed {seed}: {err}");
}

#[test]
fn sim_catches_voter_changes_while_one_is_uncommitted() {
    let found = seeds_to_catch(PlantedBug::VoterChangeWhileUncommitted, 500);
    let (seed, err) = found.expect("a second voter change in flight went unnoticed in 500 seeds");
    assert!(
        !err.contains("liveness"),
        "caught, but not by a safety check: {err}"
    );
    eprintln!("VoterChangeWhileUncommitted caught at seed {seed}: {err}");
}

#[test]
fn a_failing_seed_replays_exactly() {
    let mut cfg = config_for(7);
    cfg.planted_bug = PlantedBug::VoteWithoutLogCheck;
    let first = (0..200).find_map(|s| {
        run_seed(s, &{
            let mut c = config_for(s);
            c.planted_bug = cfg.planted_bug;
            c
        })
        .err()
        .map(|e| (s, e))
    });
    let (seed, err) = first.expect("planted bug found");
    cfg = config_for(seed);
    cfg.planted_bug = PlantedBug::VoteWithoutLogCheck;
    assert_eq!(run_seed(seed, &cfg).err(), Some(err));
    let ok = run_seed(seed + 1_000_000, &config_for(seed + 1_000_000)).map(|r| r.steps);
    assert_eq!(
        ok,
        run_seed(seed + 1_000_000, &config_for(seed + 1_000_000)).map(|r| r.steps)
    );
}

/// Regression (issue 12): after a `kill -9` of the quorum leader, broker-only
/// nodes (observers) follow the new leader within a few fetch-idle periods
/// of its election. Before, an observer asked one voter at random (the dead
/// one too), waited a whole request timeout after an answer without news,
/// and went back to the dead leader whenever a voter that had not noticed
/// its death yet still named it: seconds on a real cluster, during which
/// its heartbeats went nowhere and the new controller fenced it.
#[test]
fn observers_follow_a_new_leader_soon_after_the_leaders_kill() {
    let seeds = fjord_sim::env_u64("FJORD_SIM_SEEDS").map_or(400, |n| n.min(2_000));
    let mut worst = (0, 0, 0);
    for seed in 0..seeds {
        let mut cfg = SimConfig::new(if seed & 1 == 0 { 3 } else { 5 });
        cfg.observers = 3;
        cfg.fetch_max_wait_ms = if (seed >> 1) & 1 == 1 { 25 } else { 0 };
        // A LAN: messages take 1-2 ms (the nodes' request timeout is 60 ms,
        // their fetch idle 10 ms: see `Sim::node_config`).
        cfg.delay_max_ms = 2;
        let r = fjord_sim::run_caught("fjord-raft", seed, || {
            fjord_raft::sim::leader_kill(seed, &cfg)
        })
        .unwrap_or_else(|e| panic!("{e}"));
        let lag = r.observers_follow_ms - r.elected_ms;
        if lag > worst.0 {
            worst = (lag, seed, r.elected_ms);
        }
    }
    eprintln!(
        "{seeds} leader kills: observers followed the new leader at worst {} ms after its \
         election (seed {}, elected {} ms after the kill)",
        worst.0, worst.1, worst.2
    );
    // Within the nodes' request timeout (60 ms): a few rounds of asking, a
    // voter at a time. Before this was fixed, 460 ms (seed 330), with the
    // election 31 ms after the kill.
    assert!(
        worst.0 <= 60,
        "an observer followed the new leader {} ms after its election (seed {})",
        worst.0,
        worst.1
    );
}
