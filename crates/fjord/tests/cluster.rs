//! Three `fjord serve` processes (combined broker+controller) on 127.0.0.1
//! form one metadata quorum: a topic created through one node is known to
//! every node; kill -9 of the quorum leader elects another and a second
//! topic can be created; the killed node restarts and catches up.
//!
//! Uses the debug binary Cargo built for this package and Fjord's own
//! client. Bounded: every wait gives up after `WAIT`.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fjord_client::{Client, ClientOptions, NewTopic};
use fjord_protocol::kafka_protocol::messages::describe_quorum_request as dq;
use fjord_protocol::kafka_protocol::messages::{
    DescribeQuorumRequest, DescribeQuorumResponse, TopicName,
};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use std::io::{Read, Write};

const WAIT: Duration = Duration::from_secs(20);
const CLUSTER: &str = "fjord-cluster-test";

/// A port that is free now, below Linux's ephemeral range (32768-60999): a node
/// killed and restarted must get its port back, and a port the kernel hands out
/// as the source port of some outgoing connection meanwhile would be taken.
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let spread = std::process::id().wrapping_mul(7919);
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 20_000 + (spread.wrapping_add(n.wrapping_mul(104_729)) % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
        assert!(n < 10_000, "no free port between 20000 and 32000");
    }
}

struct Node {
    id: i32,
    client_port: u16,
    controller_port: u16,
    dir: std::path::PathBuf,
    child: Option<Child>,
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn args(n: &Node, voters: &str) -> Vec<String> {
    let mut a = vec!["--data-dir".to_string(), n.dir.display().to_string()];
    for kv in [
        format!("node.id={}", n.id),
        "process.roles=broker,controller".into(),
        format!(
            "listeners=PLAINTEXT://127.0.0.1:{},CONTROLLER://127.0.0.1:{}",
            n.client_port, n.controller_port
        ),
        format!(
            "advertised.listeners=PLAINTEXT://127.0.0.1:{}",
            n.client_port
        ),
        "controller.listener.names=CONTROLLER".into(),
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT".into(),
        format!("controller.quorum.voters={voters}"),
        "controller.quorum.election.timeout.ms=500".into(),
        "controller.quorum.fetch.timeout.ms=1000".into(),
    ] {
        a.push("--set".into());
        a.push(kv);
    }
    a
}

fn start(n: &mut Node, voters: &str, logs: &Path) {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(logs.join(format!("node{}.log", n.id)))
        .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_fjord"))
        .arg("serve")
        .args(args(n, voters))
        .env("FJORD_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    n.child = Some(child);
}

fn wait_for<T>(what: &str, logs: &Path, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            for e in std::fs::read_dir(logs).unwrap().flatten() {
                let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(20).collect();
                eprintln!("--- {}:\n{}", e.path().display(), tail.join("\n"));
            }
            panic!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// (leader id, epoch, high watermark) from DescribeQuorum on a controller port.
fn describe_quorum(port: u16) -> Option<(i32, i32, i64)> {
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().ok()?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let req = DescribeQuorumRequest::default().with_topics(vec![dq::TopicData::default()
        .with_topic_name(TopicName(StrBytes::from_static_str("__cluster_metadata")))
        .with_partitions(vec![dq::PartitionData::default().with_partition_index(0)])]);
    let frame = fjord_client::encode_request(&req, 2, 1, "cluster-test").ok()?;
    s.write_all(&frame).ok()?;
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).ok()?;
    let (_, resp) =
        fjord_client::decode_response::<DescribeQuorumResponse>(Bytes::from(body), 2).ok()?;
    let p = resp.topics.first()?.partitions.first()?;
    (p.leader_id.0 >= 0).then_some((p.leader_id.0, p.leader_epoch, p.high_watermark))
}

fn topics_on(rt: &tokio::runtime::Runtime, port: u16) -> Option<Vec<String>> {
    rt.block_on(async {
        let c = Client::connect(ClientOptions::new(format!("127.0.0.1:{port}")))
            .await
            .ok()?;
        let md = c.metadata(None).await.ok()?;
        let mut names: Vec<String> = md.topics.into_iter().map(|t| t.name).collect();
        names.sort();
        Some(names)
    })
}

fn create_topic(rt: &tokio::runtime::Runtime, port: u16, name: &str) -> bool {
    rt.block_on(async {
        let Ok(c) = Client::connect(ClientOptions::new(format!("127.0.0.1:{port}"))).await else {
            return false;
        };
        let t = NewTopic {
            name: name.into(),
            partitions: 2,
            replication_factor: 1,
            configs: vec![],
        };
        match c.create_topic(&t).await {
            Ok(_) => true,
            Err(e) => {
                eprintln!("create {name} via {port}: {e}");
                false
            }
        }
    })
}

/// With `FJORD_KAFKA_LIBS` (Kafka 4.3.1's jars; CI sets it), Kafka's own
/// `kafka-metadata-quorum --bootstrap-controller ... describe --status`
/// reports the leader and epoch every node agreed on, and the three voters
/// (and the test then creates one more topic with Kafka's `kafka-topics`).
fn kafka_metadata_quorum_agrees(nodes: &[Node], (leader, epoch): (i32, i32)) {
    let Ok(libs) = std::env::var("FJORD_KAFKA_LIBS") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "FJORD_KAFKA_LIBS must name the Kafka 4.3.1 jars in CI"
        );
        eprintln!("FJORD_KAFKA_LIBS not set: kafka-metadata-quorum not run");
        return;
    };
    let follower = nodes.iter().find(|n| n.id != leader).unwrap();
    let out = Command::new("java")
        .args(["-Xmx256m", "-XX:TieredStopAtLevel=1", "-cp"])
        .arg(format!("{libs}/*"))
        .arg("org.apache.kafka.tools.MetadataQuorumCommand")
        .arg("--bootstrap-controller")
        .arg(format!("127.0.0.1:{}", follower.controller_port))
        .args(["describe", "--status"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim_start_matches(':').trim().to_string())
            .unwrap_or_else(|| panic!("no {name} in {text}"))
    };
    assert_eq!(field("ClusterId"), CLUSTER);
    assert_eq!(field("LeaderId"), leader.to_string());
    assert_eq!(field("LeaderEpoch"), epoch.to_string());
    let voters = field("CurrentVoters");
    for n in nodes {
        assert!(
            voters.contains(&format!("CONTROLLER://127.0.0.1:{}", n.controller_port)),
            "{voters}"
        );
    }
}

#[test]
fn three_processes_one_quorum() {
    let tmp = tempfile::tempdir().unwrap();
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let mut nodes: Vec<Node> = (1..=3)
        .map(|id| Node {
            id,
            client_port: free_port(),
            controller_port: free_port(),
            dir: tmp.path().join(format!("n{id}")),
            child: None,
        })
        .collect();
    let voters = nodes
        .iter()
        .map(|n| format!("{}@127.0.0.1:{}", n.id, n.controller_port))
        .collect::<Vec<_>>()
        .join(",");
    for n in &nodes {
        let out = Command::new(env!("CARGO_BIN_EXE_fjord"))
            .args(["format", "--cluster-id", CLUSTER])
            .args(args(n, &voters))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // serve refuses an unformatted directory, and a formatted one twice.
    let again = Command::new(env!("CARGO_BIN_EXE_fjord"))
        .args(["format", "--cluster-id", CLUSTER])
        .args(args(&nodes[0], &voters))
        .output()
        .unwrap();
    assert!(!again.status.success());
    for n in nodes.iter_mut() {
        start(n, &voters, &logs);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let (leader, epoch, _) = wait_for("a quorum leader", &logs, || {
        describe_quorum(nodes[0].controller_port)
    });
    eprintln!("first leader {leader} in epoch {epoch}");
    // Create through a node that is not the leader: forwarded, then known everywhere.
    let via = nodes.iter().find(|n| n.id != leader).unwrap().client_port;
    wait_for("orders to be created", &logs, || {
        create_topic(&rt, via, "orders").then_some(())
    });
    for n in &nodes {
        wait_for("orders on every node", &logs, || {
            topics_on(&rt, n.client_port)
                .filter(|t| t.contains(&"orders".to_string()))
                .map(|_| ())
        });
    }

    // kill -9 the leader: another is elected in a later epoch.
    let li = nodes.iter().position(|n| n.id == leader).unwrap();
    let mut child = nodes[li].child.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let survivor = nodes.iter().find(|n| n.id != leader).unwrap();
    let (leader2, epoch2, _) = wait_for("a new leader", &logs, || {
        describe_quorum(survivor.controller_port).filter(|(l, e, _)| *l != leader && *e > epoch)
    });
    eprintln!("second leader {leader2} in epoch {epoch2}");
    assert_ne!(leader2, leader);
    assert!(epoch2 > epoch);
    let other = nodes
        .iter()
        .find(|n| n.id != leader && n.id != leader2)
        .unwrap();
    wait_for("payments to be created", &logs, || {
        create_topic(&rt, other.client_port, "payments").then_some(())
    });

    // Restart the killed node: it catches up with both topics.
    start(&mut nodes[li], &voters, &logs);
    for n in &nodes {
        wait_for("both topics on every node", &logs, || {
            topics_on(&rt, n.client_port)
                .filter(|t| {
                    t.contains(&"orders".to_string()) && t.contains(&"payments".to_string())
                })
                .map(|_| ())
        });
    }
    // Every node reports the same leader and epoch (leadership may have
    // moved again meanwhile: that is allowed, disagreeing is not).
    let view = wait_for("one quorum view on every node", &logs, || {
        let views: Vec<_> = nodes
            .iter()
            .map(|n| describe_quorum(n.controller_port).map(|(l, e, _)| (l, e)))
            .collect();
        let first = views[0]?;
        views.iter().all(|v| *v == Some(first)).then_some(first)
    });
    assert!(view.1 >= epoch2, "{view:?}");
    kafka_metadata_quorum_agrees(&nodes, view);
    if let Ok(libs) = std::env::var("FJORD_KAFKA_LIBS") {
        // Kafka's own admin client (kafka-topics) through a follower.
        let follower = nodes.iter().find(|n| n.id != view.0).unwrap();
        let out = Command::new("java")
            .args(["-Xmx256m", "-XX:TieredStopAtLevel=1", "-cp"])
            .arg(format!("{libs}/*"))
            .arg("org.apache.kafka.tools.TopicCommand")
            .arg("--bootstrap-server")
            .arg(format!("127.0.0.1:{}", follower.client_port))
            .args(["--create", "--topic", "audit", "--partitions", "3"])
            .args(["--replication-factor", "1"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        for n in &nodes {
            wait_for("audit on every node", &logs, || {
                topics_on(&rt, n.client_port)
                    .filter(|t| t.contains(&"audit".to_string()))
                    .map(|_| ())
            });
        }
    }
    for n in nodes.iter_mut() {
        if let Some(mut c) = n.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
