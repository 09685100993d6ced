//! Arbitrary bytes as one framed KRaft metadata record value. Decoding must
//! return Ok or Err, never panic or allocate from an unchecked count; what
//! decodes must re-encode to bytes that decode to the same record (compared
//! as bytes: a float64 field may hold NaN, which is not equal to itself).
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
        let out = out.freeze();
        let (again, version2) = MetadataRecord::decode_framed(&mut Reader::new(out.clone()))
            .expect("a re-encoded record decodes");
        assert_eq!(version2, version);
        let mut out2 = BytesMut::new();
        again.encode_framed_at(version2, &mut out2);
        assert_eq!(out2.freeze(), out);
    }
});
