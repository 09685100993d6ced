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

impl MetadataRecord {
    /// Writes the framed record value at [`MetadataRecord::version`], the
    /// newest version of its schema.
    pub fn encode_framed(&self, out: &mut BytesMut) {
        self.encode_framed_at(self.version(), out)
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
