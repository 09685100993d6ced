//! Every error code Fjord names has Kafka's number: each one is compared
//! with the `kafka-protocol` crate's table (generated from Kafka's
//! `Errors.java`) by name. A code sent under the wrong number reaches a
//! client as some other error (MISMATCHED_ENDPOINT_TYPE once went out as
//! 118, which is TELEMETRY_TOO_LARGE).

use fjord_model::ErrorCode;
use kafka_protocol::error::ResponseError;

/// `OFFSET_OUT_OF_RANGE` → `OffsetOutOfRange`.
fn camel(screaming: &str) -> String {
    screaming
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_string() + &c.as_str().to_lowercase(),
                None => String::new(),
            }
        })
        .collect()
}

#[test]
fn every_named_code_has_kafkas_number() {
    let mut checked = 0;
    let mut wrong = Vec::new();
    for &code in ErrorCode::ALL {
        if code.0 <= 0 {
            continue; // NONE and UNKNOWN_SERVER_ERROR are not in the error table by name
        }
        let theirs = ResponseError::try_from_code(code.0)
            .unwrap_or_else(|| panic!("{} ({}) is not a Kafka error code", code.name(), code.0));
        // The crate drops Kafka's `_EXCEPTION` suffixes (NETWORK_EXCEPTION
        // is `Network`), so both sides are compared without them.
        let norm = |s: &str| s.to_lowercase().replace("exception", "");
        let theirs = format!("{theirs:?}");
        if norm(&camel(code.name())) != norm(&theirs) {
            wrong.push(format!(
                "{} is {} in Fjord but {theirs} in Kafka",
                code.0,
                code.name()
            ));
        }
        checked += 1;
    }
    assert!(wrong.is_empty(), "codes with the wrong number: {wrong:#?}");
    assert!(checked > 50, "only {checked} codes checked");
}
