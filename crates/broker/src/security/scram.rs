//! SASL/SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677), as Kafka's
//! `ScramSaslServer` serves them, with credentials from the metadata image
//! (UserScramCredentialRecord: salt, stored key, server key, iterations;
//! managed with AlterUserScramCredentials).
//!
//! The cryptography is `ring`'s (HMAC, SHA-2, PBKDF2) and `subtle`'s
//! (constant-time comparison); nothing is hand-written. [`ScramExchange`] is sans-IO: the
//! server nonce and the credential lookup are given to it.

use fjord_metadata::ScramCredentialData;
use fjord_protocol::sasl::{
    scram_server_final, scram_server_first, ScramClientFinal, ScramClientFirst,
};
use ring::{digest, hmac, pbkdf2};
use subtle::ConstantTimeEq as _;

/// A SCRAM mechanism, with Kafka's type ids (`ScramMechanism`: 1 and 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ScramMechanism {
    Sha256,
    Sha512,
}

/// Kafka's `ScramMechanism.minIterations()` for both mechanisms.
pub const MIN_ITERATIONS: i32 = 4096;
/// Kafka's `ScramControlManager.MAX_ITERATIONS`.
pub const MAX_ITERATIONS: i32 = 16384;

impl ScramMechanism {
    pub const ALL: [ScramMechanism; 2] = [ScramMechanism::Sha256, ScramMechanism::Sha512];

    pub fn name(self) -> &'static str {
        match self {
            ScramMechanism::Sha256 => "SCRAM-SHA-256",
            ScramMechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    /// The id in UserScramCredentialRecord and the SCRAM admin APIs.
    pub fn type_id(self) -> i8 {
        match self {
            ScramMechanism::Sha256 => 1,
            ScramMechanism::Sha512 => 2,
        }
    }

    pub fn from_type(id: i8) -> Option<ScramMechanism> {
        ScramMechanism::ALL.into_iter().find(|m| m.type_id() == id)
    }

    fn hmac_algorithm(self) -> hmac::Algorithm {
        match self {
            ScramMechanism::Sha256 => hmac::HMAC_SHA256,
            ScramMechanism::Sha512 => hmac::HMAC_SHA512,
        }
    }

    fn digest_algorithm(self) -> &'static digest::Algorithm {
        match self {
            ScramMechanism::Sha256 => &digest::SHA256,
            ScramMechanism::Sha512 => &digest::SHA512,
        }
    }

    fn pbkdf2_algorithm(self) -> pbkdf2::Algorithm {
        match self {
            ScramMechanism::Sha256 => pbkdf2::PBKDF2_HMAC_SHA256,
            ScramMechanism::Sha512 => pbkdf2::PBKDF2_HMAC_SHA512,
        }
    }

    /// The output length of the hash, in bytes.
    pub fn key_len(self) -> usize {
        self.digest_algorithm().output_len()
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        let key = hmac::Key::new(self.hmac_algorithm(), key);
        hmac::sign(&key, data).as_ref().to_vec()
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        digest::digest(self.digest_algorithm(), data)
            .as_ref()
            .to_vec()
    }

    /// `SaltedPassword := Hi(password, salt, i)` (PBKDF2 with this hash).
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: i32) -> Vec<u8> {
        let mut out = vec![0u8; self.key_len()];
        let rounds = std::num::NonZeroU32::new(iterations.max(1).unsigned_abs())
            .unwrap_or(std::num::NonZeroU32::MIN);
        pbkdf2::derive(self.pbkdf2_algorithm(), rounds, salt, password, &mut out);
        out
    }

    /// The stored credential of a salted password (what the controller
    /// keeps of an AlterUserScramCredentials upsertion).
    pub fn credential(
        self,
        salt: &[u8],
        salted_password: &[u8],
        iterations: i32,
    ) -> StoredCredential {
        let client_key = self.hmac(salted_password, b"Client Key");
        StoredCredential {
            salt: salt.to_vec(),
            stored_key: self.hash(&client_key),
            server_key: self.hmac(salted_password, b"Server Key"),
            iterations,
        }
    }
}

impl ScramMechanism {
    /// The client's side of the final round (RFC 5802 section 3), for
    /// clients and tests: from the server-first message, the client-final
    /// message (no channel binding, `c=biws`) and the server-final message
    /// the client must then receive.
    pub fn client_final(
        self,
        password: &[u8],
        client_first_bare: &str,
        server_first: &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>), String> {
        let hash = match self {
            ScramMechanism::Sha256 => fjord_client::ScramHash::Sha256,
            ScramMechanism::Sha512 => fjord_client::ScramHash::Sha512,
        };
        fjord_client::scram_client_final(hash, password, client_first_bare, "", server_first)
    }
}

/// What a server keeps of a SCRAM password. `Debug` hides the keys.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredCredential {
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
    pub iterations: i32,
}

impl std::fmt::Debug for StoredCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoredCredential([hidden])")
    }
}

impl From<&ScramCredentialData> for StoredCredential {
    fn from(c: &ScramCredentialData) -> StoredCredential {
        StoredCredential {
            salt: c.salt.to_vec(),
            stored_key: c.stored_key.to_vec(),
            server_key: c.server_key.to_vec(),
            iterations: c.iterations,
        }
    }
}

/// Kafka's message for every credential failure (unknown user, wrong
/// password): the client is not told which.
pub const INVALID_CREDENTIALS: &str = "Authentication failed: Invalid user credentials";

/// The server's side of one SCRAM exchange after the client-first message.
#[derive(Clone)]
pub struct ScramExchange {
    mechanism: ScramMechanism,
    username: String,
    gs2_header: Vec<u8>,
    /// client nonce + server nonce.
    nonce: String,
    /// client-first-bare + "," + server-first.
    auth_prefix: String,
    credential: StoredCredential,
}

impl std::fmt::Debug for ScramExchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramExchange")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl ScramExchange {
    /// The client-first message: the exchange and the server-first message,
    /// or the reason to fail. `lookup` finds the user's credential;
    /// `server_nonce` is fresh randomness (printable, no ',').
    pub fn start(
        mechanism: ScramMechanism,
        token: &[u8],
        lookup: impl FnOnce(&str) -> Option<StoredCredential>,
        server_nonce: &str,
    ) -> Result<(ScramExchange, Vec<u8>), String> {
        let first = ScramClientFirst::parse(token).map_err(|e| e.to_string())?;
        if !first.authzid.is_empty() && first.authzid != first.username {
            return Err("Authentication failed: Client requested an authorization id that is different from username".into());
        }
        if first
            .extensions
            .iter()
            .any(|(k, v)| *k == "tokenauth" && *v == "true")
        {
            return Err("Authentication failed: delegation tokens are not supported".into());
        }
        let credential = lookup(&first.username).ok_or(INVALID_CREDENTIALS)?;
        if credential.iterations < MIN_ITERATIONS {
            return Err(INVALID_CREDENTIALS.into());
        }
        let nonce = format!("{}{server_nonce}", first.nonce);
        let server_first = scram_server_first(&nonce, &credential.salt, credential.iterations);
        let exchange = ScramExchange {
            mechanism,
            username: first.username.clone(),
            gs2_header: first.gs2_header.as_bytes().to_vec(),
            nonce,
            auth_prefix: format!("{},{server_first}", first.bare),
            credential,
        };
        Ok((exchange, server_first.into_bytes()))
    }

    /// The client-final message: the user name and the server-final
    /// message if the proof holds.
    pub fn finish(&self, token: &[u8]) -> Result<(String, Vec<u8>), String> {
        let last = ScramClientFinal::parse(token).map_err(|e| e.to_string())?;
        if last.nonce != self.nonce {
            return Err("Invalid client nonce in the final client message.".into());
        }
        if last.channel_binding != self.gs2_header {
            return Err("Invalid channel binding in the final client message.".into());
        }
        let m = self.mechanism;
        let auth_message = format!("{},{}", self.auth_prefix, last.without_proof);
        let signature = m.hmac(&self.credential.stored_key, auth_message.as_bytes());
        if last.proof.len() != signature.len() {
            return Err(INVALID_CREDENTIALS.into());
        }
        let client_key: Vec<u8> = last
            .proof
            .iter()
            .zip(&signature)
            .map(|(p, s)| p ^ s)
            .collect();
        let computed = m.hash(&client_key);
        let same: bool = computed.ct_eq(&self.credential.stored_key).into();
        if !same {
            return Err(INVALID_CREDENTIALS.into());
        }
        let server_signature = m.hmac(&self.credential.server_key, auth_message.as_bytes());
        Ok((
            self.username.clone(),
            scram_server_final(&server_signature).into_bytes(),
        ))
    }
}

/// The broker's answers: credentials from its metadata image, nonces
/// from the system's secure random source.
impl super::sasl::SaslContext for crate::state::Broker {
    fn scram_credential(&self, user: &str, mechanism: ScramMechanism) -> Option<StoredCredential> {
        self.image()
            .scram_credential(user, mechanism.type_id())
            .map(|c| StoredCredential::from(&**c))
    }

    fn server_nonce(&self) -> String {
        use base64::Engine as _;
        use ring::rand::SecureRandom as _;
        let mut bytes = [0u8; 24];
        // The system's random source failing is not something to go on without.
        assert!(
            ring::rand::SystemRandom::new().fill(&mut bytes).is_ok(),
            "the system random source failed"
        );
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    fn wall_clock_ms(&self) -> i64 {
        crate::state::now_ms()
    }
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::STANDARD as BASE64;
    use base64::Engine as _;

    use super::*;

    fn client_final(
        m: ScramMechanism,
        password: &str,
        client_first_bare: &str,
        server_first: &str,
    ) -> (String, Vec<u8>) {
        let (last, expected) = m
            .client_final(
                password.as_bytes(),
                client_first_bare,
                server_first.as_bytes(),
            )
            .unwrap();
        (String::from_utf8(last).unwrap(), expected)
    }

    #[test]
    fn rfc_7677_example_verifies() {
        // RFC 7677 section 3: user "user", password "pencil".
        let m = ScramMechanism::Sha256;
        let salt = BASE64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let salted = m.salted_password(b"pencil", &salt, 4096);
        let cred = m.credential(&salt, &salted, 4096);
        let (ex, server_first) = ScramExchange::start(
            m,
            b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
            |u| (u == "user").then(|| cred.clone()),
            "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
        )
        .unwrap();
        assert_eq!(
            server_first,
            b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        );
        let (user, server_final) = ex
            .finish(b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
            .unwrap();
        assert_eq!(user, "user");
        assert_eq!(
            server_final,
            b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
    }

    #[test]
    fn both_mechanisms_accept_the_password_and_refuse_others() {
        for m in ScramMechanism::ALL {
            let salt = b"0123456789abcdef";
            let cred = m.credential(salt, &m.salted_password(b"s3cret", salt, 4096), 4096);
            let lookup = |u: &str| (u == "alice").then(|| cred.clone());
            let first = b"n,,n=alice,r=clientnonce";
            let (ex, sf) = ScramExchange::start(m, first, lookup, "servernonce").unwrap();
            let sf = String::from_utf8(sf).unwrap();
            let (good, expected) = client_final(m, "s3cret", "n=alice,r=clientnonce", &sf);
            assert_eq!(ex.finish(good.as_bytes()), Ok(("alice".into(), expected)));
            let (bad, _) = client_final(m, "wrong", "n=alice,r=clientnonce", &sf);
            assert_eq!(ex.finish(bad.as_bytes()), Err(INVALID_CREDENTIALS.into()));
            // Another nonce, another binding, a short proof.
            let other = good.replace("servernonce", "othernonce");
            assert!(ex.finish(other.as_bytes()).is_err());
            let bound = good.replace("c=biws", "c=eSws");
            assert!(ex.finish(bound.as_bytes()).is_err());
            let short = format!(
                "c=biws,r=clientnonceservernonce,p={}",
                BASE64.encode([1u8; 4])
            );
            assert!(ex.finish(short.as_bytes()).is_err());
            // Unknown user, other authzid, delegation tokens, low iterations.
            let start = |t: &[u8]| ScramExchange::start(m, t, lookup, "n").map(|_| ());
            assert_eq!(start(b"n,,n=bob,r=x"), Err(INVALID_CREDENTIALS.into()));
            assert!(start(b"n,a=bob,n=alice,r=x").is_err());
            assert!(start(b"n,a=alice,n=alice,r=x").is_ok());
            assert!(start(b"n,,n=alice,r=x,tokenauth=true").is_err());
            let weak = m.credential(salt, &m.salted_password(b"s3cret", salt, 100), 100);
            assert!(ScramExchange::start(m, first, |_| Some(weak.clone()), "n").is_err());
        }
        assert_eq!(ScramMechanism::from_type(2), Some(ScramMechanism::Sha512));
        assert_eq!(ScramMechanism::from_type(0), None);
        assert_eq!(ScramMechanism::Sha512.key_len(), 64);
    }
}
