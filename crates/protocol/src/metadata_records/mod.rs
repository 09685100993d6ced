//! KRaft metadata records and control records, generated from Apache
//! Kafka's schemas (`cargo xtask codegen`, file `generated.rs`).
//!
//! Each record type (e.g. [`TopicRecord`], [`PartitionRecord`],
//! [`ConfigRecord`]) is a struct with public snake_case fields (the schema
//! defaults in `Default`), `encode(&self, version, out)` writing Kafka's
//! exact bytes (all metadata records are flexible versions: compact
//! encodings and tagged fields, a tagged field written only when it differs
//! from its default, unknown tagged fields written back in tag order), and a
//! checked `decode(reader, version)` with the guarantees of the request
//! decoders: every count checked against the bytes left before allocating,
//! the [`Reader`]'s decoded-size budget charged, errors naming the field.
//! Nested structs live in the record's module (e.g.
//! [`register_broker_record::BrokerEndpoint`]).
//!
//! [`MetadataRecord`] is the union of the metadata record types (not the
//! control records, which travel in control batches). Its framing in
//! `__cluster_metadata` record values is Kafka's `MetadataRecordSerde`:
//! unsigned varint frame version ([`FRAME_VERSION`]), unsigned varint api
//! key, unsigned varint version, then the body.
//!
//! ```
//! use bytes::BytesMut;
//! use fjord_protocol::metadata_records::{MetadataRecord, TopicRecord};
//! use fjord_protocol::Reader;
//! let record = MetadataRecord::from(TopicRecord { name: "t".into(), ..Default::default() });
//! let mut out = BytesMut::new();
//! record.encode_framed(&mut out);
//! let (decoded, version) = MetadataRecord::decode_framed(&mut Reader::new(out.freeze())).unwrap();
//! assert_eq!((decoded, version), (record, 0));
//! ```

#[rustfmt::skip]
mod generated;

use bytes::BytesMut;

pub use generated::*;

use crate::reader::{DecodeError, Reader};
use crate::writer::put_uvarint;

/// The frame version `MetadataRecordSerde` writes and accepts.
pub const FRAME_VERSION: u32 = 1;

/// Kafka's `metadata.version` feature levels at which the version of a
/// record Kafka writes changes (`MetadataVersion` in Kafka 4.3.1; level 7,
/// 3.3-IV3, is the lowest a KRaft cluster runs).
pub mod metadata_version {
    /// 3.4-IV0: `RegisterBrokerRecord` v2 (`IsMigratingZkBroker`).
    pub const IBP_3_4_IV0: i16 = 8;
    /// 3.7-IV2: directory assignment (`RegisterBrokerRecord` v3 with
    /// `LogDirs`, `PartitionRecord`/`PartitionChangeRecord` v1 with
    /// `Directories`).
    pub const IBP_3_7_IV2: i16 = 17;
    /// 4.0-IV1: eligible leader replicas (`PartitionRecord`/
    /// `PartitionChangeRecord` v2).
    pub const IBP_4_0_IV1: i16 = 23;
    /// 4.3-IV0: cordoned log directories (`RegisterBrokerRecord` v4).
    pub const IBP_4_3_IV0: i16 = 30;
}

impl MetadataRecord {
    /// Writes the framed record value at [`MetadataRecord::version`], the
    /// newest version of its schema.
    pub fn encode_framed(&self, out: &mut BytesMut) {
        self.encode_framed_at(self.version(), out)
    }

    /// The version Kafka writes this record at in a cluster (`MetadataVersion.registerBrokerRecordVersion`,
    /// `partitionRecordVersion`, `partitionChangeRecordVersion` at feature
    /// level `level` of `metadata.version`; a
    /// `BrokerRegistrationChangeRecord` at the version that introduced the
    /// field it changes, as Kafka's controller writes it: 0 for fencing,
    /// 1 for a controlled shutdown, 2 for log directories, 3 for cordoned
    /// ones). Every other record type has one version.
    ///
    /// A partition record that carries eligible leader replicas is written
    /// at version 2 whatever the level: Kafka never has them below 4.0-IV1
    /// (the feature depends on it), and writing an older version would
    /// silently drop them.
    pub fn version_at(&self, level: i16) -> i16 {
        use self::metadata_version as mv;
        let partition_version = |elr: bool| {
            if elr || level >= mv::IBP_4_0_IV1 {
                2
            } else if level >= mv::IBP_3_7_IV2 {
                1
            } else {
                0
            }
        };
        let non_empty = |v: &Option<Vec<i32>>| v.as_ref().is_some_and(|v| !v.is_empty());
        match self {
            MetadataRecord::RegisterBroker(_) => {
                if level >= mv::IBP_4_3_IV0 {
                    4
                } else if level >= mv::IBP_3_7_IV2 {
                    3
                } else if level >= mv::IBP_3_4_IV0 {
                    2
                } else {
                    1
                }
            }
            MetadataRecord::Partition(p) => partition_version(
                non_empty(&p.eligible_leader_replicas) || non_empty(&p.last_known_elr),
            ),
            MetadataRecord::PartitionChange(c) => partition_version(
                c.eligible_leader_replicas.is_some() || c.last_known_elr.is_some(),
            ),
            MetadataRecord::BrokerRegistrationChange(c) => {
                if c.cordoned_log_dirs.is_some() {
                    3
                } else if !c.log_dirs.is_empty() {
                    2
                } else if c.in_controlled_shutdown != 0 {
                    1
                } else {
                    0
                }
            }
            _ => self.version(),
        }
    }

    /// Writes the framed record value at the version Kafka writes it in a
    /// cluster at `metadata.version` level `level` ([`MetadataRecord::version_at`]).
    pub fn encode_framed_for(&self, level: i16, out: &mut BytesMut) {
        self.encode_framed_at(self.version_at(level), out)
    }

    /// Writes the framed record value at `version` (which the record type
    /// must have).
    pub fn encode_framed_at(&self, version: i16, out: &mut BytesMut) {
        assert!(version >= 0, "negative record version {version}");
        put_uvarint(out, FRAME_VERSION);
        put_uvarint(out, self.api_key() as u32);
        put_uvarint(out, version as u32);
        self.encode(version, out);
    }

    /// Reads one framed record value; the value must hold exactly one record.
    /// Returns the record and the version it was written at.
    pub fn decode_framed(r: &mut Reader) -> Result<(MetadataRecord, i16), DecodeError> {
        let frame = r.uvarint("MetadataRecord.frame_version")?;
        if frame != FRAME_VERSION {
            return Err(DecodeError::UnsupportedFrameVersion {
                field: "MetadataRecord.frame_version",
                version: frame,
            });
        }
        let api_key = r.uvarint("MetadataRecord.api_key")?;
        let api_key = i16::try_from(api_key).map_err(|_| DecodeError::InvalidLength {
            field: "MetadataRecord.api_key",
            length: i64::from(api_key),
        })?;
        let version = r.uvarint("MetadataRecord.version")?;
        let version = i16::try_from(version).map_err(|_| DecodeError::InvalidLength {
            field: "MetadataRecord.version",
            length: i64::from(version),
        })?;
        let record = MetadataRecord::decode(api_key, version, r)?;
        r.finish("metadata record")?;
        Ok((record, version))
    }
}
