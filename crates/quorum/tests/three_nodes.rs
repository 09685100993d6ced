//! Three RaftQuorum nodes over real loopback TCP: elect, propose, stop the
//! leader, re-elect, commit, restart, catch up; every node's listener sees
//! the same committed batches in the same order.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fjord_metadata::{CommittedBatch, MetadataError, MetadataListener, MetadataQuorum, Snapshot};
use fjord_model::{ErrorCode, LeaderEpoch};
use fjord_model::{NodeId, Offset};
use fjord_quorum::wire;
use fjord_quorum::{RaftQuorum, RaftQuorumConfig, Voter};
use fjord_raft::messages::*;
use parking_lot::Mutex;
use std::io::{Read, Write};

type Seen = Arc<Mutex<Vec<(Offset, Vec<Bytes>)>>>;

struct Recorder(Seen);

impl MetadataListener for Recorder {
    fn handle_snapshot(&mut self, _: &Snapshot) -> Result<(), MetadataError> {
        panic!("no snapshots in this test")
    }
    fn handle_commit(&mut self, batch: &CommittedBatch) -> Result<(), MetadataError> {
        let mut seen = self.0.lock();
        if let Some((last, _)) = seen.last() {
            assert!(
                batch.base_offset > *last,
                "batches arrive in offset order, once"
            );
        }
        seen.push((batch.base_offset, batch.records.clone()));
        Ok(())
    }
    fn snapshot_records(&self) -> Vec<Bytes> {
        Vec::new()
    }
}

fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

fn open(dir: &Path, id: i32, voters: &[Voter], seen: Seen) -> RaftQuorum {
    let me = voters.iter().find(|v| v.id.0 == id).unwrap();
    let mut cfg = RaftQuorumConfig::new(
        NodeId(id),
        "kraftnet-test".into(),
        voters.to_vec(),
        Some(me.addr),
    );
    cfg.election_timeout_ms = 150;
    cfg.fetch_timeout_ms = 300;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match RaftQuorum::open(
            &fjord_storage::Storage::default(),
            dir,
            cfg.clone(),
            Box::new(Recorder(seen.clone())),
        ) {
            Ok(q) => return q,
            // The previous incarnation's listener may linger a moment.
            Err(e) if Instant::now() < deadline => {
                eprintln!("retrying open of node {id}: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("open node {id}: {e}"),
        }
    }
}

fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The index of the node that leads, once every running node agrees.
fn leader(nodes: &[Option<RaftQuorum>]) -> Option<usize> {
    let mut agreed = None;
    for (i, n) in nodes.iter().enumerate() {
        let Some(n) = n else { continue };
        let (l, e) = n.leader_and_epoch();
        let l = l?;
        match agreed {
            None => agreed = Some((l, e)),
            Some(a) if a == (l, e) => {}
            Some(_) => return None,
        }
        let _ = i;
    }
    let (l, _) = agreed?;
    let idx = (l.0 - 1) as usize;
    nodes[idx].as_ref().map(|_| idx)
}

/// Sends one quorum request to `addr` as a peer would and returns the answer.
fn call(addr: SocketAddr, msg: &Message) -> Message {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(&wire::request_frame(msg, 1).unwrap()).unwrap();
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut frame = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut frame).unwrap();
    let (api, version) = wire::api_of(msg);
    wire::decode_response(api, version, Bytes::from(frame))
        .unwrap()
        .message
}

/// Proposes `records` on the node that leads once they all agree, again on
/// the next leader if leadership moves before the commit; returns the index
/// of the node that committed them.
fn propose_on_leader(nodes: &[Option<RaftQuorum>], records: Vec<Bytes>) -> usize {
    wait_for("a leader to commit a proposal", || {
        let l = leader(nodes)?;
        let node = nodes[l].as_ref()?;
        match node.propose(records.clone()).wait_blocking() {
            Ok(_) => Some(l),
            Err(e) => {
                eprintln!("proposal on node {} failed, retrying: {e:?}", l + 1);
                None
            }
        }
    })
}

fn rec(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

#[test]
fn three_nodes_elect_replicate_fail_over_and_catch_up() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let voters: Vec<Voter> = (1..=3)
        .map(|id| Voter {
            id: NodeId(id),
            addr: free_addr(),
        })
        .collect();
    let seen: Vec<Seen> = (0..3).map(|_| Seen::default()).collect();
    let mut nodes: Vec<Option<RaftQuorum>> = (0..3)
        .map(|i| Some(open(dirs[i].path(), i as i32 + 1, &voters, seen[i].clone())))
        .collect();

    let first = wait_for("a first leader", || leader(&nodes));
    let (_, epoch1) = nodes[first].as_ref().unwrap().leader_and_epoch();
    let q = nodes[first].as_ref().unwrap();

    // Bad input changes nothing and gets Kafka's error codes.
    let vote = |cluster: &str, candidate: i32| {
        Message::VoteRequest(VoteRequest {
            cluster_id: cluster.into(),
            candidate_id: NodeId(candidate),
            candidate_epoch: LeaderEpoch(epoch1.0 + 5),
            voter_id: NodeId(first as i32 + 1),
            last_offset_epoch: LeaderEpoch(epoch1.0 + 5),
            last_offset: Offset(1_000),
            pre_vote: false,
        })
    };
    let code = |m: Message| match m {
        Message::VoteResponse(r) => (r.error_code, r.vote_granted),
        Message::FetchResponse(r) => (r.error_code, false),
        other => panic!("unexpected {other:?}"),
    };
    let addr = voters[first].addr;
    assert_eq!(
        code(call(addr, &vote("another-cluster", 2))),
        (ErrorCode::INCONSISTENT_CLUSTER_ID, false)
    );
    assert_eq!(
        code(call(addr, &vote("kraftnet-test", 9))),
        (ErrorCode::INCONSISTENT_VOTER_SET, false)
    );
    let stale_fetch = Message::FetchRequest(FetchRequest {
        cluster_id: "kraftnet-test".into(),
        replica_id: NodeId((first as i32 + 1) % 3 + 1),
        replica_directory_id: 0,
        current_leader_epoch: LeaderEpoch(epoch1.0 - 1),
        fetch_offset: Offset(0),
        last_fetched_epoch: LeaderEpoch(0),
        max_wait_ms: 0,
    });
    assert_eq!(
        code(call(addr, &stale_fetch)),
        (ErrorCode::FENCED_LEADER_EPOCH, false)
    );
    assert_eq!(
        q.leader_and_epoch(),
        (Some(NodeId(first as i32 + 1)), epoch1)
    );

    let off_a = q
        .propose(vec![rec("a1"), rec("a2"), rec("a3")])
        .wait_blocking()
        .unwrap();
    // A proposal on a follower is forwarded to the leader and resolves once
    // the follower's own listener handled it.
    let follower = (first + 1) % 3;
    let off_f = nodes[follower]
        .as_ref()
        .unwrap()
        .propose(vec![rec("f1")])
        .wait_blocking()
        .unwrap();
    assert!(off_f > off_a);
    assert_eq!(
        seen[follower].lock().last().map(|(_, r)| r.clone()),
        Some(vec![rec("f1")])
    );
    wait_for("the first batches everywhere", || {
        seen.iter().all(|s| s.lock().len() == 2).then_some(())
    });

    // Stop the leader: the other two elect a new one in a later epoch.
    nodes[first].take().unwrap().close();
    let second = wait_for("a second leader", || leader(&nodes));
    assert_ne!(second, first);
    let (_, epoch2) = nodes[second].as_ref().unwrap().leader_and_epoch();
    assert!(epoch2 > epoch1, "{epoch2:?} > {epoch1:?}");
    let off_b = nodes[second]
        .as_ref()
        .unwrap()
        .propose(vec![rec("b1")])
        .wait_blocking()
        .unwrap();
    assert!(off_b > off_a);

    // Restart the old leader from its directory: it follows and catches up.
    seen[first].lock().clear();
    nodes[first] = Some(open(
        dirs[first].path(),
        first as i32 + 1,
        &voters,
        seen[first].clone(),
    ));
    let off_c = nodes[second]
        .as_ref()
        .unwrap()
        .propose(vec![rec("c1"), rec("c2")])
        .wait_blocking()
        .unwrap();
    assert!(off_c > off_b);
    wait_for("every node to have all four batches", || {
        seen.iter().all(|s| s.lock().len() == 4).then_some(())
    });
    let logs: Vec<_> = seen.iter().map(|s| s.lock().clone()).collect();
    assert_eq!(logs[0], logs[1]);
    assert_eq!(logs[1], logs[2]);
    let values: Vec<Vec<Bytes>> = logs[0].iter().map(|(_, r)| r.clone()).collect();
    assert_eq!(
        values,
        vec![
            vec![rec("a1"), rec("a2"), rec("a3")],
            vec![rec("f1")],
            vec![rec("b1")],
            vec![rec("c1"), rec("c2")],
        ]
    );
    // Restart a follower: it follows the leader its quorum-state names and
    // says so at once (the broker side finds the active controller through
    // it), with no election.
    let other = (0..3).find(|i| *i != second && *i != first).unwrap();
    nodes[other].take().unwrap().close();
    nodes[other] = Some(open(
        dirs[other].path(),
        other as i32 + 1,
        &voters,
        seen[other].clone(),
    ));
    let restarted = nodes[other].as_ref().unwrap();
    let named = restarted.leader_endpoint().map(|(id, _)| id);
    assert_eq!(named, Some(NodeId(second as i32 + 1)));
    assert_eq!(restarted.leader_and_epoch().1, epoch2);

    // DescribeQuorum's view on the leader: all three voters, the real epoch.
    let st = nodes[second].as_ref().unwrap().status().unwrap();
    assert_eq!(st.leader_id, Some(NodeId(second as i32 + 1)));
    assert_eq!(st.epoch, epoch2.max(st.epoch));
    assert_eq!(st.voters.len(), 3);
    assert!(st.high_watermark > off_c);
    for n in nodes.into_iter().flatten() {
        n.close();
    }
}

/// A leader cut off from the other voters stops being the active leader
/// once it resigns (check-quorum), although the core keeps its epoch and
/// leader id, and a proposal bound to its old epoch (a controller's
/// decision: `propose_in_epoch`) is refused there and after it learned the
/// new leader, instead of being forwarded. Before this, a cut-off active
/// controller kept deciding on its stale image (fencing the brokers it no
/// longer heard, shrinking ISRs to itself) and its proposals, forwarded to
/// the new leader once the cut healed, were committed: partitions stayed
/// offline with ISR = [the cut node].
#[test]
fn a_deposed_leaders_epoch_bound_proposals_go_nowhere() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let voters: Vec<Voter> = (1..=3)
        .map(|id| Voter {
            id: NodeId(id),
            addr: free_addr(),
        })
        .collect();
    let seen: Vec<Seen> = (0..3).map(|_| Seen::default()).collect();
    let mut nodes: Vec<Option<RaftQuorum>> = (0..3)
        .map(|i| Some(open(dirs[i].path(), i as i32 + 1, &voters, seen[i].clone())))
        .collect();
    let first = wait_for("a first leader", || leader(&nodes));
    let me = NodeId(first as i32 + 1);
    let epoch1 = wait_for("the leader to be active", || {
        nodes[first].as_ref().unwrap().active_epoch()
    });
    let q = nodes[first].as_ref().unwrap();
    q.propose_in_epoch(epoch1, vec![rec("decided-while-leading")])
        .wait_blocking()
        .unwrap();
    // Bound to an epoch it does not lead: refused at once.
    let ahead = LeaderEpoch(epoch1.0 + 1);
    assert!(matches!(
        q.propose_in_epoch(ahead, vec![rec("wrong-epoch")])
            .wait_blocking(),
        Err(MetadataError::NoLeader(_))
    ));

    // Cut the leader off: the others stop.
    let others: Vec<usize> = (0..3).filter(|i| *i != first).collect();
    for &i in &others {
        nodes[i].take().unwrap().close();
    }
    wait_for("the cut-off leader to resign", || {
        (!nodes[first].as_ref().unwrap().is_active_leader()).then_some(())
    });
    let q = nodes[first].as_ref().unwrap();
    assert_eq!(
        q.leader_and_epoch(),
        (Some(me), epoch1),
        "a resigned leader keeps its epoch and leader id"
    );
    assert_eq!(q.active_epoch(), None);
    let refused = |q: &RaftQuorum, what: &str| {
        let r = q.propose_in_epoch(epoch1, vec![rec(what)]).wait_blocking();
        assert!(
            matches!(r, Err(MetadataError::NoLeader(_))),
            "{what}: {r:?}"
        );
    };
    refused(q, "decided-after-resigning");

    // The others come back and the three agree on a leader of a later
    // epoch (any of them: the old leader may win it); a decision of the old
    // epoch still goes nowhere.
    for &i in &others {
        seen[i].lock().clear();
        nodes[i] = Some(open(dirs[i].path(), i as i32 + 1, &voters, seen[i].clone()));
    }
    let (second, epoch2) = wait_for("an active leader of a later epoch", || {
        let l = leader(&nodes)?;
        let e = nodes[l].as_ref().unwrap().active_epoch()?;
        (e > epoch1).then_some((l, e))
    });
    refused(nodes[first].as_ref().unwrap(), "decided-after-deposed");
    let off = nodes[second]
        .as_ref()
        .unwrap()
        .propose_in_epoch(epoch2, vec![rec("decided-by-the-new-leader")])
        .wait_blocking()
        .unwrap();
    wait_for("every node to have the new leader's batch", || {
        seen.iter()
            .all(|s| s.lock().iter().any(|(o, _)| *o == off))
            .then_some(())
    });
    for (i, s) in seen.iter().enumerate() {
        let values: Vec<Vec<Bytes>> = s.lock().iter().map(|(_, r)| r.clone()).collect();
        let got: Vec<_> = values.concat();
        assert!(
            !got.iter().any(|r| r.starts_with(b"decided-after")),
            "node {}: a deposed leader's decision was committed: {got:?}",
            i + 1
        );
        assert!(got.contains(&rec("decided-by-the-new-leader")));
    }
    for n in nodes.into_iter().flatten() {
        n.close();
    }
}

/// A node outside the voter set (a broker-only node, `process.roles=broker`)
/// binds no CONTROLLER listener, follows the quorum as an observer, sees
/// every committed batch in order and never leads, also when the leader
/// stops and another voter takes over.
#[test]
fn an_observer_without_a_listener_follows_the_voters_through_a_failover() {
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let voters: Vec<Voter> = (1..=3)
        .map(|id| Voter {
            id: NodeId(id),
            addr: free_addr(),
        })
        .collect();
    let seen: Vec<Seen> = (0..4).map(|_| Seen::default()).collect();
    let mut nodes: Vec<Option<RaftQuorum>> = (0..3)
        .map(|i| Some(open(dirs[i].path(), i as i32 + 1, &voters, seen[i].clone())))
        .collect();
    let mut cfg = RaftQuorumConfig::new(NodeId(100), "kraftnet-test".into(), voters.clone(), None);
    cfg.election_timeout_ms = 150;
    cfg.fetch_timeout_ms = 300;
    // A voter id with no listener, or an observer with one, is refused.
    let as_voter = RaftQuorumConfig::new(NodeId(1), "kraftnet-test".into(), voters.clone(), None);
    assert!(RaftQuorum::open(
        &fjord_storage::Storage::default(),
        dirs[3].path(),
        as_voter,
        Box::new(Recorder(Seen::default())),
    )
    .is_err());
    let observer = RaftQuorum::open(
        &fjord_storage::Storage::default(),
        dirs[3].path(),
        cfg,
        Box::new(Recorder(seen[3].clone())),
    )
    .unwrap();
    assert_eq!(observer.local_addr(), None);

    // With 150 ms election timeouts a loaded machine may see an extra
    // election at any moment: proposals go to whoever leads when they are
    // made, and the observer is asked to agree with the voters' current
    // leader rather than with one remembered earlier.
    let first = propose_on_leader(&nodes, vec![rec("o1"), rec("o2")]);
    let has = |s: &Seen, want: &str| s.lock().iter().any(|(_, r)| r.iter().any(|b| b == want));
    wait_for("the observer to apply o1, o2", || {
        has(&seen[3], "o2").then_some(())
    });
    let observer_agrees = |nodes: &[Option<RaftQuorum>]| {
        let l = leader(nodes)?;
        (observer.leader_and_epoch().0 == Some(NodeId(l as i32 + 1))).then_some(l)
    };
    wait_for("the observer to name the voters' leader", || {
        observer_agrees(&nodes)
    });

    nodes[first].take().unwrap().close();
    let second = propose_on_leader(&nodes, vec![rec("o3")]);
    assert_ne!(second, first, "a closed node does not lead");
    wait_for("the observer to apply o3 from the new leader", || {
        has(&seen[3], "o3").then_some(())
    });
    let now = wait_for("the observer to follow the new leader", || {
        observer_agrees(&nodes)
    });
    assert_ne!(now, first, "the observer follows a running voter");
    // It holds what a surviving voter holds, in the same order.
    let records =
        |s: &Seen| -> Vec<Bytes> { s.lock().iter().flat_map(|(_, r)| r.clone()).collect() };
    wait_for("the observer to hold what the leader holds", || {
        (records(&seen[3]) == records(&seen[now])).then_some(())
    });
    observer.close();
    for n in nodes.into_iter().flatten() {
        n.close();
    }
}
