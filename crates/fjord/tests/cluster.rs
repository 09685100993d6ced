//! Three `fjord serve` processes (combined broker+controller) on 127.0.0.1
//! form one metadata quorum: a topic created through one node is known to
//! every node; kill -9 of the quorum leader elects another and a second
//! topic can be created; the killed node restarts and catches up.
//!
//! A second test runs three brokers in one cluster: they register with the
//! active controller, a topic with replication factor 3 created through a
//! broker that is not the controller is placed over all three, every node
//! reports the same leaders, produce works through each leader (and is
//! refused elsewhere), acks=all is answered once the followers fetched the
//! records, and kill -9 of a broker moves its leaderships to the others
//! once its session times out, with every acknowledged record there (the
//! new leaders' logs go on after them). A broker paused (SIGSTOP) past its
//! session leaves every ISR; resumed, it catches up and the leaders add it
//! back (AlterPartition).
//!
//! A third runs a node whose file writes fail (RLIMIT_FSIZE): it halts, as
//! Kafka's broker does when its last log dir fails, and the other two go on
//! acknowledging acks=all writes with none lost.
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
/// `broker.session.timeout.ms` of the test nodes: 2000, or
/// `FJORD_CLUSTER_SESSION_TIMEOUT_MS` (to measure with Kafka's default, 9000).
fn session_timeout_ms() -> u64 {
    std::env::var("FJORD_CLUSTER_SESSION_TIMEOUT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000)
}

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
        format!("broker.session.timeout.ms={}", session_timeout_ms()),
        "broker.heartbeat.interval.ms=500".into(),
    ] {
        a.push("--set".into());
        a.push(kv);
    }
    a
}

fn start(n: &mut Node, voters: &str, logs: &Path) {
    start_limited(n, voters, logs, None);
}

/// `start`, with the node's files limited to `file_bytes_max` bytes each
/// (RLIMIT_FSIZE, SIGXFSZ ignored): a write past it fails with EFBIG, as a
/// write to a full disk fails with ENOSPC.
fn start_limited(n: &mut Node, voters: &str, logs: &Path, file_bytes_max: Option<u64>) {
    use std::os::unix::process::CommandExt;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(logs.join(format!("node{}.log", n.id)))
        .unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_fjord"));
    if let Some(limit) = file_bytes_max {
        // SAFETY: between fork and exec only async-signal-safe calls
        // (setrlimit, signal) on values owned by the closure.
        unsafe {
            command.pre_exec(move || {
                let lim = libc::rlimit {
                    rlim_cur: limit,
                    rlim_max: limit,
                };
                if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                Ok(())
            });
        }
    }
    let child = command
        .arg("serve")
        .args(args(n, voters))
        .env(
            "FJORD_LOG",
            std::env::var("FJORD_CLUSTER_TEST_LOG").unwrap_or_else(|_| "info".into()),
        )
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
                let tail: Vec<&str> = text
                    .lines()
                    .rev()
                    .filter(|l| !l.contains("__consumer_offsets"))
                    .take(60)
                    .collect();
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
    create_topic_with(rt, port, name, 2, 1)
}

fn create_topic_with(
    rt: &tokio::runtime::Runtime,
    port: u16,
    name: &str,
    partitions: i32,
    replication_factor: i16,
) -> bool {
    rt.block_on(async {
        let Ok(c) = Client::connect(ClientOptions::new(format!("127.0.0.1:{port}"))).await else {
            return false;
        };
        let t = NewTopic {
            name: name.into(),
            partitions,
            replication_factor,
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

/// What Metadata on `port` says: the broker ids, and (partition, leader,
/// leader epoch) of every partition of `topic` (empty if it is unknown).
type View = (Vec<i32>, Vec<(i32, i32, i32)>);

fn view_on(rt: &tokio::runtime::Runtime, port: u16, topic: &str) -> Option<View> {
    rt.block_on(async {
        let c = Client::connect(ClientOptions::new(format!("127.0.0.1:{port}")))
            .await
            .ok()?;
        let md = c.metadata(Some(&[topic])).await.ok()?;
        let mut brokers: Vec<i32> = md.brokers.iter().map(|b| b.node_id.0).collect();
        brokers.sort_unstable();
        let mut parts: Vec<(i32, i32, i32)> = md
            .topic(topic)
            .filter(|t| t.error_code == 0)
            .map(|t| {
                t.partitions
                    .iter()
                    .map(|p| (p.partition.0, p.leader.0, p.leader_epoch.0))
                    .collect()
            })
            .unwrap_or_default();
        parts.sort_unstable();
        Some((brokers, parts))
    })
}

/// Produces one record (acks=1) to `topic`/`partition` through the broker
/// on `port`: the partition's error code.
fn produce_via(
    rt: &tokio::runtime::Runtime,
    port: u16,
    topic: &str,
    partition: i32,
) -> Option<i16> {
    produce_acks_via(rt, port, topic, partition, fjord_client::Acks::Leader).map(|r| r.0)
}

/// Produces one record with `acks` to `topic`/`partition` through the
/// broker on `port`: the partition's error code and base offset.
fn produce_acks_via(
    rt: &tokio::runtime::Runtime,
    port: u16,
    topic: &str,
    partition: i32,
    acks: fjord_client::Acks,
) -> Option<(i16, i64)> {
    use fjord_records::{BatchBuilder, Compression};
    rt.block_on(async {
        let c = Client::connect(ClientOptions::new(format!("127.0.0.1:{port}")))
            .await
            .ok()?;
        let t = c.topic(topic).await.ok()?;
        let mut b = BatchBuilder::new(Compression::None);
        b.push(1_700_000_000_000, None, Some(b"v".as_slice()), &[]);
        let batch = Bytes::from(b.build(0));
        let ack = c
            .bootstrap_connection()
            .produce(
                &t.topic_ref(),
                acks,
                5_000,
                vec![(fjord_model::PartitionIndex(partition), batch)],
            )
            .await
            .ok()?;
        ack.wait()
            .await
            .ok()?
            .first()
            .map(|p| (p.error_code, p.base_offset.0))
    })
}

/// The ISR of every partition of `topic` as Metadata (v12) on `port` says.
fn isr_on(port: u16, topic: &str) -> Option<Vec<(i32, Vec<i32>)>> {
    use fjord_protocol::kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use fjord_protocol::kafka_protocol::messages::{MetadataRequest, MetadataResponse};
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().ok()?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let req = MetadataRequest::default().with_topics(Some(vec![MetadataRequestTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(topic.to_string()))))]));
    let frame = fjord_client::encode_request(&req, 12, 1, "cluster-test").ok()?;
    s.write_all(&frame).ok()?;
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).ok()?;
    let (_, resp) =
        fjord_client::decode_response::<MetadataResponse>(Bytes::from(body), 12).ok()?;
    let t = resp.topics.first().filter(|t| t.error_code == 0)?;
    let mut out: Vec<(i32, Vec<i32>)> = t
        .partitions
        .iter()
        .map(|p| {
            let mut isr: Vec<i32> = p.isr_nodes.iter().map(|n| n.0).collect();
            isr.sort_unstable();
            (p.partition_index, isr)
        })
        .collect();
    out.sort_unstable();
    Some(out)
}

/// ElectLeaders (v2, preferred) for `topic`/`partition` through the broker
/// on `port`: the partition's error code.
fn elect_via(port: u16, topic: &str, partition: i32) -> Option<i16> {
    use fjord_protocol::kafka_protocol::messages::elect_leaders_request::TopicPartitions;
    use fjord_protocol::kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse};
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().ok()?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let req = ElectLeadersRequest::default()
        .with_election_type(0)
        .with_timeout_ms(5_000)
        .with_topic_partitions(Some(vec![TopicPartitions::default()
            .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(vec![partition])]));
    let frame = fjord_client::encode_request(&req, 2, 1, "cluster-test").ok()?;
    s.write_all(&frame).ok()?;
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).ok()?;
    let (_, resp) =
        fjord_client::decode_response::<ElectLeadersResponse>(Bytes::from(body), 2).ok()?;
    let r = resp.replica_election_results.first()?;
    r.partition_result.first().map(|p| p.error_code)
}

#[test]
fn three_brokers_replicated_topic() {
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
    for n in nodes.iter_mut() {
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
        start(n, &voters, &logs);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (leader, _, _) = wait_for("a quorum leader", &logs, || {
        describe_quorum(nodes[0].controller_port)
    });
    // Every broker registers and is unfenced: every node lists all three.
    for n in &nodes {
        wait_for("three registered brokers", &logs, || {
            view_on(&rt, n.client_port, "none")
                .filter(|(b, _)| b == &[1, 2, 3])
                .map(|_| ())
        });
    }
    // Created through a broker that is not the controller: forwarded. With
    // Kafka's tools at hand, by Kafka's own admin client (kafka-topics).
    let via = nodes.iter().find(|n| n.id != leader).unwrap();
    if let Ok(libs) = std::env::var("FJORD_KAFKA_LIBS") {
        let out = Command::new("java")
            .args(["-Xmx256m", "-XX:TieredStopAtLevel=1", "-cp"])
            .arg(format!("{libs}/*"))
            .arg("org.apache.kafka.tools.TopicCommand")
            .arg("--bootstrap-server")
            .arg(format!("127.0.0.1:{}", via.client_port))
            .args(["--create", "--topic", "replicated", "--partitions", "6"])
            .args(["--replication-factor", "3"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        wait_for("the replicated topic to be created", &logs, || {
            create_topic_with(&rt, via.client_port, "replicated", 6, 3).then_some(())
        });
    }
    let led = |v: &View| v.1.len() == 6 && v.1.iter().all(|p| p.1 >= 0);
    let first = wait_for("the topic's leaders on the first node", &logs, || {
        view_on(&rt, nodes[0].client_port, "replicated").filter(led)
    });
    for n in &nodes[1..] {
        wait_for("the same leaders on every node", &logs, || {
            view_on(&rt, n.client_port, "replicated").filter(|v| v.1 == first.1)
        });
    }
    let mut leaders: Vec<i32> = first.1.iter().map(|p| p.1).collect();
    leaders.sort_unstable();
    leaders.dedup();
    assert_eq!(
        leaders,
        vec![1, 2, 3],
        "leaders spread over the brokers: {first:?}"
    );
    let ports: Vec<(i32, u16)> = nodes.iter().map(|n| (n.id, n.client_port)).collect();
    let port_of = |id: i32| ports.iter().find(|n| n.0 == id).unwrap().1;
    for &(p, l, _) in &first.1 {
        assert_eq!(produce_via(&rt, port_of(l), "replicated", p), Some(0));
        let other = nodes.iter().find(|n| n.id != l).unwrap();
        // NOT_LEADER_OR_FOLLOWER from a broker that is only a follower.
        assert_eq!(
            produce_via(&rt, other.client_port, "replicated", p),
            Some(6)
        );
        // acks=all is answered once both followers hold both records
        // durably (they fetch from the leader).
        let all = fjord_client::Acks::All;
        assert_eq!(
            produce_acks_via(&rt, port_of(l), "replicated", p, all),
            Some((0, 1))
        );
    }

    // Preferred-leader election through a broker that is not the
    // controller (forwarded): every leader is its preferred replica.
    assert_eq!(elect_via(via.client_port, "replicated", 0), Some(84)); // ELECTION_NOT_NEEDED

    // SIGSTOP of a broker that is not the controller, past its session: it
    // is fenced and leaves every ISR (its leaderships move), acks=all goes
    // on with the other two; SIGCONT: it catches up from the leaders, which
    // add it back to their ISR (AlterPartition to the controller).
    let paused = nodes.iter().find(|n| n.id != leader).unwrap();
    let (paused_id, paused_pid) = (paused.id, paused.child.as_ref().unwrap().id());
    let signal = |sig: &str| {
        let ok = Command::new("kill")
            .args([sig, &paused_pid.to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    };
    signal("-STOP");
    let without = wait_for("the paused broker out of every ISR", &logs, || {
        isr_on(port_of(leader), "replicated")
            .filter(|v| v.len() == 6 && v.iter().all(|(_, isr)| !isr.contains(&paused_id)))
    });
    let during = wait_for("leaders off the paused broker", &logs, || {
        view_on(&rt, port_of(leader), "replicated")
            .filter(|v| led(v) && v.1.iter().all(|p| p.1 != paused_id))
    });
    for &(p, l, _) in &during.1 {
        assert_eq!(
            produce_acks_via(&rt, port_of(l), "replicated", p, fjord_client::Acks::All),
            Some((0, 2)),
            "partition {p} led by {l} while broker {paused_id} is paused: {without:?}"
        );
    }
    signal("-CONT");
    let resumed = Instant::now();
    let back = wait_for("the resumed broker back in every ISR", &logs, || {
        isr_on(port_of(leader), "replicated")
            .filter(|v| v.len() == 6 && v.iter().all(|(_, isr)| isr.len() == 3))
    });
    eprintln!(
        "SIGCONT of broker {paused_id} to every ISR: {} ms; {back:?}",
        resumed.elapsed().as_millis()
    );
    let first = wait_for("every partition led", &logs, || {
        view_on(&rt, nodes[0].client_port, "replicated").filter(led)
    });

    // kill -9 a broker that is not the controller: once its session
    // timed out, its partitions get leaders among the other two.
    let victim = nodes.iter().position(|n| n.id != leader).unwrap();
    let victim_id = nodes[victim].id;
    let mut child = nodes[victim].child.take().unwrap();
    let killed = Instant::now();
    child.kill().unwrap();
    child.wait().unwrap();
    let survivors: Vec<u16> = nodes
        .iter()
        .filter(|n| n.id != victim_id)
        .map(|n| n.client_port)
        .collect();
    let moved =
        |v: &View| led(v) && v.1.iter().all(|p| p.1 != victim_id) && !v.0.contains(&victim_id);
    let after = wait_for("new leaders on a survivor", &logs, || {
        view_on(&rt, survivors[0], "replicated").filter(moved)
    });
    let elapsed = killed.elapsed();
    wait_for("the same new leaders on the other survivor", &logs, || {
        view_on(&rt, survivors[1], "replicated").filter(|v| v.1 == after.1)
    });
    // Each survivor says so in its log, once per moved partition.
    for n in nodes.iter().filter(|n| n.id != victim_id) {
        let text = std::fs::read_to_string(logs.join(format!("node{}.log", n.id))).unwrap();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| {
                l.contains("partition leader changed") && l.contains("topic=\"replicated\"")
            })
            .collect();
        let moved_here = first.1.iter().filter(|p| p.1 == victim_id).count();
        assert!(
            lines
                .iter()
                .filter(|l| l.contains(&format!("from={victim_id}")))
                .count()
                >= moved_here,
            "node {}: {moved_here} partitions moved off broker {victim_id}, log lines: {lines:#?}",
            n.id
        );
    }
    eprintln!(
        "kill -9 of broker {victim_id} to new leaders: {} ms (broker.session.timeout.ms={})",
        elapsed.as_millis(),
        session_timeout_ms()
    );
    assert!(
        elapsed < Duration::from_millis(session_timeout_ms() + 5_000),
        "{elapsed:?}"
    );
    for (&(p, l, epoch), &(_, _, before)) in after.1.iter().zip(first.1.iter()) {
        assert!(epoch >= before, "leader epochs never go back");
        if first.1[p as usize].1 == victim_id {
            assert!(epoch > before, "a moved leadership bumps the epoch");
        }
        // The new leader held both acknowledged records: the log goes on
        // after them.
        assert_eq!(
            produce_acks_via(&rt, port_of(l), "replicated", p, fjord_client::Acks::All),
            Some((0, 3)),
            "partition {p} led by {l} after the kill"
        );
    }
    if let Ok(libs) = std::env::var("FJORD_KAFKA_LIBS") {
        let out = Command::new("java")
            .args(["-Xmx256m", "-XX:TieredStopAtLevel=1", "-cp"])
            .arg(format!("{libs}/*"))
            .arg("org.apache.kafka.tools.TopicCommand")
            .arg("--bootstrap-server")
            .arg(format!("127.0.0.1:{}", survivors[0]))
            .args(["--describe", "--topic", "replicated"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        eprintln!("{text}");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rows: Vec<&str> = text.lines().filter(|l| l.contains("Partition: ")).collect();
        assert_eq!(rows.len(), 6, "{text}");
        for row in rows {
            let field = |name: &str| {
                row.split('\t')
                    .find_map(|f| f.trim().strip_prefix(name))
                    .map(|v| v.trim().to_string())
                    .unwrap_or_default()
            };
            let leader: i32 = field("Leader:").parse().unwrap();
            assert_ne!(leader, victim_id, "{row}");
            assert_eq!(field("Replicas:").split(',').count(), 3, "{row}");
            assert!(!field("Isr:").is_empty(), "{row}");
        }
    }

    // A clean stop (SIGTERM) of the other broker that is not the
    // controller: controlled shutdown moves its leaderships to the
    // controller before it stops, without waiting for a session timeout.
    let controller = describe_quorum(port_of_controller(&nodes, leader)).map(|v| v.0);
    if controller == Some(leader) {
        let stop = nodes
            .iter()
            .position(|n| n.id != leader && n.id != victim_id)
            .unwrap();
        let stop_id = nodes[stop].id;
        let mut child = nodes[stop].child.take().unwrap();
        let asked = Instant::now();
        let term = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(term.success());
        child.wait().unwrap();
        let stopped = asked.elapsed();
        let view = view_on(&rt, port_of(leader), "replicated").unwrap();
        eprintln!(
            "controlled shutdown of broker {stop_id}: {} ms; {view:?}",
            stopped.as_millis()
        );
        assert!(
            view.1.iter().all(|p| p.1 == leader),
            "the controller leads every partition after the others stopped: {view:?}"
        );
    }
}

fn port_of_controller(nodes: &[Node], leader: i32) -> u16 {
    nodes
        .iter()
        .find(|n| n.id == leader)
        .unwrap()
        .controller_port
}

/// What the acks=all producer of `acks_all_through_leader_kills` saw: each
/// acknowledged sequence number with its offset, and the longest stretch
/// without an acknowledgement.
struct Acked {
    offsets: Vec<(i32, i64)>,
    longest_gap: Duration,
    fatal: Option<String>,
}

/// An idempotent producer (InitProducerId, one record per batch, sequence
/// numbers from 0) with acks=all on partition 0 of `topic`, sending the
/// next record only once the previous one is acknowledged, retrying the
/// same batch (same sequence) on any error or timeout through whichever
/// node answers, until `stop` is set.
fn run_producer(
    ports: Vec<u16>,
    topic: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Acked {
    run_padded_producer(ports, topic, stop, 0)
}

/// `run_producer` with `pad` bytes after each value's sequence number
/// (`"<seq>:...."`; just `"<seq>"` when 0).
fn run_padded_producer(
    ports: Vec<u16>,
    topic: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    pad: usize,
) -> Acked {
    use fjord_protocol::kafka_protocol::messages::InitProducerIdRequest;
    use fjord_records::{BatchBuilder, Compression};
    use std::sync::atomic::Ordering;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut acked = Acked {
        offsets: Vec::new(),
        longest_gap: Duration::ZERO,
        fatal: None,
    };
    let step = Duration::from_secs(3);
    let (pid, epoch) = loop {
        let got = ports.iter().find_map(|port| {
            rt.block_on(async {
                let c = Client::connect(ClientOptions::new(format!("127.0.0.1:{port}")))
                    .await
                    .ok()?;
                let req = InitProducerIdRequest::default()
                    .with_transactional_id(None)
                    .with_transaction_timeout_ms(60_000);
                // v4 (flexible); the client's table does not list this API.
                let pending = c.bootstrap_connection().send(&req, 4).await.ok()?;
                let r = tokio::time::timeout(step, pending.wait()).await;
                match r {
                    Ok(Ok(r)) if r.error_code == 0 => Some((r.producer_id.0, r.producer_epoch)),
                    other => {
                        eprintln!("InitProducerId via {port}: {other:?}");
                        None
                    }
                }
            })
        });
        if let Some(v) = got {
            break v;
        }
        assert!(!stop.load(Ordering::SeqCst), "no producer id");
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut last_ack = Instant::now();
    let mut seq: i32 = 0;
    let mut next_port = 0usize;
    while !stop.load(Ordering::SeqCst) {
        let mut b = BatchBuilder::new(Compression::None).producer(pid, epoch, seq);
        let mut value = seq.to_string();
        if pad > 0 {
            value.push(':');
            value.push_str(&".".repeat(pad));
        }
        b.push(0, None, Some(value.as_bytes()), &[]);
        let batch = Bytes::from(b.build(0));
        let port = ports[next_port % ports.len()];
        let result: Option<(i16, i64)> = rt.block_on(async {
            let c = tokio::time::timeout(
                step,
                Client::connect(ClientOptions::new(format!("127.0.0.1:{port}"))),
            )
            .await
            .ok()?
            .ok()?;
            let t = tokio::time::timeout(step, c.topic(&topic))
                .await
                .ok()?
                .ok()?;
            let leader = t.partitions.first()?.leader;
            let conn = tokio::time::timeout(step, c.connection(leader))
                .await
                .ok()?
                .ok()?;
            let ack = conn
                .produce(
                    &t.topic_ref(),
                    fjord_client::Acks::All,
                    5_000,
                    vec![(fjord_model::PartitionIndex(0), batch)],
                )
                .await
                .ok()?;
            let parts = tokio::time::timeout(Duration::from_secs(8), ack.wait())
                .await
                .ok()?
                .ok()?;
            parts.first().map(|p| (p.error_code, p.base_offset.0))
        });
        match result {
            Some((0, offset)) => {
                let now = Instant::now();
                if !acked.offsets.is_empty() {
                    acked.longest_gap = acked.longest_gap.max(now - last_ack);
                }
                last_ack = now;
                acked.offsets.push((seq, offset));
                seq += 1;
            }
            // OUT_OF_ORDER_SEQUENCE_NUMBER: a lost acknowledged batch.
            Some((45, _)) => {
                acked.fatal = Some(format!("sequence {seq}: OUT_OF_ORDER_SEQUENCE_NUMBER"));
                return acked;
            }
            // Any other error, a timeout, no connection: the same batch
            // again, through the next node.
            _ => {
                next_port += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    acked
}

/// Stops the producer, reads partition 0 of `topic` back through one of
/// `ports` and checks it (`check_read_back`): what was acknowledged, and
/// what is stored.
fn stop_and_read_back(
    rt: &tokio::runtime::Runtime,
    (stop, producer): (
        std::sync::Arc<std::sync::atomic::AtomicBool>,
        std::thread::JoinHandle<Acked>,
    ),
    ports: &[u16],
    topic: &str,
    logs: &Path,
) -> (Acked, Vec<(i64, String)>) {
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let acked = producer.join().unwrap();
    assert_eq!(acked.fatal, None);
    let records = wait_for("the partition read back", logs, || {
        ports.iter().find_map(|p| read_all(rt, *p, topic))
    });
    check_read_back(&records, &acked);
    (acked, records)
}

/// Every producer sequence in `records` (values `"<seq>"` or `"<seq>:..."`;
/// others, such as `produce_acks_via`'s, skipped) is stored once, and every
/// acknowledged one at the offset it was acknowledged at.
fn check_read_back(records: &[(i64, String)], acked: &Acked) {
    let mut seen = std::collections::HashMap::new();
    for (offset, value) in records {
        let Ok(seq) = value.split(':').next().unwrap_or_default().parse::<i32>() else {
            continue;
        };
        if let Some(first) = seen.insert(seq, *offset) {
            panic!("sequence {seq} stored twice (offsets {first} and {offset})");
        }
    }
    for (seq, offset) in &acked.offsets {
        assert_eq!(
            seen.get(seq),
            Some(offset),
            "acknowledged sequence {seq} at offset {offset}"
        );
    }
}

/// Every record of partition 0 of `topic` below the high watermark, as
/// (offset, value), read from the leader through the node on `port`.
fn read_all(rt: &tokio::runtime::Runtime, port: u16, topic: &str) -> Option<Vec<(i64, String)>> {
    rt.block_on(async {
        let c = Client::connect(ClientOptions::new(format!("127.0.0.1:{port}")))
            .await
            .ok()?;
        let t = c.topic(topic).await.ok()?;
        let conn = c.connection(t.partitions.first()?.leader).await.ok()?;
        let mut out = Vec::new();
        let mut next = 0i64;
        loop {
            let options = fjord_client::FetchOptions {
                max_wait_ms: 0,
                ..Default::default()
            };
            let part = conn
                .fetch(
                    &t.topic_ref(),
                    &[(fjord_model::PartitionIndex(0), fjord_model::Offset(next))],
                    &options,
                )
                .await
                .ok()?
                .wait()
                .await
                .ok()?
                .into_iter()
                .next()?;
            if part.error_code != 0 {
                return None;
            }
            let before = next;
            for item in fjord_records::batches(&part.records) {
                let Ok((_, range)) = item else { break };
                for r in fjord_records::decode_records(&part.records[range]).ok()? {
                    let v = String::from_utf8_lossy(r.value.as_deref().unwrap_or_default());
                    out.push((r.offset, v.to_string()));
                    next = r.offset + 1;
                }
            }
            if next >= part.high_watermark.0 {
                return Some(out);
            }
            if next == before {
                return None;
            }
        }
    })
}

/// Formats and starts three combined nodes under `root` (node `id`'s files
/// limited to `bytes` if `limited` is `Some((id, bytes))`, see
/// `start_limited`) and waits until each reports all three brokers.
fn three_nodes(
    rt: &tokio::runtime::Runtime,
    root: &Path,
    logs: &Path,
    limited: Option<(i32, u64)>,
) -> (Vec<Node>, String) {
    std::fs::create_dir_all(logs).unwrap();
    let mut nodes: Vec<Node> = (1..=3)
        .map(|id| Node {
            id,
            client_port: free_port(),
            controller_port: free_port(),
            dir: root.join(format!("n{id}")),
            child: None,
        })
        .collect();
    let voters = nodes
        .iter()
        .map(|n| format!("{}@127.0.0.1:{}", n.id, n.controller_port))
        .collect::<Vec<_>>()
        .join(",");
    for n in nodes.iter_mut() {
        let out = Command::new(env!("CARGO_BIN_EXE_fjord"))
            .args(["format", "--cluster-id", CLUSTER])
            .args(args(n, &voters))
            .output()
            .unwrap();
        assert!(out.status.success());
        let limit = limited.filter(|(id, _)| *id == n.id).map(|(_, b)| b);
        start_limited(n, &voters, logs, limit);
    }
    for n in &nodes {
        wait_for("three registered brokers", logs, || {
            view_on(rt, n.client_port, "none")
                .filter(|(b, _)| b == &[1, 2, 3])
                .map(|_| ())
        });
    }
    (nodes, voters)
}

/// Creates `topic` (one partition, replication factor 3,
/// `min.insync.replicas=2`) through the node on `port`.
fn create_replicated_topic(rt: &tokio::runtime::Runtime, port: u16, topic: &str, logs: &Path) {
    wait_for("the topic to be created", logs, || {
        rt.block_on(async {
            let c = Client::connect(ClientOptions::new(format!("127.0.0.1:{port}")))
                .await
                .ok()?;
            let t = NewTopic {
                name: topic.into(),
                partitions: 1,
                replication_factor: 3,
                configs: vec![("min.insync.replicas".into(), "2".into())],
            };
            c.create_topic(&t).await.ok().map(|_| ())
        })
    });
}

/// Three nodes, a topic with replication factor 3 and
/// `min.insync.replicas=2`, an idempotent acks=all producer running while
/// the partition's leader is killed with kill -9 and restarted
/// (`FJORD_REPLICATION_KILLS` times, 2 by default): every acknowledged
/// record is read back exactly once, at the offset it was acknowledged at;
/// the longest stretch without an acknowledgement is printed (and bounded).
/// Then, on a topic with `min.insync.replicas=3` whose ISR lost a paused
/// (SIGSTOP) follower, acks=all is refused with NOT_ENOUGH_REPLICAS.
#[test]
fn acks_all_through_leader_kills() {
    let kills: usize = std::env::var("FJORD_REPLICATION_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let tmp = tempfile::tempdir().unwrap();
    let logs = tmp.path().join("logs");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (mut nodes, voters) = three_nodes(&rt, tmp.path(), &logs, None);
    let topic = "acks-all";
    create_replicated_topic(&rt, nodes[0].client_port, topic, &logs);
    let ports: Vec<u16> = nodes.iter().map(|n| n.client_port).collect();
    let leader_now = |rt: &tokio::runtime::Runtime, alive: &[u16]| {
        alive.iter().find_map(|p| {
            view_on(rt, *p, topic)
                .and_then(|v| v.1.first().copied())
                .filter(|p| p.1 >= 0)
        })
    };
    let isr_full = |port: u16| isr_on(port, topic).filter(|v| v.len() == 1 && v[0].1.len() == 3);
    wait_for("the ISR of three", &logs, || isr_full(ports[0]));

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let producer = {
        let (ports, stop) = (ports.clone(), stop.clone());
        let topic = topic.to_string();
        std::thread::spawn(move || run_producer(ports, topic, stop))
    };
    std::thread::sleep(Duration::from_secs(2));
    let mut kill_times = Vec::new();
    for round in 0..kills {
        let (_, leader, _) = wait_for("a leader", &logs, || leader_now(&rt, &ports));
        let i = nodes.iter().position(|n| n.id == leader).unwrap();
        let mut child = nodes[i].child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        kill_times.push(Instant::now());
        let alive: Vec<u16> = nodes
            .iter()
            .filter(|n| n.id != leader)
            .map(|n| n.client_port)
            .collect();
        wait_for("a new leader", &logs, || {
            leader_now(&rt, &alive).filter(|p| p.1 != leader)
        });
        std::thread::sleep(Duration::from_secs(1));
        start(&mut nodes[i], &voters, &logs);
        wait_for("the restarted broker back in the ISR", &logs, || {
            alive.iter().find_map(|p| isr_full(*p))
        });
        eprintln!("round {round}: killed and restarted broker {leader}");
        std::thread::sleep(Duration::from_secs(1));
    }
    let (acked, records) = stop_and_read_back(&rt, (stop, producer), &ports, topic, &logs);
    assert!(
        acked.offsets.len() > 10,
        "only {} acknowledged",
        acked.offsets.len()
    );
    eprintln!(
        "acks=all through {kills} leader kills: {} records acknowledged, {} stored, none lost, \
         none duplicated, none moved; longest stretch without an acknowledgement: {} ms \
         (broker.session.timeout.ms={})",
        acked.offsets.len(),
        records.len(),
        acked.longest_gap.as_millis(),
        session_timeout_ms()
    );
    assert!(
        acked.longest_gap < Duration::from_millis(session_timeout_ms() + 8_000),
        "{:?}",
        acked.longest_gap
    );

    // NOT_ENOUGH_REPLICAS: a topic with min.insync.replicas=3; one of its
    // followers paused past its session is fenced and leaves the ISR, which
    // is then below min.insync.replicas: acks=all is refused before the
    // append, acks=1 is taken.
    let strict = "acks-all-strict";
    wait_for("the strict topic to be created", &logs, || {
        rt.block_on(async {
            let c = Client::connect(ClientOptions::new(format!("127.0.0.1:{}", ports[0])))
                .await
                .ok()?;
            let t = NewTopic {
                name: strict.into(),
                partitions: 1,
                replication_factor: 3,
                configs: vec![("min.insync.replicas".into(), "3".into())],
            };
            c.create_topic(&t).await.ok().map(|_| ())
        })
    });
    wait_for("the strict topic's ISR of three", &logs, || {
        isr_on(ports[0], strict).filter(|v| v.len() == 1 && v[0].1.len() == 3)
    });
    let (_, strict_leader, _) = wait_for("the strict topic's leader", &logs, || {
        view_on(&rt, ports[0], strict)
            .and_then(|v| v.1.first().copied())
            .filter(|p| p.1 >= 0)
    });
    let leader_port = nodes
        .iter()
        .find(|n| n.id == strict_leader)
        .unwrap()
        .client_port;
    let all = fjord_client::Acks::All;
    wait_for("acks=all on the strict topic", &logs, || {
        produce_acks_via(&rt, leader_port, strict, 0, all).filter(|r| r.0 == 0)
    });
    // Pause a follower that is not the quorum leader: pausing the active
    // controller hands the controller to another node, which may move
    // leaders back to their preferred replicas, and this check is about the
    // ISR, not about leader moves.
    let leader_node = nodes.iter().find(|n| n.id == strict_leader).unwrap();
    let (quorum_leader, _, _) = wait_for("the quorum leader", &logs, || {
        describe_quorum(leader_node.controller_port)
    });
    let follower = nodes
        .iter()
        .find(|n| n.id != strict_leader && n.id != quorum_leader)
        .unwrap();
    let pid = follower.child.as_ref().unwrap().id().to_string();
    let signal = |sig: &str| {
        let ok = Command::new("kill").args([sig, &pid]).status().unwrap();
        assert!(ok.success());
    };
    signal("-STOP");
    wait_for("the strict topic's ISR of two", &logs, || {
        isr_on(leader_port, strict).filter(|v| v.len() == 1 && v[0].1.len() == 2)
    });
    assert_eq!(
        produce_acks_via(&rt, leader_port, strict, 0, all).map(|r| r.0),
        Some(19), // NOT_ENOUGH_REPLICAS
    );
    assert_eq!(
        produce_acks_via(&rt, leader_port, strict, 0, fjord_client::Acks::Leader).map(|r| r.0),
        Some(0)
    );
    signal("-CONT");
}

/// A node whose data directory refuses writes (its files limited with
/// RLIMIT_FSIZE, so that a segment append fails with EFBIG as one fails
/// with ENOSPC on a full disk) halts, as Kafka's broker does when its last
/// log dir fails: exit status 1 and "Shutdown broker because all log dirs
/// in ... have failed". Its session lapses, the controller moves its
/// leaderships (if it led), and an idempotent acks=all producer goes on through the
/// other two with every acknowledged record kept. Restarted without the
/// limit, the node rejoins the ISR. (Before the halt, such a node stayed a
/// leader and ISR member with offline logs, and acknowledgements stopped
/// until it was restarted.)
#[test]
fn a_node_whose_writes_fail_halts_and_the_others_go_on() {
    const FILE_BYTES_MAX: u64 = 512 * 1024;
    const PAD: usize = 16 * 1024;
    let tmp = tempfile::tempdir().unwrap();
    let logs = tmp.path().join("logs");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (mut nodes, voters) = three_nodes(&rt, tmp.path(), &logs, Some((1, FILE_BYTES_MAX)));
    let topic = "disk-fails";
    create_replicated_topic(&rt, nodes[1].client_port, topic, &logs);
    let ports: Vec<u16> = nodes.iter().map(|n| n.client_port).collect();
    let survivors = [ports[1], ports[2]];
    let isr_full = |port: u16| isr_on(port, topic).filter(|v| v.len() == 1 && v[0].1.len() == 3);
    wait_for("the ISR of three", &logs, || isr_full(ports[1]));
    let (_, leader_before, _) = wait_for("a leader", &logs, || {
        view_on(&rt, ports[1], topic)
            .and_then(|v| v.1.first().copied())
            .filter(|p| p.1 >= 0)
    });

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let producer = {
        let (ports, stop) = (ports.clone(), stop.clone());
        let topic = topic.to_string();
        std::thread::spawn(move || run_padded_producer(ports, topic, stop, PAD))
    };
    // 512 KiB of 16 KiB records: node 1's segment fills within ~35 records.
    let status = {
        let deadline = Instant::now() + WAIT * 3;
        loop {
            if let Some(s) = nodes[0].child.as_mut().unwrap().try_wait().unwrap() {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "node 1 did not exit within {:?} of its writes failing",
                WAIT * 3
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    nodes[0].child = None;
    let exited = Instant::now();
    let log1 = std::fs::read_to_string(logs.join("node1.log")).unwrap();
    assert_eq!(status.code(), Some(1), "node 1 exit status {status:?}");
    assert!(
        log1.contains("Shutdown broker because all log dirs in"),
        "node 1's log has no fatal line:\n{}",
        log1.lines().rev().take(20).collect::<Vec<_>>().join("\n")
    );
    let (_, leader_after, _) = wait_for("a leader on the other nodes", &logs, || {
        survivors.iter().find_map(|p| {
            view_on(&rt, *p, topic)
                .and_then(|v| v.1.first().copied())
                .filter(|p| p.1 >= 0 && p.1 != 1)
        })
    });
    // Acknowledgements go on through the other two: one acks=all write of
    // our own after the exit marks where the producer's later ones start.
    let (_, marker) = wait_for("an acks=all write through the new leader", &logs, || {
        survivors.iter().find_map(|p| {
            produce_acks_via(&rt, *p, topic, 0, fjord_client::Acks::All).filter(|r| r.0 == 0)
        })
    });
    std::thread::sleep(Duration::from_secs(2));
    let (acked, records) = stop_and_read_back(&rt, (stop, producer), &survivors, topic, &logs);
    let after_exit = acked.offsets.iter().filter(|(_, o)| *o > marker).count();
    assert!(
        after_exit > 0,
        "no acknowledgement after node 1 exited ({} in all)",
        acked.offsets.len()
    );
    eprintln!(
        "node 1 halted (status 1) once its writes failed; leader {leader_before} -> {leader_after}; \
         {} records acknowledged, {after_exit} after node 1 exited ({:?} ago), all read back at \
         their offsets ({} stored); longest stretch without an acknowledgement {} ms",
        acked.offsets.len(),
        exited.elapsed(),
        records.len(),
        acked.longest_gap.as_millis()
    );
    // Restarted on a working disk, it rejoins the ISR.
    start(&mut nodes[0], &voters, &logs);
    wait_for("the restarted node back in the ISR", &logs, || {
        survivors.iter().find_map(|p| isr_full(*p))
    });
}
