//! SASL/OAUTHBEARER with JWT validation, as Kafka's broker does it with
//! `org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler`
//! (its `BrokerJwtValidator`): the client's initial response (RFC 7628:
//! `n,[a=authzid],` `\x01auth=Bearer <jwt>\x01...\x01`) carries a JWS-signed
//! JWT, checked against the keys of a JWKS document (the broker reads it
//! from `sasl.oauthbearer.jwks.endpoint.url=file:///...`): the signature
//! (RS256/384/512, PS256/384/512, ES256/384; never `none`), `exp` and
//! `iat` present, `exp` not past and `nbf` not ahead (both with
//! `sasl.oauthbearer.clock.skew.seconds`, default 30), `aud` among
//! `sasl.oauthbearer.expected.audience` (a token with an `aud` is refused when
//! none is configured, as jose4j does), `iss` equal to
//! `sasl.oauthbearer.expected.issuer` when set; the principal is the
//! `sasl.oauthbearer.sub.claim.name` claim (default `sub`); the token's `exp`
//! bounds the session (KIP-368).
//!
//! Signatures are checked with `ring` (the crate rustls uses), JSON read with
//! serde_json; nothing here panics on input, and the token is never logged.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use ring::signature::{self, UnparsedPublicKey};
use serde_json::Value;

/// base64url, with or without padding (JWTs have none; JWKS files vary).
const B64URL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A verification key from the JWKS.
#[derive(Clone, Debug, PartialEq, Eq)]
enum KeyMaterial {
    /// RSA modulus and exponent, big-endian.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// An uncompressed EC point (0x04 || x || y) on P-256 or P-384.
    Ec { p384: bool, point: Vec<u8> },
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Jwk {
    kid: Option<String>,
    alg: Option<String>,
    key: KeyMaterial,
}

/// A listener's JWT validation: its keys and expected claims.
#[derive(Clone, Debug)]
pub struct JwtValidator {
    keys: Vec<Jwk>,
    audiences: Vec<String>,
    issuer: Option<String>,
    sub_claim: String,
    clock_skew_ms: i64,
}

/// A token that passed every check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidToken {
    pub principal: String,
    /// `exp`, in ms since the epoch.
    pub expires_at_ms: i64,
}

/// Kafka's error answer to an invalid token (RFC 7628 §3.2.2), sent as a
/// server challenge; the client's `\x01` then fails the authentication.
pub const INVALID_TOKEN: &str = r#"{"status":"invalid_token"}"#;

impl JwtValidator {
    /// A validator with the keys of the JWKS document `jwks` (JSON text);
    /// `audiences` empty means none expected, `clock_skew_ms` is applied to
    /// `exp` and `nbf` both ways.
    pub fn new(
        jwks: &str,
        audiences: Vec<String>,
        issuer: Option<String>,
        sub_claim: String,
        clock_skew_ms: i64,
    ) -> Result<JwtValidator, String> {
        Ok(JwtValidator {
            keys: parse_jwks(jwks)?,
            audiences,
            issuer,
            sub_claim,
            clock_skew_ms,
        })
    }

    /// Checks `jwt` at `now_ms` (ms since the epoch): the reason it is
    /// refused is for the broker's log only.
    pub fn validate(&self, jwt: &str, now_ms: i64) -> Result<ValidToken, String> {
        let mut parts = jwt.split('.');
        let (Some(header), Some(payload), Some(sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("not a JWS in compact form (three parts)".into());
        };
        let header: Value = decode_json(header, "header")?;
        let alg = header
            .get("alg")
            .and_then(Value::as_str)
            .ok_or("no alg in the header")?;
        let kid = header.get("kid").and_then(Value::as_str);
        let sig = B64URL
            .decode(sig)
            .map_err(|_| "the signature is not base64url")?;
        let signed = &jwt.as_bytes()[..header_len(jwt)];
        self.verify(alg, kid, signed, &sig)?;
        let claims: Value = decode_json(payload, "payload")?;
        let claims = claims
            .as_object()
            .ok_or("the claims are not a JSON object")?;
        let skew = self.clock_skew_ms;
        let exp = numeric_date(claims.get("exp"), "exp")?.ok_or("no exp claim")?;
        if now_ms >= exp.saturating_add(skew) {
            return Err("the token has expired (exp)".into());
        }
        let iat = numeric_date(claims.get("iat"), "iat")?.ok_or("no iat claim")?;
        if iat < 0 {
            return Err("iat is negative".into());
        }
        if let Some(nbf) = numeric_date(claims.get("nbf"), "nbf")? {
            if now_ms.saturating_add(skew) < nbf {
                return Err("the token is not valid yet (nbf)".into());
            }
        }
        match claims.get("aud") {
            // jose4j requires one once audiences are expected.
            None if self.audiences.is_empty() => {}
            None => return Err("no aud claim".into()),
            Some(aud) => {
                let given: Vec<&str> = match aud {
                    Value::String(s) => vec![s.as_str()],
                    Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                    _ => return Err("aud is neither a string nor an array".into()),
                };
                if !given.iter().any(|a| self.audiences.iter().any(|e| e == a)) {
                    return Err("no expected audience (aud)".into());
                }
            }
        }
        if let Some(expected) = &self.issuer {
            if claims.get("iss").and_then(Value::as_str) != Some(expected.as_str()) {
                return Err("not the expected issuer (iss)".into());
            }
        }
        let principal = claims
            .get(&self.sub_claim)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| format!("no {} claim", self.sub_claim))?;
        Ok(ValidToken {
            principal: principal.to_string(),
            expires_at_ms: exp,
        })
    }

    /// Some key of the JWKS that fits `alg` (and `kid`, if the token names
    /// one) verifies `sig` over `signed`.
    fn verify(
        &self,
        alg: &str,
        kid: Option<&str>,
        signed: &[u8],
        sig: &[u8],
    ) -> Result<(), String> {
        let rsa: Option<&'static signature::RsaParameters> = match alg {
            "RS256" => Some(&signature::RSA_PKCS1_2048_8192_SHA256),
            "RS384" => Some(&signature::RSA_PKCS1_2048_8192_SHA384),
            "RS512" => Some(&signature::RSA_PKCS1_2048_8192_SHA512),
            "PS256" => Some(&signature::RSA_PSS_2048_8192_SHA256),
            "PS384" => Some(&signature::RSA_PSS_2048_8192_SHA384),
            "PS512" => Some(&signature::RSA_PSS_2048_8192_SHA512),
            _ => None,
        };
        let ec: Option<(&'static signature::EcdsaVerificationAlgorithm, bool)> = match alg {
            "ES256" => Some((&signature::ECDSA_P256_SHA256_FIXED, false)),
            "ES384" => Some((&signature::ECDSA_P384_SHA384_FIXED, true)),
            _ => None,
        };
        if rsa.is_none() && ec.is_none() {
            return Err(format!("algorithm {alg:?} is not accepted"));
        }
        let candidates = self
            .keys
            .iter()
            .filter(|k| kid.is_none_or(|kid| k.kid.as_deref() == Some(kid)))
            .filter(|k| k.alg.as_deref().is_none_or(|a| a == alg));
        let mut found = false;
        for k in candidates {
            let ok = match (&k.key, rsa, ec) {
                (KeyMaterial::Rsa { n, e }, Some(params), _) => {
                    found = true;
                    signature::RsaPublicKeyComponents { n, e }
                        .verify(params, signed, sig)
                        .is_ok()
                }
                (KeyMaterial::Ec { p384, point }, _, Some((params, want384)))
                    if *p384 == want384 =>
                {
                    found = true;
                    UnparsedPublicKey::new(params, point)
                        .verify(signed, sig)
                        .is_ok()
                }
                _ => false,
            };
            if ok {
                return Ok(());
            }
        }
        Err(if found {
            "the signature does not verify".into()
        } else {
            "no key of the JWKS fits the token (kid, alg)".into()
        })
    }
}

/// The bytes the signature covers: `header.payload`.
fn header_len(jwt: &str) -> usize {
    jwt.rfind('.').unwrap_or(0)
}

fn decode_json(part: &str, what: &str) -> Result<Value, String> {
    let bytes = B64URL
        .decode(part)
        .map_err(|_| format!("the {what} is not base64url"))?;
    serde_json::from_slice(&bytes).map_err(|_| format!("the {what} is not JSON"))
}

/// A NumericDate claim (seconds, maybe fractional) in ms; `None` if absent.
fn numeric_date(v: Option<&Value>, name: &str) -> Result<Option<i64>, String> {
    let Some(v) = v else { return Ok(None) };
    let secs = v
        .as_f64()
        .filter(|s| s.is_finite())
        .ok_or_else(|| format!("{name} is not a number"))?;
    // Far beyond any real date: clamp instead of overflowing.
    Ok(Some(
        (secs * 1000.0).clamp(i64::MIN as f64, i64::MAX as f64) as i64,
    ))
}

/// The verification keys of a JWKS document (`{"keys": [...]}`); keys of
/// other types, or for encryption, are skipped.
fn parse_jwks(text: &str) -> Result<Vec<Jwk>, String> {
    let doc: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let keys = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("no \"keys\" array")?;
    let field = |k: &Value, name: &str| -> Result<Vec<u8>, String> {
        let s = k
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("a key without {name}"))?;
        B64URL
            .decode(s)
            .map_err(|_| format!("a key's {name} is not base64url"))
    };
    let mut out = Vec::new();
    for k in keys {
        if k.get("use").and_then(Value::as_str) == Some("enc") {
            continue;
        }
        let key = match k.get("kty").and_then(Value::as_str) {
            Some("RSA") => KeyMaterial::Rsa {
                n: field(k, "n")?,
                e: field(k, "e")?,
            },
            Some("EC") => {
                let (p384, len) = match k.get("crv").and_then(Value::as_str) {
                    Some("P-256") => (false, 32),
                    Some("P-384") => (true, 48),
                    _ => continue,
                };
                let (x, y) = (field(k, "x")?, field(k, "y")?);
                if x.len() != len || y.len() != len {
                    return Err("an EC key's x or y has the wrong length".into());
                }
                let mut point = vec![4u8];
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                KeyMaterial::Ec { p384, point }
            }
            _ => continue,
        };
        out.push(Jwk {
            kid: k.get("kid").and_then(Value::as_str).map(String::from),
            alg: k.get("alg").and_then(Value::as_str).map(String::from),
            key,
        });
    }
    if out.is_empty() {
        return Err("no RSA or EC (P-256, P-384) signing key".into());
    }
    Ok(out)
}

/// The client's initial response (RFC 7628 §3.1, as Kafka's
/// `OAuthBearerClientInitialResponse` reads it): the authorization id (may
/// be empty) and the token. Other key/value pairs (SASL extensions) are
/// accepted and ignored, as the validator callback handler does.
pub fn parse_initial_response(message: &[u8]) -> Result<(String, String), String> {
    let text = std::str::from_utf8(message).map_err(|_| "not UTF-8")?;
    let rest = text.strip_prefix("n,").ok_or("no GS2 header")?;
    let (authzid, rest) = rest.split_once(',').ok_or("no GS2 header")?;
    let authzid = match authzid {
        "" => "",
        a => a.strip_prefix("a=").ok_or("a malformed authorization id")?,
    };
    let body = rest
        .strip_prefix('\u{1}')
        .and_then(|r| r.strip_suffix("\u{1}\u{1}"))
        .ok_or("malformed key/value pairs")?;
    let mut token = None;
    for pair in body.split('\u{1}') {
        let (key, value) = pair.split_once('=').ok_or("a pair without '='")?;
        if key == "auth" {
            let (scheme, t) = value.split_once(' ').ok_or("auth without a token")?;
            if !scheme.eq_ignore_ascii_case("bearer") {
                return Err("auth is not a Bearer token".into());
            }
            let t = t.trim_start_matches(' ');
            if t.is_empty()
                || !t
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            {
                return Err("a malformed token".into());
            }
            token = Some(t.to_string());
        }
    }
    let token = token.ok_or("no auth pair")?;
    Ok((authzid.to_string(), token))
}

#[cfg(test)]
mod tests {
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
    use serde_json::json;

    use super::*;

    const NOW_MS: i64 = 1_800_000_000_000;

    struct Signer {
        key: EcdsaKeyPair,
        rng: SystemRandom,
    }

    impl Signer {
        fn new() -> Signer {
            let rng = SystemRandom::new();
            let pkcs8 =
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
            let key =
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
                    .unwrap();
            Signer { key, rng }
        }

        fn jwks(&self, kid: &str) -> String {
            let point = self.key.public_key().as_ref();
            json!({"keys": [
                {"kty": "oct", "k": "c2VjcmV0"},
                {"kty": "EC", "use": "sig", "kid": kid, "crv": "P-256",
                 "x": B64URL.encode(&point[1..33]), "y": B64URL.encode(&point[33..])}
            ]})
            .to_string()
        }

        fn token(&self, header: Value, claims: Value) -> String {
            let signed = format!(
                "{}.{}",
                B64URL.encode(header.to_string()),
                B64URL.encode(claims.to_string())
            );
            let sig = self.key.sign(&self.rng, signed.as_bytes()).unwrap();
            format!("{signed}.{}", B64URL.encode(sig.as_ref()))
        }
    }

    fn claims() -> Value {
        json!({"sub": "alice", "iat": NOW_MS / 1000 - 10, "exp": NOW_MS / 1000 + 600,
               "aud": ["kafka", "other"], "iss": "https://issuer"})
    }

    fn config(signer: &Signer, audiences: &[&str], sub_claim: &str) -> JwtValidator {
        JwtValidator::new(
            &signer.jwks("k1"),
            audiences.iter().map(|a| a.to_string()).collect(),
            Some("https://issuer".into()),
            sub_claim.into(),
            30_000,
        )
        .unwrap()
    }

    #[test]
    fn a_signed_token_authenticates_its_subject_until_it_expires() {
        let signer = Signer::new();
        let c = config(&signer, &["kafka"], "sub");
        let header = json!({"alg": "ES256", "kid": "k1"});
        let t = signer.token(header.clone(), claims());
        assert_eq!(
            c.validate(&t, NOW_MS),
            Ok(ValidToken {
                principal: "alice".into(),
                expires_at_ms: NOW_MS + 600_000
            })
        );
        // No kid: any fitting key. 30 s of clock skew both ways.
        let t = signer.token(json!({"alg": "ES256"}), claims());
        assert!(c.validate(&t, NOW_MS + 600_000 + 29_999).is_ok());
        assert!(
            c.validate(&t, NOW_MS + 600_000 + 30_000).is_err(),
            "expired"
        );
        let mut early = claims();
        early["nbf"] = json!(NOW_MS / 1000 + 60);
        let t = signer.token(header.clone(), early);
        assert!(c.validate(&t, NOW_MS).is_err(), "not before");
        assert!(c.validate(&t, NOW_MS + 30_000).is_ok());

        // A custom subject claim.
        let c2 = config(&signer, &["kafka"], "client_id");
        let mut cl = claims();
        cl["client_id"] = json!("svc");
        assert_eq!(
            c2.validate(&signer.token(header, cl), NOW_MS)
                .map(|t| t.principal),
            Ok("svc".to_string())
        );
    }

    #[test]
    fn every_check_refuses_what_it_should() {
        let signer = Signer::new();
        let c = config(&signer, &["kafka"], "sub");
        let header = json!({"alg": "ES256", "kid": "k1"});
        let with = |f: &dyn Fn(&mut Value)| {
            let mut cl = claims();
            f(&mut cl);
            signer.token(header.clone(), cl)
        };
        let refused = [
            (
                "no exp",
                with(&|c| drop(c.as_object_mut().unwrap().remove("exp"))),
            ),
            (
                "no iat",
                with(&|c| drop(c.as_object_mut().unwrap().remove("iat"))),
            ),
            (
                "no sub",
                with(&|c| drop(c.as_object_mut().unwrap().remove("sub"))),
            ),
            ("blank sub", with(&|c| c["sub"] = json!("  "))),
            (
                "no aud",
                with(&|c| drop(c.as_object_mut().unwrap().remove("aud"))),
            ),
            ("wrong aud", with(&|c| c["aud"] = json!("someone"))),
            ("wrong iss", with(&|c| c["iss"] = json!("https://other"))),
            (
                "no iss",
                with(&|c| drop(c.as_object_mut().unwrap().remove("iss"))),
            ),
            ("exp not a number", with(&|c| c["exp"] = json!("soon"))),
            (
                "unknown kid",
                signer.token(json!({"alg": "ES256", "kid": "k2"}), claims()),
            ),
            ("alg none", {
                let t = signer.token(json!({"alg": "none"}), claims());
                format!("{}.", &t[..t.rfind('.').unwrap()])
            }),
            ("HS256", signer.token(json!({"alg": "HS256"}), claims())),
            (
                "RS256 for an EC key",
                signer.token(json!({"alg": "RS256"}), claims()),
            ),
            ("another key", Signer::new().token(header.clone(), claims())),
            ("tampered", {
                let t = signer.token(header.clone(), claims());
                let mut parts: Vec<&str> = t.split('.').collect();
                let evil = B64URL.encode(json!({"sub": "admin", "iat": 1, "exp": 9_999_999_999i64, "aud": "kafka", "iss": "https://issuer"}).to_string());
                parts[1] = &evil;
                parts.join(".")
            }),
            ("two parts", "a.b".to_string()),
        ];
        for (what, token) in refused {
            assert!(c.validate(&token, NOW_MS).is_err(), "{what} accepted");
        }
        // No expected audience configured: a token naming one is refused
        // (jose4j's rule), one without is accepted.
        let c = config(&signer, &[], "sub");
        assert!(c
            .validate(&signer.token(header.clone(), claims()), NOW_MS)
            .is_err());
        let t = with(&|c| drop(c.as_object_mut().unwrap().remove("aud")));
        assert!(c.validate(&t, NOW_MS).is_ok());
    }

    #[test]
    fn jwks_without_a_signing_key_are_refused() {
        assert!(parse_jwks(r#"{"keys": [{"kty": "oct", "k": "eA"}]}"#).is_err());
        assert!(
            parse_jwks(r#"{"keys": [{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}]}"#)
                .is_err()
        );
        assert!(parse_jwks("[]").is_err());
    }

    #[test]
    fn the_client_message_is_read_as_kafka_reads_it() {
        let ok = |m: &str| parse_initial_response(m.as_bytes());
        assert_eq!(
            ok("n,,\u{1}auth=Bearer a.b.c\u{1}\u{1}"),
            Ok((String::new(), "a.b.c".into()))
        );
        assert_eq!(
            ok("n,a=alice,\u{1}host=x\u{1}auth=bearer a-b_c.d\u{1}traceId=1\u{1}\u{1}"),
            Ok(("alice".into(), "a-b_c.d".into()))
        );
        for bad in [
            "",
            "n,,",
            "y,,\u{1}auth=Bearer t\u{1}\u{1}",
            "n,,\u{1}auth=Bearer t\u{1}",
            "n,,\u{1}auth=Basic dXNlcg\u{1}\u{1}",
            "n,,\u{1}auth=Bearer \u{1}\u{1}",
            "n,,\u{1}auth=Bearer a b\u{1}\u{1}",
            "n,,\u{1}host=x\u{1}\u{1}",
            "n,b=x,\u{1}auth=Bearer t\u{1}\u{1}",
        ] {
            assert!(ok(bad).is_err(), "{bad:?}");
        }
        assert!(parse_initial_response(&[0xff, 0xfe]).is_err());
    }

    proptest::proptest! {
        /// Junk never panics: client messages, tokens, and a valid token
        /// with bytes changed.
        #[test]
        fn junk_is_refused_without_panicking(
            junk in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
            at in 0usize..400,
            byte in proptest::num::u8::ANY,
        ) {
            let _ = parse_initial_response(&junk);
            let text = String::from_utf8_lossy(&junk);
            let signer = Signer::new();
            let c = config(&signer, &["kafka"], "sub");
            let _ = c.validate(&text, NOW_MS);
            let mut t = signer.token(json!({"alg": "ES256", "kid": "k1"}), claims()).into_bytes();
            let i = at % t.len();
            if t[i] != byte {
                t[i] = byte;
                let t = String::from_utf8_lossy(&t);
                proptest::prop_assert!(c.validate(&t, NOW_MS).is_err());
            }
            let _ = parse_jwks(&text);
        }
    }
}
