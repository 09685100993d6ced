use super::*;
use fjord_protocol::metadata_records::{
    ConfigRecord, FeatureLevelRecord, PartitionChangeRecord, PartitionRecord, ProducerIdsRecord,
    RegisterBrokerRecord, RemoveTopicRecord, TopicRecord,
};
use proptest::prelude::*;

fn topic(name: &str, id: u128) -> MetadataRecord {
    MetadataRecord::Topic(TopicRecord {
        name: name.into(),
        topic_id: Uuid::from_u128(id),
        ..Default::default()
    })
}

fn partition(id: u128, p: i32) -> MetadataRecord {
    MetadataRecord::Partition(PartitionRecord {
        partition_id: p,
        topic_id: Uuid::from_u128(id),
        replicas: vec![1],
        isr: vec![1],
        leader: 1,
        leader_epoch: 0,
        partition_epoch: 0,
        ..Default::default()
    })
}

fn config(t: i8, res: &str, k: &str, v: Option<&str>) -> MetadataRecord {
    MetadataRecord::Config(ConfigRecord {
        resource_type: t,
        resource_name: res.into(),
        name: k.into(),
        value: v.map(str::to_string),
        ..Default::default()
    })
}

fn apply(image: &MetadataImage, records: &[MetadataRecord]) -> MetadataImage {
    let mut d = MetadataDelta::new(image);
    for r in records {
        d.replay(r).unwrap();
    }
    d.apply()
}

#[test]
fn topics_partitions_configs_and_producer_ids() {
    let empty = MetadataImage::empty("c1");
    let img = apply(
        &empty,
        &[
            MetadataRecord::FeatureLevel(FeatureLevelRecord {
                name: "metadata.version".into(),
                feature_level: 27,
                ..Default::default()
            }),
            MetadataRecord::RegisterBroker(RegisterBrokerRecord {
                broker_id: 1,
                ..Default::default()
            }),
            topic("a", 1),
            partition(1, 0),
            partition(1, 1),
            config(2, "a", "retention.ms", Some("1000")),
            config(4, "", "log.retention.ms", Some("5")),
            config(4, "1", "log.segment.bytes", Some("2048")),
            MetadataRecord::ProducerIds(ProducerIdsRecord {
                broker_id: 1,
                next_producer_id: 2000,
                ..Default::default()
            }),
        ],
    );
    assert_eq!(empty.topics().len(), 0, "the base image never changes");
    assert_eq!(img.cluster_id(), "c1");
    assert_eq!(img.metadata_version(), Some(27));
    assert!(img.broker(NodeId(1)).is_some());
    let a = img.topics().get("a").unwrap();
    assert_eq!(a.partition_count(), 2);
    assert_eq!(
        img.topics().get_by_id(Uuid::from_u128(1)).unwrap().name,
        "a"
    );
    assert_eq!(
        img.configs(&ConfigResource::Topic("a".into()))
            .get("retention.ms")
            .map(String::as_str),
        Some("1000")
    );
    assert_eq!(img.configs(&ConfigResource::Broker(None)).len(), 1);
    assert_eq!(
        img.configs(&ConfigResource::Broker(Some(NodeId(1)))).len(),
        1
    );
    assert_eq!(img.next_producer_id(), 2000);

    // Leader change bumps the leader epoch; every change the partition epoch.
    let img2 = apply(
        &img,
        &[MetadataRecord::PartitionChange(PartitionChangeRecord {
            topic_id: Uuid::from_u128(1),
            partition_id: 1,
            leader: 1,
            isr: Some(vec![1]),
            ..Default::default()
        })],
    );
    let p = &img2.topics().get("a").unwrap().partitions[&1];
    assert_eq!((p.leader_epoch, p.partition_epoch), (1, 1));
    // Parts a delta did not touch are shared, not copied.
    assert!(Arc::ptr_eq(&img.0.configs, &img2.0.configs));

    // Removing the topic removes its configs; a config value None deletes.
    let img3 = apply(
        &img2,
        &[
            MetadataRecord::RemoveTopic(RemoveTopicRecord {
                topic_id: Uuid::from_u128(1),
                ..Default::default()
            }),
            config(4, "", "log.retention.ms", None),
        ],
    );
    assert!(img3.topics().is_empty());
    assert!(img3.configs(&ConfigResource::Topic("a".into())).is_empty());
    assert!(img3.configs(&ConfigResource::Broker(None)).is_empty());
}

#[test]
fn contradicting_records_are_errors() {
    let img = apply(&MetadataImage::empty("c"), &[topic("a", 1)]);
    let mut d = MetadataDelta::new(&img);
    assert!(d.replay(&topic("a", 2)).is_err(), "duplicate name");
    assert!(d.replay(&topic("b", 1)).is_err(), "duplicate id");
    assert!(d.replay(&partition(9, 0)).is_err(), "unknown topic");
    assert!(d
        .replay(&MetadataRecord::ProducerIds(ProducerIdsRecord {
            next_producer_id: 5,
            ..Default::default()
        }))
        .is_ok());
    assert!(
        d.replay(&MetadataRecord::ProducerIds(ProducerIdsRecord {
            next_producer_id: 4,
            ..Default::default()
        }))
        .is_err(),
        "producer ids never go back"
    );
    assert!(d.replay_framed(&[1, 2, 3]).is_err());
    assert!(d.is_empty() || d.apply().topics().len() == 1);
}

#[test]
fn delete_and_recreate_in_one_delta() {
    let img = apply(
        &MetadataImage::empty("c"),
        &[topic("a", 1), partition(1, 0)],
    );
    let mut d = MetadataDelta::new(&img);
    d.replay(&MetadataRecord::RemoveTopic(RemoveTopicRecord {
        topic_id: Uuid::from_u128(1),
        ..Default::default()
    }))
    .unwrap();
    d.replay(&topic("a", 2)).unwrap();
    d.replay(&partition(2, 0)).unwrap();
    assert_eq!(d.deleted_topics().count(), 1);
    assert_eq!(d.created_topics().count(), 1);
    let next = d.apply();
    assert_eq!(next.topics().get("a").unwrap().id, Uuid::from_u128(2));
    assert!(next.topics().get_by_id(Uuid::from_u128(1)).is_none());
}

/// A random admin operation on a small model.
#[derive(Clone, Debug)]
enum Op {
    Create(u8, u8),
    Grow(u8, u8),
    Delete(u8),
    SetConfig(u8, u8, Option<u8>),
    ProducerBlock(u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..6, 1u8..4).prop_map(|(t, n)| Op::Create(t, n)),
        (0u8..6, 1u8..3).prop_map(|(t, n)| Op::Grow(t, n)),
        (0u8..6).prop_map(Op::Delete),
        (0u8..6, 0u8..3, proptest::option::of(0u8..9)).prop_map(|(t, k, v)| Op::SetConfig(t, k, v)),
        (1u16..500).prop_map(Op::ProducerBlock),
    ]
}

proptest! {
    /// Against a model (name → (id, partitions, configs)); any split of
    /// the records into deltas gives the same image; and the image's own
    /// records (a snapshot) rebuild it exactly.
    #[test]
    fn image_matches_model_and_its_snapshot(ops in proptest::collection::vec(op(), 1..60), split in 1usize..7) {
        type Model = BTreeMap<String, (Uuid, i32, BTreeMap<String, String>)>;
        let mut model: Model = BTreeMap::new();
        let mut next_pid = -1i64;
        let mut records = Vec::new();
        let mut next_id = 1u128;
        for op in ops {
            match op {
                Op::Create(t, n) => {
                    let name = format!("t{t}");
                    if model.contains_key(&name) { continue; }
                    let id = Uuid::from_u128(next_id);
                    next_id += 1;
                    records.push(topic(&name, id.as_u128()));
                    for p in 0..n as i32 { records.push(partition(id.as_u128(), p)); }
                    model.insert(name, (id, n as i32, BTreeMap::new()));
                }
                Op::Grow(t, n) => {
                    let Some(m) = model.get_mut(&format!("t{t}")) else { continue };
                    for p in m.1..m.1 + n as i32 { records.push(partition(m.0.as_u128(), p)); }
                    m.1 += n as i32;
                }
                Op::Delete(t) => {
                    let Some(m) = model.remove(&format!("t{t}")) else { continue };
                    records.push(MetadataRecord::RemoveTopic(RemoveTopicRecord { topic_id: m.0, ..Default::default() }));
                }
                Op::SetConfig(t, k, v) => {
                    let name = format!("t{t}");
                    let Some(m) = model.get_mut(&name) else { continue };
                    let key = format!("k{k}");
                    let v = v.map(|v| v.to_string());
                    records.push(config(2, &name, &key, v.as_deref()));
                    match v { Some(v) => { m.2.insert(key, v); } None => { m.2.remove(&key); } }
                }
                Op::ProducerBlock(n) => {
                    next_pid = next_pid.max(0) + n as i64;
                    records.push(MetadataRecord::ProducerIds(ProducerIdsRecord { next_producer_id: next_pid, ..Default::default() }));
                }
            }
        }
        let mut image = MetadataImage::empty("c");
        for chunk in records.chunks(split) {
            image = apply(&image, chunk);
        }
        let one_delta = apply(&MetadataImage::empty("c"), &records);
        prop_assert_eq!(&image, &one_delta);
        prop_assert_eq!(image.topics().len(), model.len());
        for (name, (id, n, cfg)) in &model {
            let t = image.topics().get(name).unwrap();
            prop_assert_eq!(t.id, *id);
            prop_assert_eq!(t.partition_count(), *n);
            prop_assert_eq!(&image.configs(&ConfigResource::Topic(name.clone())), cfg);
        }
        prop_assert_eq!(image.next_producer_id(), next_pid);
        let rebuilt = apply(&MetadataImage::empty("c"), &image.to_records());
        prop_assert_eq!(&rebuilt, &image);
        // Framed encoding round-trips through the delta too.
        let mut d = MetadataDelta::new(&MetadataImage::empty("c"));
        for r in image.to_records() {
            let mut buf = bytes::BytesMut::new();
            r.encode_framed(&mut buf);
            d.replay_framed(&buf).unwrap();
        }
        prop_assert_eq!(&d.apply(), &image);
    }
}

#[test]
fn fencing_changes_apply_to_the_registration_they_name() {
    use fjord_protocol::metadata_records::{
        BrokerRegistrationChangeRecord, FenceBrokerRecord, UnfenceBrokerRecord,
    };
    let register = |epoch: i64| {
        MetadataRecord::RegisterBroker(RegisterBrokerRecord {
            broker_id: 3,
            broker_epoch: epoch,
            fenced: true,
            ..Default::default()
        })
    };
    let change = |epoch: i64, fenced: i8, shutdown: i8| {
        MetadataRecord::BrokerRegistrationChange(BrokerRegistrationChangeRecord {
            broker_id: 3,
            broker_epoch: epoch,
            fenced,
            in_controlled_shutdown: shutdown,
            ..Default::default()
        })
    };
    let img = apply(
        &MetadataImage::empty("c"),
        &[register(10), change(10, -1, 0)],
    );
    let b = img.broker(NodeId(3)).unwrap();
    assert!(!b.fenced && !b.in_controlled_shutdown);
    let img2 = apply(&img, &[change(10, 0, 1)]);
    assert!(img2.broker(NodeId(3)).unwrap().in_controlled_shutdown);
    assert!(!img2.broker(NodeId(3)).unwrap().fenced);
    let img3 = apply(&img2, &[change(10, 1, 0)]);
    assert!(img3.broker(NodeId(3)).unwrap().fenced);
    // The old record types do the same.
    let img4 = apply(
        &img3,
        &[MetadataRecord::UnfenceBroker(UnfenceBrokerRecord {
            id: 3,
            epoch: 10,
            ..Default::default()
        })],
    );
    assert!(!img4.broker(NodeId(3)).unwrap().fenced);
    let img5 = apply(
        &img4,
        &[MetadataRecord::FenceBroker(FenceBrokerRecord {
            id: 3,
            epoch: 10,
            ..Default::default()
        })],
    );
    assert!(img5.broker(NodeId(3)).unwrap().fenced);
    // A change naming another epoch, an unknown broker or a bad value is refused.
    for bad in [change(9, -1, 0), change(10, 2, 0), change(10, 0, -1)] {
        let mut d = MetadataDelta::new(&img5);
        assert!(d.replay(&bad).is_err(), "{bad:?}");
        assert!(
            d.apply().broker(NodeId(3)).unwrap().fenced,
            "nothing changed"
        );
    }
    let mut d = MetadataDelta::new(&MetadataImage::empty("c"));
    assert!(d.replay(&change(10, -1, 0)).is_err());
    // A new registration replaces the old one (fenced, new epoch).
    let img6 = apply(&img4, &[register(20)]);
    let b = img6.broker(NodeId(3)).unwrap();
    assert!(b.fenced);
    assert_eq!(b.broker_epoch, 20);
}

#[test]
fn scram_credentials_are_set_replaced_removed_and_snapshotted() {
    use fjord_protocol::metadata_records::{
        RemoveUserScramCredentialRecord, UserScramCredentialRecord,
    };
    let cred = |name: &str, mechanism: i8, iterations: i32| {
        MetadataRecord::UserScramCredential(UserScramCredentialRecord {
            name: name.into(),
            mechanism,
            salt: bytes::Bytes::from_static(b"salt"),
            stored_key: bytes::Bytes::from(vec![mechanism as u8; 32]),
            server_key: bytes::Bytes::from(vec![7; 32]),
            iterations,
            ..Default::default()
        })
    };
    let remove = |name: &str, mechanism: i8| {
        MetadataRecord::RemoveUserScramCredential(RemoveUserScramCredentialRecord {
            name: name.into(),
            mechanism,
            ..Default::default()
        })
    };
    let img = apply(
        &MetadataImage::empty("c"),
        &[
            cred("alice", 1, 4096),
            cred("alice", 2, 8192),
            cred("bob", 1, 4096),
        ],
    );
    assert_eq!(img.scram_credentials().len(), 3);
    assert_eq!(img.scram_credential("alice", 2).unwrap().iterations, 8192);
    assert!(!format!("{img:?}").contains("salt"), "keys stay hidden");
    let img = apply(&img, &[cred("alice", 2, 10000), remove("bob", 1)]);
    assert_eq!(img.scram_credential("alice", 2).unwrap().iterations, 10000);
    assert!(img.scram_credential("bob", 1).is_none());
    // A snapshot rebuilds the same credentials.
    let rebuilt = apply(&MetadataImage::empty("c"), &img.to_records());
    assert_eq!(rebuilt.scram_credentials(), img.scram_credentials());
    // Removing what is not there is refused and changes nothing.
    let mut d = MetadataDelta::new(&img);
    assert!(d.replay(&remove("bob", 1)).is_err());
    assert!(d.replay(&remove("alice", 3)).is_err());
    assert!(d.is_empty());
    // Set and removed in one delta.
    d.replay(&cred("carol", 1, 4096)).unwrap();
    d.replay(&remove("carol", 1)).unwrap();
    assert!(d.apply().scram_credential("carol", 1).is_none());
}

#[test]
fn acls_are_added_removed_and_snapshotted_by_id() {
    use fjord_protocol::metadata_records::{
        AccessControlEntryRecord, RemoveAccessControlEntryRecord,
    };
    let acl = |id: u128, name: &str| {
        MetadataRecord::AccessControlEntry(AccessControlEntryRecord {
            id: Uuid::from_u128(id),
            resource_type: 2,
            resource_name: name.into(),
            pattern_type: 3,
            principal: "User:alice".into(),
            host: "*".into(),
            operation: 3,
            permission_type: 3,
            ..Default::default()
        })
    };
    let remove = |id: u128| {
        MetadataRecord::RemoveAccessControlEntry(RemoveAccessControlEntryRecord {
            id: Uuid::from_u128(id),
            ..Default::default()
        })
    };
    let img = apply(&MetadataImage::empty("c"), &[acl(1, "a"), acl(2, "b")]);
    assert_eq!(img.acls().len(), 2);
    assert_eq!(img.acls()[&Uuid::from_u128(2)].resource_name, "b");
    let rebuilt = apply(&MetadataImage::empty("c"), &img.to_records());
    assert_eq!(rebuilt.acls(), img.acls());
    let mut d = MetadataDelta::new(&img);
    assert!(d.replay(&acl(1, "again")).is_err(), "an id is used once");
    assert!(d.replay(&remove(9)).is_err(), "unknown id");
    assert!(!d.acls_changed());
    d.replay(&remove(1)).unwrap();
    assert!(d.replay(&remove(1)).is_err(), "removed twice");
    d.replay(&acl(3, "c")).unwrap();
    let img = d.apply();
    let names: Vec<&str> = img
        .acls()
        .values()
        .map(|a| a.resource_name.as_str())
        .collect();
    assert_eq!(names, ["b", "c"]);
}

#[test]
fn elr_fields_are_kept_changed_cleared_and_snapshotted() {
    use fjord_protocol::metadata_records::ClearElrRecord;
    let elr_partition = |id: u128, p: i32| {
        MetadataRecord::Partition(PartitionRecord {
            partition_id: p,
            topic_id: Uuid::from_u128(id),
            replicas: vec![1, 2, 3],
            isr: vec![1],
            leader: 1,
            leader_epoch: 4,
            partition_epoch: 7,
            eligible_leader_replicas: Some(vec![2]),
            last_known_elr: Some(vec![3]),
            ..Default::default()
        })
    };
    let img = apply(
        &MetadataImage::empty("c1"),
        &[
            topic("a", 1),
            elr_partition(1, 0),
            partition(1, 1),
            topic("b", 2),
            elr_partition(2, 0),
        ],
    );
    let p =
        |img: &MetadataImage, t: &str, i: i32| img.topics().get(t).unwrap().partitions[&i].clone();
    assert_eq!(
        (p(&img, "a", 0).elr, p(&img, "a", 0).last_known_elr),
        (vec![2], vec![3])
    );
    assert!(p(&img, "a", 1).elr.is_empty());
    // A snapshot keeps them (and writes no empty tagged field).
    let records = img.to_records();
    assert_eq!(apply(&MetadataImage::empty("c1"), &records), img);
    let a1 = records
        .iter()
        .find_map(|r| match r {
            MetadataRecord::Partition(r)
                if r.topic_id == Uuid::from_u128(1) && r.partition_id == 1 =>
            {
                Some(r.clone())
            }
            _ => None,
        })
        .unwrap();
    assert_eq!(
        (a1.eligible_leader_replicas, a1.last_known_elr),
        (None, None)
    );
    // A change sets what it names and leaves the rest.
    let img = apply(
        &img,
        &[MetadataRecord::PartitionChange(PartitionChangeRecord {
            topic_id: Uuid::from_u128(1),
            partition_id: 0,
            isr: Some(vec![]),
            leader: -1,
            eligible_leader_replicas: Some(vec![1, 2]),
            ..Default::default()
        })],
    );
    let a0 = p(&img, "a", 0);
    assert_eq!(
        (a0.isr.clone(), a0.elr.clone(), a0.last_known_elr.clone()),
        (vec![], vec![1, 2], vec![3])
    );
    assert_eq!((a0.leader_epoch, a0.partition_epoch), (5, 8));
    // ClearElr of one topic: its partitions with an ELR get a new epoch.
    let cleared = apply(
        &img,
        &[MetadataRecord::ClearElr(ClearElrRecord {
            topic_name: "a".into(),
            ..Default::default()
        })],
    );
    let a0 = p(&cleared, "a", 0);
    assert_eq!(
        (
            a0.elr.is_empty(),
            a0.last_known_elr.is_empty(),
            a0.partition_epoch
        ),
        (true, true, 9)
    );
    assert_eq!(p(&cleared, "a", 1).partition_epoch, 0, "no ELR, no change");
    assert_eq!(
        p(&cleared, "b", 0).elr,
        vec![2],
        "another topic keeps its ELR"
    );
    // Without a name: every topic, including one created in the same delta.
    let all = apply(
        &img,
        &[
            topic("c", 3),
            elr_partition(3, 0),
            MetadataRecord::ClearElr(ClearElrRecord::default()),
        ],
    );
    for t in ["a", "b", "c"] {
        assert!(
            p(&all, t, 0).elr.is_empty() && p(&all, t, 0).last_known_elr.is_empty(),
            "{t}"
        );
    }
    // An unknown topic name is an error, as in Kafka.
    let mut d = MetadataDelta::new(&img);
    assert!(d
        .replay(&MetadataRecord::ClearElr(ClearElrRecord {
            topic_name: "nope".into(),
            ..Default::default()
        }))
        .is_err());
}
