//! The `fjord` tool commands, run as a process against a broker started in
//! this test: create, produce from stdin, consume back byte for byte, a
//! group's lag, and bad input as one line and a documented exit code. (The
//! same and more against Apache Kafka too: tests/e2e/test_cli.py.)

use std::io::Write;
use std::process::{Command, Output, Stdio};

use fjord_broker::{Broker, BrokerConfig};

const FJORD: &str = env!("CARGO_BIN_EXE_fjord");

fn fjord(addr: &str, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(FJORD)
        .args(args)
        .env("FJORD_BOOTSTRAP", addr)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn ok(out: Output) -> Vec<u8> {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn one_line_error(out: &Output, code: i32, mentions: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{err}");
    assert!(
        err.starts_with("fjord: ") && err.lines().count() == 1,
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains(mentions), "{err} should name {mentions}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_consume_group_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let config = BrokerConfig {
        data_dir: dir.path().to_path_buf(),
        advertised_host: "127.0.0.1".to_string(),
        advertised_port: port,
        ..BrokerConfig::default()
    };
    let broker = tokio::task::spawn_blocking(move || Broker::open(config))
        .await
        .unwrap()
        .unwrap();
    broker.groups.start_loading();
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(fjord_broker::server::serve(broker, listener, stop_rx));
    let addr = format!("127.0.0.1:{port}");

    let run = move |args: Vec<&'static str>, stdin: Vec<u8>| {
        let addr = addr.clone();
        tokio::task::spawn_blocking(move || fjord(&addr, &args, &stdin))
    };
    ok(
        run(vec!["topic", "create", "cli", "--partitions", "2"], vec![])
            .await
            .unwrap(),
    );
    let data: Vec<u8> = (0..500)
        .flat_map(|i| format!("line {i} \u{e9}\n").into_bytes())
        .chain(b"\xff\n".iter().copied())
        .collect();
    let offsets = ok(run(
        vec!["produce", "cli", "--partition", "1", "--print-offsets"],
        data.clone(),
    )
    .await
    .unwrap());
    assert_eq!(
        String::from_utf8(offsets).unwrap().lines().last(),
        Some("1 500")
    );
    let got = ok(run(
        vec![
            "consume",
            "cli",
            "--from-beginning",
            "--exit",
            "--binary",
            "base64",
        ],
        vec![],
    )
    .await
    .unwrap());
    let mut want = data[..data.len() - 2].to_vec();
    want.extend_from_slice(b"/w==\n");
    assert_eq!(got, want);

    // A group reads 100 records of partition 1: lag 401.
    let got = ok(run(
        vec!["consume", "cli", "-g", "g", "--from-beginning", "-n", "100"],
        vec![],
    )
    .await
    .unwrap());
    assert_eq!(got.split(|b| *b == b'\n').count(), 101);
    let d = ok(run(vec!["group", "describe", "g", "--json"], vec![])
        .await
        .unwrap());
    let d: serde_json::Value = serde_json::from_slice(&d).unwrap();
    let p1 = d["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["partition"] == 1)
        .unwrap();
    assert_eq!(
        (p1["committed"].as_i64(), p1["lag"].as_i64()),
        (Some(100), Some(401))
    );

    let out = run(vec!["consume", "nope", "--exit"], vec![])
        .await
        .unwrap();
    one_line_error(&out, 4, "nope");
    let out = run(vec!["topic", "create", "x", "--config", "bad"], vec![])
        .await
        .unwrap();
    one_line_error(&out, 2, "--config");
    let out = run(vec!["consume", "cli", "--exit", "-t", "{bogus}"], vec![])
        .await
        .unwrap();
    one_line_error(&out, 2, "{bogus}");
    let out = tokio::task::spawn_blocking(|| fjord("127.0.0.1:1", &["topic", "list"], b""))
        .await
        .unwrap();
    one_line_error(&out, 3, "127.0.0.1:1");

    let _ = stop.send(true);
    let _ = server.await;
}
