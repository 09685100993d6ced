//! Runs the controller under the seeded simulator (see `fjord_controller::sim`).
//!
//! - `cargo test -p fjord-controller`: `FJORD_SIM_SEEDS` seeds (default 64; about 5 s in a debug build),
//!   3 to 6 brokers, racks on in half of them.
//! - `FJORD_SIM_SEEDS=20000 cargo test -p fjord-controller --release -- sim_seeds`:
//!   the long run.
//! - `FJORD_SIM_SEED=1234 cargo test -p fjord-controller -- sim_seeds --nocapture`:
//!   replays one seed exactly, with a trace of its events.

use fjord_controller::sim::{run, SimConfig, SimReport};
use fjord_controller::PlantedBug;

const DEFAULT_SEEDS: u64 = 64;

fn config_for(seed: u64) -> SimConfig {
    SimConfig::new(3 + (seed % 4) as usize, seed & 4 != 0)
}

fn run_seed(seed: u64, cfg: &SimConfig) -> Result<SimReport, String> {
    fjord_sim::run_caught("fjord-controller", seed, || run(seed, cfg))
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
    let mut total = SimReport::default();
    for seed in 0..seeds {
        let r = run_seed(seed, &config_for(seed)).unwrap_or_else(|e| panic!("{e}"));
        total.steps += r.steps;
        total.registrations += r.registrations;
        total.duplicates_refused += r.duplicates_refused;
        total.fencings += r.fencings;
        total.unfencings += r.unfencings;
        total.leader_changes += r.leader_changes;
        total.topics += r.topics;
        total.producer_blocks += r.producer_blocks;
        total.controlled_shutdowns += r.controlled_shutdowns;
        total.failovers += r.failovers;
        total.aborted += r.aborted;
        total.isr_changes += r.isr_changes;
        total.reassignments += r.reassignments;
        total.reassignments_completed += r.reassignments_completed;
        total.reassignments_cancelled += r.reassignments_cancelled;
    }
    // The runs must have exercised every path.
    let n = seeds as usize;
    assert!(total.fencings > n, "few fencings: {total:?}");
    assert!(total.unfencings > n, "few unfencings: {total:?}");
    assert!(total.leader_changes > n, "few leader changes: {total:?}");
    assert!(total.topics > n, "few topics: {total:?}");
    assert!(
        total.producer_blocks > n,
        "few producer-id blocks: {total:?}"
    );
    assert!(
        total.controlled_shutdowns > n / 4,
        "few controlled shutdowns: {total:?}"
    );
    assert!(
        total.duplicates_refused > n / 4,
        "few duplicate registrations: {total:?}"
    );
    assert!(total.failovers > n / 4, "few failovers: {total:?}");
    assert!(total.aborted > n, "few failed proposals: {total:?}");
    assert!(
        total.isr_changes > n,
        "few AlterPartition ISR changes: {total:?}"
    );
    assert!(total.reassignments > n, "few reassignments: {total:?}");
    assert!(
        total.reassignments_completed > n / 2,
        "few completed reassignments: {total:?}"
    );
    assert!(
        total.reassignments_cancelled > 0,
        "no cancelled reassignment: {total:?}"
    );
    eprintln!("{seeds} seeds in {:?}: {total:?}", start.elapsed());
}

/// The first seed (of `max`) whose run fails with `bug` planted.
fn seeds_to_catch(bug: PlantedBug, max: u64) -> Option<(u64, String)> {
    fjord_sim::first_failing_seed(max, |seed| {
        let mut cfg = config_for(seed);
        cfg.planted_bug = bug;
        run_seed(seed, &cfg).map(|_| ())
    })
}

fn assert_caught(bug: PlantedBug, expect: &str) {
    let found = seeds_to_catch(bug, 200);
    let (seed, msg) = found.unwrap_or_else(|| panic!("{bug:?} not caught in 200 seeds"));
    assert!(
        msg.contains(expect),
        "{bug:?} (seed {seed}) caught as: {msg}"
    );
    eprintln!("{bug:?}: seed {seed}: {msg}");
}

#[test]
fn planted_fence_keeping_leadership_is_caught() {
    assert_caught(PlantedBug::FenceKeepsLeadership, "fenced broker");
}

#[test]
fn planted_election_outside_the_isr_is_caught() {
    assert_caught(PlantedBug::ElectOutsideIsr, "not in the ISR");
}

#[test]
fn planted_producer_id_block_reuse_is_caught() {
    assert_caught(PlantedBug::ReuseProducerIdBlock, "overlaps");
}

#[test]
fn planted_duplicate_registration_is_caught() {
    assert_caught(PlantedBug::AcceptDuplicateRegistration, "share node id");
}

#[test]
fn planted_missing_election_on_unfence_is_caught() {
    assert_caught(PlantedBug::NoElectionOnUnfence, "no leader");
}

#[test]
fn planted_early_reassignment_completion_is_caught() {
    assert_caught(
        PlantedBug::CompleteReassignmentEarly,
        "before every new replica was in the ISR",
    );
}

#[test]
fn a_seed_replays_exactly() {
    let cfg = config_for(11);
    let a = run(11, &cfg).map(|r| format!("{r:?}"));
    let b = run(11, &cfg).map(|r| format!("{r:?}"));
    assert_eq!(a.map_err(|e| e.to_string()), b.map_err(|e| e.to_string()));
}
