//! Arbitrary bytes as a SASL token (the auth bytes of a SaslAuthenticate
//! request, or a raw frame after SaslHandshake v0) and as a SaslHandshake /
//! SaslAuthenticate request frame. Parsing must return Ok or Err, never
//! panic; what PLAIN accepts must be its three parts joined back.
#![no_main]

use bytes::Bytes;
use fjord_protocol::sasl::PlainMessage;
use fjord_protocol::{decode_request, Reader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = PlainMessage::parse(data) {
        let joined = format!("{}\0{}\0{}", m.authzid, m.username, m.password);
        assert_eq!(joined.as_bytes(), data);
        assert!(!m.username.is_empty() && !m.password.is_empty());
    }
    // The request bodies the connection layer decodes before authentication.
    for (api_key, versions) in [(17i16, 0..=1i16), (36, 0..=2)] {
        for v in versions {
            let mut r = Reader::new(Bytes::copy_from_slice(data));
            let _ = decode_request(api_key, v, &mut r);
        }
    }
});
