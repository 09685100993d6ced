//! Runs the replication core under the seeded simulator (see
//! `fjord_replication::sim`).
//!
//! - `cargo test -p fjord-replication`: `FJORD_SIM_SEEDS` seeds (default 64, about
//!   3 s in a debug build); `min.insync.replicas` 1, 2 or 3.
//! - `FJORD_SIM_SEEDS=20000 cargo test -p fjord-replication --release -- sim_seeds`:
//!   the long run.
//! - `FJORD_SIM_SEED=1234 cargo test -p fjord-replication -- sim_seeds --nocapture`:
//!   replays one seed exactly, with a trace of its events.

use fjord_replication::sim::{run, PlantedBug, SimConfig, SimReport};

const DEFAULT_SEEDS: u64 = 64;

/// `min.insync.replicas` 2 in half of the runs, 1 and 3 in a quarter each.
fn config_for(seed: u64) -> SimConfig {
    let mut cfg = SimConfig::new();
    cfg.min_insync_replicas = [2, 1, 2, 3][(seed % 4) as usize];
    cfg
}

fn run_seed(seed: u64, cfg: &SimConfig) -> Result<SimReport, String> {
    fjord_sim::run_caught("fjord-replication", seed, || run(seed, cfg))
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
        total.acked += r.acked;
        total.committed += r.committed;
        total.leader_changes += r.leader_changes;
        total.crashes += r.crashes;
        total.truncations += r.truncations;
        total.isr_shrinks += r.isr_shrinks;
        total.isr_expands += r.isr_expands;
        total.not_enough_replicas += r.not_enough_replicas;
        total.after_append += r.after_append;
        total.alter_refused += r.alter_refused;
        total.heal_to_converge_ms = total.heal_to_converge_ms.max(r.heal_to_converge_ms);
    }
    // The runs must have exercised every path.
    let n = seeds as usize;
    assert!(total.acked > 20 * n, "few acknowledgements: {total:?}");
    assert!(total.leader_changes > n, "few leader changes: {total:?}");
    assert!(total.crashes > n, "few crashes: {total:?}");
    assert!(total.truncations > n / 4, "few truncations: {total:?}");
    assert!(total.isr_shrinks > n, "few ISR shrinks: {total:?}");
    assert!(total.isr_expands > n, "few ISR expansions: {total:?}");
    assert!(
        total.not_enough_replicas > n / 4,
        "few NOT_ENOUGH_REPLICAS: {total:?}"
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
    let found = seeds_to_catch(bug, 100);
    let (seed, msg) = found.unwrap_or_else(|| panic!("{bug:?} not caught in 100 seeds"));
    assert!(
        msg.contains(expect),
        "{bug:?} (seed {seed}) caught as: {msg}"
    );
    eprintln!("{bug:?}: seed {seed}: {msg}");
}

#[test]
fn planted_truncation_by_high_watermark_is_caught() {
    assert_caught(PlantedBug::TruncateByHighWatermark, "committed history");
}

#[test]
fn planted_non_durable_follower_offset_is_caught() {
    assert_caught(PlantedBug::CountNonDurable, "stable storage");
}

#[test]
fn planted_election_outside_the_isr_is_caught() {
    assert_caught(PlantedBug::ElectOutsideIsr, "committed history");
}

#[test]
fn a_seed_replays_exactly() {
    let cfg = SimConfig::new();
    let a = run(11, &cfg).map(|r| format!("{r:?}"));
    let b = run(11, &cfg).map(|r| format!("{r:?}"));
    assert_eq!(a.map_err(|e| e.to_string()), b.map_err(|e| e.to_string()));
}

/// With the ISR durability check off, the planted bugs are caught by what
/// clients see: an acknowledged or consumed record lost or moved.
fn assert_caught_by_clients(bug: PlantedBug) {
    let found = (0..400).find_map(|seed| {
        let mut cfg = config_for(seed);
        cfg.planted_bug = bug;
        cfg.check_isr_durability = false;
        run_seed(seed, &cfg).err().map(|e| (seed, e))
    });
    let (seed, msg) = found.unwrap_or_else(|| panic!("{bug:?} not caught in 400 seeds"));
    assert!(
        msg.contains("committed") || msg.contains("acknowledged"),
        "{bug:?} (seed {seed}) caught as: {msg}"
    );
    eprintln!("{bug:?} without the ISR check: seed {seed}: {msg}");
}

#[test]
fn planted_bugs_lose_records_that_clients_saw() {
    assert_caught_by_clients(PlantedBug::TruncateByHighWatermark);
    assert_caught_by_clients(PlantedBug::CountNonDurable);
    assert_caught_by_clients(PlantedBug::ElectOutsideIsr);
}
