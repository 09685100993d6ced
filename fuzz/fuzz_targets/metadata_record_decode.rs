//! Arbitrary bytes as one framed KRaft metadata record value. Decoding must
//! return Ok or Err, never panic or allocate from an unchecked count; what
//! decodes must re-encode to bytes that decode to the same record.
#![no_main]

use bytes::{Bytes, BytesMut};
use fjord_protocol::metadata_records::MetadataRecord;
use fjord_protocol::Reader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut r = Reader::new(Bytes::copy_from_slice(data));
    if let Ok((record, version)) = MetadataRecord::decode_framed(&mut r) {
        let mut out = BytesMut::new();
        record.encode_framed_at(version, &mut out);
        let again = MetadataRecord::decode_framed(&mut Reader::new(out.freeze()));
        assert_eq!(again, Ok((record, version)));
    }
});
