//! Arbitrary bytes as SCRAM client messages (RFC 5802): the client-first
//! and client-final parsers must return Ok or Err, never panic, and what
//! they accept must hold together (the bare message is the token's tail,
//! the proof-less part its head).
#![no_main]

use fjord_protocol::sasl::{ScramClientFinal, ScramClientFirst};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = ScramClientFirst::parse(data) {
        let text = std::str::from_utf8(data).unwrap();
        assert!(text.starts_with(m.gs2_header));
        assert_eq!(&text[m.gs2_header.len()..], m.bare);
        assert!(!m.username.is_empty() && !m.nonce.is_empty());
        assert!(!m.nonce.contains(','));
    }
    if let Ok(m) = ScramClientFinal::parse(data) {
        let text = std::str::from_utf8(data).unwrap();
        assert!(text.starts_with(m.without_proof));
        assert!(text[m.without_proof.len()..].starts_with(",p="));
        assert!(!m.nonce.is_empty() && !m.nonce.contains(','));
    }
});
