//! Arbitrary bytes as one request frame (after the size prefix): header then
//! body. Decoding must return Ok or Err, never panic or abort on a huge
//! allocation.
#![no_main]

use bytes::Bytes;
use fjord_protocol::{decode_request, decode_request_header, Reader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut r = Reader::new(Bytes::copy_from_slice(data));
    if let Ok(h) = decode_request_header(&mut r) {
        let _ = decode_request(h.api_key, h.api_version, &mut r);
    }
});
