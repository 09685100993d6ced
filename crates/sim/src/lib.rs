//! What Fjord's seeded simulators share (the KRaft core's, the controller's,
//! the replication core's): each runs one deterministic state machine per
//! simulated node, draws every fault and timeout from one [`Rng`] seeded by
//! the caller, checks its invariants after every step and fails with a
//! [`SimFailure`] that names the seed replaying it exactly.
//!
//! Their tests run many seeds with [`run_caught`] (an invariant failure or a
//! panic of the core under test becomes the message), read the seed count
//! and the one seed to replay from the environment with [`env_u64`]
//! (`FJORD_SIM_SEEDS`, `FJORD_SIM_SEED`), and show that planted bugs are
//! caught with [`first_failing_seed`]. No process-wide state: a run depends
//! only on its seed and configuration.

pub mod rng;

pub use rng::{mix, Rng};

use std::panic::{catch_unwind, AssertUnwindSafe};

/// A violated invariant: `seed` and `step` replay it.
#[derive(Clone, Debug)]
pub struct SimFailure {
    /// The cargo package whose simulator failed (named in the replay command).
    pub package: &'static str,
    pub seed: u64,
    pub step: usize,
    pub time_ms: i64,
    pub message: String,
}

impl std::fmt::Display for SimFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "seed {} failed at step {} (t={} ms): {} — replay with FJORD_SIM_SEED={} cargo test -p {}",
            self.seed, self.step, self.time_ms, self.message, self.seed, self.package
        )
    }
}

/// A non-negative whole number from the environment (`None` when unset or
/// not a number).
pub fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// Runs one seed of `package`'s simulator; `Err` carries the message of a
/// violated invariant or of a panic in the code under test, with the command
/// that replays the seed.
pub fn run_caught<R>(
    package: &str,
    seed: u64,
    run: impl FnOnce() -> Result<R, SimFailure>,
) -> Result<R, String> {
    match catch_unwind(AssertUnwindSafe(run)) {
        Ok(Ok(report)) => Ok(report),
        Ok(Err(failure)) => Err(failure.to_string()),
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(format!(
                "seed {seed}: the code under test panicked: {what} — replay with FJORD_SIM_SEED={seed} cargo test -p {package}"
            ))
        }
    }
}

/// The first of seeds `0..max` whose run fails, with its message.
pub fn first_failing_seed(
    max: u64,
    mut run_seed: impl FnMut(u64) -> Result<(), String>,
) -> Option<(u64, String)> {
    (0..max).find_map(|seed| run_seed(seed).err().map(|e| (seed, e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(seed: u64) -> SimFailure {
        SimFailure {
            package: "fjord-x",
            seed,
            step: 3,
            time_ms: 40,
            message: "broken".into(),
        }
    }

    #[test]
    fn failures_and_panics_name_the_seed_and_the_replay_command() {
        let ok = run_caught("fjord-x", 1, || Ok::<_, SimFailure>(7));
        assert_eq!(ok, Ok(7));
        let failed = run_caught("fjord-x", 5, || Err::<(), _>(failure(5))).unwrap_err();
        assert_eq!(
            failed,
            "seed 5 failed at step 3 (t=40 ms): broken — replay with FJORD_SIM_SEED=5 cargo test -p fjord-x"
        );
        let panicked = run_caught("fjord-x", 9, || -> Result<(), SimFailure> {
            panic!("boom {}", 1)
        })
        .unwrap_err();
        assert!(panicked.contains("panicked: boom 1"), "{panicked}");
        assert!(panicked.contains("FJORD_SIM_SEED=9 cargo test -p fjord-x"));
    }

    #[test]
    fn first_failing_seed_finds_the_first_only() {
        let found = first_failing_seed(10, |s| {
            if s % 4 == 3 {
                Err(format!("s{s}"))
            } else {
                Ok(())
            }
        });
        assert_eq!(found, Some((3, "s3".to_string())));
        assert_eq!(first_failing_seed(3, |_| Ok(())), None);
    }
}
