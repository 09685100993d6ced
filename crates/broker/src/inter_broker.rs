//! Requests a broker sends to another broker of its cluster on behalf of a
//! coordinator (Kafka's inter-broker send threads): a transaction
//! coordinator's WriteTxnMarkers to partition leaders, a group
//! coordinator's AddPartitionsToTxn `verify_only` to a transaction
//! coordinator. One connection is kept per node, to the node's
//! inter-broker listener in the metadata image (the replica fetchers'
//! choice; TLS and SASL login as `security::links` says), and dropped on
//! any failure; the next send opens a new one.

use std::collections::HashMap;
use std::sync::Arc;

use fjord_client::{Connection, ConnectionOptions, Connector};
use fjord_model::limits::{
    TRANSACTION_MARKER_CONNECT_TIMEOUT_MS, TRANSACTION_MARKER_REQUEST_TIMEOUT_MS,
};
use fjord_model::NodeId;
use fjord_protocol::kafka_protocol::protocol::Request;
use parking_lot::Mutex;

use crate::state::Broker;

/// Connections to the other brokers, by node (with the address each was opened to).
pub(crate) struct Links {
    client_id: String,
    connector: Connector,
    connections: Mutex<HashMap<NodeId, (String, Arc<Connection>)>>,
}

impl Links {
    pub(crate) fn new(broker: &Broker) -> Links {
        Links {
            client_id: format!("fjord-broker-{}", broker.config.node_id.0),
            connector: broker.links().map(|l| l.broker.clone()).unwrap_or_default(),
            connections: Mutex::new(HashMap::new()),
        }
    }

    /// The address of `node`'s listener in `broker`'s image.
    pub(crate) fn address(broker: &Broker, node: NodeId) -> Option<String> {
        crate::replica_fetcher::address_of(broker, node).map(|(host, a)| {
            if host.contains(':') {
                format!("[{host}]:{}", a.port())
            } else {
                format!("{host}:{}", a.port())
            }
        })
    }

    /// Send `request` at `version` to `node` at `addr` and wait for the
    /// answer (connect and request timeouts: the coordinator's).
    pub(crate) async fn send<R: Request>(
        &self,
        node: NodeId,
        addr: Option<String>,
        request: &R,
        version: i16,
    ) -> Result<R::Response, String> {
        let addr = addr.ok_or_else(|| format!("no address for broker {}", node.0))?;
        let cached = self
            .connections
            .lock()
            .get(&node)
            .filter(|(a, c)| *a == addr && !c.is_closed())
            .map(|(_, c)| c.clone());
        let conn = match cached {
            Some(c) => c,
            None => {
                let options = ConnectionOptions {
                    client_id: self.client_id.clone(),
                    connect_timeout_ms: TRANSACTION_MARKER_CONNECT_TIMEOUT_MS,
                    request_timeout_ms: TRANSACTION_MARKER_REQUEST_TIMEOUT_MS,
                    ..ConnectionOptions::default()
                };
                let c = Arc::new(
                    Connection::connect_with(&addr, options, &self.connector)
                        .await
                        .map_err(|e| e.to_string())?,
                );
                self.connections
                    .lock()
                    .insert(node, (addr.clone(), c.clone()));
                c
            }
        };
        let answer = match conn.send(request, version).await {
            Ok(pending) => pending.wait().await,
            Err(e) => Err(e),
        };
        answer.map_err(|e| {
            self.connections.lock().remove(&node);
            e.to_string()
        })
    }
}
