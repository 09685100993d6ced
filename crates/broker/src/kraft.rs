//! KRaft settings by Kafka's names: `process.roles`, `listeners` (named),
//! `controller.listener.names`, `listener.security.protocol.map`,
//! `controller.quorum.voters`, `controller.quorum.bootstrap.servers` and
//! the quorum timeouts.
//!
//! A node with no roles and no voters is the zero-config single node
//! (`LocalQuorum`, no format step). With `controller.quorum.voters` set it
//! runs a [`fjord_quorum::RaftQuorum`] and needs a data directory prepared
//! by `fjord format`: a controller (`process.roles` has `controller`) is a
//! voter on its CONTROLLER listener; a broker-only node
//! (`process.roles=broker`) is an observer with no CONTROLLER listener; a
//! controller-only node has no client listener.
//!
//! KIP-853 dynamic quorums, first part: a controller formatted with
//! `fjord format --standalone` or `--initial-controllers` and served with
//! `controller.quorum.bootstrap.servers` (no `controller.quorum.voters`)
//! takes its voters from the VotersRecord of the bootstrap snapshot in its
//! data directory ([`KraftConfig::with_snapshot_voters`]). A node with no
//! voter set on disk (a controller formatted with
//! `--no-initial-controllers`, a broker) and only the bootstrap servers is
//! an observer that finds the leader through them, until AddRaftVoter adds
//! it (a controller).

use std::net::{SocketAddr, ToSocketAddrs};

use fjord_model::NodeId;

use crate::config::ConfigError;

/// One entry of `listeners` / `advertised.listeners`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedListener {
    pub name: String,
    pub host: String,
    pub port: u16,
}

/// The quorum's voters (id, resolved CONTROLLER address) and this node's
/// CONTROLLER listener address (`None` for a broker-only node).
pub type QuorumSettings = (Vec<(NodeId, SocketAddr)>, Option<SocketAddr>);

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KraftConfig {
    /// `process.roles`: "broker", "controller" (both for a combined node).
    pub process_roles: Vec<String>,
    /// `listeners` as given, when named (several, or set to agree with a
    /// shorthand).
    pub listeners: Vec<NamedListener>,
    /// The last `listeners` value as given, even a single listener (a
    /// controller-only node has just its CONTROLLER listener).
    pub declared_listeners: Vec<NamedListener>,
    pub controller_listener_names: Vec<String>,
    /// `listener.security.protocol.map`: name → protocol.
    pub security_protocol_map: Vec<(String, String)>,
    /// `controller.quorum.voters`: id@host:port.
    pub voters: Vec<(NodeId, String, u16)>,
    pub bootstrap_servers: Vec<String>,
    pub election_timeout_ms: Option<i64>,
    pub fetch_timeout_ms: Option<i64>,
}

fn invalid(name: &str, value: &str, why: &str) -> ConfigError {
    ConfigError::Invalid {
        name: name.to_string(),
        value: value.to_string(),
        reason: why.to_string(),
    }
}

/// A quorum timeout setting (`controller.quorum.*.timeout.ms`), in 10..=3600000 ms.
fn quorum_timeout_ms(name: &str, value: &str) -> Result<i64, ConfigError> {
    value
        .trim()
        .parse::<i64>()
        .ok()
        .filter(|v| (10..=3_600_000).contains(v))
        .ok_or_else(|| invalid(name, value, "10..=3600000"))
}

fn list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Parses `NAME://HOST:PORT,...` (a bare `HOST:PORT` is PLAINTEXT).
pub fn parse_listeners(name: &str, value: &str) -> Result<Vec<NamedListener>, ConfigError> {
    let mut out = Vec::new();
    for item in list(value) {
        let (lname, rest) = item
            .split_once("://")
            .map_or(("PLAINTEXT", item.as_str()), |(n, r)| (n, r));
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| invalid(name, value, "expected NAME://HOST:PORT"))?;
        let port: u16 = port.parse().map_err(|_| invalid(name, value, "bad port"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        // Kafka binds every interface for an empty host (its shipped
        // server.properties says `PLAINTEXT://:9092,CONTROLLER://:9093`).
        let host = if host.is_empty() && name == "listeners" {
            "0.0.0.0"
        } else {
            host
        };
        if host.is_empty() || lname.is_empty() {
            return Err(invalid(name, value, "empty host or listener name"));
        }
        if out.iter().any(|l: &NamedListener| l.name == lname) {
            return Err(invalid(name, value, "a listener name appears twice"));
        }
        out.push(NamedListener {
            name: lname.to_uppercase(),
            host: host.to_string(),
            port,
        });
    }
    if out.is_empty() {
        return Err(invalid(name, value, "no listener"));
    }
    Ok(out)
}

impl KraftConfig {
    /// Whether `name` is one of ours (handled by [`KraftConfig::set`]).
    pub fn handles(name: &str) -> bool {
        matches!(
            name,
            "process.roles"
                | "controller.listener.names"
                | "listener.security.protocol.map"
                | "controller.quorum.voters"
                | "controller.quorum.bootstrap.servers"
                | "controller.quorum.election.timeout.ms"
                | "controller.quorum.fetch.timeout.ms"
        )
    }

    pub fn set(&mut self, name: &str, value: &str) -> Result<(), ConfigError> {
        match name {
            "process.roles" => {
                let roles = list(value);
                if roles.iter().any(|r| r != "broker" && r != "controller") {
                    return Err(invalid(name, value, "expected broker, controller or both"));
                }
                self.process_roles = roles;
            }
            "controller.listener.names" => {
                self.controller_listener_names =
                    list(value).into_iter().map(|s| s.to_uppercase()).collect()
            }
            "listener.security.protocol.map" => {
                let mut map = Vec::new();
                for item in list(value) {
                    let (n, p) = item
                        .split_once(':')
                        .ok_or_else(|| invalid(name, value, "expected NAME:PROTOCOL,..."))?;
                    map.push((n.trim().to_uppercase(), p.trim().to_string()));
                }
                self.security_protocol_map = map;
            }
            "controller.quorum.voters" => {
                let mut voters = Vec::new();
                for item in list(value) {
                    let (id, addr) = item
                        .split_once('@')
                        .ok_or_else(|| invalid(name, value, "expected ID@HOST:PORT,..."))?;
                    let id: i32 = id
                        .trim()
                        .parse()
                        .map_err(|_| invalid(name, value, "bad id"))?;
                    let (host, port) = addr
                        .rsplit_once(':')
                        .ok_or_else(|| invalid(name, value, "expected ID@HOST:PORT"))?;
                    let port: u16 = port.parse().map_err(|_| invalid(name, value, "bad port"))?;
                    if id < 0 || voters.iter().any(|(v, _, _)| *v == NodeId(id)) {
                        return Err(invalid(name, value, "voter ids are distinct and >= 0"));
                    }
                    let host = host.trim_start_matches('[').trim_end_matches(']');
                    voters.push((NodeId(id), host.to_string(), port));
                }
                self.voters = voters;
            }
            "controller.quorum.bootstrap.servers" => self.bootstrap_servers = list(value),
            "controller.quorum.election.timeout.ms" => {
                self.election_timeout_ms = Some(quorum_timeout_ms(name, value)?)
            }
            "controller.quorum.fetch.timeout.ms" => {
                self.fetch_timeout_ms = Some(quorum_timeout_ms(name, value)?)
            }
            _ => return Err(ConfigError::Unknown(name.to_string())),
        }
        Ok(())
    }

    /// A node of a multi-voter quorum (anything KRaft was configured).
    pub fn is_cluster(&self) -> bool {
        !self.voters.is_empty() || !self.process_roles.is_empty()
    }

    /// `process.roles` names `role` ("broker" or "controller"); a node with
    /// no roles given is both.
    pub fn has_role(&self, role: &str) -> bool {
        self.process_roles.is_empty() || self.process_roles.iter().any(|r| r == role)
    }

    pub(crate) fn is_controller_name(&self, name: &str) -> bool {
        if self.controller_listener_names.is_empty() {
            name == "CONTROLLER"
        } else {
            self.controller_listener_names.iter().any(|n| n == name)
        }
    }

    /// The client (broker) listener among `listeners`: the first that is
    /// not a controller listener.
    pub fn broker_listener<'a>(&self, ls: &'a [NamedListener]) -> Option<&'a NamedListener> {
        ls.iter().find(|l| !self.is_controller_name(&l.name))
    }

    /// `listeners` as declared: the named ones, else the last value given.
    fn all_listeners(&self) -> &[NamedListener] {
        if self.listeners.is_empty() {
            &self.declared_listeners
        } else {
            &self.listeners
        }
    }

    /// A dynamic quorum (only `controller.quorum.bootstrap.servers` set)
    /// with the voter set `voters` of its bootstrap snapshot as its voters:
    /// each voter at its endpoint named in `controller.listener.names`
    /// (else its first). A static quorum is returned as it is.
    pub fn with_snapshot_voters(
        &self,
        voters: &[fjord_metadata::control::VoterEntry],
    ) -> Result<KraftConfig, ConfigError> {
        let mut k = self.clone();
        if !k.voters.is_empty() || k.bootstrap_servers.is_empty() {
            return Ok(k);
        }
        for v in voters {
            let e = v
                .endpoints
                .iter()
                .find(|e| self.is_controller_name(&e.name.to_uppercase()))
                .or_else(|| v.endpoints.first())
                .ok_or_else(|| {
                    invalid(
                        "controller.quorum.bootstrap.servers",
                        "",
                        &format!("voter {} of the bootstrap snapshot has no endpoint", v.id),
                    )
                })?;
            k.voters.push((NodeId(v.id), e.host.clone(), e.port));
        }
        Ok(k)
    }

    /// Checks the settings of a cluster node and returns the quorum's
    /// voters (resolved) and, for a node with the controller role, its
    /// CONTROLLER listener address. Kafka's rules (its `KafkaConfig`
    /// checks): a controller is one of `controller.quorum.voters` and
    /// listens on a listener named in `controller.listener.names`; a
    /// broker-only node is not a voter (it follows the quorum as an
    /// observer) and has no controller listener; a controller-only node has
    /// only controller listeners.
    pub fn quorum(&self, node_id: NodeId) -> Result<QuorumSettings, ConfigError> {
        let err = |n: &str, why: &str| invalid(n, "", why);
        if self.voters.is_empty() && self.bootstrap_servers.is_empty() {
            return Err(err(
                "controller.quorum.voters",
                "required when process.roles is set (or controller.quorum.bootstrap.servers)",
            ));
        }
        // KIP-853: no voter known (a controller formatted with
        // --no-initial-controllers, a broker): an observer that finds the
        // leader through controller.quorum.bootstrap.servers.
        let observer_of_bootstrap = self.voters.is_empty();
        let roles = &self.process_roles;
        let controller_role = roles.iter().any(|r| r == "controller");
        let broker_role = roles.iter().any(|r| r == "broker");
        if !controller_role && !broker_role {
            return Err(err(
                "process.roles",
                "required with controller.quorum.voters: broker, controller or both",
            ));
        }
        let voter = self.voters.iter().any(|(v, _, _)| *v == node_id);
        if controller_role && !voter && !observer_of_bootstrap {
            return Err(err(
                "node.id",
                "a controller must be one of controller.quorum.voters",
            ));
        }
        if !controller_role && voter {
            return Err(err(
                "node.id",
                "a broker-only node (process.roles=broker) must not be one of controller.quorum.voters",
            ));
        }
        let listeners = self.all_listeners();
        let controller = listeners.iter().find(|l| self.is_controller_name(&l.name));
        let broker = self.broker_listener(listeners);
        let controller = match (controller_role, controller) {
            (true, None) => {
                return Err(err(
                    "listeners",
                    "no listener named in controller.listener.names",
                ))
            }
            (false, Some(_)) => {
                return Err(err(
                    "listeners",
                    "a broker-only node (process.roles=broker) has no listener named in controller.listener.names",
                ))
            }
            (_, c) => c,
        };
        if !broker_role && broker.is_some() {
            return Err(err(
                "listeners",
                "a controller-only node (process.roles=controller) has only listeners named in controller.listener.names",
            ));
        }
        if broker_role && broker.is_none() && !listeners.is_empty() {
            return Err(err(
                "listeners",
                "a broker needs a listener not named in controller.listener.names",
            ));
        }
        // Any protocol for the CONTROLLER listener: `security::links`
        // checks the settings, the broker secures the connections.
        let resolve = |host: &str, port: u16, name: &str| -> Result<SocketAddr, ConfigError> {
            (host, port)
                .to_socket_addrs()
                .ok()
                .and_then(|mut a| a.next())
                .ok_or_else(|| err(name, "cannot resolve host"))
        };
        let listen = controller
            .map(|c| resolve(&c.host, c.port, "listeners"))
            .transpose()?;
        let mut voters = Vec::new();
        for (id, host, port) in &self.voters {
            voters.push((*id, resolve(host, *port, "controller.quorum.voters")?));
        }
        Ok((voters, listen))
    }

    /// `controller.quorum.bootstrap.servers`, resolved.
    pub fn bootstrap_addrs(&self) -> Result<Vec<SocketAddr>, ConfigError> {
        let name = "controller.quorum.bootstrap.servers";
        self.bootstrap_servers
            .iter()
            .map(|hp| {
                hp.to_socket_addrs()
                    .ok()
                    .and_then(|mut a| a.next())
                    .ok_or_else(|| invalid(name, hp, "cannot resolve host:port"))
            })
            .collect()
    }
}

/// One controller of `fjord format --initial-controllers`
/// (`ID@HOST:PORT:DIRECTORY_ID`, Kafka's syntax).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitialController {
    pub id: NodeId,
    pub host: String,
    pub port: u16,
    pub directory_id: uuid::Uuid,
}

/// Parses `--initial-controllers`: `ID@HOST:PORT:DIRECTORY_ID,...` with
/// distinct ids and directory ids (Kafka's directory ids: 22 characters
/// of URL-safe base64).
pub fn parse_initial_controllers(value: &str) -> Result<Vec<InitialController>, ConfigError> {
    let name = "--initial-controllers";
    let mut out: Vec<InitialController> = Vec::new();
    for item in list(value) {
        let bad = |why: &str| invalid(name, &item, why);
        let (id, rest) = item
            .split_once('@')
            .ok_or_else(|| bad("expected ID@HOST:PORT:DIRECTORY_ID"))?;
        let id: i32 = id.trim().parse().map_err(|_| bad("bad id"))?;
        let (addr, dir) = rest
            .rsplit_once(':')
            .ok_or_else(|| bad("expected ID@HOST:PORT:DIRECTORY_ID"))?;
        let (host, port) = addr
            .rsplit_once(':')
            .ok_or_else(|| bad("expected ID@HOST:PORT:DIRECTORY_ID"))?;
        let port: u16 = port.parse().map_err(|_| bad("bad port"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        // Kafka reserves the ids below 100 (a registration with one is
        // refused: INVALID_REGISTRATION).
        let directory_id = crate::cluster_metadata::parse_kafka_uuid(dir)
            .filter(|u| u.as_u128() >= 100)
            .ok_or_else(|| bad("bad or reserved directory id"))?;
        if id < 0 || host.is_empty() {
            return Err(bad("the id is >= 0 and the host not empty"));
        }
        if out
            .iter()
            .any(|c| c.id == NodeId(id) || c.directory_id == directory_id)
        {
            return Err(bad("controller ids and directory ids are distinct"));
        }
        out.push(InitialController {
            id: NodeId(id),
            host: host.to_string(),
            port,
            directory_id,
        });
    }
    if out.is_empty() {
        return Err(invalid(name, value, "no controller"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_kraft_settings_parse_and_check() {
        let mut k = KraftConfig::default();
        assert!(!k.is_cluster());
        k.set("process.roles", "broker,controller").unwrap();
        k.set("controller.listener.names", "CONTROLLER").unwrap();
        k.set(
            "listener.security.protocol.map",
            "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        )
        .unwrap();
        k.set(
            "controller.quorum.voters",
            "1@127.0.0.1:9093,2@127.0.0.1:9193,3@127.0.0.1:9293",
        )
        .unwrap();
        k.listeners = parse_listeners(
            "listeners",
            "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093",
        )
        .unwrap();
        assert!(k.is_cluster());
        let (voters, listen) = k.quorum(NodeId(1)).unwrap();
        assert_eq!(voters.len(), 3);
        assert_eq!(listen, Some("127.0.0.1:9093".parse().unwrap()));
        assert_eq!(k.broker_listener(&k.listeners).unwrap().port, 9092);
        assert!(k.quorum(NodeId(4)).is_err(), "not a voter");
        assert!(k.set("process.roles", "observer").is_err());
        assert!(k.set("controller.quorum.voters", "1@a:1,1@b:2").is_err());
        assert!(k.set("controller.quorum.voters", "x@a:1").is_err());
        k.set(
            "listener.security.protocol.map",
            "CONTROLLER:SSL,PLAINTEXT:PLAINTEXT",
        )
        .unwrap();
        assert!(k.quorum(NodeId(1)).is_ok(), "an SSL controller listener");
        k.set(
            "listener.security.protocol.map",
            "CONTROLLER:PLAINTEXT,PLAINTEXT:SASL_SSL",
        )
        .unwrap();
        assert!(k.quorum(NodeId(1)).is_ok(), "a SASL_SSL broker listener");
        assert!(parse_listeners("listeners", "A://h:1,A://h:2").is_err());
        let mut only_bootstrap = KraftConfig::default();
        only_bootstrap
            .set("controller.quorum.bootstrap.servers", "127.0.0.1:9093")
            .unwrap();
        only_bootstrap
            .set("process.roles", "broker,controller")
            .unwrap();
        assert!(only_bootstrap.quorum(NodeId(1)).is_err());
    }

    #[test]
    fn initial_controllers_are_kafkas_syntax() {
        let c = parse_initial_controllers(
            "1@127.0.0.1:9093:lQqNmqB4Ttu9caF5i2WITw,2@[::1]:9193:4mDV6NFHRSCcwS25OgCqRA",
        )
        .unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(
            (c[0].id, c[0].host.as_str(), c[0].port),
            (NodeId(1), "127.0.0.1", 9093)
        );
        assert_eq!(
            crate::cluster_metadata::kafka_uuid_string(c[0].directory_id),
            "lQqNmqB4Ttu9caF5i2WITw"
        );
        assert_eq!((c[1].host.as_str(), c[1].port), ("::1", 9193));
        for bad in [
            "",
            "1@127.0.0.1:9093",                        // no directory id
            "x@127.0.0.1:9093:lQqNmqB4Ttu9caF5i2WITw", // bad id
            "1@127.0.0.1:9093:nope",                   // bad directory id
            "1@127.0.0.1:9093:AAAAAAAAAAAAAAAAAAAAAQ", // reserved (< 100)
            "1@a:1:lQqNmqB4Ttu9caF5i2WITw,1@b:2:4mDV6NFHRSCcwS25OgCqRA", // id twice
            "1@a:1:lQqNmqB4Ttu9caF5i2WITw,2@b:2:lQqNmqB4Ttu9caF5i2WITw", // directory twice
        ] {
            assert!(parse_initial_controllers(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_dynamic_quorum_takes_its_voters_from_the_snapshot() {
        use fjord_metadata::control::{VoterEndpoint, VoterEntry};
        let mut k = KraftConfig::default();
        k.set("process.roles", "controller").unwrap();
        k.set("controller.listener.names", "CONTROLLER").unwrap();
        k.set("controller.quorum.bootstrap.servers", "127.0.0.1:9093")
            .unwrap();
        k.declared_listeners = parse_listeners("listeners", "CONTROLLER://127.0.0.1:9093").unwrap();
        // No voter set yet (--no-initial-controllers): an observer with its
        // CONTROLLER listener, until AddRaftVoter adds it.
        let (none, listen) = k.quorum(NodeId(1)).unwrap();
        assert!(none.is_empty() && listen.is_some());
        assert_eq!(k.bootstrap_addrs().unwrap().len(), 1);
        let ep = |name: &str, port| VoterEndpoint {
            name: name.into(),
            host: "127.0.0.1".into(),
            port,
        };
        let voters = [
            VoterEntry {
                id: 1,
                directory_id: uuid::Uuid::from_u128(1000),
                endpoints: vec![ep("CONTROLLER", 9093)],
                kraft_version_min: 0,
                kraft_version_max: 1,
            },
            VoterEntry {
                id: 2,
                directory_id: uuid::Uuid::from_u128(2000),
                // The endpoint named in controller.listener.names wins.
                endpoints: vec![ep("OTHER", 9000), ep("CONTROLLER", 9193)],
                kraft_version_min: 0,
                kraft_version_max: 1,
            },
        ];
        let dynamic = k.with_snapshot_voters(&voters).unwrap();
        let (resolved, listen) = dynamic.quorum(NodeId(1)).unwrap();
        assert_eq!(
            resolved,
            vec![
                (NodeId(1), "127.0.0.1:9093".parse().unwrap()),
                (NodeId(2), "127.0.0.1:9193".parse().unwrap())
            ]
        );
        assert_eq!(listen, Some("127.0.0.1:9093".parse().unwrap()));
        assert!(dynamic.quorum(NodeId(3)).is_err(), "not a voter");
        // Static voters are kept as they are.
        let mut fixed = k.clone();
        fixed
            .set("controller.quorum.voters", "1@127.0.0.1:9093")
            .unwrap();
        assert_eq!(fixed.with_snapshot_voters(&voters).unwrap(), fixed);
    }

    fn node(roles: &str, listeners: &str) -> KraftConfig {
        let mut k = KraftConfig::default();
        k.set("process.roles", roles).unwrap();
        k.set("controller.listener.names", "CONTROLLER").unwrap();
        k.set(
            "controller.quorum.voters",
            "1@127.0.0.1:9093,2@127.0.0.1:9193,3@127.0.0.1:9293",
        )
        .unwrap();
        k.declared_listeners = parse_listeners("listeners", listeners).unwrap();
        k
    }

    #[test]
    fn broker_only_and_controller_only_nodes_follow_kafkas_rules() {
        // A controller-only voter: its CONTROLLER listener, no client one.
        let c = node("controller", "CONTROLLER://127.0.0.1:9093");
        let (voters, listen) = c.quorum(NodeId(1)).unwrap();
        assert_eq!(voters.len(), 3);
        assert_eq!(listen, Some("127.0.0.1:9093".parse().unwrap()));
        assert!(c.quorum(NodeId(4)).is_err(), "a controller is a voter");
        let with_client = node(
            "controller",
            "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093",
        );
        assert!(
            with_client.quorum(NodeId(1)).is_err(),
            "only controller listeners"
        );

        // A broker-only observer: no controller listener, not a voter.
        let b = node("broker", "PLAINTEXT://127.0.0.1:9094");
        let (voters, listen) = b.quorum(NodeId(4)).unwrap();
        assert_eq!(voters.len(), 3);
        assert_eq!(listen, None);
        assert!(
            b.quorum(NodeId(1)).is_err(),
            "a broker-only node is no voter"
        );
        let with_controller = node(
            "broker",
            "PLAINTEXT://127.0.0.1:9094,CONTROLLER://127.0.0.1:9095",
        );
        assert!(with_controller.quorum(NodeId(4)).is_err());
        let mut ssl_controllers = node("broker", "PLAINTEXT://127.0.0.1:9094");
        ssl_controllers
            .set(
                "listener.security.protocol.map",
                "PLAINTEXT:PLAINTEXT,CONTROLLER:SSL",
            )
            .unwrap();
        assert!(ssl_controllers.quorum(NodeId(4)).is_ok());

        let mut none = node("broker", "PLAINTEXT://127.0.0.1:9094");
        none.process_roles.clear();
        assert!(none.quorum(NodeId(4)).is_err(), "process.roles is required");
    }
}
