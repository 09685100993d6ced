//! `cargo xtask bench [--quick | --smoke] [--broker fjord|kafka|both] [...]`:
//! Fjord vs Apache Kafka 4.3.1 side by side (scripts/bench/side_by_side.py).
//!
//! Builds the release binary (the broker under test and the `fjord bench`
//! load generator), installs the Kafka jars, a JDK and the other e2e
//! prerequisites (tests/e2e/setup.sh), builds librdkafka's
//! `rdkafka_performance` from the crates.io crate rdkafka-sys
//! (../shared/tools/kafka-tools.sh), then runs the harness with the given
//! arguments. Without `--quick`/`--smoke` it rewrites BENCHMARKS.md (about
//! 40 minutes on a 2-core machine); `--smoke` is the CI check (Fjord only,
//! a second or two of load per generator and scenario, non-zero exit on any
//! failure). Then the log compaction benchmark (scripts/bench/compaction.py,
//! run by the e2e venv's Python: it drives the brokers with confluent-kafka),
//! the `__consumer_offsets` size benchmark (scripts/bench/offsets_log.py),
//! the three-node failover benchmark (scripts/bench/failover.py) and the
//! three-node replication benchmark (scripts/bench/replication.py: RF 3,
//! acks=all throughput and latency, failover under load, follower
//! catch-up), each with `--smoke`, `--quick` or `--broker` as given;
//! without `--smoke` and `--quick` each rewrites its section of
//! BENCHMARKS.md (a few minutes each). Last the metrics benchmark
//! (scripts/bench/metrics.py: Fjord's throughput with metrics off and on
//! side by side, and a /metrics scrape
//! with 10,000 partitions), which rewrites its section of BENCHMARKS.md
//! (`--smoke`: one short round; not run with `--broker kafka`).

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Result};

use crate::{cargo, run};

pub fn bench(root: &Path, args: &[String]) -> Result<()> {
    if args.iter().any(|a| a == "-h" || a == "--help") {
        return run(
            "benchmark harness help",
            Command::new("python3")
                .arg(root.join("scripts/bench/side_by_side.py"))
                .arg("--help"),
        );
    }
    run(
        "release build",
        cargo().args(["build", "--release", "--locked", "-p", "fjord"]),
    )?;
    let setup = Command::new("bash")
        .arg(root.join("tests/e2e/setup.sh"))
        .stderr(std::process::Stdio::inherit())
        .output()?;
    if !setup.status.success() {
        bail!("install e2e prerequisites and Kafka jars: {}", setup.status);
    }
    // setup.sh prints the venv's python on its last line.
    let venv_python = String::from_utf8_lossy(&setup.stdout)
        .lines()
        .last()
        .unwrap_or("python3")
        .trim()
        .to_string();
    let tools = root.join("../shared/tools/kafka-tools.sh");
    if !tools.exists() {
        bail!(
            "{} missing: the shared tools folder must sit beside the repository",
            tools.display()
        );
    }
    run(
        "build rdkafka_performance from the crates.io crate rdkafka-sys",
        Command::new("bash").arg(&tools).arg("build"),
    )?;
    let mut cmd = Command::new("python3");
    cmd.arg(root.join("scripts/bench/side_by_side.py"))
        .args(args)
        .arg("--fjord-bin")
        .arg(root.join("target/release/fjord"));
    run("side-by-side benchmark", &mut cmd)?;
    for (script, what) in [
        ("scripts/bench/compaction.py", "log compaction benchmark"),
        (
            "scripts/bench/offsets_log.py",
            "__consumer_offsets size benchmark",
        ),
        ("scripts/bench/failover.py", "three-node failover benchmark"),
        (
            "scripts/bench/replication.py",
            "three-node replication benchmark",
        ),
    ] {
        let mut cmd = Command::new(&venv_python);
        cmd.arg(root.join(script))
            .arg("--fjord-bin")
            .arg(root.join("target/release/fjord"));
        let mut it = args.iter();
        while let Some(a) = it.next() {
            if a == "--smoke" || a == "--quick" {
                cmd.arg(a);
            } else if a == "--broker" {
                if let Some(v) = it.next() {
                    cmd.arg("--broker").arg(v);
                }
            }
        }
        run(what, &mut cmd)?;
    }
    // Fjord's own: throughput with metrics off and on, and the scrape with
    // 10,000 partitions (not for a Kafka-only run).
    let kafka_only = args
        .windows(2)
        .any(|w| w[0] == "--broker" && w[1] == "kafka");
    if kafka_only {
        return Ok(());
    }
    let mut cmd = Command::new("python3");
    cmd.arg(root.join("scripts/bench/metrics.py"))
        .arg("--fjord-bin")
        .arg(root.join("target/release/fjord"));
    if args.iter().any(|a| a == "--smoke") {
        cmd.arg("--smoke");
    }
    run("metrics overhead benchmark", &mut cmd)
}
