//! kafka-protocol's message traits for the request and response structs we
//! own (`generated::own`, see `OWN_REQUESTS` in
//! xtask/src/codegen/requests.rs), so that [`crate::Request`], the broker's
//! response encoding and the client's `Connection::send` take them like
//! kafka-protocol's own messages. The traits delegate to the generated
//! encoders and checked decoders.

use bytes::{Buf, BytesMut};
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::buf::{ByteBuf, ByteBufMut};
use kafka_protocol::protocol::{
    Decodable, Encodable, HeaderVersion, Message, Request as KpRequest, VersionRange,
};

use super::generated::own::{WriteTxnMarkersRequest, WriteTxnMarkersResponse};
use super::CheckedDecode;
use crate::reader::{DecodeError, Reader};

/// Implements the message traits for an owned struct whose schema is
/// flexible from version `$flex` on.
macro_rules! owned_message {
    ($ty:ident, request_header: $req:literal, flexible >= $flex:literal) => {
        impl Message for $ty {
            const VERSIONS: VersionRange = VersionRange {
                min: $ty::VERSIONS.0,
                max: $ty::VERSIONS.1,
            };
            const DEPRECATED_VERSIONS: Option<VersionRange> = None;
        }

        impl Encodable for $ty {
            fn encode<B: ByteBufMut>(&self, buf: &mut B, version: i16) -> anyhow::Result<()> {
                check_version(version, $ty::VERSIONS)?;
                let mut out = BytesMut::new();
                $ty::encode(self, version, &mut out);
                buf.put_slice(&out);
                Ok(())
            }

            fn compute_size(&self, version: i16) -> anyhow::Result<usize> {
                check_version(version, $ty::VERSIONS)?;
                let mut out = BytesMut::new();
                $ty::encode(self, version, &mut out);
                Ok(out.len())
            }
        }

        impl Decodable for $ty {
            fn decode<B: ByteBuf>(buf: &mut B, version: i16) -> anyhow::Result<Self> {
                let mut r = Reader::new(buf.copy_to_bytes(buf.remaining()));
                Ok($ty::decode(&mut r, version)?)
            }
        }

        impl HeaderVersion for $ty {
            fn header_version(version: i16) -> i16 {
                match (version >= $flex, $req) {
                    (true, true) => 2,
                    (false, true) => 1,
                    (true, false) => 1,
                    (false, false) => 0,
                }
            }
        }
    };
}

fn check_version(version: i16, (min, max): (i16, i16)) -> anyhow::Result<()> {
    if version < min || version > max {
        anyhow::bail!("version {version} is not in {min}..={max}");
    }
    Ok(())
}

owned_message!(WriteTxnMarkersRequest, request_header: true, flexible >= 1);
owned_message!(WriteTxnMarkersResponse, request_header: false, flexible >= 1);

impl KpRequest for WriteTxnMarkersRequest {
    const KEY: i16 = ApiKey::WriteTxnMarkers as i16;
    type Response = WriteTxnMarkersResponse;
}

impl CheckedDecode for WriteTxnMarkersRequest {
    fn read(r: &mut Reader, version: i16) -> Result<Self, DecodeError> {
        Self::decode(r, version)
    }
}
