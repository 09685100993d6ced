//! Every supported API at every supported version: encode a non-trivial
//! request with kafka-protocol, decode it with ours, compare.

mod common;

use common::{roundtrip, samples, versions};
use fjord_protocol::SUPPORTED_APIS;

#[test]
fn every_api_every_version_roundtrips() {
    let mut checked = 0;
    for api in SUPPORTED_APIS {
        for v in versions(api.api_key) {
            let req = samples::sample(api.api_key, v)
                .unwrap_or_else(|| panic!("no sample for api {} v{v}", api.api_key));
            roundtrip(&req, v);
            checked += 1;
        }
    }
    assert_eq!(SUPPORTED_APIS.len(), 61);
    let expected: i32 = SUPPORTED_APIS
        .iter()
        .map(|a| i32::from(a.max_version - a.min_version) + 1)
        .sum();
    assert_eq!(checked, expected);
    assert!(checked >= 160, "only {checked} api versions checked");
}
