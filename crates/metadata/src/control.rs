//! KRaft control records (Kafka's `ControlRecordType` keys and the
//! `LeaderChangeMessage`, `SnapshotHeaderRecord`, `SnapshotFooterRecord`
//! values, and KIP-853's `KRaftVersionRecord` and `VotersRecord`, all
//! flexible version 0): written in control batches of the
//! metadata log and of snapshots (KIP-595, KIP-630).
//!
//! A control record's key is `int16 version (0), int16 type`; its value is
//! the message body with no version prefix (the message carries its own
//! `Version` field).

use bytes::{Buf, BufMut};
use fjord_protocol::metadata_records::{voters_record, KRaftVersionRecord, VotersRecord};

/// ControlRecordType ids used by KRaft.
pub const LEADER_CHANGE: i16 = 2;
pub const SNAPSHOT_HEADER: i16 = 3;
pub const SNAPSHOT_FOOTER: i16 = 4;
/// KIP-853: the `kraft.version` feature level (`KRaftVersionRecord`).
pub const KRAFT_VERSION: i16 = 5;
/// KIP-853: the voter set (`VotersRecord`).
pub const KRAFT_VOTERS: i16 = 6;

/// One listener of a voter in a `VotersRecord`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VoterEndpoint {
    pub name: String,
    pub host: String,
    pub port: u16,
}

/// One voter of a `VotersRecord` (KIP-853): id, log directory id, its
/// CONTROLLER endpoints and the `kraft.version` range it supports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VoterEntry {
    pub id: i32,
    pub directory_id: uuid::Uuid,
    pub endpoints: Vec<VoterEndpoint>,
    pub kraft_version_min: i16,
    pub kraft_version_max: i16,
}

/// One control record of a KRaft log or snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControlRecord {
    /// A new leader was elected for an epoch (the batch's partition leader epoch).
    LeaderChange {
        leader_id: i32,
        voters: Vec<i32>,
        granting_voters: Vec<i32>,
    },
    /// First record of a snapshot.
    SnapshotHeader {
        last_contained_log_timestamp_ms: i64,
    },
    /// Last record of a snapshot.
    SnapshotFooter,
    /// The `kraft.version` feature level from here on (KIP-853).
    KRaftVersion { kraft_version: i16 },
    /// The voter set from here on (KIP-853).
    Voters(Vec<VoterEntry>),
    /// A control type KRaft defines but Fjord does not interpret; kept so
    /// reading does not fail.
    Other { record_type: i16 },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed control record: {0}")]
pub struct ControlRecordError(pub &'static str);

impl ControlRecord {
    pub fn record_type(&self) -> i16 {
        match self {
            ControlRecord::LeaderChange { .. } => LEADER_CHANGE,
            ControlRecord::SnapshotHeader { .. } => SNAPSHOT_HEADER,
            ControlRecord::SnapshotFooter => SNAPSHOT_FOOTER,
            ControlRecord::KRaftVersion { .. } => KRAFT_VERSION,
            ControlRecord::Voters(_) => KRAFT_VOTERS,
            ControlRecord::Other { record_type } => *record_type,
        }
    }

    /// The record key: version 0 and the type.
    pub fn key(&self) -> [u8; 4] {
        let t = self.record_type().to_be_bytes();
        [0, 0, t[0], t[1]]
    }

    /// The record value (flexible v0 body).
    pub fn value(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            ControlRecord::LeaderChange {
                leader_id,
                voters,
                granting_voters,
            } => {
                out.put_i16(0);
                out.put_i32(*leader_id);
                for list in [voters, granting_voters] {
                    put_uvarint(&mut out, list.len() as u64 + 1);
                    for v in list {
                        out.put_i32(*v);
                        out.put_u8(0); // the voter's tagged fields
                    }
                }
            }
            ControlRecord::SnapshotHeader {
                last_contained_log_timestamp_ms,
            } => {
                out.put_i16(0);
                out.put_i64(*last_contained_log_timestamp_ms);
            }
            ControlRecord::SnapshotFooter => out.put_i16(0),
            ControlRecord::KRaftVersion { kraft_version } => {
                let mut b = bytes::BytesMut::new();
                KRaftVersionRecord {
                    k_raft_version: *kraft_version,
                    ..Default::default()
                }
                .encode(0, &mut b);
                return b.to_vec();
            }
            ControlRecord::Voters(voters) => {
                let mut b = bytes::BytesMut::new();
                VotersRecord {
                    voters: voters.iter().map(to_wire_voter).collect(),
                    ..Default::default()
                }
                .encode(0, &mut b);
                return b.to_vec();
            }
            ControlRecord::Other { .. } => {}
        }
        if !matches!(self, ControlRecord::Other { .. }) {
            out.put_u8(0); // tagged fields
        }
        out
    }

    /// Decodes a control record from its key and value. Every count is
    /// checked against the bytes present before anything is allocated.
    pub fn decode(key: &[u8], value: &[u8]) -> Result<ControlRecord, ControlRecordError> {
        let mut k = key;
        if k.remaining() < 4 {
            return Err(ControlRecordError("key shorter than 4 bytes"));
        }
        let _key_version = k.get_i16();
        let record_type = k.get_i16();
        let mut v = value;
        let r = match record_type {
            LEADER_CHANGE => {
                let _version = get_i16(&mut v)?;
                let leader_id = get_i32(&mut v)?;
                let voters = get_voters(&mut v)?;
                let granting_voters = get_voters(&mut v)?;
                skip_tagged(&mut v)?;
                ControlRecord::LeaderChange {
                    leader_id,
                    voters,
                    granting_voters,
                }
            }
            SNAPSHOT_HEADER => {
                let _version = get_i16(&mut v)?;
                let ts = get_i64(&mut v)?;
                skip_tagged(&mut v)?;
                ControlRecord::SnapshotHeader {
                    last_contained_log_timestamp_ms: ts,
                }
            }
            SNAPSHOT_FOOTER => {
                let _version = get_i16(&mut v)?;
                skip_tagged(&mut v)?;
                ControlRecord::SnapshotFooter
            }
            KRAFT_VERSION => {
                let r = KRaftVersionRecord::decode(&mut reader(v), 0)
                    .map_err(|_| ControlRecordError("malformed KRaftVersionRecord"))?;
                ControlRecord::KRaftVersion {
                    kraft_version: r.k_raft_version,
                }
            }
            KRAFT_VOTERS => {
                let r = VotersRecord::decode(&mut reader(v), 0)
                    .map_err(|_| ControlRecordError("malformed VotersRecord"))?;
                ControlRecord::Voters(r.voters.into_iter().map(from_wire_voter).collect())
            }
            other => ControlRecord::Other { record_type: other },
        };
        Ok(r)
    }
}

fn reader(v: &[u8]) -> fjord_protocol::Reader {
    fjord_protocol::Reader::new(bytes::Bytes::copy_from_slice(v))
}

fn to_wire_voter(v: &VoterEntry) -> voters_record::Voter {
    voters_record::Voter {
        voter_id: v.id,
        voter_directory_id: v.directory_id,
        endpoints: v
            .endpoints
            .iter()
            .map(|e| voters_record::Endpoint {
                name: e.name.clone(),
                host: e.host.clone(),
                port: e.port,
                ..Default::default()
            })
            .collect(),
        k_raft_version_feature: voters_record::KRaftVersionFeature {
            min_supported_version: v.kraft_version_min,
            max_supported_version: v.kraft_version_max,
            ..Default::default()
        },
        ..Default::default()
    }
}

fn from_wire_voter(v: voters_record::Voter) -> VoterEntry {
    VoterEntry {
        id: v.voter_id,
        directory_id: v.voter_directory_id,
        endpoints: v
            .endpoints
            .into_iter()
            .map(|e| VoterEndpoint {
                name: e.name,
                host: e.host,
                port: e.port,
            })
            .collect(),
        kraft_version_min: v.k_raft_version_feature.min_supported_version,
        kraft_version_max: v.k_raft_version_feature.max_supported_version,
    }
}

fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

fn get_uvarint(b: &mut &[u8]) -> Result<u64, ControlRecordError> {
    let mut v = 0u64;
    for shift in (0..35).step_by(7) {
        if !b.has_remaining() {
            return Err(ControlRecordError("truncated varint"));
        }
        let byte = b.get_u8();
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(ControlRecordError("varint too long"))
}

fn get_i16(b: &mut &[u8]) -> Result<i16, ControlRecordError> {
    if b.remaining() < 2 {
        return Err(ControlRecordError("truncated int16"));
    }
    Ok(b.get_i16())
}

fn get_i32(b: &mut &[u8]) -> Result<i32, ControlRecordError> {
    if b.remaining() < 4 {
        return Err(ControlRecordError("truncated int32"));
    }
    Ok(b.get_i32())
}

fn get_i64(b: &mut &[u8]) -> Result<i64, ControlRecordError> {
    if b.remaining() < 8 {
        return Err(ControlRecordError("truncated int64"));
    }
    Ok(b.get_i64())
}

fn skip_tagged(b: &mut &[u8]) -> Result<(), ControlRecordError> {
    let n = get_uvarint(b)?;
    for _ in 0..n {
        let _tag = get_uvarint(b)?;
        let len = get_uvarint(b)?;
        let len = usize::try_from(len).map_err(|_| ControlRecordError("tagged field too long"))?;
        if b.remaining() < len {
            return Err(ControlRecordError("truncated tagged field"));
        }
        b.advance(len);
    }
    Ok(())
}

fn get_voters(b: &mut &[u8]) -> Result<Vec<i32>, ControlRecordError> {
    let n = get_uvarint(b)?;
    let n = usize::try_from(n.saturating_sub(1)).map_err(|_| ControlRecordError("bad count"))?;
    // Each voter takes at least 5 bytes (id and empty tagged fields).
    if n > b.remaining() / 5 {
        return Err(ControlRecordError("voter count exceeds the bytes present"));
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(get_i32(b)?);
        skip_tagged(b)?;
    }
    Ok(out)
}

/// The voter Kafka 4.3.1's `kafka-storage format --standalone` wrote for
/// node 1 with `CONTROLLER://127.0.0.1:19093` (tests compare bytes with it).
#[cfg(test)]
pub(crate) fn kafka_standalone_voter() -> VoterEntry {
    VoterEntry {
        id: 1,
        directory_id: uuid::Uuid::from_u128(0xe260_d5e8_d147_4520_9cc1_2db9_3a00_aa44),
        endpoints: vec![VoterEndpoint {
            name: "CONTROLLER".into(),
            host: "127.0.0.1".into(),
            port: 19093,
        }],
        kraft_version_min: 0,
        kraft_version_max: 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for r in [
            ControlRecord::LeaderChange {
                leader_id: 1,
                voters: vec![1, 2, 3],
                granting_voters: vec![1],
            },
            ControlRecord::SnapshotHeader {
                last_contained_log_timestamp_ms: 1_700_000_000_000,
            },
            ControlRecord::SnapshotFooter,
        ] {
            assert_eq!(ControlRecord::decode(&r.key(), &r.value()), Ok(r.clone()));
        }
    }

    #[test]
    fn leader_change_bytes_are_kafkas() {
        // Version 0, leader 1, voters [1], granting [1], no tagged fields.
        let r = ControlRecord::LeaderChange {
            leader_id: 1,
            voters: vec![1],
            granting_voters: vec![1],
        };
        assert_eq!(
            r.value(),
            vec![0, 0, 0, 0, 0, 1, 2, 0, 0, 0, 1, 0, 2, 0, 0, 0, 1, 0, 0]
        );
        assert_eq!(r.key(), [0, 0, 0, 2]);
    }

    #[test]
    fn kip_853_records_are_kafkas_bytes() {
        // As Kafka 4.3.1's `kafka-storage format --standalone` wrote them
        // (node 1, CONTROLLER://127.0.0.1:19093).
        let voter = kafka_standalone_voter();
        let dir = *voter.directory_id.as_bytes();
        let voters = ControlRecord::Voters(vec![voter]);
        let mut want = vec![0, 0, 2, 0, 0, 0, 1];
        want.extend(dir);
        want.extend([2, 11]);
        want.extend(b"CONTROLLER");
        want.push(10);
        want.extend(b"127.0.0.1");
        want.extend([0x4a, 0x95, 0, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(voters.key(), [0, 0, 0, 6]);
        assert_eq!(voters.value(), want);
        let version = ControlRecord::KRaftVersion { kraft_version: 1 };
        assert_eq!(version.key(), [0, 0, 0, 5]);
        assert_eq!(version.value(), vec![0, 0, 0, 1, 0]);
        for r in [voters, version] {
            assert_eq!(ControlRecord::decode(&r.key(), &r.value()), Ok(r.clone()));
            let v = r.value();
            for cut in 0..v.len() {
                assert!(ControlRecord::decode(&r.key(), &v[..cut]).is_err());
            }
        }
    }

    #[test]
    fn hostile_counts_are_refused() {
        let key = [0, 0, 0, 2];
        // Voter count 2^28 with no bytes behind it.
        let value = [0, 0, 0, 0, 0, 1, 0x80, 0x80, 0x80, 0x80, 0x01];
        assert!(ControlRecord::decode(&key, &value).is_err());
        assert!(ControlRecord::decode(&[0, 0], &[]).is_err());
        for cut in 0..ControlRecord::SnapshotFooter.value().len() {
            assert!(ControlRecord::decode(
                &[0, 0, 0, 4],
                &ControlRecord::SnapshotFooter.value()[..cut]
            )
            .is_err());
        }
    }
}
