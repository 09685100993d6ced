//! The correlated-crash simulation of eligible leader replicas
//! (`fjord_controller::elr_sim`, KIP-966).
//!
//! - `cargo test -p fjord-controller --test elr_sim`: `FJORD_SIM_SEEDS`
//!   seeds per model (default 64, about 3 s in a debug build), with ELR on;
//!   `FJORD_SIM_SEED=N FJORD_ELR_SIM_TRACE=1 cargo test -p fjord-controller
//!   --test elr_sim -- --nocapture` replays one seed step by step;
//! - the scripted schedules show what the rules change: without ELR a power
//!   cut lets a replica that lost committed records lead cleanly (the check
//!   fails), with ELR it cannot; an ELR member takes over when the last ISR
//!   member is gone, where without ELR the partition stays leaderless.

use fjord_controller::elr_sim::{run, AckModel, Action, ElrSimConfig, ElrSimReport};

const DEFAULT_SEEDS: u64 = 64;

/// The seeds to run: `FJORD_SIM_SEED` alone, else `0..FJORD_SIM_SEEDS`.
fn seeds() -> std::ops::Range<u64> {
    match fjord_sim::env_u64("FJORD_SIM_SEED") {
        Some(seed) => seed..seed + 1,
        None => 0..fjord_sim::env_u64("FJORD_SIM_SEEDS").unwrap_or(DEFAULT_SEEDS),
    }
}

#[test]
fn with_elr_no_clean_election_loses_a_committed_record() {
    for model in [AckModel::PageCache, AckModel::Durable] {
        let mut total = ElrSimReport::default();
        for seed in seeds() {
            let mut cfg = ElrSimConfig::new(true, model);
            // Fjord's durable followers lose nothing even through the
            // last-known-leader recovery.
            cfg.strict = model == AckModel::Durable;
            match run(seed, &cfg) {
                Ok(r) => total.add(&r),
                Err(e) => panic!("{model:?}: {e}"),
            }
        }
        eprintln!("{model:?}, ELR on, seeds {:?}: {total:?}", seeds());
        assert!(
            total.committed > 0 && total.correlated_crashes > 0,
            "{total:?}"
        );
        assert!(
            total.elr_elections > 0,
            "the ELR rules were exercised: {total:?}"
        );
        if model == AckModel::Durable {
            assert_eq!(total.lost_in_recovery, 0);
        }
    }
}

#[test]
fn without_elr_the_page_cache_model_elects_a_leader_that_lost_records() {
    let cfg = ElrSimConfig::new(false, AckModel::PageCache);
    let found = (0..200).find_map(|seed| run(seed, &cfg).err());
    let e = found.expect("a seed where a leader elected cleanly lacks committed records");
    assert!(
        e.message
            .contains("elected cleanly lacks committed records"),
        "{e}"
    );
    // Fjord's durable followers keep every committed record without ELR too.
    let mut durable = ElrSimConfig::new(false, AckModel::Durable);
    durable.strict = true;
    for seed in seeds() {
        run(seed, &durable).unwrap();
    }
}

fn script(elr: bool, model: AckModel, actions: &[Action]) -> Result<ElrSimReport, String> {
    let mut cfg = ElrSimConfig::new(elr, model);
    cfg.script = Some(actions.to_vec());
    run(1, &cfg).map_err(|e| e.message)
}

/// Three committed records in every page cache, none synced; the power goes
/// out everywhere; broker 3 (the last ISR member) comes back first, then 2,
/// then 1.
fn power_cut() -> Vec<Action> {
    use Action::*;
    vec![
        Produce,
        Produce,
        Produce,
        Wait,
        CrashAll,
        Wait,
        Wait,
        Wait,
        Restart(2),
        Wait,
        Restart(1),
        Wait,
        Restart(0),
        Wait,
        Wait,
    ]
}

#[test]
fn a_power_cut_without_elr_loses_committed_records_and_with_elr_it_is_flagged() {
    let e = script(false, AckModel::PageCache, &power_cut()).unwrap_err();
    assert!(
        e.contains("leader 3 elected cleanly lacks committed records"),
        "{e}"
    );
    // With ELR: 3 and 2 restart uncleanly and leave the ELR; nobody is
    // elected cleanly; the last leader's recovery is RECOVERING.
    let r = script(true, AckModel::PageCache, &power_cut()).unwrap();
    assert_eq!(
        (
            r.clean_elections,
            r.recovering_elections,
            r.lost_in_recovery
        ),
        (0, 1, 1),
        "{r:?}"
    );
    // Fjord's durable model: nothing was committed unsynced, nothing lost.
    let r = script(true, AckModel::Durable, &power_cut()).unwrap();
    assert_eq!(r.lost_in_recovery, 0, "{r:?}");
    script(false, AckModel::Durable, &power_cut()).unwrap();
}

#[test]
fn an_elr_member_takes_over_when_the_last_isr_member_is_gone() {
    use Action::*;
    // 3 crashes (ISR 1, 2), 2 stops cleanly (ISR 1, ELR 2), 1 crashes
    // (ISR empty, ELR 1, 2), 2 comes back with its clean-shutdown proof.
    let actions = [
        Produce,
        Produce,
        Crash(2),
        Wait,
        Wait,
        Wait,
        Produce,
        Stop(1),
        Wait,
        Wait,
        Wait,
        Crash(0),
        Wait,
        Wait,
        Wait,
        Restart(1),
        Wait,
        Produce,
        Wait,
    ];
    let on = script(true, AckModel::PageCache, &actions).unwrap();
    assert!(on.elr_elections >= 1, "{on:?}");
    let off = script(false, AckModel::PageCache, &actions).unwrap();
    assert_eq!(off.elr_elections, 0);
    assert!(
        off.leaderless_steps > on.leaderless_steps,
        "without ELR the partition waits for broker 1: {off:?} vs {on:?}"
    );
}
