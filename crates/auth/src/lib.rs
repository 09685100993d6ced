//! Authentication checks that need no network and no broker state: the
//! parts of SASL/OAUTHBEARER and TLS client authentication that read what
//! a client sent. Kept apart from `fjord-broker` so the fuzz targets can
//! drive them directly (`fuzz/fuzz_targets/oauth_token.rs`,
//! `tls_principal.rs`); the broker builds them from its settings and calls
//! them from its connection handling.
//!
//! - [`oauth`]: the client's OAUTHBEARER initial response and JWT
//!   validation against a JWKS document.
//! - [`certificate`]: a client certificate's subject.
//! - [`principal`]: `ssl.principal.mapping.rules`, from a subject to a user.

pub mod certificate;
pub mod oauth;
pub mod principal;
