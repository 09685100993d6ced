//! Request frames captured from real clients, in `tests/frames/`.
//!
//! Each file `<api_key>-<api_version>-<client>.bin` holds one whole request as
//! the client sent it *without* the 4-byte size prefix: request header then
//! body. `tests/frames/capture.py` records them from any client against a fake
//! broker on loopback. For every file we decode the header and body with our
//! decoders, check the header against the file name, and re-encode the body
//! with kafka-protocol: the bytes must be identical to what the client sent.

mod common;

use std::path::PathBuf;

use bytes::Bytes;
use fjord_protocol::{decode_request, decode_request_header, Reader};

fn frames_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/frames")
}

/// `(api_key, api_version)` from a file name `<key>-<version>-<client>.bin`.
fn parse_name(name: &str) -> Option<(i16, i16)> {
    let stem = name.strip_suffix(".bin")?;
    let mut parts = stem.splitn(3, '-');
    let key = parts.next()?.parse().ok()?;
    let version = parts.next()?.parse().ok()?;
    parts.next()?;
    Some((key, version))
}

#[test]
fn captured_frames_decode_and_reencode_identically() {
    let dir = frames_dir();
    assert!(dir.is_dir(), "{} is missing", dir.display());
    let mut decoded = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("read frames dir") {
        let path = entry.expect("dir entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        if !name.ends_with(".bin") {
            continue;
        }
        let (key, version) =
            parse_name(&name).unwrap_or_else(|| panic!("bad capture file name {name}"));
        let frame = Bytes::from(std::fs::read(&path).expect("read capture"));
        let mut r = Reader::new(frame.clone());
        let header = decode_request_header(&mut r).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            (header.api_key, header.api_version),
            (key, version),
            "{name}"
        );
        let body = r.peek().to_vec();
        let request =
            decode_request(key, version, &mut r).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(request.api_key(), key);
        assert_eq!(
            common::encode_body(&request, version).as_ref(),
            body.as_slice(),
            "{name}: re-encoding differs"
        );
        decoded.push(name);
    }
    decoded.sort();
    eprintln!("decoded {} captured frames: {decoded:?}", decoded.len());
    // Captures from Debian's kcat (librdkafka 2.0.2) are committed with the
    // crate: ApiVersions, Metadata, Produce, Fetch, ListOffsets.
    for expected in [
        "18-3-kcat-debian.bin",
        "3-4-kcat-debian.bin",
        "0-7-kcat-debian.bin",
    ] {
        assert!(decoded.iter().any(|n| n == expected), "{expected} missing");
    }
}

#[test]
fn capture_file_names_parse() {
    assert_eq!(parse_name("18-3-kcat-debian.bin"), Some((18, 3)));
    assert_eq!(parse_name("0-9-java-3.7.bin"), Some((0, 9)));
    assert_eq!(parse_name("x-1-a.bin"), None);
    assert_eq!(parse_name("1-2.bin"), None);
}
