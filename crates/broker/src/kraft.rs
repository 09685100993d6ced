//! KRaft settings by Kafka's names: `process.roles`, `listeners` (named),
//! `controller.listener.names`, `listener.security.protocol.map`,
//! `controller.quorum.voters`, `controller.quorum.bootstrap.servers` and
//! the quorum timeouts.
//!
//! A node with no roles and no voters is the zero-config single node
//! (`LocalQuorum`, no format step). With `controller.quorum.voters` set it
//! runs a [`fjord_quorum::RaftQuorum`] on its CONTROLLER listener and needs
//! a data directory prepared by `fjord format`. Only static voters are
//! supported: `controller.quorum.bootstrap.servers` (KIP-853 dynamic
//! quorums) is accepted as a name and refused when used without voters.

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

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KraftConfig {
    /// `process.roles`: "broker", "controller" (both for a combined node).
    pub process_roles: Vec<String>,
    /// `listeners` as given, when named.
    pub listeners: Vec<NamedListener>,
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

    /// Checks the settings of a cluster node and returns the quorum's
    /// voters (resolved) and this node's CONTROLLER listener address.
    pub fn quorum(
        &self,
        node_id: NodeId,
    ) -> Result<(Vec<(NodeId, SocketAddr)>, SocketAddr), ConfigError> {
        let err = |n: &str, why: &str| invalid(n, "", why);
        if self.voters.is_empty() {
            return Err(err(
                "controller.quorum.voters",
                if self.bootstrap_servers.is_empty() {
                    "required when process.roles is set"
                } else {
                    "required: controller.quorum.bootstrap.servers (dynamic quorums) is not supported yet"
                },
            ));
        }
        let roles = &self.process_roles;
        if !(roles.iter().any(|r| r == "controller") && roles.iter().any(|r| r == "broker")) {
            return Err(err(
                "process.roles",
                "only combined nodes (process.roles=broker,controller) are supported yet",
            ));
        }
        if !self.voters.iter().any(|(v, _, _)| *v == node_id) {
            return Err(err(
                "node.id",
                "a controller must be one of controller.quorum.voters",
            ));
        }
        let controller = self
            .listeners
            .iter()
            .find(|l| self.is_controller_name(&l.name))
            .ok_or_else(|| {
                err(
                    "listeners",
                    "no listener named in controller.listener.names",
                )
            })?;
        for l in [Some(controller), self.broker_listener(&self.listeners)]
            .into_iter()
            .flatten()
        {
            let protocol = self
                .security_protocol_map
                .iter()
                .find(|(n, _)| *n == l.name)
                .map_or("PLAINTEXT", |(_, p)| p.as_str());
            if protocol != "PLAINTEXT" {
                return Err(err(
                    "listener.security.protocol.map",
                    "only PLAINTEXT listeners are supported",
                ));
            }
        }
        let resolve = |host: &str, port: u16, name: &str| -> Result<SocketAddr, ConfigError> {
            (host, port)
                .to_socket_addrs()
                .ok()
                .and_then(|mut a| a.next())
                .ok_or_else(|| err(name, "cannot resolve host"))
        };
        let listen = resolve(&controller.host, controller.port, "listeners")?;
        let mut voters = Vec::new();
        for (id, host, port) in &self.voters {
            voters.push((*id, resolve(host, *port, "controller.quorum.voters")?));
        }
        Ok((voters, listen))
    }
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
        assert_eq!(listen, "127.0.0.1:9093".parse().unwrap());
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
        assert!(k.quorum(NodeId(1)).is_err(), "an SSL controller listener");
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
}
