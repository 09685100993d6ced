use super::*;
use fjord_protocol::metadata_records::FeatureLevelRecord;

const MV: i16 = 27;

fn base_image() -> MetadataImage {
    let mut d = MetadataDelta::new(&MetadataImage::empty("c1"));
    d.replay(&MetadataRecord::FeatureLevel(FeatureLevelRecord {
        name: fjord_metadata::image::METADATA_VERSION_FEATURE.into(),
        feature_level: MV,
        ..Default::default()
    }))
    .unwrap();
    d.set_end_offset(Offset(1));
    d.apply()
}

fn registration(id: i32, incarnation: u128, rack: Option<&str>) -> BrokerRegistration {
    BrokerRegistration {
        broker_id: NodeId(id),
        cluster_id: "c1".into(),
        incarnation_id: Uuid::from_u128(incarnation),
        listeners: vec![Listener {
            name: "PLAINTEXT".into(),
            host: "localhost".into(),
            port: 9092,
            security_protocol: 0,
        }],
        log_dirs: Vec::new(),
        previous_broker_epoch: -1,
        rack: rack.map(str::to_string),
        features: vec![FeatureRange {
            name: fjord_metadata::image::METADATA_VERSION_FEATURE.into(),
            min: 1,
            max: MV,
        }],
    }
}

fn heartbeat(id: i32, epoch: i64, offset: i64) -> BrokerHeartbeat {
    BrokerHeartbeat {
        broker_id: NodeId(id),
        broker_epoch: epoch,
        current_metadata_offset: offset,
        want_fence: false,
        want_shut_down: false,
    }
}

fn controller() -> Controller {
    Controller::activate(
        ControllerConfig {
            leader_imbalance_check_interval_ms: 1_000,
            ..Default::default()
        },
        base_image(),
        0,
    )
}

/// Registers and unfences brokers `1..=n`; returns their epochs.
fn cluster(c: &mut Controller, n: i32, racks: bool) -> Vec<i64> {
    let mut epochs = Vec::new();
    for id in 1..=n {
        let rack = racks.then(|| ["a", "b", "c"][(id as usize - 1) % 3]);
        let r = c
            .register_broker(0, &registration(id, id as u128, rack))
            .unwrap();
        epochs.push(r.response);
    }
    let end = c.image().end_offset().0;
    for (i, e) in epochs.iter().enumerate() {
        let r = c.heartbeat(0, &heartbeat(i as i32 + 1, *e, end)).unwrap();
        assert!(!r.response.is_fenced);
    }
    epochs
}

#[test]
fn registration_epoch_is_the_record_offset_and_starts_fenced() {
    let mut c = controller();
    let r = c
        .register_broker(5, &registration(1, 1, Some("r1")))
        .unwrap();
    assert_eq!(
        r.response, 1,
        "the record lands at offset 1 (after the feature level)"
    );
    assert_eq!(r.records.len(), 1);
    let MetadataRecord::RegisterBroker(rec) = &r.records[0] else {
        panic!("{:?}", r.records)
    };
    assert!(rec.fenced && !rec.in_controlled_shutdown);
    assert_eq!(rec.rack.as_deref(), Some("r1"));
    assert_eq!(rec.incarnation_id, Uuid::from_u128(1));
    assert_eq!(rec.end_points[0].port, 9092);
    assert_eq!(rec.broker_epoch, 1);
    let r2 = c.register_broker(5, &registration(2, 2, None)).unwrap();
    assert_eq!(r2.response, 2);
    // The same incarnation again (a retry) gets a new epoch.
    let r3 = c.register_broker(6, &registration(1, 1, None)).unwrap();
    assert_eq!(r3.response, 3);
}

#[test]
fn registration_errors_as_kafka() {
    let mut c = controller();
    let mut wrong = registration(1, 1, None);
    wrong.cluster_id = "other".into();
    assert_eq!(
        c.register_broker(0, &wrong).unwrap_err().code,
        ErrorCode::INCONSISTENT_CLUSTER_ID
    );
    let mut old = registration(1, 1, None);
    old.features[0].max = MV - 1;
    assert_eq!(
        c.register_broker(0, &old).unwrap_err().code,
        ErrorCode::UNSUPPORTED_VERSION
    );
    let mut none = registration(1, 1, None);
    none.features.clear();
    assert_eq!(
        c.register_broker(0, &none).unwrap_err().code,
        ErrorCode::UNSUPPORTED_VERSION
    );
    assert_eq!(c.image().brokers().len(), 0, "refusals change nothing");

    let epochs = cluster(&mut c, 1, false);
    // A second process with the same id while the first one's session lives.
    let dup = c
        .register_broker(1_000, &registration(1, 99, None))
        .unwrap_err();
    assert_eq!(dup.code, ErrorCode::DUPLICATE_BROKER_REGISTRATION);
    // Once the session is over (fenced by the timeout), it may.
    let t = c.tick(20_000);
    assert!(!t.records.is_empty());
    let r = c
        .register_broker(20_001, &registration(1, 99, None))
        .unwrap();
    assert!(r.response > epochs[0]);
    // The old epoch is stale now.
    assert_eq!(
        c.heartbeat(20_002, &heartbeat(1, epochs[0], 100))
            .unwrap_err()
            .code,
        ErrorCode::STALE_BROKER_EPOCH
    );
    assert_eq!(
        c.heartbeat(20_002, &heartbeat(7, 1, 100)).unwrap_err().code,
        ErrorCode::BROKER_ID_NOT_REGISTERED
    );
}

#[test]
fn log_directories_are_kept_in_the_registration_as_kafka_checks_them() {
    let mut c = controller();
    // An Apache Kafka broker sends its log directory ids and registers
    // again until the record it reads back carries them.
    let mut kafka = registration(4, 4, None);
    kafka.log_dirs = vec![Uuid::from_u128(1 << 100), Uuid::from_u128(2 << 100)];
    let r = c.register_broker(0, &kafka).unwrap();
    let MetadataRecord::RegisterBroker(rec) = &r.records[0] else {
        panic!("{:?}", r.records)
    };
    assert_eq!(rec.log_dirs, kafka.log_dirs);
    assert_eq!(
        c.image().broker(NodeId(4)).map(|b| b.log_dirs.clone()),
        Some(kafka.log_dirs.clone()),
        "the image keeps them (snapshots carry them on)"
    );
    let mut twice = registration(5, 5, None);
    twice.log_dirs = vec![Uuid::from_u128(7 << 100), Uuid::from_u128(7 << 100)];
    let mut reserved = registration(5, 5, None);
    reserved.log_dirs = vec![Uuid::from_u128(1)]; // Kafka's DirectoryId.LOST
    for bad in [twice, reserved] {
        assert_eq!(
            c.register_broker(0, &bad).unwrap_err().code,
            ErrorCode::INVALID_REGISTRATION
        );
    }
    assert!(
        c.image().broker(NodeId(5)).is_none(),
        "refusals change nothing"
    );
}

#[test]
fn unfenced_once_caught_up_with_its_registration() {
    let mut c = controller();
    let epoch = c
        .register_broker(0, &registration(1, 1, None))
        .unwrap()
        .response;
    let r = c.heartbeat(10, &heartbeat(1, epoch, epoch - 1)).unwrap();
    assert!(r.records.is_empty());
    assert!(r.response.is_fenced && !r.response.is_caught_up);
    let r = c.heartbeat(20, &heartbeat(1, epoch, epoch)).unwrap();
    assert!(!r.response.is_fenced && r.response.is_caught_up);
    assert_eq!(
        r.records,
        vec![MetadataRecord::BrokerRegistrationChange(
            BrokerRegistrationChangeRecord {
                broker_id: 1,
                broker_epoch: epoch,
                fenced: -1,
                in_controlled_shutdown: 0,
                ..Default::default()
            }
        )]
    );
    assert!(!c.image().broker(NodeId(1)).unwrap().fenced);
}

fn topic(name: &str, partitions: i32, rf: i16) -> NewTopic {
    NewTopic {
        name: name.into(),
        num_partitions: partitions,
        replication_factor: rf,
        ..Default::default()
    }
}

fn partitions(c: &Controller, name: &str) -> Vec<PartitionRegistration> {
    c.image()
        .topics()
        .get(name)
        .unwrap()
        .partitions
        .values()
        .cloned()
        .collect()
}

#[test]
fn create_topics_places_replicas_and_answers_kafka_errors() {
    let mut c = controller();
    cluster(&mut c, 3, true);
    let r = c.create_topics(
        &[
            topic("a", 6, 3),
            topic("b", 1, 4),
            topic("a", 1, 1),
            topic("bad name!", 1, 1),
            topic("c", 0, 1),
            topic("d", -1, -1),
            topic("__cluster_metadata", 1, 1),
        ],
        2,
        1,
        false,
    );
    let codes: Vec<ErrorCode> = r
        .response
        .iter()
        .map(|x| x.as_ref().map_or_else(|e| e.code, |_| ErrorCode::NONE))
        .collect();
    assert_eq!(
        codes,
        vec![
            ErrorCode::NONE,
            ErrorCode::INVALID_REPLICATION_FACTOR,
            ErrorCode::TOPIC_ALREADY_EXISTS,
            ErrorCode::INVALID_TOPIC_EXCEPTION,
            ErrorCode::INVALID_PARTITIONS,
            ErrorCode::NONE,
            ErrorCode::INVALID_REQUEST,
        ]
    );
    let a = partitions(&c, "a");
    let mut leaders = BTreeMap::new();
    for p in &a {
        assert_eq!(p.replicas.len(), 3);
        assert_eq!(p.isr, p.replicas);
        assert_eq!(p.leader, p.replicas[0]);
        assert_eq!((p.leader_epoch, p.partition_epoch), (0, 0));
        *leaders.entry(p.leader).or_insert(0) += 1;
    }
    assert_eq!(leaders.values().copied().collect::<Vec<_>>(), vec![2, 2, 2]);
    assert_eq!(partitions(&c, "d").len(), 2, "the defaults");
    assert_eq!(partitions(&c, "d")[0].replicas.len(), 1);
    check_image(c.image()).unwrap();
    // validate_only: answers, no records.
    let v = c.create_topics(&[topic("e", 1, 1)], 1, 1, true);
    assert!(v.records.is_empty() && v.response[0].is_ok());
    assert!(c.image().topics().get("e").is_none());
}

#[test]
fn a_topic_over_one_proposals_records_is_a_policy_violation() {
    let mut c = controller();
    cluster(&mut c, 3, false);
    // 10,000 partitions are 10,001 records with the topic's own: Kafka
    // answers POLICY_VIOLATION, not a failed proposal.
    let r = c.create_topics(&[topic("huge", 10_000, 1)], 1, 1, false);
    let err = r.response[0].as_ref().unwrap_err();
    assert_eq!(err.code, ErrorCode::POLICY_VIOLATION);
    assert!(r.records.is_empty());
    assert!(c.image().topics().get("huge").is_none());
    let r = c.create_topics(&[topic("big", 9_999, 1)], 1, 1, false);
    assert!(r.response[0].is_ok(), "{:?}", r.response[0]);
    assert_eq!(r.records.len(), 10_000);
}

#[test]
fn manual_assignments_are_checked() {
    let mut c = controller();
    cluster(&mut c, 2, false);
    let manual = |a: Vec<Vec<i32>>| NewTopic {
        name: "m".into(),
        num_partitions: -1,
        replication_factor: -1,
        assignments: a,
        ..Default::default()
    };
    for bad in [
        vec![vec![1, 1]],
        vec![vec![3]],
        vec![vec![1, 2], vec![1]],
        vec![vec![]],
    ] {
        let r = c.create_topics(&[manual(bad.clone())], 1, 1, false);
        assert_eq!(
            r.response[0].as_ref().unwrap_err().code,
            ErrorCode::INVALID_REPLICA_ASSIGNMENT,
            "{bad:?}"
        );
    }
    let r = c.create_topics(&[manual(vec![vec![2, 1], vec![1, 2]])], 1, 1, false);
    assert!(r.response[0].is_ok());
    let p = partitions(&c, "m");
    assert_eq!((p[0].leader, p[1].leader), (2, 1));
}

#[test]
fn fencing_moves_leadership_within_the_isr() {
    let mut c = controller();
    let epochs = cluster(&mut c, 3, false);
    c.create_topics(&[topic("a", 3, 2), topic("solo", 1, 1)], 1, 1, false);
    let solo_leader = partitions(&c, "solo")[0].leader;
    let before = partitions(&c, "a");
    // Brokers other than 1 keep heartbeating; broker 1 goes silent.
    for id in 2..=3 {
        c.heartbeat(8_000, &heartbeat(id, epochs[id as usize - 1], 100))
            .unwrap();
    }
    let r = c.tick(9_500);
    assert!(matches!(
        r.records.last(),
        Some(MetadataRecord::BrokerRegistrationChange(
            BrokerRegistrationChangeRecord {
                broker_id: 1,
                fenced: 1,
                ..
            }
        ))
    ));
    let after = partitions(&c, "a");
    for (b, a) in before.iter().zip(&after) {
        assert!(!a.isr.contains(&1) || a.isr == vec![1], "{a:?}");
        assert_ne!(a.leader, 1);
        if b.leader == 1 {
            assert_eq!(
                a.leader_epoch,
                b.leader_epoch + 1,
                "a new leader bumps the epoch"
            );
            assert!(a.isr.contains(&a.leader));
        } else {
            assert_eq!(a.leader_epoch, b.leader_epoch, "only the ISR shrank");
        }
        if b.isr.contains(&1) {
            assert_eq!(a.partition_epoch, b.partition_epoch + 1);
        }
    }
    // A partition whose only replica is fenced has no leader; its ISR stays.
    if solo_leader == 1 {
        let s = &partitions(&c, "solo")[0];
        assert_eq!((s.leader, s.isr.clone()), (NO_LEADER, vec![1]));
    }
    check_image(c.image()).unwrap();
    // Broker 1 comes back: new incarnation, fenced until caught up, then
    // it leads the leaderless partitions whose ISR holds it.
    let e = c
        .register_broker(10_000, &registration(1, 50, None))
        .unwrap()
        .response;
    let end = c.image().end_offset().0;
    c.heartbeat(10_001, &heartbeat(1, e, end)).unwrap();
    if solo_leader == 1 {
        assert_eq!(partitions(&c, "solo")[0].leader, 1);
    }
    check_image(c.image()).unwrap();
}

fn fenced(c: &Controller, id: i32) -> bool {
    c.image().broker(NodeId(id)).is_some_and(|b| b.fenced)
}

#[test]
fn a_closed_connection_fences_before_the_session_ends() {
    let mut c = controller();
    let epochs = cluster(&mut c, 3, false);
    c.create_topics(&[topic("a", 3, 3)], 1, 1, false);
    let grace = c.config().disconnect_fence_ms.unwrap();
    assert!(grace < c.config().session_timeout_ms);
    // Broker 1's connection closes at 1,000: nothing happens within the grace.
    c.connection_lost(NodeId(1), 1_000);
    assert!(c.tick(1_000 + grace).records.is_empty());
    assert!(!fenced(&c, 1));
    // Past it, with no heartbeat since: fenced, long before the session ends.
    let r = c.tick(1_001 + grace);
    assert!(!r.records.is_empty());
    assert!(fenced(&c, 1));
    for p in partitions(&c, "a") {
        assert_ne!(p.leader, 1);
        assert!(!p.isr.contains(&1), "{p:?}");
    }
    check_image(c.image()).unwrap();
    // Broker 2's connection closes, but it reconnects and heartbeats within
    // the grace: it stays unfenced until its session ends.
    c.connection_lost(NodeId(2), 2_000);
    c.heartbeat(2_100, &heartbeat(2, epochs[1], c.image().end_offset().0))
        .unwrap();
    assert!(c.tick(2_000 + 2 * grace).records.is_empty());
    assert!(!fenced(&c, 2));
    // A close noticed after a heartbeat on the new connection says nothing.
    c.heartbeat(2_200, &heartbeat(3, epochs[2], c.image().end_offset().0))
        .unwrap();
    c.connection_lost(NodeId(3), 2_150);
    assert!(c.tick(2_200 + 2 * grace).records.is_empty());
    assert!(!fenced(&c, 3));
    // A newly active controller fences the brokers that do not heartbeat
    // to it within `activation_fence_ms` (a dead controller's own broker).
    let image = c.image().clone();
    let mut next = Controller::activate(ControllerConfig::default(), image.clone(), 10_000);
    let grace = next.config().activation_fence_ms.unwrap();
    assert!(grace < next.config().session_timeout_ms);
    let end = next.image().end_offset().0;
    next.heartbeat(10_500, &heartbeat(2, epochs[1], end))
        .unwrap();
    assert!(next.tick(10_000 + grace).records.is_empty());
    next.tick(10_001 + grace);
    assert!(fenced(&next, 3), "silent since the activation");
    assert!(!fenced(&next, 2), "heartbeated to the new controller");
    check_image(next.image()).unwrap();
    // Only the brokers that are quorum voters get the activation grace: a
    // broker-only node (3 here) has its whole session to find the new
    // controller through its metadata fetches.
    let mut next = Controller::activate(
        ControllerConfig {
            activation_fence_only: Some(vec![NodeId(1), NodeId(2)]),
            ..Default::default()
        },
        image,
        10_000,
    );
    assert!(!fenced(&next, 2) && !fenced(&next, 3));
    next.tick(10_001 + grace);
    assert!(!fenced(&next, 3), "a broker-only node gets its session");
    assert!(fenced(&next, 2), "a silent voter is fenced after the grace");
    next.tick(10_001 + next.config().session_timeout_ms);
    assert!(fenced(&next, 3), "its session expired");
    // A voter that fetched the metadata log from the new controller's node
    // since the activation lives: it is not fenced for not having
    // heartbeated yet (a loaded node, or one that found the new leader
    // late); only its session, from the activation, fences it. A fetch
    // from before the activation proves nothing.
    let mut before = controller();
    cluster(&mut before, 3, false);
    before.create_topics(&[topic("a", 3, 3)], 1, 1, false);
    let image = before.image().clone();
    let mut next = Controller::activate(ControllerConfig::default(), image, 20_000);
    assert!(next.awaits_activation_contact());
    next.quorum_fetched(NodeId(1), 19_999);
    next.quorum_fetched(NodeId(2), 20_300);
    next.tick(20_001 + grace);
    assert!(fenced(&next, 1), "silent since the activation");
    assert!(!fenced(&next, 2), "fetched from the new controller's node");
    assert!(fenced(&next, 3), "silent since the activation");
    assert!(!next.awaits_activation_contact());
    next.tick(20_000 + next.config().session_timeout_ms);
    assert!(!fenced(&next, 2), "its session runs from the activation");
    next.tick(20_001 + next.config().session_timeout_ms);
    assert!(fenced(&next, 2), "no heartbeat within its session");
    // Without a grace configured only the session fences.
    let mut c = Controller::activate(
        ControllerConfig {
            disconnect_fence_ms: None,
            activation_fence_ms: None,
            ..Default::default()
        },
        base_image(),
        0,
    );
    cluster(&mut c, 1, false);
    c.connection_lost(NodeId(1), 0);
    assert!(c.tick(1_000).records.is_empty());
    assert!(!fenced(&c, 1));
}

#[test]
fn controlled_shutdown_moves_leadership_first() {
    let mut c = controller();
    let epochs = cluster(&mut c, 3, false);
    c.create_topics(&[topic("a", 3, 3)], 1, 1, false);
    let mut hb = heartbeat(1, epochs[0], c.image().end_offset().0);
    hb.want_shut_down = true;
    let r = c.heartbeat(100, &hb).unwrap();
    assert!(r.response.in_controlled_shutdown && !r.response.should_shut_down);
    assert!(partitions(&c, "a")
        .iter()
        .all(|p| p.leader != 1 && !p.isr.contains(&1)));
    // Granted once every active broker has seen the changes.
    let end = c.image().end_offset().0;
    for id in 2..=3 {
        c.heartbeat(200, &heartbeat(id, epochs[id as usize - 1], end))
            .unwrap();
    }
    hb.current_metadata_offset = end;
    let r = c.heartbeat(300, &hb).unwrap();
    assert!(r.response.should_shut_down && r.response.is_fenced);
    assert!(c.image().broker(NodeId(1)).unwrap().fenced);
    check_image(c.image()).unwrap();
}

#[test]
fn preferred_election_and_auto_rebalance() {
    let mut c = controller();
    let epochs = cluster(&mut c, 2, false);
    c.create_topics(&[topic("a", 2, 2)], 1, 1, false);
    let preferred: Vec<i32> = partitions(&c, "a").iter().map(|p| p.replicas[0]).collect();
    assert_eq!(
        c.elect_preferred_leaders(&[("a".into(), 0), ("x".into(), 0)])
            .response
            .iter()
            .map(|r| r.as_ref().unwrap_err().code)
            .collect::<Vec<_>>(),
        vec![
            ErrorCode::ELECTION_NOT_NEEDED,
            ErrorCode::UNKNOWN_TOPIC_OR_PARTITION
        ]
    );
    // Broker 1 shuts down and comes back: its leaderships went to 2.
    let mut hb = heartbeat(1, epochs[0], 1_000);
    hb.want_fence = true;
    c.heartbeat(10, &hb).unwrap();
    assert!(partitions(&c, "a").iter().all(|p| p.leader == 2));
    hb.want_fence = false;
    c.heartbeat(20, &hb).unwrap();
    assert!(!c.image().broker(NodeId(1)).unwrap().fenced);
    // Broker 1 is not in the ISRs any more (ISR growth is replication's
    // job): it cannot be elected.
    let r = c.elect_preferred_leaders(&[(
        "a".into(),
        preferred.iter().position(|&p| p == 1).unwrap() as i32,
    )]);
    assert_eq!(
        r.response[0].as_ref().unwrap_err().code,
        ErrorCode::PREFERRED_LEADER_NOT_AVAILABLE
    );
    // Put it back in the ISR (as an AlterPartition would), then the
    // rebalance elects it.
    let t = c.image().topics().get("a").unwrap().clone();
    let grow: Vec<MetadataRecord> = t
        .partitions
        .keys()
        .map(|i| {
            MetadataRecord::PartitionChange(PartitionChangeRecord {
                partition_id: *i,
                topic_id: t.id,
                isr: Some(vec![1, 2]),
                leader: NO_LEADER_CHANGE,
                leader_recovery_state: -1,
                ..Default::default()
            })
        })
        .collect();
    c.replay(&grow);
    for id in 1..=2 {
        c.heartbeat(500, &heartbeat(id, epochs[id as usize - 1], 1_000))
            .unwrap();
    }
    let r = c.tick(1_500);
    assert!(!r.records.is_empty());
    let now: Vec<i32> = partitions(&c, "a").iter().map(|p| p.leader).collect();
    assert_eq!(now, preferred);
    assert!(c.tick(1_600).records.is_empty(), "nothing left to move");
}

#[test]
fn producer_id_blocks_follow_each_other() {
    let mut c = controller();
    let epochs = cluster(&mut c, 2, false);
    let a = c.allocate_producer_ids(NodeId(1), epochs[0]).unwrap();
    let b = c.allocate_producer_ids(NodeId(2), epochs[1]).unwrap();
    assert_eq!(
        a.response,
        ProducerIdBlock {
            first: 0,
            size: 1000
        }
    );
    assert_eq!(
        b.response,
        ProducerIdBlock {
            first: 1000,
            size: 1000
        }
    );
    assert_eq!(
        b.records,
        vec![MetadataRecord::ProducerIds(ProducerIdsRecord {
            broker_id: 2,
            broker_epoch: epochs[1],
            next_producer_id: 2000,
            ..Default::default()
        })]
    );
    assert_eq!(
        c.allocate_producer_ids(NodeId(1), epochs[0] + 1)
            .unwrap_err()
            .code,
        ErrorCode::STALE_BROKER_EPOCH
    );
    // A failed proposal is forgotten: the next block starts where the committed one ends.
    let committed = c.image().clone();
    c.allocate_producer_ids(NodeId(1), epochs[0]).unwrap();
    c.reset(committed);
    assert_eq!(
        c.allocate_producer_ids(NodeId(1), epochs[0])
            .unwrap()
            .response
            .first,
        2000
    );
}

#[test]
fn create_partitions_as_kafka() {
    let mut c = controller();
    cluster(&mut c, 3, false);
    c.create_topics(&[topic("a", 2, 2)], 1, 1, false);
    assert_eq!(
        c.create_partitions("a", 2, &[], false).unwrap_err().code,
        ErrorCode::INVALID_PARTITIONS
    );
    assert_eq!(
        c.create_partitions("a", 1, &[], false).unwrap_err().code,
        ErrorCode::INVALID_PARTITIONS
    );
    assert_eq!(
        c.create_partitions("x", 3, &[], false).unwrap_err().code,
        ErrorCode::UNKNOWN_TOPIC_OR_PARTITION
    );
    assert_eq!(
        c.create_partitions("a", 3, &[vec![1]], false)
            .unwrap_err()
            .code,
        ErrorCode::INVALID_REPLICA_ASSIGNMENT
    );
    assert!(c
        .create_partitions("a", 4, &[], true)
        .unwrap()
        .records
        .is_empty());
    let r = c.create_partitions("a", 4, &[], false).unwrap();
    assert_eq!(r.records.len(), 2);
    let p = partitions(&c, "a");
    assert_eq!(p.len(), 4);
    assert!(p.iter().all(|x| x.replicas.len() == 2));
    check_image(c.image()).unwrap();
}

#[test]
fn check_image_finds_violations() {
    let mut c = controller();
    cluster(&mut c, 2, false);
    c.create_topics(&[topic("a", 1, 2)], 1, 1, false);
    let t = c.image().topics().get("a").unwrap().clone();
    let leader = t.partitions[&0].leader;
    let epoch = c.image().broker(NodeId(leader)).unwrap().broker_epoch;
    // Fence the leader behind the controller's back.
    let mut bad = c.clone();
    bad.replay(&[MetadataRecord::BrokerRegistrationChange(
        BrokerRegistrationChangeRecord {
            broker_id: leader,
            broker_epoch: epoch,
            fenced: 1,
            ..Default::default()
        },
    )]);
    assert!(check_image(bad.image())
        .unwrap_err()
        .contains("fenced broker"));
    // A leader outside the ISR.
    let mut bad = c.clone();
    bad.replay(&[MetadataRecord::PartitionChange(PartitionChangeRecord {
        partition_id: 0,
        topic_id: t.id,
        isr: Some(vec![3 - leader]),
        leader: NO_LEADER_CHANGE,
        leader_recovery_state: -1,
        ..Default::default()
    })]);
    assert!(check_image(bad.image())
        .unwrap_err()
        .contains("not in the ISR"));
    // No leader although an active ISR member exists.
    let mut bad = c.clone();
    bad.replay(&[MetadataRecord::PartitionChange(PartitionChangeRecord {
        partition_id: 0,
        topic_id: t.id,
        leader: NO_LEADER,
        leader_recovery_state: -1,
        ..Default::default()
    })]);
    assert!(check_image(bad.image()).unwrap_err().contains("no leader"));
    check_image(c.image()).unwrap();
}

mod alter_partition {
    use super::*;
    use crate::alter_partition::{AlterPartitionData, AlterPartitionRequest};

    /// Three brokers, topic "r" with one partition on all three.
    fn setup() -> (Controller, Vec<i64>, Uuid, PartitionRegistration) {
        let mut c = controller();
        let epochs = cluster(&mut c, 3, false);
        c.create_topics(&[topic("r", 1, 3)], 1, 1, false);
        let t = c.image().topics().get("r").unwrap().clone();
        let p = t.partitions[&0].clone();
        assert_eq!(p.isr.len(), 3);
        (c, epochs, t.id, p)
    }

    fn request(
        epochs: &[i64],
        topic_id: Uuid,
        p: &PartitionRegistration,
        isr: &[i32],
    ) -> AlterPartitionRequest {
        AlterPartitionRequest {
            broker_id: NodeId(p.leader),
            broker_epoch: epochs[p.leader as usize - 1],
            partitions: vec![AlterPartitionData {
                topic_id,
                partition_index: 0,
                leader_epoch: p.leader_epoch,
                partition_epoch: p.partition_epoch,
                new_isr: isr.iter().map(|r| (*r, epochs[*r as usize - 1])).collect(),
            }],
        }
    }

    fn code(c: &mut Controller, req: &AlterPartitionRequest) -> ErrorCode {
        let r = c.alter_partition(req).unwrap();
        assert!(r.records.is_empty(), "a refused change makes no record");
        r.response[0].2.clone().unwrap_err()
    }

    #[test]
    fn the_leader_shrinks_and_expands_its_isr() {
        let (mut c, epochs, id, p) = setup();
        let follower = *p.isr.iter().find(|r| **r != p.leader).unwrap();
        let smaller: Vec<i32> = p.isr.iter().copied().filter(|r| *r != follower).collect();
        let r = c
            .alter_partition(&request(&epochs, id, &p, &smaller))
            .unwrap();
        assert_eq!(r.records.len(), 1);
        let got = r.response[0].2.clone().unwrap();
        assert_eq!(got.isr, smaller);
        assert_eq!(got.leader_id, p.leader);
        assert_eq!(
            got.leader_epoch, p.leader_epoch,
            "an ISR change keeps the leader epoch"
        );
        assert_eq!(got.partition_epoch, p.partition_epoch + 1);
        let now = partitions(&c, "r")[0].clone();
        assert_eq!(
            (now.isr.clone(), now.partition_epoch),
            (smaller, p.partition_epoch + 1)
        );
        // Back to three, with the new partition epoch.
        let r = c
            .alter_partition(&request(&epochs, id, &now, &p.isr))
            .unwrap();
        assert_eq!(r.response[0].2.clone().unwrap().isr, p.isr);
        assert!(check_image(c.image()).is_ok());
        // A request that changes nothing gets the current state, no record.
        let now = partitions(&c, "r")[0].clone();
        let r = c
            .alter_partition(&request(&epochs, id, &now, &p.isr))
            .unwrap();
        assert!(r.records.is_empty());
        assert_eq!(
            r.response[0].2.clone().unwrap().partition_epoch,
            now.partition_epoch
        );
    }

    #[test]
    fn stale_and_invalid_requests_get_kafkas_errors() {
        let (mut c, epochs, id, p) = setup();
        let follower = *p.isr.iter().find(|r| **r != p.leader).unwrap();
        let two: Vec<i32> = p.isr.iter().copied().filter(|r| *r != follower).collect();
        let mut stale = request(&epochs, id, &p, &two);
        stale.partitions[0].partition_epoch -= 1;
        assert_eq!(code(&mut c, &stale), ErrorCode::INVALID_UPDATE_VERSION);
        let mut old_leader = request(&epochs, id, &p, &two);
        old_leader.partitions[0].leader_epoch -= 1;
        assert_eq!(code(&mut c, &old_leader), ErrorCode::FENCED_LEADER_EPOCH);
        let mut ahead = request(&epochs, id, &p, &two);
        ahead.partitions[0].leader_epoch += 1;
        assert_eq!(code(&mut c, &ahead), ErrorCode::NOT_CONTROLLER);
        let mut not_leader = request(&epochs, id, &p, &two);
        not_leader.broker_id = NodeId(follower);
        not_leader.broker_epoch = epochs[follower as usize - 1];
        assert_eq!(code(&mut c, &not_leader), ErrorCode::INVALID_REQUEST);
        let without_leader = request(&epochs, id, &p, &[follower]);
        assert_eq!(code(&mut c, &without_leader), ErrorCode::INVALID_REQUEST);
        let mut outsider = request(&epochs, id, &p, &two);
        outsider.partitions[0].new_isr.push((7, -1));
        assert!(matches!(
            c.alter_partition(&outsider),
            Ok(ref r) if r.response[0].2 == Err(ErrorCode::INVALID_REQUEST)
        ));
        let mut other_epoch = request(&epochs, id, &p, &p.isr);
        other_epoch.partitions[0].new_isr[1].1 += 100;
        assert_eq!(code(&mut c, &other_epoch), ErrorCode::INELIGIBLE_REPLICA);
        let mut unknown = request(&epochs, id, &p, &two);
        unknown.partitions[0].topic_id = Uuid::from_u128(99);
        assert_eq!(code(&mut c, &unknown), ErrorCode::UNKNOWN_TOPIC_ID);
        let mut stale_broker = request(&epochs, id, &p, &two);
        stale_broker.broker_epoch -= 1;
        assert_eq!(
            c.alter_partition(&stale_broker).unwrap_err().code,
            ErrorCode::STALE_BROKER_EPOCH
        );
        assert_eq!(partitions(&c, "r")[0], p, "nothing changed");
    }

    #[test]
    fn a_fenced_broker_cannot_rejoin_the_isr() {
        let (mut c, epochs, id, p) = setup();
        let follower = *p.isr.iter().find(|r| **r != p.leader).unwrap();
        let mut hb = heartbeat(follower, epochs[follower as usize - 1], 1_000);
        hb.want_fence = true;
        c.heartbeat(10, &hb).unwrap();
        let now = partitions(&c, "r")[0].clone();
        assert!(!now.isr.contains(&follower), "fencing removed it");
        assert_eq!(
            code(&mut c, &request(&epochs, id, &now, &p.isr)),
            ErrorCode::INELIGIBLE_REPLICA
        );
        hb.want_fence = false;
        c.heartbeat(20, &hb).unwrap();
        let r = c
            .alter_partition(&request(&epochs, id, &now, &p.isr))
            .unwrap();
        assert_eq!(r.response[0].2.clone().unwrap().isr, p.isr);
    }
}

mod reassignment {
    use super::*;
    use crate::alter_partition::{AlterPartitionData, AlterPartitionRequest};
    use crate::reassignment::{ongoing, Reassignment};

    /// Four brokers, topic "m" with one partition on 1, 2, 3 (1 leads).
    fn setup() -> (Controller, Vec<i64>, Uuid) {
        let mut c = controller();
        let epochs = cluster(&mut c, 4, false);
        let t = NewTopic {
            name: "m".into(),
            num_partitions: -1,
            replication_factor: -1,
            assignments: vec![vec![1, 2, 3]],
            ..Default::default()
        };
        let r = c.create_topics(&[t], 1, 1, false);
        assert!(r.response[0].is_ok());
        let id = c.image().topics().get("m").unwrap().id;
        (c, epochs, id)
    }

    fn part(c: &Controller) -> PartitionRegistration {
        partitions(c, "m")[0].clone()
    }

    fn reassign(c: &mut Controller, target: Option<Vec<i32>>) -> Result<(), ControllerError> {
        let r = c.alter_partition_reassignments(
            &[Reassignment {
                topic: "m".into(),
                partition: 0,
                replicas: target,
            }],
            true,
        );
        check_image(c.image()).unwrap();
        r.response.into_iter().next().unwrap()
    }

    /// The leader asks for `isr`; the partition's answer.
    fn alter_isr(
        c: &mut Controller,
        epochs: &[i64],
        id: Uuid,
        isr: &[i32],
    ) -> Result<crate::alter_partition::AlteredPartition, ErrorCode> {
        let p = part(c);
        let req = AlterPartitionRequest {
            broker_id: NodeId(p.leader),
            broker_epoch: epochs[p.leader as usize - 1],
            partitions: vec![AlterPartitionData {
                topic_id: id,
                partition_index: 0,
                leader_epoch: p.leader_epoch,
                partition_epoch: p.partition_epoch,
                new_isr: isr.iter().map(|r| (*r, epochs[*r as usize - 1])).collect(),
            }],
        };
        let r = c.alter_partition(&req).unwrap();
        check_image(c.image()).unwrap();
        r.response.into_iter().next().unwrap().2
    }

    #[test]
    fn moving_off_the_leader_copies_first_then_drops_the_old_replica() {
        let (mut c, epochs, id) = setup();
        let before = part(&c);
        assert_eq!((before.leader, before.isr.clone()), (1, vec![1, 2, 3]));
        reassign(&mut c, Some(vec![2, 3, 4])).unwrap();
        let p = part(&c);
        // The union while the data moves; the ISR and leader unchanged.
        assert_eq!(p.replicas, vec![2, 3, 4, 1]);
        assert_eq!(p.adding_replicas, vec![4]);
        assert_eq!(p.removing_replicas, vec![1]);
        assert_eq!((p.leader, p.leader_epoch), (1, before.leader_epoch));
        assert_eq!(p.isr, vec![1, 2, 3]);
        let listed = ongoing(c.image(), None);
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].adding_replicas, vec![4]);
        // An ISR change that leaves the new replica out completes nothing.
        alter_isr(&mut c, &epochs, id, &[1, 2]).unwrap();
        assert_eq!(part(&c).replicas, vec![2, 3, 4, 1]);
        // Broker 4 caught up but 3 is out: the target is not all in sync.
        alter_isr(&mut c, &epochs, id, &[1, 2, 4]).unwrap();
        let p = part(&c);
        assert_eq!(p.replicas, vec![2, 3, 4, 1]);
        assert!(crate::reassignment::in_progress(&p));
        // Every target replica in the ISR: complete, the leader moves.
        let answer = alter_isr(&mut c, &epochs, id, &[1, 2, 4, 3]);
        assert_eq!(answer.unwrap_err(), ErrorCode::NEW_LEADER_ELECTED);
        let p = part(&c);
        assert_eq!(p.replicas, vec![2, 3, 4]);
        assert_eq!(p.isr, vec![2, 4, 3]);
        assert!(p.adding_replicas.is_empty() && p.removing_replicas.is_empty());
        assert_eq!(p.leader, 2);
        assert_eq!(p.leader_epoch, before.leader_epoch + 1);
        assert!(ongoing(c.image(), None).is_empty());
    }

    #[test]
    fn a_kept_leader_gets_a_new_epoch_when_replicas_leave() {
        let (mut c, epochs, id) = setup();
        let before = part(&c);
        reassign(&mut c, Some(vec![1, 2, 4])).unwrap();
        let answer = alter_isr(&mut c, &epochs, id, &[1, 2, 3, 4]).unwrap();
        let p = part(&c);
        assert_eq!(p.replicas, vec![1, 2, 4]);
        assert_eq!(p.isr, vec![1, 2, 4]);
        assert_eq!(p.leader, 1);
        assert_eq!(p.leader_epoch, before.leader_epoch + 1);
        assert_eq!(answer.leader_epoch, p.leader_epoch);
        assert_eq!(answer.isr, p.isr);
        assert_eq!(answer.partition_epoch, p.partition_epoch);
    }

    #[test]
    fn shrinking_to_replicas_in_sync_completes_at_once() {
        let (mut c, _, _) = setup();
        let before = part(&c);
        reassign(&mut c, Some(vec![2, 1])).unwrap();
        let p = part(&c);
        assert_eq!(p.replicas, vec![2, 1]);
        assert_eq!(p.isr, vec![1, 2]);
        assert_eq!((p.leader, p.leader_epoch), (1, before.leader_epoch + 1));
        assert!(!crate::reassignment::in_progress(&p));
        // The same assignment again changes nothing.
        let end = c.image().end_offset();
        reassign(&mut c, Some(vec![2, 1])).unwrap();
        assert_eq!(c.image().end_offset(), end);
    }

    #[test]
    fn cancel_reverts_and_a_second_cancel_has_nothing_to_do() {
        let (mut c, epochs, id) = setup();
        reassign(&mut c, Some(vec![4, 2, 3])).unwrap();
        // 4 joined the ISR but 3, a target replica, left it: nothing completes.
        alter_isr(&mut c, &epochs, id, &[1, 2, 4]).unwrap();
        assert!(crate::reassignment::in_progress(&part(&c)));
        reassign(&mut c, None).unwrap();
        let p = part(&c);
        assert_eq!(p.replicas, vec![2, 3, 1]);
        assert_eq!(p.isr, vec![1, 2]);
        assert_eq!(p.leader, 1);
        assert!(!crate::reassignment::in_progress(&p));
        let e = reassign(&mut c, None).unwrap_err();
        assert_eq!(e.code, ErrorCode::NO_REASSIGNMENT_IN_PROGRESS);
    }

    #[test]
    fn a_cancel_moves_leadership_off_an_adding_replica() {
        let (mut c, epochs, id) = setup();
        reassign(&mut c, Some(vec![4, 2, 3])).unwrap();
        alter_isr(&mut c, &epochs, id, &[1, 2, 4]).unwrap();
        // Broker 1 is fenced: the adding replica 4 comes first in the
        // replicas and is in the ISR, so it leads.
        let fence = BrokerHeartbeat {
            want_fence: true,
            ..heartbeat(1, epochs[0], 100)
        };
        c.heartbeat(0, &fence).unwrap();
        check_image(c.image()).unwrap();
        let p = part(&c);
        assert_eq!((p.leader, p.isr.clone()), (4, vec![2, 4]));
        reassign(&mut c, None).unwrap();
        let p = part(&c);
        assert_eq!(p.replicas, vec![2, 3, 1]);
        assert_eq!((p.leader, p.isr.clone()), (2, vec![2]));
        assert!(!crate::reassignment::in_progress(&p));
    }

    #[test]
    fn bad_targets_get_kafkas_errors() {
        let (mut c, _, _) = setup();
        let end = c.image().end_offset();
        let code = |c: &mut Controller, t: Option<Vec<i32>>| reassign(c, t).unwrap_err().code;
        assert_eq!(
            code(&mut c, Some(vec![])),
            ErrorCode::INVALID_REPLICA_ASSIGNMENT
        );
        assert_eq!(
            code(&mut c, Some(vec![2, 2, 3])),
            ErrorCode::INVALID_REPLICA_ASSIGNMENT
        );
        assert_eq!(
            code(&mut c, Some(vec![2, 3, 9])),
            ErrorCode::INVALID_REPLICA_ASSIGNMENT
        );
        assert_eq!(code(&mut c, None), ErrorCode::NO_REASSIGNMENT_IN_PROGRESS);
        let r = c.alter_partition_reassignments(
            &[
                Reassignment {
                    topic: "m".into(),
                    partition: 0,
                    replicas: Some(vec![2, 3]),
                },
                Reassignment {
                    topic: "m".into(),
                    partition: 7,
                    replicas: Some(vec![2, 3, 4]),
                },
            ],
            false,
        );
        assert_eq!(
            r.response[0].as_ref().unwrap_err().code,
            ErrorCode::INVALID_REPLICATION_FACTOR
        );
        assert_eq!(
            r.response[1].as_ref().unwrap_err().code,
            ErrorCode::UNKNOWN_TOPIC_OR_PARTITION
        );
        assert_eq!(c.image().end_offset(), end, "refusals write nothing");
    }
}

/// Eligible leader replicas (KIP-966): one rule per test, each also run
/// with the feature off where the difference is the point.
mod elr {
    use super::*;
    use crate::alter_partition::{AlterPartitionData, AlterPartitionRequest};
    use fjord_metadata::image::ELR_VERSION_FEATURE;

    /// Three brokers, topic "e" on 1, 2, 3 (1 leads) with
    /// `min.insync.replicas` 2; ELR on or off.
    fn setup(on: bool) -> (Controller, Vec<i64>) {
        let mut c = controller();
        let epochs = cluster(&mut c, 3, false);
        let t = NewTopic {
            name: "e".into(),
            num_partitions: -1,
            replication_factor: -1,
            assignments: vec![vec![1, 2, 3]],
            configs: [("min.insync.replicas".to_string(), "2".to_string())].into(),
        };
        assert!(c.create_topics(&[t], 1, 1, false).response[0].is_ok());
        if on {
            let mut d = MetadataDelta::new(c.image());
            d.replay(&MetadataRecord::FeatureLevel(FeatureLevelRecord {
                name: ELR_VERSION_FEATURE.into(),
                feature_level: 1,
                ..Default::default()
            }))
            .unwrap();
            d.set_end_offset(Offset(c.image().end_offset().0 + 1));
            let image = d.apply();
            c.reset(image);
        }
        (c, epochs)
    }

    fn part(c: &Controller) -> PartitionRegistration {
        partitions(c, "e")[0].clone()
    }

    /// [`setup`], then brokers 3, 2 and 1 fenced in that order.
    fn all_fenced(on: bool) -> Controller {
        let (mut c, _) = setup(on);
        for id in [3, 2, 1] {
            fence(&mut c, id);
        }
        c
    }

    fn fence(c: &mut Controller, id: i32) {
        let epoch = c.image().broker(NodeId(id)).unwrap().broker_epoch;
        let mut hb = heartbeat(id, epoch, c.image().end_offset().0);
        hb.want_fence = true;
        c.heartbeat(10, &hb).unwrap();
        check_image(c.image()).unwrap();
    }

    fn unfence(c: &mut Controller, id: i32) {
        let epoch = c.image().broker(NodeId(id)).unwrap().broker_epoch;
        let r = c
            .heartbeat(20, &heartbeat(id, epoch, c.image().end_offset().0))
            .unwrap();
        assert!(!r.response.is_fenced);
        check_image(c.image()).unwrap();
    }

    /// Broker `id` registers again as a new incarnation; `clean` sends the
    /// epoch it had (its clean-shutdown proof), else -1.
    fn restart(c: &mut Controller, id: i32, clean: bool) {
        let old = c.image().broker(NodeId(id)).unwrap().broker_epoch;
        let mut reg = registration(
            id,
            100 + id as u128 + c.image().end_offset().0 as u128,
            None,
        );
        reg.previous_broker_epoch = if clean { old } else { -1 };
        reg.features.push(FeatureRange {
            name: ELR_VERSION_FEATURE.into(),
            min: 0,
            max: 1,
        });
        c.register_broker(30, &reg).unwrap();
        check_image(c.image()).unwrap();
    }

    fn state(p: &PartitionRegistration) -> (i32, Vec<i32>, Vec<i32>, Vec<i32>) {
        (
            p.leader,
            p.isr.clone(),
            p.elr.clone(),
            p.last_known_elr.clone(),
        )
    }

    #[test]
    fn replicas_leaving_an_isr_below_min_isr_join_the_elr() {
        let (mut c, _) = setup(true);
        fence(&mut c, 3);
        assert_eq!(
            state(&part(&c)),
            (1, vec![1, 2], vec![], vec![]),
            "ISR at min ISR: no ELR"
        );
        fence(&mut c, 2);
        assert_eq!(state(&part(&c)), (1, vec![1], vec![2], vec![]));
        // The last ISR member goes too: the ISR may be empty with ELR on,
        // and the last known ELR records the last leader.
        fence(&mut c, 1);
        assert_eq!(state(&part(&c)), (-1, vec![], vec![1, 2], vec![1]));
    }

    #[test]
    fn with_the_feature_off_nothing_changes() {
        let mut c = all_fenced(false);
        // Kafka without ELR: the last ISR member stays in the ISR.
        assert_eq!(state(&part(&c)), (-1, vec![1], vec![], vec![]));
        unfence(&mut c, 2);
        assert_eq!(part(&c).leader, -1, "2 is not in the ISR: no leader");
        unfence(&mut c, 1);
        assert_eq!(state(&part(&c)), (1, vec![1], vec![], vec![]));
    }

    #[test]
    fn an_empty_isr_elects_from_the_elr() {
        let mut c = all_fenced(true);
        // 3 left while the ISR was at min ISR: it is not eligible.
        unfence(&mut c, 3);
        assert_eq!(part(&c).leader, -1);
        // 2 is: it leads, becomes the ISR and leaves the ELR; the last
        // known ELR is emptied as the partition has a leader again.
        unfence(&mut c, 2);
        assert_eq!(state(&part(&c)), (2, vec![2], vec![1], vec![]));
    }

    #[test]
    fn an_unclean_restart_leaves_the_elr_and_a_clean_one_stays() {
        let mut c = all_fenced(true);
        restart(&mut c, 2, true);
        assert_eq!(part(&c).elr, vec![1, 2], "a clean shutdown keeps its place");
        restart(&mut c, 2, false);
        assert_eq!(state(&part(&c)), (-1, vec![], vec![1], vec![1]));
        // Feature off: a restart changes no ELR (there is none to change).
        let (mut c, _) = setup(false);
        fence(&mut c, 3);
        fence(&mut c, 2);
        restart(&mut c, 2, false);
        assert_eq!(state(&part(&c)), (1, vec![1], vec![], vec![]));
    }

    #[test]
    fn with_isr_and_elr_empty_the_last_known_leader_recovers_it() {
        let mut c = all_fenced(true);
        restart(&mut c, 1, false);
        restart(&mut c, 2, false);
        assert_eq!(state(&part(&c)), (-1, vec![], vec![], vec![1]));
        unfence(&mut c, 2);
        assert_eq!(
            part(&c).leader,
            -1,
            "2 is neither in the ELR nor the last leader"
        );
        unfence(&mut c, 1);
        let p = part(&c);
        assert_eq!(state(&p), (1, vec![1], vec![], vec![]));
        assert_eq!(p.leader_recovery_state, crate::LEADER_RECOVERING);
        // Its first ISR change marks it recovered.
        let id = c.image().topics().get("e").unwrap().id;
        let epoch1 = c.image().broker(NodeId(1)).unwrap().broker_epoch;
        let epoch2 = c.image().broker(NodeId(2)).unwrap().broker_epoch;
        assert!(epoch1 > 3, "1 registered again");
        let r = c
            .alter_partition(&AlterPartitionRequest {
                broker_id: NodeId(1),
                broker_epoch: epoch1,
                partitions: vec![AlterPartitionData {
                    topic_id: id,
                    partition_index: 0,
                    leader_epoch: p.leader_epoch,
                    partition_epoch: p.partition_epoch,
                    new_isr: vec![(1, epoch1), (2, epoch2)],
                }],
            })
            .unwrap();
        let answer = r.response[0].2.clone().unwrap();
        assert_eq!(answer.leader_recovery_state, crate::LEADER_RECOVERED);
        assert_eq!(part(&c).leader_recovery_state, crate::LEADER_RECOVERED);
        assert_eq!(part(&c).isr, vec![1, 2]);
    }

    /// A partition elected from its last known leader stays RECOVERING for
    /// as long as its ISR does not change: only the leader's AlterPartition
    /// clears the mark, as in Kafka (its `ReplicationControlManager` sets the
    /// target recovery state from AlterPartition alone; the leader treats
    /// itself as recovered at once). Unfencing a replica that has not caught
    /// up, ticks, and that replica's clean and unclean restarts leave it so.
    #[test]
    fn a_recovering_partition_whose_isr_never_changes_stays_recovering() {
        let mut c = all_fenced(true);
        restart(&mut c, 1, false);
        restart(&mut c, 2, false);
        unfence(&mut c, 1);
        let p = part(&c);
        assert_eq!(state(&p), (1, vec![1], vec![], vec![]));
        assert_eq!(p.leader_recovery_state, crate::LEADER_RECOVERING);
        unfence(&mut c, 2);
        let _ = c.tick(40);
        for clean in [true, false] {
            fence(&mut c, 2);
            restart(&mut c, 2, clean);
            unfence(&mut c, 2);
            let _ = c.tick(50);
        }
        let q = part(&c);
        assert_eq!(state(&q), (1, vec![1], vec![], vec![]));
        assert_eq!(q.leader_recovery_state, crate::LEADER_RECOVERING);
        assert_eq!(q.leader_epoch, p.leader_epoch, "the same leadership");
    }

    #[test]
    fn an_isr_back_at_min_isr_empties_the_elr() {
        let (mut c, _) = setup(true);
        fence(&mut c, 3);
        fence(&mut c, 2);
        unfence(&mut c, 2);
        let p = part(&c);
        assert_eq!(p.elr, vec![2]);
        let id = c.image().topics().get("e").unwrap().id;
        let epoch = |id: i32| c.image().broker(NodeId(id)).unwrap().broker_epoch;
        let req = AlterPartitionRequest {
            broker_id: NodeId(1),
            broker_epoch: epoch(1),
            partitions: vec![AlterPartitionData {
                topic_id: id,
                partition_index: 0,
                leader_epoch: p.leader_epoch,
                partition_epoch: p.partition_epoch,
                new_isr: vec![(1, epoch(1)), (2, epoch(2))],
            }],
        };
        c.alter_partition(&req).unwrap();
        check_image(c.image()).unwrap();
        assert_eq!(state(&part(&c)), (1, vec![1, 2], vec![], vec![]));
    }

    #[test]
    fn the_threshold_is_the_topics_then_the_clusters_then_the_static_min_isr() {
        let (c, _) = setup(true);
        let id = c.image().topics().get("e").unwrap().id;
        assert_eq!(c.min_insync_replicas(id), 2);
        let mut c = controller();
        cluster(&mut c, 3, false);
        assert!(c.create_topics(&[topic("d", 1, 3)], 1, 1, false).response[0].is_ok());
        let id = c.image().topics().get("d").unwrap().id;
        assert_eq!(c.min_insync_replicas(id), 1, "Kafka's default");
        let mut d = MetadataDelta::new(c.image());
        d.replay(&MetadataRecord::Config(
            fjord_protocol::metadata_records::ConfigRecord {
                resource_type: fjord_metadata::image::CONFIG_RESOURCE_BROKER,
                resource_name: String::new(),
                name: "min.insync.replicas".into(),
                value: Some("5".into()),
                ..Default::default()
            },
        ))
        .unwrap();
        d.set_end_offset(Offset(c.image().end_offset().0 + 1));
        let image = d.apply();
        c.reset(image);
        assert_eq!(
            c.min_insync_replicas(id),
            3,
            "the cluster's, at most the replication factor"
        );
    }
}
