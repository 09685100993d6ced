//! A client of a whole cluster: bootstrap, the broker map from Metadata,
//! one cached connection per broker, and leader lookups.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fjord_model::{NodeId, Offset, PartitionIndex};
use parking_lot::Mutex;

use crate::conn::{Connection, ConnectionOptions};
use crate::error::{ClientError, Result};
use crate::ops::{ClusterMetadata, NewTopic, OffsetSpec, TopicInfo};

/// Kafka's TOPIC_ALREADY_EXISTS.
const TOPIC_ALREADY_EXISTS: i16 = 36;
/// Kafka's UNKNOWN_TOPIC_OR_PARTITION.
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
/// Pause between Metadata polls while waiting for leaders.
const LEADER_POLL_MS: u64 = 50;

/// Settings of a `Client`.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// `HOST:PORT` of one or more brokers; the first that answers is used.
    pub bootstrap: Vec<String>,
    pub connection: ConnectionOptions,
}

impl ClientOptions {
    pub fn new(bootstrap: impl Into<String>) -> ClientOptions {
        ClientOptions {
            bootstrap: vec![bootstrap.into()],
            connection: ConnectionOptions::default(),
        }
    }
}

/// A client of one cluster.
///
/// ```no_run
/// # async fn demo() -> Result<(), fjord_client::ClientError> {
/// use fjord_client::{Client, ClientOptions, NewTopic};
/// let client = Client::connect(ClientOptions::new("127.0.0.1:9092")).await?;
/// client.create_topic(&NewTopic { name: "t".into(), partitions: 3, replication_factor: -1, configs: vec![] }).await?;
/// let topic = client.wait_for_leaders("t", 10_000).await?;
/// let leader = client.connection(topic.partitions[0].leader).await?;
/// # Ok(()) }
/// ```
pub struct Client {
    options: ClientOptions,
    bootstrap: Arc<Connection>,
    brokers: Mutex<HashMap<NodeId, String>>,
    controller: Mutex<Option<NodeId>>,
    connections: tokio::sync::Mutex<HashMap<NodeId, Arc<Connection>>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("bootstrap", &self.bootstrap.addr())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connects to the first reachable bootstrap broker, negotiates versions
    /// and reads the broker list.
    pub async fn connect(options: ClientOptions) -> Result<Client> {
        let mut last_error = None;
        let mut bootstrap = None;
        for addr in &options.bootstrap {
            match Connection::connect(addr, options.connection.clone()).await {
                Ok(c) => {
                    bootstrap = Some(Arc::new(c));
                    break;
                }
                Err(e) => last_error = Some(e),
            }
        }
        let Some(bootstrap) = bootstrap else {
            return Err(last_error
                .unwrap_or_else(|| ClientError::Invalid("no bootstrap address given".into())));
        };
        let client = Client {
            options,
            bootstrap,
            brokers: Mutex::new(HashMap::new()),
            controller: Mutex::new(None),
            connections: tokio::sync::Mutex::new(HashMap::new()),
        };
        client.metadata(Some(&[])).await?;
        Ok(client)
    }

    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// The connection opened to the bootstrap broker.
    pub fn bootstrap_connection(&self) -> &Arc<Connection> {
        &self.bootstrap
    }

    /// Metadata for `topics` (`None`: all), never creating topics; the broker
    /// list is remembered for `connection`.
    pub async fn metadata(&self, topics: Option<&[&str]>) -> Result<ClusterMetadata> {
        let md = self.bootstrap.metadata(topics, false).await?;
        let mut brokers = self.brokers.lock();
        for b in &md.brokers {
            brokers.insert(b.node_id, b.addr());
        }
        *self.controller.lock() = md.controller;
        Ok(md)
    }

    /// The topic's metadata; an error naming the topic if it does not exist.
    pub async fn topic(&self, name: &str) -> Result<TopicInfo> {
        let md = self.metadata(Some(&[name])).await?;
        let Some(t) = md.topic(name) else {
            return Err(ClientError::kafka(
                format!("topic {name}"),
                UNKNOWN_TOPIC_OR_PARTITION,
                None,
            ));
        };
        if t.error_code != 0 {
            return Err(ClientError::kafka(
                format!("topic {name}"),
                t.error_code,
                None,
            ));
        }
        Ok(t.clone())
    }

    /// Polls Metadata until every partition of `name` has a leader (a new
    /// topic needs a moment on Kafka), for at most `timeout_ms`.
    pub async fn wait_for_leaders(&self, name: &str, timeout_ms: u64) -> Result<TopicInfo> {
        let deadline = Instant::now() + Duration::from_millis(timeout_ms);
        loop {
            let result = self.topic(name).await;
            match result {
                Ok(t) if t.all_led() => return Ok(t),
                Ok(_) => {}
                Err(e) if e.is_retriable() => {}
                Err(e) => return Err(e),
            }
            if Instant::now() >= deadline {
                return match self.topic(name).await {
                    Ok(t) => Err(ClientError::Invalid(format!(
                        "topic {name}: {} partitions still without a leader after {timeout_ms} ms",
                        t.partitions
                            .iter()
                            .filter(|p| p.leader.0 < 0 || p.error_code != 0)
                            .count()
                    ))),
                    Err(e) => Err(e),
                };
            }
            tokio::time::sleep(Duration::from_millis(LEADER_POLL_MS)).await;
        }
    }

    /// Creates a topic; `Ok(false)` if it already existed.
    pub async fn create_topic(&self, topic: &NewTopic) -> Result<bool> {
        let controller = *self.controller.lock();
        let conn = match controller {
            Some(node) => self.connection(node).await?,
            None => self.bootstrap.clone(),
        };
        let timeout_ms =
            i32::try_from(self.options.connection.request_timeout_ms).unwrap_or(30_000);
        let results = conn
            .create_topics(std::slice::from_ref(topic), timeout_ms)
            .await?;
        let Some(r) = results.into_iter().find(|r| r.name == topic.name) else {
            return Err(ClientError::Invalid(format!(
                "create topic {}: no result for it in the response",
                topic.name
            )));
        };
        match r.error_code {
            0 => Ok(true),
            TOPIC_ALREADY_EXISTS => Ok(false),
            code => Err(ClientError::kafka(
                format!("create topic {}", topic.name),
                code,
                r.error_message,
            )),
        }
    }

    /// The shared connection to broker `node`, opened on first use.
    pub async fn connection(&self, node: NodeId) -> Result<Arc<Connection>> {
        let mut conns = self.connections.lock().await;
        if let Some(c) = conns.get(&node) {
            if !c.is_closed() {
                return Ok(c.clone());
            }
        }
        let c = self.open_connection(node).await?;
        conns.insert(node, c.clone());
        Ok(c)
    }

    /// A new connection of its own to broker `node` (not shared).
    pub async fn open_connection(&self, node: NodeId) -> Result<Arc<Connection>> {
        let addr = self.broker_addr(node)?;
        Ok(Arc::new(
            Connection::connect(&addr, self.options.connection.clone()).await?,
        ))
    }

    /// `host:port` of broker `node` from the last Metadata.
    pub fn broker_addr(&self, node: NodeId) -> Result<String> {
        self.brokers
            .lock()
            .get(&node)
            .cloned()
            .ok_or(ClientError::UnknownBroker(node))
    }

    /// ListOffsets for every partition of `topic`, asking each leader.
    pub async fn list_offsets(
        &self,
        topic: &TopicInfo,
        spec: OffsetSpec,
    ) -> Result<Vec<(PartitionIndex, Offset)>> {
        let mut by_leader: HashMap<NodeId, Vec<PartitionIndex>> = HashMap::new();
        for p in &topic.partitions {
            by_leader.entry(p.leader).or_default().push(p.partition);
        }
        let mut out = Vec::new();
        for (leader, partitions) in by_leader {
            let conn = self.connection(leader).await?;
            for r in conn.list_offsets(&topic.name, &partitions, spec).await? {
                if r.error_code != 0 {
                    return Err(ClientError::kafka(
                        format!("list offsets of {}/{}", topic.name, r.partition),
                        r.error_code,
                        None,
                    ));
                }
                out.push((r.partition, r.offset));
            }
        }
        out.sort();
        Ok(out)
    }
}
