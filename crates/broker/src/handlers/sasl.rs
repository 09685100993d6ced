//! SaslHandshake: versions 0..=1; SaslAuthenticate: versions 0..=2
//! (`session_lifetime_ms` from v1: KIP-368, see `crate::security::sasl`).
//!
//! On a SASL listener, the connection layer (`crate::server`) answers both
//! before the client is authenticated, through a
//! [`crate::security::sasl::SaslSession`]. What reaches [`handshake`] and
//! [`authenticate`] through dispatch is a request on a listener without
//! SASL, or after authentication: ILLEGAL_SASL_STATE, as Kafka's
//! `KafkaApis` answers.

use std::ops::RangeInclusive;

use bytes::BytesMut;
use fjord_model::ErrorCode;
use fjord_protocol::kafka_protocol::messages::{
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};

use super::{str_bytes, Ctx};
use crate::security::sasl::Outcome;

pub const HANDSHAKE_VERSIONS: RangeInclusive<i16> = 0..=1;
pub const AUTHENTICATE_VERSIONS: RangeInclusive<i16> = 0..=2;

/// The answer to a handshake: `error` and the listener's mechanisms.
pub fn handshake_response(
    ctx: &Ctx,
    error: ErrorCode,
    mechanisms: Vec<String>,
) -> Option<BytesMut> {
    let resp = SaslHandshakeResponse::default()
        .with_error_code(error.0)
        .with_mechanisms(mechanisms.into_iter().map(str_bytes).collect());
    ctx.respond(&resp)
}

/// The answer to a SaslAuthenticate request.
pub fn authenticate_response(ctx: &Ctx, outcome: &Outcome) -> Option<BytesMut> {
    let resp = SaslAuthenticateResponse::default()
        .with_error_code(outcome.error.0)
        // Kafka's default: "" when there is no message (not null).
        .with_error_message(Some(str_bytes(outcome.message.clone().unwrap_or_default())))
        .with_auth_bytes(bytes::Bytes::from(outcome.token.clone()))
        // v0 has no such field (its client still gets closed on expiry).
        .with_session_lifetime_ms(if ctx.api_version >= 1 {
            outcome.session_lifetime_ms
        } else {
            0
        });
    ctx.respond(&resp)
}

pub fn handshake(ctx: &Ctx, _req: SaslHandshakeRequest) -> Option<BytesMut> {
    handshake_response(ctx, ErrorCode::ILLEGAL_SASL_STATE, Vec::new())
}

pub fn authenticate(ctx: &Ctx, _req: SaslAuthenticateRequest) -> Option<BytesMut> {
    let resp = SaslAuthenticateResponse::default()
        .with_error_code(ErrorCode::ILLEGAL_SASL_STATE.0)
        .with_error_message(Some(str_bytes(
            "SaslAuthenticate request received after successful authentication",
        )));
    ctx.respond(&resp)
}
