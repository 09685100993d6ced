//! A CONTROLLER listener whose security denies every request (as the
//! broker's `ControllerListenerSecurity` denies a principal without
//! CLUSTER_ACTION): each request is answered CLUSTER_AUTHORIZATION_FAILED
//! in its API's shape, as Kafka's `ControllerApis` answers it, and the
//! connection stays open (it used to be closed for every API but the
//! quorum's own).

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use fjord_metadata::{CommittedBatch, MetadataError, MetadataListener, Snapshot};
use fjord_model::NodeId;
use fjord_protocol::kafka_protocol::messages::{
    BrokerHeartbeatRequest, BrokerHeartbeatResponse, BrokerRegistrationRequest,
    BrokerRegistrationResponse,
};
use fjord_protocol::kafka_protocol::protocol::{Decodable, Encodable};
use fjord_quorum::net::{ControllerSecurity, Secured, SecuredFuture};
use fjord_quorum::{RaftQuorum, RaftQuorumConfig, Voter};

const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;

struct Ignore;

impl MetadataListener for Ignore {
    fn handle_snapshot(&mut self, _: &Snapshot) -> Result<(), MetadataError> {
        Ok(())
    }
    fn handle_commit(&mut self, _: &CommittedBatch) -> Result<(), MetadataError> {
        Ok(())
    }
    fn snapshot_records(&self) -> Vec<Bytes> {
        Vec::new()
    }
}

/// Plain TCP, and no request allowed.
#[derive(Debug)]
struct DenyAll;

impl ControllerSecurity for DenyAll {
    fn accept(&self, stream: tokio::net::TcpStream, _: SocketAddr) -> SecuredFuture {
        Box::pin(async move {
            Ok(Secured {
                stream: Box::new(stream),
                may: Box::new(|_| false),
            })
        })
    }
}

/// Sends `req` (api `key`, flexible request header v2) and returns the
/// response body after its header (v1: correlation id, tagged fields).
fn call<Req: Encodable>(s: &mut std::net::TcpStream, key: i16, version: i16, req: &Req) -> Bytes {
    let mut body = BytesMut::new();
    body.put_i16(key);
    body.put_i16(version);
    body.put_i32(7);
    body.put_i16(-1); // no client id
    body.put_u8(0); // no tagged fields
    req.encode(&mut body, version).unwrap();
    let mut frame = BytesMut::new();
    frame.put_i32(body.len() as i32);
    frame.put_slice(&body);
    s.write_all(&frame).unwrap();
    let mut len = [0u8; 4];
    s.read_exact(&mut len)
        .expect("an answer, not a closed connection");
    let mut buf = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).unwrap();
    let mut buf = Bytes::from(buf);
    assert_eq!(buf.get_i32(), 7, "correlation id");
    assert_eq!(buf.get_u8(), 0, "no tagged fields in the header");
    buf
}

#[test]
fn denied_broker_requests_get_cluster_authorization_failed_and_the_connection_stays() {
    let dir = tempfile::tempdir().unwrap();
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let voters = vec![Voter {
        id: NodeId(1),
        addr,
    }];
    let mut cfg = RaftQuorumConfig::new(NodeId(1), "denied-test".into(), voters, Some(addr));
    cfg.security = Some(Arc::new(DenyAll));
    let quorum = RaftQuorum::open(
        &fjord_storage::Storage::default(),
        dir.path(),
        cfg,
        Box::new(Ignore),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut s = loop {
        match std::net::TcpStream::connect(addr) {
            Ok(s) => break s,
            Err(e) if Instant::now() < deadline => {
                eprintln!("connecting: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("connect: {e}"),
        }
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut b = call(&mut s, 62, 1, &BrokerRegistrationRequest::default());
    let r = BrokerRegistrationResponse::decode(&mut b, 1).unwrap();
    assert_eq!(r.error_code, CLUSTER_AUTHORIZATION_FAILED);
    // The same connection answers the next request.
    let mut b = call(&mut s, 63, 1, &BrokerHeartbeatRequest::default());
    let r = BrokerHeartbeatResponse::decode(&mut b, 1).unwrap();
    assert_eq!(r.error_code, CLUSTER_AUTHORIZATION_FAILED);
    assert!(r.is_fenced);
    drop(s);
    quorum.close();
}
