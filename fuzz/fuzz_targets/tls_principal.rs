//! Arbitrary bytes on the TLS client-authentication path that is Fjord's
//! own code (the handshake itself is rustls'): as a client certificate
//! (its subject), and as `ssl.principal.mapping.rules` text and a subject
//! to map with them. Nothing may panic.
#![no_main]

use fjord_auth::certificate::subject;
use fjord_auth::principal::PrincipalRules;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(dn) = subject(data) {
        let _ = PrincipalRules::default().apply(&dn);
    }
    let text = String::from_utf8_lossy(data);
    let (rules, dn) = text.split_once('\n').unwrap_or((&text, "CN=alice,O=Example"));
    if let Ok(rules) = PrincipalRules::parse(rules) {
        let _ = rules.apply(dn);
    }
});
