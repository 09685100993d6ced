//! Helpers shared by the broker's in-process integration tests: open a broker
//! on a temporary directory and send it requests through `handlers::dispatch`,
//! checking the response frame (size, correlation id, empty tagged header).
#![allow(dead_code)] // each test file uses a part of it

use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use fjord_broker::handlers::{dispatch, supported};
use fjord_broker::{Broker, BrokerConfig};
use fjord_protocol::kafka_protocol::messages::{ApiKey, TopicName};
use fjord_protocol::kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use fjord_protocol::{Reader, RequestHeader};

const CORRELATION_ID: i32 = 7;

/// A broker on `dir` with `num_partitions` as the default partition count.
pub fn open_broker(dir: &std::path::Path, num_partitions: i32) -> Arc<Broker> {
    Broker::open(BrokerConfig {
        data_dir: dir.to_path_buf(),
        num_partitions,
        ..BrokerConfig::default()
    })
    .unwrap()
}

/// An API key given as kafka-protocol's enum or as the wire number.
pub trait Key {
    fn key(self) -> i16;
}
impl Key for i16 {
    fn key(self) -> i16 {
        self
    }
}
impl Key for ApiKey {
    fn key(self) -> i16 {
        self as i16
    }
}

/// The response body (after the header) to `body`, encoded in the layout of
/// version `layout`, sent as `api_key` version `version`.
pub async fn call_raw<Req: Encodable>(
    broker: &Arc<Broker>,
    api_key: impl Key,
    version: i16,
    layout: i16,
    body: &Req,
) -> Bytes {
    let api_key = api_key.key();
    let mut buf = BytesMut::new();
    body.encode(&mut buf, layout).unwrap();
    let header = RequestHeader {
        api_key,
        api_version: version,
        correlation_id: CORRELATION_ID,
        client_id: Some("test".into()),
    };
    let pending = dispatch(broker, header, Reader::new(buf.freeze())).expect("request refused");
    let resp = pending
        .resolve()
        .await
        .expect("handler died")
        .expect("a response");
    let mut resp: Bytes = resp.to_bytes().unwrap();
    let size = resp.get_i32() as usize;
    assert_eq!(size, resp.len());
    assert_eq!(resp.get_i32(), CORRELATION_ID);
    if fjord_protocol::response_header_version(api_key, version) >= 1 {
        assert_eq!(resp.get_u8(), 0);
    }
    resp
}

/// `call_raw`, the answer decoded in the layout of version `layout`, with no
/// bytes left over.
pub async fn call_at<Req: Encodable, Resp: Decodable>(
    broker: &Arc<Broker>,
    api_key: impl Key,
    version: i16,
    layout: i16,
    body: &Req,
) -> Resp {
    let mut resp = call_raw(broker, api_key, version, layout, body).await;
    let v = Resp::decode(&mut resp, layout).unwrap();
    assert_eq!(resp.remaining(), 0, "trailing bytes in response");
    v
}

/// `body` sent and answered at `version`.
pub async fn call<Req: Encodable, Resp: Decodable>(
    broker: &Arc<Broker>,
    api_key: impl Key,
    version: i16,
    body: &Req,
) -> Resp {
    call_at(broker, api_key, version, version, body).await
}

/// The versions the broker advertises for `api_key`.
pub fn versions(api_key: ApiKey) -> std::ops::RangeInclusive<i16> {
    supported()
        .into_iter()
        .find(|(k, _)| *k == api_key as i16)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("{api_key:?} not advertised"))
}

/// The versions of `api_key` kafka-protocol can encode: OffsetCommit and
/// OffsetFetch v10 name topics by id, a layout it cannot write (those are
/// covered by every_version.rs's `offset_commit_and_fetch_by_topic_id`).
pub fn named_versions(api_key: ApiKey) -> std::ops::RangeInclusive<i16> {
    let all = versions(api_key);
    let last = all
        .clone()
        .rev()
        .find(|v| !fjord_protocol::is_newer_layout(api_key as i16, *v))
        .unwrap_or_else(|| panic!("{api_key:?}: no version kafka-protocol encodes"));
    *all.start()..=last
}

pub fn name(text: &str) -> TopicName {
    TopicName(s(text))
}

pub fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}
