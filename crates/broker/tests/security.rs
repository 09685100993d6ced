//! Secured listeners over real sockets: PLAINTEXT, SSL with mutual TLS,
//! and SASL_PLAINTEXT with PLAIN, each on its own port and configured with
//! Kafka's names; certificates are made by the test (rcgen).
//!
//! Checked: Metadata answers the endpoints of the listener the client
//! connected on; a client without a certificate, or speaking plaintext to
//! the TLS port, is closed; on the SASL listener nothing but ApiVersions
//! and the handshake is answered before authentication, a good password
//! authenticates, a wrong one gets SASL_AUTHENTICATION_FAILED and a close,
//! an unknown mechanism UNSUPPORTED_SASL_MECHANISM. SCRAM: credentials
//! set with AlterUserScramCredentials authenticate SCRAM-SHA-256/512
//! logins, survive a restart (metadata log), and stop working once deleted.
//! ACLs (StandardAuthorizer): managed with CreateAcls/DescribeAcls/
//! DeleteAcls by a super user only, enforced on Produce, Metadata (no
//! name of an unauthorized topic leaks) and group APIs, prefixed
//! boundaries, DENY winning, kept across a restart.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use fjord_broker::security::scram::ScramMechanism;
use fjord_broker::security::ListenerSecurity;
use fjord_broker::{Broker, BrokerConfig};
use fjord_protocol::kafka_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use fjord_protocol::kafka_protocol::messages::create_acls_request::AclCreation;
use fjord_protocol::kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use fjord_protocol::kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use fjord_protocol::kafka_protocol::messages::produce_request::{
    PartitionProduceData, TopicProduceData,
};
use fjord_protocol::kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse, ApiVersionsRequest,
    ApiVersionsResponse, DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
    MetadataRequest, MetadataResponse, SaslAuthenticateRequest, SaslAuthenticateResponse,
    SaslHandshakeRequest, SaslHandshakeResponse,
};
use fjord_protocol::kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse, GroupId, HeartbeatRequest, HeartbeatResponse,
    ProduceRequest, ProduceResponse, TopicName,
};
use fjord_protocol::kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

struct Pki {
    ca_pem: String,
    server_pem: String,
    client_cert_pem: String,
    client_key_pem: String,
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "Fjord test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();

    let server_key = KeyPair::generate().unwrap();
    let mut server = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    server
        .subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    server.distinguished_name.push(DnType::CommonName, "broker");
    let server_cert = server.signed_by(&server_key, &ca_cert, &ca_key).unwrap();

    let client_key = KeyPair::generate().unwrap();
    let mut client = CertificateParams::new(Vec::<String>::new()).unwrap();
    client
        .distinguished_name
        .push(DnType::OrganizationName, "Example");
    client.distinguished_name.push(DnType::CommonName, "Alice");
    let client_cert = client.signed_by(&client_key, &ca_cert, &ca_key).unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        server_pem: format!("{}{}", server_key.serialize_pem(), server_cert.pem()),
        client_cert_pem: client_cert.pem(),
        client_key_pem: client_key.serialize_pem(),
    }
}

#[allow(deprecated)] // ring's provider: see the broker's security::tls
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_client(pki: &Pki, with_cert: bool) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(pki.ca_pem.as_bytes()).unwrap())
        .unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = if with_cert {
        let chain = vec![CertificateDer::from_pem_slice(pki.client_cert_pem.as_bytes()).unwrap()];
        let key = PrivateKeyDer::from_pem_slice(pki.client_key_pem.as_bytes()).unwrap();
        builder.with_client_auth_cert(chain, key).unwrap()
    } else {
        builder.with_no_client_auth()
    };
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// Sends one request (header v1, non-flexible versions only) and returns
/// the response body, or `None` when the broker closed the connection.
async fn call<S, Req, Resp>(s: &mut S, api_key: i16, version: i16, req: &Req) -> Option<Resp>
where
    S: AsyncRead + AsyncWrite + Unpin,
    Req: Encodable,
    Resp: Decodable,
{
    let mut body = BytesMut::new();
    body.put_i16(api_key);
    body.put_i16(version);
    body.put_i32(42);
    body.put_i16(1);
    body.put_slice(b"t");
    req.encode(&mut body, version).unwrap();
    let mut frame = BytesMut::new();
    frame.put_i32(body.len() as i32);
    frame.put_slice(&body);
    s.write_all(&frame).await.ok()?;
    let size = tokio::time::timeout(Duration::from_secs(10), s.read_i32())
        .await
        .expect("an answer or a close in time")
        .ok()?;
    let mut buf = vec![0u8; size as usize];
    s.read_exact(&mut buf).await.ok()?;
    let mut buf = Bytes::from(buf);
    assert_eq!(buf.get_i32(), 42, "correlation id");
    Some(Resp::decode(&mut buf, version).unwrap())
}

/// Whether the broker closes `s` (EOF or reset) within a few seconds.
async fn closed<S: AsyncRead + Unpin>(s: &mut S) -> bool {
    let mut b = [0u8; 1];
    match tokio::time::timeout(Duration::from_secs(5), s.read(&mut b)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) | Err(_) => false,
    }
}

async fn metadata<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S) -> Option<MetadataResponse> {
    call(
        s,
        3,
        8,
        &MetadataRequest::default().with_topics(Some(vec![])),
    )
    .await
}

async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    mechanism: &'static str,
) -> SaslHandshakeResponse {
    let req = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(mechanism));
    call(s, 17, 1, &req).await.expect("a handshake answer")
}

async fn authenticate<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    token: &'static [u8],
) -> Option<SaslAuthenticateResponse> {
    let req = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from_static(token));
    call(s, 36, 1, &req).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_ssl_and_sasl_listeners_serve_their_clients() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki();
    let keystore = dir.path().join("broker.pem");
    let truststore = dir.path().join("ca.pem");
    std::fs::write(&keystore, &pki.server_pem).unwrap();
    std::fs::write(&truststore, &pki.ca_pem).unwrap();

    let sockets: Vec<TcpListener> = futures_bind(3).await;
    let ports: Vec<u16> = sockets
        .iter()
        .map(|s| s.local_addr().unwrap().port())
        .collect();
    let mut config = BrokerConfig {
        data_dir: dir.path().join("data"),
        ..BrokerConfig::default()
    };
    let settings = [
        (
            "listeners".to_string(),
            format!(
                "PLAINTEXT://127.0.0.1:{},SECURE://127.0.0.1:{},SASL_PLAINTEXT://127.0.0.1:{}",
                ports[0], ports[1], ports[2]
            ),
        ),
        (
            "listener.security.protocol.map".into(),
            "PLAINTEXT:PLAINTEXT,SECURE:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT".into(),
        ),
        ("ssl.keystore.type".into(), "PEM".into()),
        ("ssl.keystore.location".into(), keystore.display().to_string()),
        ("ssl.truststore.type".into(), "PEM".into()),
        ("ssl.truststore.location".into(), truststore.display().to_string()),
        ("listener.name.secure.ssl.client.auth".into(), "required".into()),
        (
            "ssl.principal.mapping.rules".into(),
            "RULE:^CN=([^,]*),.*$/$1/L,DEFAULT".into(),
        ),
        ("sasl.enabled.mechanisms".into(), "PLAIN".into()),
        (
            "listener.name.sasl_plaintext.plain.sasl.jaas.config".into(),
            r#"org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" password="admin-secret" user_admin="admin-secret" user_alice="alice-secret";"#.into(),
        ),
    ];
    for (k, v) in &settings {
        config.set(k, v).unwrap();
    }
    config.finish(false).unwrap();
    let listeners = config.client_listeners().unwrap();
    assert_eq!(listeners.len(), 3);
    let securities: Vec<Arc<ListenerSecurity>> = listeners
        .iter()
        .map(|l| Arc::new(ListenerSecurity::build(&config.security, l).unwrap()))
        .collect();
    let broker: Arc<Broker> = tokio::task::spawn_blocking(move || Broker::open_deferred(config))
        .await
        .unwrap()
        .unwrap();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut servers = Vec::new();
    for (socket, security) in sockets.into_iter().zip(securities) {
        servers.push(tokio::spawn(fjord_broker::server::serve_listener(
            broker.clone(),
            socket,
            security,
            stop_rx.clone(),
        )));
    }
    let addr = |i: usize| format!("127.0.0.1:{}", ports[i]);

    // PLAINTEXT: Metadata names this broker at the PLAINTEXT port.
    let mut plain = TcpStream::connect(addr(0)).await.unwrap();
    let m = metadata(&mut plain).await.unwrap();
    assert_eq!(m.brokers.len(), 1);
    assert_eq!(m.brokers[0].port, i32::from(ports[0]));

    // SSL with a client certificate: Metadata names the SSL port.
    let server_name = ServerName::try_from("localhost").unwrap();
    let tcp = TcpStream::connect(addr(1)).await.unwrap();
    let mut tls = tls_client(&pki, true)
        .connect(server_name.clone(), tcp)
        .await
        .unwrap();
    let m = metadata(&mut tls).await.unwrap();
    assert_eq!(m.brokers[0].port, i32::from(ports[1]));
    assert_eq!(m.brokers[0].host.as_str(), "127.0.0.1");

    // SSL without a client certificate where one is required: closed.
    let tcp = TcpStream::connect(addr(1)).await.unwrap();
    match tls_client(&pki, false).connect(server_name, tcp).await {
        Err(_) => {}
        Ok(mut s) => assert!(
            metadata(&mut s).await.is_none(),
            "no answer without a certificate"
        ),
    }

    // A plaintext Kafka client on the TLS port: closed, nothing answered.
    let mut confused = TcpStream::connect(addr(1)).await.unwrap();
    assert!(metadata(&mut confused).await.is_none());

    // SASL_PLAINTEXT: a request before authentication closes the connection.
    let mut early = TcpStream::connect(addr(2)).await.unwrap();
    assert!(metadata(&mut early).await.is_none());
    assert!(closed(&mut early).await);

    // ApiVersions, handshake, good password: then Metadata at the SASL port.
    let mut sasl = TcpStream::connect(addr(2)).await.unwrap();
    let v: ApiVersionsResponse = call(&mut sasl, 18, 2, &ApiVersionsRequest::default())
        .await
        .unwrap();
    for (key, max) in [(17, 1), (36, 2)] {
        let api = v.api_keys.iter().find(|a| a.api_key == key).unwrap();
        assert_eq!((api.min_version, api.max_version), (0, max));
    }
    let h = handshake(&mut sasl, "PLAIN").await;
    assert_eq!(h.error_code, 0);
    assert_eq!(h.mechanisms, vec![StrBytes::from_static_str("PLAIN")]);
    let a = authenticate(&mut sasl, b"\0alice\0alice-secret")
        .await
        .unwrap();
    assert_eq!(a.error_code, 0);
    let m = metadata(&mut sasl).await.unwrap();
    assert_eq!(m.brokers[0].port, i32::from(ports[2]));
    // A second handshake after authentication: ILLEGAL_SASL_STATE, as Kafka.
    assert_eq!(handshake(&mut sasl, "PLAIN").await.error_code, 34);

    // Wrong password: SASL_AUTHENTICATION_FAILED, then closed.
    let mut wrong = TcpStream::connect(addr(2)).await.unwrap();
    assert_eq!(handshake(&mut wrong, "PLAIN").await.error_code, 0);
    let a = authenticate(&mut wrong, b"\0alice\0not-her-password")
        .await
        .unwrap();
    assert_eq!(a.error_code, 58);
    assert!(a.error_message.is_some());
    assert!(closed(&mut wrong).await);

    // A mechanism the listener does not enable: UNSUPPORTED_SASL_MECHANISM.
    let mut other = TcpStream::connect(addr(2)).await.unwrap();
    let h = handshake(&mut other, "SCRAM-SHA-512").await;
    assert_eq!(h.error_code, 33);
    assert_eq!(h.mechanisms, vec![StrBytes::from_static_str("PLAIN")]);
    assert!(closed(&mut other).await);

    // On the PLAINTEXT listener a handshake is ILLEGAL_SASL_STATE.
    assert_eq!(handshake(&mut plain, "PLAIN").await.error_code, 34);

    let _ = stop_tx.send(true);
    for s in servers {
        s.await.unwrap().unwrap();
    }
}

/// Sends one request with a flexible header (v2) and reads a flexible
/// response header (v1): the SCRAM admin APIs are flexible from v0.
async fn call_flex<S, Req, Resp>(s: &mut S, api_key: i16, version: i16, req: &Req) -> Option<Resp>
where
    S: AsyncRead + AsyncWrite + Unpin,
    Req: Encodable,
    Resp: Decodable,
{
    let mut body = BytesMut::new();
    body.put_i16(api_key);
    body.put_i16(version);
    body.put_i32(43);
    body.put_i16(1);
    body.put_slice(b"t");
    body.put_u8(0); // no tagged fields
    req.encode(&mut body, version).unwrap();
    let mut frame = BytesMut::new();
    frame.put_i32(body.len() as i32);
    frame.put_slice(&body);
    s.write_all(&frame).await.ok()?;
    let size = tokio::time::timeout(Duration::from_secs(30), s.read_i32())
        .await
        .expect("an answer or a close in time")
        .ok()?;
    let mut buf = vec![0u8; size as usize];
    s.read_exact(&mut buf).await.ok()?;
    let mut buf = Bytes::from(buf);
    assert_eq!(buf.get_i32(), 43, "correlation id");
    assert_eq!(buf.get_u8(), 0, "no tagged fields in the header");
    Some(Resp::decode(&mut buf, version).unwrap())
}

/// A SCRAM login on a new connection to `addr`: `Ok` once authenticated
/// (the server-final message checked), `Err(error code)` otherwise.
async fn scram_login(addr: &str, m: ScramMechanism, user: &str, password: &str) -> Result<(), i16> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let h = handshake(&mut s, m.name()).await;
    if h.error_code != 0 {
        return Err(h.error_code);
    }
    let bare = format!("n={user},r=fyko+d2lbbFgONRv9qkxdawL");
    let first = SaslAuthenticateRequest::default()
        .with_auth_bytes(Bytes::from(format!("n,,{bare}").into_bytes()));
    let a: SaslAuthenticateResponse = call(&mut s, 36, 1, &first).await.expect("an answer");
    if a.error_code != 0 {
        assert!(closed(&mut s).await);
        return Err(a.error_code);
    }
    let (last, server_final) = m
        .client_final(password.as_bytes(), &bare, &a.auth_bytes)
        .unwrap();
    let req = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(last));
    let a: SaslAuthenticateResponse = call(&mut s, 36, 1, &req).await.expect("an answer");
    if a.error_code != 0 {
        assert!(a.error_message.is_some());
        assert!(closed(&mut s).await);
        return Err(a.error_code);
    }
    assert_eq!(
        a.auth_bytes.as_ref(),
        server_final.as_slice(),
        "the server knows the key"
    );
    assert!(
        metadata(&mut s).await.is_some(),
        "served once authenticated"
    );
    Ok(())
}

fn upsertion(m: ScramMechanism, user: &str, password: &str) -> ScramCredentialUpsertion {
    let salt = format!("salt-of-{user}");
    ScramCredentialUpsertion::default()
        .with_name(StrBytes::from_string(user.to_string()))
        .with_mechanism(m.type_id())
        .with_iterations(4096)
        .with_salt(Bytes::from(salt.clone().into_bytes()))
        .with_salted_password(Bytes::from(m.salted_password(
            password.as_bytes(),
            salt.as_bytes(),
            4096,
        )))
}

/// Starts a broker with a PLAINTEXT and a SCRAM listener on `dir`.
async fn scram_broker(
    dir: &std::path::Path,
) -> (
    Arc<Broker>,
    [String; 2],
    tokio::sync::watch::Sender<bool>,
    Vec<tokio::task::JoinHandle<std::io::Result<()>>>,
) {
    let sockets = futures_bind(2).await;
    let ports: Vec<u16> = sockets
        .iter()
        .map(|s| s.local_addr().unwrap().port())
        .collect();
    let mut config = BrokerConfig {
        data_dir: dir.to_path_buf(),
        ..BrokerConfig::default()
    };
    let jaas = "org.apache.kafka.common.security.scram.ScramLoginModule required;";
    for (k, v) in [
        (
            "listeners".to_string(),
            format!(
                "PLAINTEXT://127.0.0.1:{},SASL_PLAINTEXT://127.0.0.1:{}",
                ports[0], ports[1]
            ),
        ),
        (
            "listener.security.protocol.map".into(),
            "PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT".into(),
        ),
        (
            "sasl.enabled.mechanisms".into(),
            "SCRAM-SHA-256,SCRAM-SHA-512".into(),
        ),
        (
            "listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config".into(),
            jaas.into(),
        ),
        (
            "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config".into(),
            jaas.into(),
        ),
    ] {
        config.set(&k, &v).unwrap();
    }
    config.finish(false).unwrap();
    let listeners = config.client_listeners().unwrap();
    let securities: Vec<Arc<ListenerSecurity>> = listeners
        .iter()
        .map(|l| Arc::new(ListenerSecurity::build(&config.security, l).unwrap()))
        .collect();
    let broker: Arc<Broker> = tokio::task::spawn_blocking(move || Broker::open(config))
        .await
        .unwrap()
        .unwrap();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let servers = sockets
        .into_iter()
        .zip(securities)
        .map(|(socket, security)| {
            tokio::spawn(fjord_broker::server::serve_listener(
                broker.clone(),
                socket,
                security,
                stop_rx.clone(),
            ))
        })
        .collect();
    let addrs = [
        format!("127.0.0.1:{}", ports[0]),
        format!("127.0.0.1:{}", ports[1]),
    ];
    (broker, addrs, stop_tx, servers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_credentials_are_managed_with_kafkas_apis_and_authenticate() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (broker, [plain, sasl], stop, servers) = scram_broker(&data).await;
    let (sha256, sha512) = (ScramMechanism::Sha256, ScramMechanism::Sha512);

    // No credential yet: the login fails at the first message.
    assert_eq!(scram_login(&sasl, sha256, "alice", "pw").await, Err(58));

    let mut admin = TcpStream::connect(&plain).await.unwrap();
    let req = AlterUserScramCredentialsRequest::default().with_upsertions(vec![
        upsertion(sha256, "alice", "alice-pw"),
        upsertion(sha512, "bob", "bob-pw"),
    ]);
    let r: AlterUserScramCredentialsResponse = call_flex(&mut admin, 51, 0, &req).await.unwrap();
    assert_eq!(r.results.len(), 2);
    assert!(r.results.iter().all(|r| r.error_code == 0), "{r:?}");

    let d: DescribeUserScramCredentialsResponse = call_flex(
        &mut admin,
        50,
        0,
        &DescribeUserScramCredentialsRequest::default().with_users(None),
    )
    .await
    .unwrap();
    let described: Vec<(String, i8, i32)> = d
        .results
        .iter()
        .flat_map(|r| {
            r.credential_infos
                .iter()
                .map(|c| (r.user.to_string(), c.mechanism, c.iterations))
        })
        .collect();
    assert_eq!(
        described,
        [("alice".to_string(), 1, 4096), ("bob".to_string(), 2, 4096)]
    );

    assert_eq!(
        scram_login(&sasl, sha256, "alice", "alice-pw").await,
        Ok(())
    );
    assert_eq!(scram_login(&sasl, sha512, "bob", "bob-pw").await, Ok(()));
    assert_eq!(scram_login(&sasl, sha256, "alice", "wrong").await, Err(58));
    // A credential is per mechanism.
    assert_eq!(
        scram_login(&sasl, sha512, "alice", "alice-pw").await,
        Err(58)
    );

    // After a restart the credentials come back from the metadata log.
    let _ = stop.send(true);
    for s in servers {
        s.await.unwrap().unwrap();
    }
    drop(admin);
    tokio::task::spawn_blocking(move || broker.close())
        .await
        .unwrap();
    let (broker, [plain, sasl], stop, servers) = scram_broker(&data).await;
    assert_eq!(
        scram_login(&sasl, sha256, "alice", "alice-pw").await,
        Ok(())
    );

    // Deleted: the login fails again; deleting it twice is RESOURCE_NOT_FOUND.
    let mut admin = TcpStream::connect(&plain).await.unwrap();
    let delete = AlterUserScramCredentialsRequest::default().with_deletions(vec![
        ScramCredentialDeletion::default()
            .with_name(StrBytes::from_static_str("alice"))
            .with_mechanism(1),
    ]);
    let r: AlterUserScramCredentialsResponse = call_flex(&mut admin, 51, 0, &delete).await.unwrap();
    assert_eq!(r.results[0].error_code, 0);
    let r: AlterUserScramCredentialsResponse = call_flex(&mut admin, 51, 0, &delete).await.unwrap();
    assert_eq!(r.results[0].error_code, 91);
    assert_eq!(
        scram_login(&sasl, sha256, "alice", "alice-pw").await,
        Err(58)
    );
    assert_eq!(scram_login(&sasl, sha512, "bob", "bob-pw").await, Ok(()));

    let _ = stop.send(true);
    for s in servers {
        s.await.unwrap().unwrap();
    }
    tokio::task::spawn_blocking(move || broker.close())
        .await
        .unwrap();
}

async fn futures_bind(n: usize) -> Vec<TcpListener> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    out
}

/// A broker with `authorizer.class.name` set (super user `User:admin`)
/// and one SASL_PLAINTEXT listener where admin, alice and bob log in with
/// PLAIN.
async fn acl_broker(
    dir: &std::path::Path,
) -> (
    Arc<Broker>,
    String,
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let socket = futures_bind(1).await.remove(0);
    let port = socket.local_addr().unwrap().port();
    let mut config = BrokerConfig {
        data_dir: dir.to_path_buf(),
        ..BrokerConfig::default()
    };
    for (k, v) in [
        (
            "listeners".to_string(),
            format!("SASL_PLAINTEXT://127.0.0.1:{port}"),
        ),
        (
            "listener.security.protocol.map".into(),
            "SASL_PLAINTEXT:SASL_PLAINTEXT".into(),
        ),
        ("sasl.enabled.mechanisms".into(), "PLAIN".into()),
        (
            "listener.name.sasl_plaintext.plain.sasl.jaas.config".into(),
            "org.apache.kafka.common.security.plain.PlainLoginModule required \
             user_admin=\"admin-pw\" user_alice=\"alice-pw\" user_bob=\"bob-pw\";"
                .into(),
        ),
        (
            "authorizer.class.name".into(),
            "org.apache.kafka.metadata.authorizer.StandardAuthorizer".into(),
        ),
        ("super.users".into(), "User:admin".into()),
    ] {
        config.set(&k, &v).unwrap();
    }
    config.finish(false).unwrap();
    let listener = config.client_listeners().unwrap().remove(0);
    let security = Arc::new(ListenerSecurity::build(&config.security, &listener).unwrap());
    let broker: Arc<Broker> = tokio::task::spawn_blocking(move || Broker::open(config))
        .await
        .unwrap()
        .unwrap();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(fjord_broker::server::serve_listener(
        broker.clone(),
        socket,
        security,
        stop_rx,
    ));
    (broker, format!("127.0.0.1:{port}"), stop_tx, server)
}

/// A connection authenticated with PLAIN (`token` is `\0user\0password`).
async fn plain_login(addr: &str, token: &'static [u8]) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    assert_eq!(handshake(&mut s, "PLAIN").await.error_code, 0);
    let a = authenticate(&mut s, token).await.expect("an answer");
    assert_eq!(a.error_code, 0, "{token:?} logs in");
    s
}

fn acl_creation(
    resource_type: i8,
    name: &str,
    pattern: i8,
    principal: &str,
    operation: i8,
) -> AclCreation {
    AclCreation::default()
        .with_resource_type(resource_type)
        .with_resource_name(StrBytes::from_string(name.into()))
        .with_resource_pattern_type(pattern)
        .with_principal(StrBytes::from_string(principal.into()))
        .with_host(StrBytes::from_static_str("*"))
        .with_operation(operation)
        .with_permission_type(3)
}

/// The names of the topics a list-all Metadata answers, and the error of
/// each named topic of a second Metadata asking for `named`.
async fn visible(s: &mut TcpStream, named: &[&str]) -> (Vec<String>, Vec<i16>) {
    let all: MetadataResponse = call(s, 3, 8, &MetadataRequest::default().with_topics(None))
        .await
        .expect("a metadata answer");
    let mut names: Vec<String> = all
        .topics
        .iter()
        .filter_map(|t| t.name.as_ref().map(|n| n.to_string()))
        .collect();
    names.sort();
    let req = MetadataRequest::default()
        .with_allow_auto_topic_creation(false)
        .with_topics(Some(
            named
                .iter()
                .map(|n| {
                    MetadataRequestTopic::default()
                        .with_name(Some(TopicName(StrBytes::from_string(n.to_string()))))
                })
                .collect(),
        ));
    let some: MetadataResponse = call(s, 3, 8, &req).await.expect("a metadata answer");
    (names, some.topics.iter().map(|t| t.error_code).collect())
}

/// The error of producing one record to partition 0 of `topic`.
async fn produce_error(s: &mut TcpStream, topic: &str) -> i16 {
    let mut b = fjord_records::BatchBuilder::new(fjord_records::Compression::None);
    b.push(1_700_000_000_000, Some(b"k"), Some(b"v"), &[]);
    let req = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.into())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(Bytes::from(b.build(0))))])]);
    let resp: ProduceResponse = call(s, 0, 7, &req).await.expect("a produce answer");
    resp.responses[0].partition_responses[0].error_code
}

async fn heartbeat_error(s: &mut TcpStream, group: &str) -> i16 {
    let req = HeartbeatRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.into())))
        .with_generation_id(1)
        .with_member_id(StrBytes::from_static_str("m"));
    let resp: HeartbeatResponse = call(s, 12, 3, &req).await.expect("a heartbeat answer");
    resp.error_code
}

const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
const GROUP_AUTHORIZATION_FAILED: i16 = 30;
const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acls_are_managed_with_kafkas_apis_and_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, addr, stop, server) = acl_broker(dir.path()).await;
    let b = broker.clone();
    tokio::task::spawn_blocking(move || {
        for t in ["pay-in", "payroll", "secret"] {
            b.create_topic(t, 1, Default::default(), false).unwrap();
        }
    })
    .await
    .unwrap();
    let mut admin = plain_login(&addr, b"\0admin\0admin-pw").await;
    let mut alice = plain_login(&addr, b"\0alice\0alice-pw").await;

    // No ACL: alice sees no topic, not even by name, and may not write;
    // the super user sees and writes everything.
    let (names, errors) = visible(&mut alice, &["pay-in", "nonexistent"]).await;
    assert!(names.is_empty(), "no names leak: {names:?}");
    assert_eq!(errors, vec![TOPIC_AUTHORIZATION_FAILED; 2]);
    assert_eq!(
        produce_error(&mut alice, "pay-in").await,
        TOPIC_AUTHORIZATION_FAILED
    );
    assert_eq!(
        heartbeat_error(&mut alice, "g").await,
        GROUP_AUTHORIZATION_FAILED
    );
    let (names, _) = visible(&mut admin, &[]).await;
    assert_eq!(
        names,
        vec!["__consumer_offsets", "pay-in", "payroll", "secret"]
    );
    assert_eq!(produce_error(&mut admin, "secret").await, 0);

    // Only a principal with ALTER on the cluster changes ACLs.
    let grants = CreateAclsRequest::default().with_creations(vec![
        // WRITE (implies DESCRIBE) on the topics prefixed `pay-`.
        acl_creation(2, "pay-", 4, "User:alice", 4),
        acl_creation(3, "g", 3, "User:alice", 3),
    ]);
    let denied: CreateAclsResponse = call(&mut alice, 30, 1, &grants).await.unwrap();
    assert!(denied
        .results
        .iter()
        .all(|r| r.error_code == CLUSTER_AUTHORIZATION_FAILED));
    let created: CreateAclsResponse = call(&mut admin, 30, 1, &grants).await.unwrap();
    assert!(
        created.results.iter().all(|r| r.error_code == 0),
        "{created:?}"
    );
    // An invalid ACL (a MATCH pattern) is refused on its own.
    let bad =
        CreateAclsRequest::default().with_creations(vec![acl_creation(2, "x", 2, "User:alice", 4)]);
    let refused: CreateAclsResponse = call(&mut admin, 30, 1, &bad).await.unwrap();
    assert_eq!(refused.results[0].error_code, 42, "INVALID_REQUEST");

    // Prefixed boundaries: `pay-in` is covered, `payroll` is not.
    let (names, errors) = visible(&mut alice, &["pay-in", "payroll"]).await;
    assert_eq!(names, vec!["pay-in"]);
    assert_eq!(errors, vec![0, TOPIC_AUTHORIZATION_FAILED]);
    assert_eq!(produce_error(&mut alice, "pay-in").await, 0);
    assert_eq!(
        produce_error(&mut alice, "payroll").await,
        TOPIC_AUTHORIZATION_FAILED
    );
    assert_ne!(
        heartbeat_error(&mut alice, "g").await,
        GROUP_AUTHORIZATION_FAILED
    );
    assert_eq!(
        heartbeat_error(&mut alice, "g2").await,
        GROUP_AUTHORIZATION_FAILED
    );
    // bob has no ACL.
    let mut bob = plain_login(&addr, b"\0bob\0bob-pw").await;
    assert_eq!(
        produce_error(&mut bob, "pay-in").await,
        TOPIC_AUTHORIZATION_FAILED
    );

    // DescribeAcls: DESCRIBE on the cluster; a MATCH filter on `pay-in`
    // finds the prefixed ACL.
    let describe = DescribeAclsRequest::default()
        .with_resource_type_filter(2)
        .with_resource_name_filter(Some(StrBytes::from_static_str("pay-in")))
        .with_pattern_type_filter(2)
        .with_principal_filter(None)
        .with_host_filter(None)
        .with_operation(1)
        .with_permission_type(1);
    let d: DescribeAclsResponse = call(&mut alice, 29, 1, &describe).await.unwrap();
    assert_eq!(d.error_code, CLUSTER_AUTHORIZATION_FAILED);
    let d: DescribeAclsResponse = call(&mut admin, 29, 1, &describe).await.unwrap();
    assert_eq!(d.error_code, 0);
    assert_eq!(d.resources.len(), 1, "{d:?}");
    assert_eq!(d.resources[0].resource_name.as_str(), "pay-");
    assert_eq!(d.resources[0].pattern_type, 4);
    assert_eq!(d.resources[0].acls[0].principal.as_str(), "User:alice");

    // A DENY wins over the ALLOW.
    let deny = CreateAclsRequest::default()
        .with_creations(vec![
            acl_creation(2, "pay-in", 3, "User:*", 4).with_permission_type(2)
        ]);
    let c: CreateAclsResponse = call(&mut admin, 30, 1, &deny).await.unwrap();
    assert_eq!(c.results[0].error_code, 0);
    assert_eq!(
        produce_error(&mut alice, "pay-in").await,
        TOPIC_AUTHORIZATION_FAILED
    );

    // ACLs are in the metadata log: they survive a restart.
    drop((admin, alice, bob));
    let _ = stop.send(true);
    server.await.unwrap().unwrap();
    tokio::task::spawn_blocking(move || broker.close())
        .await
        .unwrap();
    let (broker, addr, stop, server) = acl_broker(dir.path()).await;
    let mut admin = plain_login(&addr, b"\0admin\0admin-pw").await;
    let mut alice = plain_login(&addr, b"\0alice\0alice-pw").await;
    assert_eq!(
        produce_error(&mut alice, "pay-in").await,
        TOPIC_AUTHORIZATION_FAILED
    );
    let (names, _) = visible(&mut alice, &[]).await;
    assert_eq!(names, vec!["pay-in"], "DESCRIBE still implied by WRITE");

    // DeleteAcls removes what its filter matches and lists it.
    let remove = DeleteAclsRequest::default().with_filters(vec![DeleteAclsFilter::default()
        .with_resource_type_filter(1)
        .with_resource_name_filter(None)
        .with_pattern_type_filter(1)
        .with_host_filter(None)
        .with_principal_filter(Some(StrBytes::from_static_str("User:*")))
        .with_operation(1)
        .with_permission_type(1)]);
    let r: DeleteAclsResponse = call(&mut alice, 31, 1, &remove).await.unwrap();
    assert_eq!(r.filter_results[0].error_code, CLUSTER_AUTHORIZATION_FAILED);
    let r: DeleteAclsResponse = call(&mut admin, 31, 1, &remove).await.unwrap();
    assert_eq!(r.filter_results[0].error_code, 0);
    assert_eq!(r.filter_results[0].matching_acls.len(), 1, "{r:?}");
    assert_eq!(r.filter_results[0].matching_acls[0].permission_type, 2);
    assert_eq!(produce_error(&mut alice, "pay-in").await, 0);

    let _ = stop.send(true);
    drop((admin, alice));
    server.await.unwrap().unwrap();
    tokio::task::spawn_blocking(move || broker.close())
        .await
        .unwrap();
}

/// WriteTxnMarkers needs CLUSTER_ACTION on the cluster (Kafka's rule): any
/// other principal gets CLUSTER_AUTHORIZATION_FAILED for every partition and
/// nothing is written; a super user's request is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_txn_markers_needs_cluster_action() {
    use fjord_protocol::kafka_protocol::messages::write_txn_markers_request::{
        WritableTxnMarker, WritableTxnMarkerTopic,
    };
    use fjord_protocol::kafka_protocol::messages::{
        ProducerId, WriteTxnMarkersRequest, WriteTxnMarkersResponse,
    };
    let dir = tempfile::tempdir().unwrap();
    let (broker, addr, stop, server) = acl_broker(dir.path()).await;
    let b = broker.clone();
    tokio::task::spawn_blocking(move || b.create_topic("t", 2, Default::default(), false).unwrap())
        .await
        .unwrap();
    let req = WriteTxnMarkersRequest::default().with_markers(vec![WritableTxnMarker::default()
        .with_producer_id(ProducerId(77))
        .with_producer_epoch(0)
        .with_transaction_result(false)
        .with_coordinator_epoch(0)
        .with_topics(vec![WritableTxnMarkerTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("t")))
            .with_partition_indexes(vec![0, 1])])]);
    let mut alice = plain_login(&addr, b"\0alice\0alice-pw").await;
    let r: WriteTxnMarkersResponse = call_flex(&mut alice, 27, 1, &req).await.expect("an answer");
    let codes: Vec<i16> = r.markers[0].topics[0]
        .partitions
        .iter()
        .map(|p| p.error_code)
        .collect();
    assert_eq!(codes, vec![CLUSTER_AUTHORIZATION_FAILED; 2]);
    let partition = broker.topic("t").unwrap().partition(0).unwrap();
    assert_eq!(partition.log.log_end_offset().0, 0, "nothing written");
    let mut admin = plain_login(&addr, b"\0admin\0admin-pw").await;
    let r: WriteTxnMarkersResponse = call_flex(&mut admin, 27, 1, &req).await.expect("an answer");
    let codes: Vec<i16> = r.markers[0].topics[0]
        .partitions
        .iter()
        .map(|p| p.error_code)
        .collect();
    assert_eq!(codes, vec![0, 0]);
    assert_eq!(partition.log.log_end_offset().0, 1, "the ABORT marker");
    let _ = stop.send(true);
    server.await.unwrap().unwrap();
}

/// AddPartitionsToTxn from a client (v3) is checked as Kafka checks it:
/// WRITE on the transactional id (else every partition is
/// TRANSACTIONAL_ID_AUTHORIZATION_FAILED), then WRITE on each topic (else
/// the topics denied are TOPIC_AUTHORIZATION_FAILED, partitions of unknown
/// topics UNKNOWN_TOPIC_OR_PARTITION, the others OPERATION_NOT_ATTEMPTED);
/// DescribeLogDirs v5 (encoded by Fjord itself) without DESCRIBE on the
/// cluster answers CLUSTER_AUTHORIZATION_FAILED. Both used to close the
/// connection of a principal that is not a super user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_partitions_to_txn_and_describe_log_dirs_answer_authorization_errors() {
    use fjord_protocol::kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
    use fjord_protocol::kafka_protocol::messages::{
        AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, DescribeLogDirsRequest, ProducerId,
        TransactionalId,
    };
    const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;
    const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    const OPERATION_NOT_ATTEMPTED: i16 = 55;
    let dir = tempfile::tempdir().unwrap();
    let (broker, addr, stop, server) = acl_broker(dir.path()).await;
    let b = broker.clone();
    tokio::task::spawn_blocking(move || {
        b.create_topic("open", 1, Default::default(), false)
            .unwrap();
        b.create_topic("shut", 1, Default::default(), false)
            .unwrap();
    })
    .await
    .unwrap();
    let topic = |name: &'static str| {
        AddPartitionsToTxnTopic::default()
            .with_name(TopicName(StrBytes::from_static_str(name)))
            .with_partitions(vec![0])
    };
    let req = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(TransactionalId(StrBytes::from_static_str("tx")))
        .with_v3_and_below_producer_id(ProducerId(5))
        .with_v3_and_below_producer_epoch(0)
        .with_v3_and_below_topics(vec![
            topic("open"),
            topic("shut"),
            topic("gone"),
            topic("nowhere"),
        ]);
    // Each topic's code, the connection kept.
    async fn codes(s: &mut TcpStream, req: &AddPartitionsToTxnRequest) -> Vec<(String, i16)> {
        let r: AddPartitionsToTxnResponse = call_flex(s, 24, 3, req)
            .await
            .expect("an answer, not a close");
        r.results_by_topic_v3_and_below
            .iter()
            .map(|t| {
                (
                    t.name.to_string(),
                    t.results_by_partition[0].partition_error_code,
                )
            })
            .collect()
    }
    let mut alice = plain_login(&addr, b"\0alice\0alice-pw").await;
    assert_eq!(
        codes(&mut alice, &req).await,
        vec![
            ("open".into(), TRANSACTIONAL_ID_AUTHORIZATION_FAILED),
            ("shut".into(), TRANSACTIONAL_ID_AUTHORIZATION_FAILED),
            ("gone".into(), TRANSACTIONAL_ID_AUTHORIZATION_FAILED),
            ("nowhere".into(), TRANSACTIONAL_ID_AUTHORIZATION_FAILED),
        ]
    );
    let mut admin = plain_login(&addr, b"\0admin\0admin-pw").await;
    // WRITE on the transactional id, on `open` and on `gone` (which does
    // not exist) (resource types 5 and 2, LITERAL 3, WRITE 4).
    let grants = CreateAclsRequest::default().with_creations(vec![
        acl_creation(5, "tx", 3, "User:alice", 4),
        acl_creation(2, "open", 3, "User:alice", 4),
        acl_creation(2, "gone", 3, "User:alice", 4),
    ]);
    let created: CreateAclsResponse = call(&mut admin, 30, 1, &grants).await.unwrap();
    assert!(created.results.iter().all(|r| r.error_code == 0));
    assert_eq!(
        codes(&mut alice, &req).await,
        vec![
            ("open".into(), OPERATION_NOT_ATTEMPTED),
            ("shut".into(), TOPIC_AUTHORIZATION_FAILED),
            ("gone".into(), UNKNOWN_TOPIC_OR_PARTITION),
            ("nowhere".into(), TOPIC_AUTHORIZATION_FAILED),
        ],
        "a topic that does not exist is denied as one that does (nothing leaks)"
    );

    // DescribeLogDirs v5: the top-level error, no directory.
    let mut body = BytesMut::new();
    body.put_i16(35);
    body.put_i16(5);
    body.put_i32(44);
    body.put_i16(1);
    body.put_slice(b"t");
    body.put_u8(0); // no tagged fields in the header
                    // v5's request layout is v4's.
    DescribeLogDirsRequest::default()
        .with_topics(None)
        .encode(&mut body, 4)
        .unwrap();
    let mut frame = BytesMut::new();
    frame.put_i32(body.len() as i32);
    frame.put_slice(&body);
    alice.write_all(&frame).await.unwrap();
    let size = tokio::time::timeout(Duration::from_secs(10), alice.read_i32())
        .await
        .expect("an answer in time")
        .expect("an answer, not a close");
    let mut buf = vec![0u8; size as usize];
    alice.read_exact(&mut buf).await.unwrap();
    let mut buf = Bytes::from(buf);
    assert_eq!(buf.get_i32(), 44, "correlation id");
    assert_eq!(buf.get_u8(), 0, "no tagged fields in the header");
    assert_eq!(buf.get_i32(), 0, "throttle_time_ms");
    assert_eq!(buf.get_i16(), CLUSTER_AUTHORIZATION_FAILED);
    assert_eq!(buf.get_u8(), 1, "no results");

    let _ = stop.send(true);
    drop((admin, alice));
    server.await.unwrap().unwrap();
    tokio::task::spawn_blocking(move || broker.close())
        .await
        .unwrap();
}

/// The connector the nodes of a cluster use between them (issue 18), from
/// Kafka's settings (`inter.broker.listener.name`,
/// `sasl.mechanism.inter.broker.protocol`, the listener's JAAS line with
/// `username`/`password`, the PEM trust store): it logs in to a SASL_SSL
/// listener with PLAIN and SCRAM-SHA-256, async and blocking; a wrong
/// password, or no TLS, is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connector_logs_in_to_sasl_ssl_and_wrong_passwords_are_refused() {
    use fjord_client::{Connection, ConnectionOptions, Connector, SaslCredentials, SaslMechanism};
    let dir = tempfile::tempdir().unwrap();
    let pki = pki();
    let keystore = dir.path().join("broker.pem");
    let truststore = dir.path().join("ca.pem");
    std::fs::write(&keystore, &pki.server_pem).unwrap();
    std::fs::write(&truststore, &pki.ca_pem).unwrap();
    let sockets = futures_bind(2).await;
    let ports: Vec<u16> = sockets
        .iter()
        .map(|s| s.local_addr().unwrap().port())
        .collect();
    let mut config = BrokerConfig {
        data_dir: dir.path().join("data"),
        ..BrokerConfig::default()
    };
    for (k, v) in [
        (
            "listeners".to_string(),
            format!(
                "PLAINTEXT://127.0.0.1:{},SASL_SSL://127.0.0.1:{}",
                ports[0], ports[1]
            ),
        ),
        (
            "listener.security.protocol.map".into(),
            "PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT".into(),
        ),
        ("inter.broker.listener.name".into(), "SASL_SSL".into()),
        ("sasl.mechanism.inter.broker.protocol".into(), "PLAIN".into()),
        ("ssl.keystore.type".into(), "PEM".into()),
        ("ssl.keystore.location".into(), keystore.display().to_string()),
        ("ssl.truststore.type".into(), "PEM".into()),
        ("ssl.truststore.location".into(), truststore.display().to_string()),
        ("sasl.enabled.mechanisms".into(), "PLAIN,SCRAM-SHA-256".into()),
        (
            "listener.name.sasl_ssl.plain.sasl.jaas.config".into(),
            r#"org.apache.kafka.common.security.plain.PlainLoginModule required username="broker" password="broker-secret" user_broker="broker-secret";"#.into(),
        ),
        (
            "listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config".into(),
            "org.apache.kafka.common.security.scram.ScramLoginModule required;".into(),
        ),
    ] {
        config.set(&k, &v).unwrap();
    }
    config.finish(false).unwrap();
    let names: Vec<String> = config
        .client_listeners()
        .unwrap()
        .into_iter()
        .map(|l| l.name)
        .collect();
    let links =
        fjord_broker::security::links::node_links(&config.security, &config.kraft, &names, true)
            .unwrap();
    let tls = fjord_broker::security::links::tls_client(&config.security, "SASL_SSL").unwrap();
    let securities: Vec<Arc<ListenerSecurity>> = config
        .client_listeners()
        .unwrap()
        .iter()
        .map(|l| Arc::new(ListenerSecurity::build(&config.security, l).unwrap()))
        .collect();
    let broker: Arc<Broker> = tokio::task::spawn_blocking(move || Broker::open(config))
        .await
        .unwrap()
        .unwrap();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    for (socket, security) in sockets.into_iter().zip(securities) {
        tokio::spawn(fjord_broker::server::serve_listener(
            broker.clone(),
            socket,
            security,
            stop_rx.clone(),
        ));
    }
    let plain_addr = format!("127.0.0.1:{}", ports[0]);
    let secure = format!("127.0.0.1:{}", ports[1]);
    let options = ConnectionOptions::default();

    // PLAIN from the JAAS line's username/password, then a request.
    let conn = Connection::connect_with(&secure, options.clone(), &links.broker)
        .await
        .unwrap();
    let md = conn.metadata(Some(&[]), false).await.unwrap();
    assert_eq!(md.brokers[0].port, i32::from(ports[1]), "{md:?}");

    // A wrong PLAIN password: refused, and the error holds no password.
    let wrong = Connector::new(
        Some(tls.clone()),
        Some(SaslCredentials::new(
            SaslMechanism::Plain,
            "broker",
            "nope-nope",
        )),
    );
    let e = Connection::connect_with(&secure, options.clone(), &wrong)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("SASL authentication of broker failed"), "{e}");
    assert!(!e.contains("nope-nope"), "{e}");
    // No TLS to a SASL_SSL listener: no login.
    let no_tls = Connector::new(
        None,
        Some(SaslCredentials::new(
            SaslMechanism::Plain,
            "broker",
            "broker-secret",
        )),
    );
    assert!(Connection::connect_with(&secure, options.clone(), &no_tls)
        .await
        .is_err());

    // SCRAM-SHA-256 with credentials set by AlterUserScramCredentials.
    let admin = Connection::connect(&plain_addr, options.clone())
        .await
        .unwrap();
    let req = AlterUserScramCredentialsRequest::default().with_upsertions(vec![upsertion(
        ScramMechanism::Sha256,
        "carol",
        "carol-secret",
    )]);
    let answer: AlterUserScramCredentialsResponse =
        admin.send(&req, 0).await.unwrap().wait().await.unwrap();
    assert_eq!(answer.results[0].error_code, 0);
    let scram = |password: &str| {
        Connector::new(
            Some(tls.clone()),
            Some(SaslCredentials::new(
                SaslMechanism::ScramSha256,
                "carol",
                password,
            )),
        )
    };
    let conn = Connection::connect_with(&secure, options.clone(), &scram("carol-secret"))
        .await
        .unwrap();
    assert!(conn.metadata(Some(&[]), false).await.is_ok());
    let e = Connection::connect_with(&secure, options.clone(), &scram("wrong"))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("failed"), "{e}");

    // The blocking side (replica fetchers, the controller channel).
    let (ok, bad) = tokio::task::spawn_blocking(move || {
        let addr: std::net::SocketAddr = secure.parse().unwrap();
        let t = Duration::from_secs(5);
        let ok = links
            .broker
            .connect_blocking("127.0.0.1", addr, "test", t, t)
            .is_ok();
        let bad = wrong
            .connect_blocking("127.0.0.1", addr, "test", t, t)
            .is_err();
        (ok, bad)
    })
    .await
    .unwrap();
    assert!(ok && bad);
    let _ = stop_tx.send(true);
}
