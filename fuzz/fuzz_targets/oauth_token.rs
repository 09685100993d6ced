//! Arbitrary bytes on the SASL/OAUTHBEARER path: as the client's initial
//! response, as a compact JWS token, as the claims of a token that is
//! correctly signed (so the claim checks run on junk JSON), and as a JWKS
//! document. Nothing may panic; a junk token is never accepted.
#![no_main]

use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use fjord_auth::oauth::{parse_initial_response, JwtValidator};
use libfuzzer_sys::fuzz_target;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};

const NOW_MS: i64 = 1_800_000_000_000;

struct Issuer {
    key: EcdsaKeyPair,
    rng: SystemRandom,
    validator: JwtValidator,
}

fn issuer() -> &'static Issuer {
    static ISSUER: OnceLock<Issuer> = OnceLock::new();
    ISSUER.get_or_init(|| {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("a P-256 key");
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .expect("the key just made");
        let point = key.public_key().as_ref();
        let jwks = format!(
            r#"{{"keys": [{{"kty": "EC", "crv": "P-256", "kid": "k1", "x": "{}", "y": "{}"}}]}}"#,
            URL_SAFE_NO_PAD.encode(&point[1..33]),
            URL_SAFE_NO_PAD.encode(&point[33..])
        );
        let validator = JwtValidator::new(
            &jwks,
            vec!["kafka".into()],
            Some("https://issuer".into()),
            "sub".into(),
            30_000,
        )
        .expect("the JWKS just made");
        Issuer { key, rng, validator }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let issuer = issuer();
    match mode % 4 {
        0 => {
            if let Ok((_authzid, token)) = parse_initial_response(rest) {
                assert!(!token.is_empty());
            }
        }
        1 => {
            // Junk is never a valid token: it carries no signature of ours.
            assert!(issuer.validator.validate(&text, NOW_MS).is_err());
        }
        2 => {
            let signed = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(r#"{"alg":"ES256","kid":"k1"}"#),
                URL_SAFE_NO_PAD.encode(rest)
            );
            let sig = issuer
                .key
                .sign(&issuer.rng, signed.as_bytes())
                .expect("signing");
            let jwt = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()));
            if let Ok(valid) = issuer.validator.validate(&jwt, NOW_MS) {
                assert!(!valid.principal.trim().is_empty());
                assert!(NOW_MS < valid.expires_at_ms.saturating_add(30_000));
            }
        }
        _ => {
            let _ = JwtValidator::new(&text, Vec::new(), None, "sub".into(), 0);
        }
    }
});
