//! Fjord's single-node Kafka-compatible broker.
//!
//! Bytes arrive on a socket ([`server`]), a frame is decoded into a request by
//! `fjord_protocol`'s bounds-checked decoders, a handler ([`handlers`]) turns
//! it into calls on partition logs held by [`state::Broker`], and the response
//! is encoded and written in request order.

mod active_controller;
pub mod cluster_metadata;
pub mod config;
pub mod connection_quotas;
pub mod controller_link;
pub mod errors;
pub mod fatal;
pub mod features;
pub mod fetch_sessions;
pub mod groups;
pub mod handlers;
mod inter_broker;
pub mod kafka_configs;
pub mod kraft;
mod leadership;
pub mod metrics;
pub mod quotas;
mod replica_fetcher;
pub mod response;
pub mod security;
pub mod server;
pub mod state;
pub mod txns;

pub use config::BrokerConfig;
pub use state::Broker;
