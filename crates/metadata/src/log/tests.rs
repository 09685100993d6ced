use super::*;
use std::io::Write;

fn vals(n: usize, tag: u8) -> Vec<Bytes> {
    (0..n)
        .map(|i| Bytes::from(vec![tag, i as u8, 7, 7]))
        .collect()
}

#[test]
fn snapshot_file_names_are_kafkas() {
    let id = SnapshotId {
        end_offset: Offset(42),
        epoch: LeaderEpoch(3),
    };
    assert_eq!(id.file_name(), "00000000000000000042-0000000003.checkpoint");
    assert_eq!(SnapshotId::parse(&id.file_name()), Some(id));
    assert_eq!(SnapshotId::parse("00000000000000000042.log"), None);
    assert_eq!(SnapshotId::parse("0042-0003.checkpoint"), None);
    assert_eq!(
        SnapshotId::parse("00000000000000000042-000000000x.checkpoint"),
        None
    );
}

#[test]
fn append_read_back_and_reopen() {
    let data = tempfile::tempdir().unwrap();
    let (log, _) = MetadataLog::open(&Storage::default(), data.path(), 1).unwrap();
    assert!(log.dir().ends_with("__cluster_metadata-0"));
    log.start_epoch(LeaderEpoch(1)).unwrap();
    let lc = ControlRecord::LeaderChange {
        leader_id: 1,
        voters: vec![1],
        granting_voters: vec![1],
    };
    assert_eq!(log.append_control(&lc, 5).unwrap(), (Offset(0), Offset(0)));
    assert_eq!(
        log.append_data(&vals(3, 1), 6).unwrap(),
        (Offset(1), Offset(3))
    );
    assert_eq!(
        log.append_data(&vals(1, 2), 7).unwrap(),
        (Offset(4), Offset(4))
    );
    log.sync_to(log.end_offset()).unwrap();
    let read = log.read_from(Offset(0)).unwrap();
    assert_eq!(read.len(), 3);
    assert_eq!(read[0].content, BatchContent::Control(vec![lc]));
    assert_eq!(read[1].content, BatchContent::Data(vals(3, 1)));
    assert_eq!(read[1].epoch, LeaderEpoch(1));
    assert_eq!(read[2].base_offset, Offset(4));
    assert_eq!(log.read_from(Offset(4)).unwrap().len(), 1);
    log.close().unwrap();
    drop(log);
    let (log, report) = MetadataLog::open(&Storage::default(), data.path(), 8).unwrap();
    assert!(report.clean);
    assert_eq!(log.end_offset(), Offset(5));
    assert_eq!(log.read_from(Offset(0)).unwrap(), read);
    assert_eq!(log.last_epoch(), Some((LeaderEpoch(1), Offset(0))));
}

/// Kill (no close), a torn write at the tail: reopening recovers exactly the
/// batches that were durable and whole.
#[test]
fn torn_tail_is_cut_at_the_last_whole_batch() {
    let data = tempfile::tempdir().unwrap();
    let committed = {
        let (log, _) = MetadataLog::open(&Storage::default(), data.path(), 1).unwrap();
        log.start_epoch(LeaderEpoch(1)).unwrap();
        for i in 0..5 {
            log.append_data(&vals(2, i), 2).unwrap();
        }
        log.sync_to(log.end_offset()).unwrap();
        let batches = log.read_from(Offset(0)).unwrap();
        // Dropped without close: the clean-shutdown marker is never written.
        batches
    };
    let seg = metadata_log_dir(data.path()).join("00000000000000000000.log");
    // A half-written next batch: a valid header prefix, then nothing.
    let whole = {
        let mut b = BatchBuilder::new(Compression::None).partition_leader_epoch(1);
        b.push(3, None, Some(b"torn record"), &[]);
        b.build(10)
    };
    let mut f = std::fs::OpenOptions::new().append(true).open(&seg).unwrap();
    f.write_all(&whole[..whole.len() - 5]).unwrap();
    drop(f);
    let (log, report) = MetadataLog::open(&Storage::default(), data.path(), 4).unwrap();
    assert!(!report.clean);
    assert!(report.bytes_truncated > 0, "{report:?}");
    assert_eq!(log.end_offset(), Offset(10));
    assert_eq!(log.read_from(Offset(0)).unwrap(), committed);
    // The log is writable again after recovery.
    assert_eq!(log.append_data(&vals(1, 9), 5).unwrap().0, Offset(10));
}

/// A damaged byte in durable data that shares the 4 KiB block of the log's
/// tail is found at open (recovery CRC-checks that block below the recovery
/// point too): the log is cut before the damaged batch.
#[test]
fn corrupt_durable_batch_in_the_tail_block_is_cut_at_open() {
    let data = tempfile::tempdir().unwrap();
    {
        let (log, _) = MetadataLog::open(&Storage::default(), data.path(), 1).unwrap();
        log.start_epoch(LeaderEpoch(1)).unwrap();
        log.append_data(&vals(2, 1), 2).unwrap();
        log.append_data(&vals(2, 2), 2).unwrap();
        log.sync_to(log.end_offset()).unwrap();
    }
    let seg = metadata_log_dir(data.path()).join("00000000000000000000.log");
    let mut bytes = std::fs::read(&seg).unwrap();
    let last = bytes.len() - 2;
    bytes[last] ^= 0xff;
    std::fs::write(&seg, &bytes).unwrap();
    let (log, _) = MetadataLog::open(&Storage::default(), data.path(), 4).unwrap();
    assert_eq!(log.end_offset(), Offset(2), "cut before the damaged batch");
    let batches = log.read_from(Offset(0)).unwrap();
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0].content, BatchContent::Data(vals(2, 1)));
}

/// A damaged byte below the recovery point, away from the tail's block, is
/// not rescanned at open, but reading it back fails: it is never replayed.
#[test]
fn corrupt_durable_batch_is_refused_on_read() {
    let data = tempfile::tempdir().unwrap();
    {
        let (log, _) = MetadataLog::open(&Storage::default(), data.path(), 1).unwrap();
        log.start_epoch(LeaderEpoch(1)).unwrap();
        log.append_data(&vals(2, 1), 2).unwrap();
        // Blocks of later data: the damaged batch is far below the tail.
        let big: Vec<Bytes> = (0..4).map(|i| Bytes::from(vec![i as u8; 1_000])).collect();
        for _ in 0..16 {
            log.append_data(&big, 2).unwrap();
        }
        log.sync_to(log.end_offset()).unwrap();
    }
    let seg = metadata_log_dir(data.path()).join("00000000000000000000.log");
    let mut bytes = std::fs::read(&seg).unwrap();
    assert!(bytes.len() > 3 * 4096, "{} bytes", bytes.len());
    // The last value byte of the first data batch (after the epoch's control batch).
    let mut pos = 0;
    let mut first_data_end = None;
    while pos < bytes.len() {
        let total = 12 + u32::from_be_bytes(bytes[pos + 8..pos + 12].try_into().unwrap()) as usize;
        let attributes = i16::from_be_bytes(bytes[pos + 21..pos + 23].try_into().unwrap());
        if attributes & 0x20 == 0 {
            first_data_end = Some(pos + total);
            break;
        }
        pos += total;
    }
    let end = first_data_end.expect("a data batch");
    bytes[end - 2] ^= 0xff;
    std::fs::write(&seg, &bytes).unwrap();
    let (log, _) = MetadataLog::open(&Storage::default(), data.path(), 4).unwrap();
    assert!(log.end_offset() > Offset(60), "{:?}", log.end_offset());
    assert!(matches!(
        log.read_from(Offset(0)),
        Err(MetadataError::Corrupt { .. })
    ));
}

#[test]
fn snapshots_write_load_and_cut_the_log() {
    let data = tempfile::tempdir().unwrap();
    let (log, _) = MetadataLog::open(&Storage::default(), data.path(), 1).unwrap();
    log.start_epoch(LeaderEpoch(2)).unwrap();
    for i in 0..4 {
        log.append_data(&vals(3, i), 2).unwrap();
    }
    log.sync_to(log.end_offset()).unwrap();
    assert_eq!(log.latest_snapshot().unwrap(), None);
    let state = vals(5, 99);
    let id = SnapshotId {
        end_offset: Offset(9),
        epoch: LeaderEpoch(2),
    };
    let path = log.write_snapshot(id, 1234, &state, 3).unwrap();
    assert!(path.ends_with("00000000000000000009-0000000002.checkpoint"));
    let s = log.latest_snapshot().unwrap().unwrap();
    assert_eq!(s.id, id);
    assert_eq!(s.records, state);
    assert_eq!(s.last_contained_log_timestamp_ms, 1234);
    log.delete_before_snapshot(id).unwrap();
    assert_eq!(log.start_offset(), Offset(9));
    assert_eq!(log.read_from(Offset(9)).unwrap().len(), 1);
    // A later, damaged snapshot is skipped for the whole one.
    let newer = SnapshotId {
        end_offset: Offset(12),
        epoch: LeaderEpoch(2),
    };
    log.write_snapshot(newer, 1, &state, 3).unwrap();
    let p = log.dir().join(newer.file_name());
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() - 3]).unwrap();
    assert_eq!(log.latest_snapshot().unwrap().unwrap().id, id);
    // A `.part` left by a crash mid-write is removed at open.
    std::fs::write(
        log.dir()
            .join("00000000000000000012-0000000002.checkpoint.part"),
        b"x",
    )
    .unwrap();
    drop(log);
    let (log, _) = MetadataLog::open(&Storage::default(), data.path(), 4).unwrap();
    assert!(!log
        .dir()
        .join("00000000000000000012-0000000002.checkpoint.part")
        .exists());
    assert_eq!(log.start_offset(), Offset(9));
}

#[test]
fn bootstrap_voters_snapshot_is_kafkas_layout_and_reads_back() {
    let data = tempfile::tempdir().unwrap();
    assert_eq!(snapshot_voters(data.path()).unwrap(), None, "no log dir");
    let voters = vec![crate::control::kafka_standalone_voter()];
    let path = write_bootstrap_voters(data.path(), &voters, 1_765_000_000_000).unwrap();
    assert!(path.ends_with("__cluster_metadata-0/00000000000000000000-0000000000.checkpoint"));
    let id = SnapshotId {
        end_offset: Offset(0),
        epoch: LeaderEpoch(0),
    };
    assert_eq!(
        snapshot_voters(data.path()).unwrap(),
        Some((id, voters.clone()))
    );
    // As `kafka-storage format --standalone` writes it: header, kraft.version
    // and voters in one control batch at offset 0, the footer at offset 3.
    let mut batches = Vec::new();
    decode_batches(&std::fs::read(&path).unwrap(), &mut batches).unwrap();
    assert_eq!(batches.len(), 2);
    assert_eq!(
        (batches[0].base_offset, batches[0].last_offset),
        (Offset(0), Offset(2))
    );
    assert_eq!(batches[0].epoch, LeaderEpoch(0));
    assert_eq!(
        batches[0].content,
        BatchContent::Control(vec![
            ControlRecord::SnapshotHeader {
                last_contained_log_timestamp_ms: 1_765_000_000_000
            },
            ControlRecord::KRaftVersion { kraft_version: 1 },
            ControlRecord::Voters(voters),
        ])
    );
    assert_eq!(batches[1].base_offset, Offset(3));
    assert_eq!(
        batches[1].content,
        BatchContent::Control(vec![ControlRecord::SnapshotFooter])
    );
    // The metadata log opens beside it, empty from offset 0, and sees an
    // empty snapshot 0-0.
    let (log, _) = MetadataLog::open(&Storage::default(), data.path(), 1).unwrap();
    assert_eq!(
        (log.start_offset(), log.end_offset()),
        (Offset(0), Offset(0))
    );
    let snap = log.latest_snapshot().unwrap().unwrap();
    assert_eq!(snap.id, id);
    assert!(snap.records.is_empty());
}

fn feature(name: &str, level: i16) -> MetadataRecord {
    MetadataRecord::FeatureLevel(fjord_protocol::metadata_records::FeatureLevelRecord {
        name: name.into(),
        feature_level: level,
        ..Default::default()
    })
}

#[test]
fn bootstrap_checkpoint_round_trip() {
    let data = tempfile::tempdir().unwrap();
    assert_eq!(read_bootstrap_checkpoint(data.path()).unwrap(), None);
    let records = vec![
        feature("metadata.version", 21),
        feature("transaction.version", 2),
    ];
    let path = write_bootstrap_checkpoint(data.path(), &records, 21, 1_765_000_000_000).unwrap();
    assert_eq!(path, data.path().join("bootstrap.checkpoint"));
    assert_eq!(
        read_bootstrap_checkpoint(data.path()).unwrap(),
        Some(records)
    );
    // Header at offset 0, the records from offset 1, the footer after them.
    let batches = read_snapshot_batches(&path).unwrap();
    let offsets: Vec<(i64, bool)> = batches
        .iter()
        .map(|b| {
            (
                b.base_offset.0,
                matches!(b.content, BatchContent::Control(_)),
            )
        })
        .collect();
    assert_eq!(offsets, [(0, true), (1, false), (3, true)]);
    // A damaged file is an error, not an empty bootstrap.
    std::fs::write(&path, b"not a checkpoint").unwrap();
    assert!(read_bootstrap_checkpoint(data.path()).is_err());
}

/// The bootstrap.checkpoint Kafka 4.3.1's `kafka-storage format` wrote for a
/// new cluster (tests/data, as hex): Fjord reads Kafka's feature levels.
#[test]
fn kafkas_bootstrap_checkpoint_is_read() {
    let hex = include_str!("../../tests/data/kafka-4.3.1-bootstrap.checkpoint.hex");
    let bytes: Vec<u8> = (0..hex.trim().len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join(BOOTSTRAP_CHECKPOINT_FILE), bytes).unwrap();
    let got = read_bootstrap_checkpoint(data.path()).unwrap().unwrap();
    assert_eq!(
        got,
        [
            feature("metadata.version", 30),
            feature("eligible.leader.replicas.version", 1),
            feature("group.version", 1),
            feature("share.version", 1),
            feature("streams.version", 1),
            feature("transaction.version", 2),
        ]
    );
}
