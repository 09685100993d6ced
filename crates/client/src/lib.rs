//! A small async Kafka client on tokio, the base of Fjord's tools
//! (`fjord bench`, `fjord topic|produce|consume|group|cluster|config`).
//!
//! - [`Connection`]: one broker; requests encoded with kafka-protocol's
//!   `Encodable`, many in flight, responses matched by correlation id and
//!   decoded with its `Decodable`; ApiVersions picks, for every API used, the
//!   highest version both sides support.
//! - [`Client`]: bootstrap, the broker map from Metadata, a connection per
//!   broker, topic creation, waiting for leaders, ListOffsets per leader.
//! - Requests on a connection ([`Connection::metadata`],
//!   [`Connection::create_topics`], [`Connection::produce`],
//!   [`Connection::fetch`], [`Connection::list_offsets`]) take and return
//!   plain types; record batches are built with `fjord_records::BatchBuilder`
//!   and read back with `fjord_records::batches`.
//! - Admin and group requests (`admin.rs`): configs, delete topics, add
//!   partitions, DescribeCluster, FindCoordinator, simple-consumer
//!   OffsetCommit, DeleteGroups, InitProducerId.
//!
//! Responses come from a broker the user chose, so they are decoded with
//! kafka-protocol's decoders, but a frame is refused before any allocation if
//! it is larger than `limits::CLIENT_RESPONSE_BYTES_MAX`.
//!
//! [`Connector`] (`secure.rs`) opens a connection to a PLAINTEXT, SSL,
//! SASL_PLAINTEXT or SASL_SSL listener: TLS with rustls, then a SASL login
//! (PLAIN, SCRAM-SHA-256/512); the nodes of a cluster use it for every
//! channel between them. The tools speak PLAINTEXT.

mod admin;
mod client;
mod conn;
mod error;
mod ops;
mod secure;
mod versions;

pub use admin::{
    coordinator_loading, ClusterDescription, ConfigEntry, ConfigOp, ConfigResource, ConfigSource,
};
pub use client::{Client, ClientOptions};
pub use conn::{
    api_name, decode_response, encode_request, Connection, ConnectionOptions, PendingResponse,
};
pub use error::{kafka_error_name, kafka_error_text, ClientError, Result};
pub use ops::{
    Acks, BrokerInfo, ClusterMetadata, CreatedTopic, FetchOptions, FetchedPartition, ListedOffset,
    NewTopic, OffsetSpec, PartitionInfo, PartitionProduced, PendingFetch, ProduceAck, TopicInfo,
    TopicRef,
};
pub use secure::{
    scram_client_final, AsyncStream, BlockingStream, Connector, SaslCredentials, SaslExchange,
    SaslMechanism, ScramHash,
};
pub use versions::{client_range, Negotiated, Versions, CLIENT_APIS};

#[cfg(test)]
mod tests;
