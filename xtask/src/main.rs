//! Project automation: `cargo xtask <task>`.
//!
//! - `test`: everything CI checks, in order: formatting, clippy, freshness
//!   of the generated code (`codegen --check`), unit and integration tests
//!   (with Kafka's jars, so Kafka's own record bytes are checked), the
//!   release binary, the end-to-end suite with real Kafka clients
//!   (installing them first), the differential protocol test against
//!   Apache Kafka 4.3.1 (`tests/e2e/differential.py`), the quick
//!   third-party suites, the benchmark smoke run, and a bounded fuzz run.
//! - `codegen [--check]`: regenerate the protocol code from Kafka's message
//!   schemas and the broker/topic config table from Kafka's ConfigDefs (a
//!   Java program, so a JDK is needed) (`--check`: fail if the committed
//!   output is stale).
//! - `e2e [PYTEST ARGS]`: only the end-to-end suite.
//! - `fuzz [SECONDS]`: run every fuzz target for SECONDS each (default 30).
//! - `compat [SUITE ...] [--quick] [--broker fjord|kafka|both] [--out FILE]`:
//!   third-party client test suites against Fjord and Apache Kafka
//!   (`python3 compat/run.py`, see COMPATIBILITY.md).
//! - `bench [--quick|--smoke] [--broker fjord|kafka|both] [...]`: Fjord vs
//!   Apache Kafka side by side (`scripts/bench/side_by_side.py`, writes
//!   BENCHMARKS.md; `--smoke` is the CI check).

mod bench;
mod codegen;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

fn main() -> std::process::ExitCode {
    // One plain line on failure: the Debug form of an error carries a backtrace when
    // RUST_BACKTRACE is set, and its last frames would be all a log excerpt shows.
    match dispatch() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask failed: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn dispatch() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = repo_root();
    std::env::set_current_dir(&root)?;
    match args.first().map(String::as_str) {
        Some("test") => test(&root),
        Some("e2e") => e2e(&root, &args[1..], &[]),
        Some("compat") => compat(&root, &args[1..]),
        Some("bench") => bench::bench(&root, &args[1..]),
        Some("codegen") => codegen::codegen(&root, &args[1..]),
        Some("fuzz") => {
            let secs = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(30);
            fuzz(&root, secs)
        }
        _ => {
            eprintln!(
                "usage: cargo xtask <test | codegen [--check] | e2e [pytest args] | fuzz [seconds] | compat [suite ...] [--quick] | bench [--quick|--smoke]>"
            );
            bail!("unknown task")
        }
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn run(step: &str, cmd: &mut Command) -> Result<()> {
    let started = Instant::now();
    eprintln!("==> {step}: {cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("{step}: cannot start {cmd:?}"))?;
    eprintln!(
        "<== {step}: {status} in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    if !status.success() {
        bail!("{step} failed ({status})");
    }
    Ok(())
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn test(root: &Path) -> Result<()> {
    // Each step stops the run on failure; the last line says which one failed.
    type Step<'a> = (&'static str, Box<dyn Fn() -> Result<()> + 'a>);
    let steps: Vec<Step> = vec![
        (
            "format",
            Box::new(|| run("format", cargo().args(["fmt", "--all", "--", "--check"]))),
        ),
        (
            "clippy",
            Box::new(|| {
                run(
                    "clippy",
                    cargo().args([
                        "clippy",
                        "--workspace",
                        "--all-targets",
                        "--locked",
                        "--",
                        "-D",
                        "warnings",
                    ]),
                )
            }),
        ),
        // Two tests run Apache Kafka's own code against Fjord's bytes (its
        // metadata record serializer, and kafka-dump-log on Fjord's
        // __cluster_metadata log): they need the Kafka 4.3.1 distribution's jars,
        // which the e2e setup fetches from Maven Central.
        (
            "e2e setup and Kafka jars",
            Box::new(|| {
                run(
                    "install e2e clients and Kafka jars",
                    Command::new("bash").arg(root.join("tests/e2e/setup.sh")),
                )
            }),
        ),
        (
            "generated code is fresh",
            Box::new(|| {
                eprintln!("==> generated code is fresh: cargo xtask codegen --check");
                codegen::codegen(root, &["--check".to_string()])
            }),
        ),
        (
            "unit and integration tests",
            Box::new(|| {
                let kafka_libs = kafka_libs_dir()?;
                run(
                    "unit and integration tests",
                    cargo()
                        .args(["test", "--workspace", "--locked"])
                        .env("FJORD_KAFKA_LIBS", &kafka_libs),
                )
            }),
        ),
        // With Kafka Connect's distributed-mode test (about a minute), which a
        // plain `cargo xtask e2e` leaves out unless E2E_CONNECT=1 is set.
        // `--durations` lists the slowest tests, so the log shows where the
        // 45-minute budget goes.
        (
            "end-to-end tests",
            Box::new(|| {
                e2e(
                    root,
                    &["--durations=25".to_string()],
                    &[("E2E_CONNECT", "1")],
                )
            }),
        ),
        // Fjord and Apache Kafka 4.3.1 side by side, the same raw requests to both,
        // answers compared field by field (about 30 s on 2 cores);
        // a difference not in tests/e2e/parity-known-differences.txt fails the run, and
        // so does an API version Fjord advertises that no case sends.
        (
            "differential test against Kafka",
            Box::new(|| {
                let mut cmd = Command::new(e2e_python()?);
                cmd.arg(root.join("tests/e2e/differential.py"))
                    .arg("--require-coverage")
                    .env("FJORD_BIN", root.join("target/release/fjord"));
                run(
                    "differential protocol test (Fjord vs Kafka 4.3.1)",
                    &mut cmd,
                )
            }),
        ),
        // The quick subset of the third-party suites, Fjord only: a failure that passes on
        // Kafka (compat/baseline.json) and is not listed in compat/expected_failures.json
        // fails the run.
        (
            "third-party suites (quick)",
            Box::new(|| {
                compat(
                    root,
                    &["--quick", "--broker", "fjord", "--strict"].map(String::from),
                )
            }),
        ),
        // Benchmarks are not timed tests: this only checks that the harness and
        // `fjord bench` run end to end (Fjord only, a second or two of load each).
        (
            "benchmark smoke",
            Box::new(|| bench::bench(root, &["--smoke".to_string()])),
        ),
        ("fuzz", Box::new(|| fuzz(root, 12))),
    ];
    let total = steps.len();
    for (i, (name, step)) in steps.iter().enumerate() {
        if let Err(e) = step() {
            println!(
                "steps: {i} passed, 1 failed ({name}), {} not run",
                total - i - 1
            );
            return Err(e.context(format!("step '{name}' failed")));
        }
    }
    println!("steps: {total} passed, 0 failed");
    Ok(())
}

fn e2e(root: &Path, pytest_args: &[String], env: &[(&str, &str)]) -> Result<()> {
    run(
        "release build",
        cargo().args(["build", "--release", "--locked", "-p", "fjord"]),
    )?;
    run(
        "install e2e clients",
        Command::new("bash").arg(root.join("tests/e2e/setup.sh")),
    )?;
    let python = e2e_python()?;
    let mut cmd = Command::new(python);
    cmd.args(["-m", "pytest", "tests/e2e", "-q", "-rs"])
        .args(pytest_args)
        .env("FJORD_BIN", root.join("target/release/fjord"))
        .envs(env.iter().copied());
    run("end-to-end tests with real clients", &mut cmd)
}

/// Third-party client test suites against Fjord and Kafka (compat/run.py); builds the
/// release binary first, and fetches the Kafka jars through the e2e setup.
fn compat(root: &Path, args: &[String]) -> Result<()> {
    run(
        "release build",
        cargo().args(["build", "--release", "--locked", "-p", "fjord"]),
    )?;
    run(
        "install e2e clients and Kafka jars",
        Command::new("bash").arg(root.join("tests/e2e/setup.sh")),
    )?;
    let mut cmd = Command::new("python3");
    cmd.arg(root.join("compat/run.py"))
        .args(args)
        .env("FJORD_BIN", root.join("target/release/fjord"));
    run("compatibility suites", &mut cmd)
}

/// The Apache Kafka 4.3.1 jars that tests/e2e/setup.sh fetches.
fn kafka_libs_dir() -> Result<PathBuf> {
    let cache = match std::env::var("FJORD_E2E_CACHE") {
        Ok(c) => PathBuf::from(c),
        Err(_) => PathBuf::from(std::env::var("HOME").context("HOME is not set")?)
            .join(".cache/fjord-e2e"),
    };
    let libs = cache.join("kafka-4.3.1/libs");
    if !libs.join("kafka-clients-4.3.1.jar").exists() {
        bail!(
            "{} has no Kafka jars: tests/e2e/setup.sh did not fetch them",
            libs.display()
        );
    }
    Ok(libs)
}

/// The virtualenv python that tests/e2e/setup.sh prepares.
fn e2e_python() -> Result<PathBuf> {
    let home = std::env::var("HOME").context("HOME is not set")?;
    let p = PathBuf::from(home).join(".cache/fjord-e2e/venv/bin/python");
    if !p.exists() {
        bail!(
            "{} missing: tests/e2e/setup.sh did not prepare it",
            p.display()
        );
    }
    Ok(p)
}

fn fuzz(root: &Path, seconds: u64) -> Result<()> {
    let fuzz_dir = root.join("fuzz");
    if !fuzz_dir.join("Cargo.toml").exists() {
        bail!("fuzz/Cargo.toml missing");
    }
    let have_cargo_fuzz = cargo()
        .args(["fuzz", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !have_cargo_fuzz {
        run(
            "install cargo-fuzz",
            cargo().args(["install", "cargo-fuzz", "--locked"]),
        )?;
    }
    // Through rustup, so a toolchain can be named. Nightly gives AddressSanitizer;
    // without it, stable builds the same targets with coverage only.
    let nightly = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    let fuzz_cmd = || {
        let mut c = Command::new("rustup");
        if nightly {
            c.args(["run", "nightly", "cargo", "fuzz"]);
        } else {
            c.args(["run", "stable", "cargo", "fuzz"])
                .env("RUSTC_BOOTSTRAP", "1");
        }
        c.current_dir(&fuzz_dir);
        c
    };
    let list = fuzz_cmd().arg("list").output().context("cargo fuzz list")?;
    if !list.status.success() {
        bail!(
            "cargo fuzz list failed: {}",
            String::from_utf8_lossy(&list.stderr)
        );
    }
    let targets: Vec<String> = String::from_utf8_lossy(&list.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if targets.is_empty() {
        bail!("no fuzz targets found");
    }
    let sanitizer = if nightly { "address" } else { "none" };
    for t in targets {
        let mut cmd = fuzz_cmd();
        cmd.args(["run", "--sanitizer", sanitizer, &t, "--"]).args([
            format!("-max_total_time={seconds}"),
            "-rss_limit_mb=2048".to_string(),
            "-malloc_limit_mb=512".to_string(),
        ]);
        run(
            &format!("fuzz {t} for {seconds}s ({sanitizer} sanitizer)"),
            &mut cmd,
        )?;
    }
    Ok(())
}
