//! The agent's two connections: a direct one to its local mongod (identity, role,
//! versions, cluster time) and the "PBM DB" one to the replica set (majority read and
//! write concern) for control documents (PBM's `nodeConn` / `leadConn`).

use bson::{doc, Document, Timestamp};
use mongodb::error::ErrorKind;
use mongodb::options::{
    ClientOptions, ReadConcern, ReadPreference, SelectionCriteria, WriteConcern,
};
use mongodb::Client;
use rbm_protocol::defs::node_state;
use std::time::Duration;

/// What can go wrong while connecting to and checking the local mongod.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The URI does not parse. The message never contains the credentials.
    #[error("invalid --mongodb-uri {uri}: {reason}")]
    InvalidUri { uri: String, reason: String },
    #[error("cannot reach mongod at {uri} within {timeout_secs} s: {reason}")]
    Unreachable {
        uri: String,
        timeout_secs: u64,
        reason: String,
    },
    #[error("authentication to mongod at {uri} failed: {reason}")]
    Auth { uri: String, reason: String },
    #[error("mongod at {uri} is a mongos: run rbm-agent next to each shard and config server mongod instead")]
    Mongos { uri: String },
    #[error("mongod at {uri} is a standalone (no replica set): rbm needs a replica set member (it reads the oplog)")]
    Standalone { uri: String },
    #[error("{what} on mongod at {uri}: {reason}")]
    Command {
        what: &'static str,
        uri: String,
        reason: String,
    },
    #[error("the reply of {what} has no cluster time ($clusterTime/operationTime)")]
    NoClusterTime { what: &'static str },
}

/// Replaces the `user:password@` part of a connection string with `***@`, so that
/// messages and logs never carry credentials.
pub fn redact_uri(uri: &str) -> String {
    let Some(scheme_end) = uri.find("://") else {
        return uri.to_string();
    };
    let rest = &uri[scheme_end + 3..];
    // The authority ends at the first '/', '?' or end; the credentials end at its last '@'.
    let auth_end = rest.find(['/', '?']).unwrap_or(rest.len());
    match rest[..auth_end].rfind('@') {
        Some(at) => format!("{}***@{}", &uri[..scheme_end + 3], &rest[at + 1..]),
        None => uri.to_string(),
    }
}

/// The member's role in its replica set, as the agent reports and nominates by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeRole {
    Primary,
    Secondary,
    Hidden,
    Arbiter,
    /// Recovering, startup, ...: not usable for operations.
    Other,
}

impl NodeRole {
    /// Parses the test-only role override (`primary`, `secondary`, `hidden`, `arbiter`).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "primary" => NodeRole::Primary,
            "secondary" => NodeRole::Secondary,
            "hidden" => NodeRole::Hidden,
            "arbiter" => NodeRole::Arbiter,
            _ => return None,
        })
    }

    /// mongod's member state code and name, as `pbmAgents` stores them.
    pub fn state(self) -> (i32, &'static str) {
        match self {
            NodeRole::Primary => (node_state::PRIMARY, "PRIMARY"),
            NodeRole::Secondary | NodeRole::Hidden => (node_state::SECONDARY, "SECONDARY"),
            NodeRole::Arbiter => (node_state::ARBITER, "ARBITER"),
            NodeRole::Other => (node_state::UNKNOWN, "UNKNOWN"),
        }
    }
}

/// Who the local mongod is, from `hello` and `buildInfo`.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// `host:port` (`hello.me`, or the test-only override).
    pub name: String,
    pub replset: String,
    pub role: NodeRole,
    pub passive: bool,
    /// Every member `hello` lists, to reach the replica set for the PBM DB.
    pub hosts: Vec<String>,
    pub mongo_version: String,
    /// Percona Server version; empty for MongoDB Community.
    pub percona_version: String,
}

/// How to connect.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub uri: String,
    pub server_selection_timeout: Duration,
    /// Test-only: another identity than `hello.me`, so several agents can share one
    /// server in tests. Never set in production.
    pub node_name: Option<String>,
    /// Test-only: another role than the server reports.
    pub node_role: Option<NodeRole>,
}

/// The connections of one agent.
#[derive(Clone)]
pub struct Node {
    /// Direct connection to the local mongod.
    pub local: Client,
    /// The replica set, majority read/write concern: where control documents live.
    pub pbm: Client,
    pub info: NodeInfo,
    redacted_uri: String,
    node_role_override: Option<NodeRole>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("uri", &self.redacted_uri)
            .field("info", &self.info)
            .finish()
    }
}

/// The gist of a driver error, without credentials: its `Display` carries a whole
/// topology description and debug dumps of nested errors, too much for the one line an
/// operator reads.
pub(crate) fn concise(e: &mongodb::error::Error) -> String {
    let s = match &*e.kind {
        ErrorKind::InvalidArgument { message, .. } | ErrorKind::Authentication { message, .. } => {
            message.clone()
        }
        // "... Servers: [ { Address: h:p, Type: Unknown, Error: Kind: I/O error: ..., labels ..."
        ErrorKind::ServerSelection { message, .. } => match message.split_once("Error: Kind: ") {
            Some((_, rest)) => rest.split(", labels").next().unwrap_or(rest).to_string(),
            None => "no available servers".to_string(),
        },
        ErrorKind::Command(c) => format!("{} ({}): {}", c.code_name, c.code, c.message),
        ErrorKind::Io(io) => io.to_string(),
        other => other.to_string(),
    };
    redact_uri(&first_line(&s))
}

fn classify(
    e: mongodb::error::Error,
    uri: &str,
    timeout: Duration,
    what: &'static str,
) -> NodeError {
    let reason = concise(&e);
    match *e.kind {
        ErrorKind::ServerSelection { .. } => NodeError::Unreachable {
            uri: uri.to_string(),
            timeout_secs: timeout.as_secs().max(1),
            reason,
        },
        ErrorKind::Authentication { .. } => NodeError::Auth {
            uri: uri.to_string(),
            reason,
        },
        ErrorKind::Command(ref c) if c.code == 18 || c.code == 13 => NodeError::Auth {
            uri: uri.to_string(),
            reason,
        },
        _ => NodeError::Command {
            what,
            uri: uri.to_string(),
            reason,
        },
    }
}

fn first_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or_default();
    if line.chars().count() > 300 {
        format!("{}…", line.chars().take(300).collect::<String>())
    } else {
        line.to_string()
    }
}

/// The cluster time of a command reply: `$clusterTime.clusterTime`, else `operationTime`.
pub fn reply_cluster_time(reply: &Document) -> Option<Timestamp> {
    reply
        .get_document("$clusterTime")
        .ok()
        .and_then(|c| c.get_timestamp("clusterTime").ok())
        .or_else(|| reply.get_timestamp("operationTime").ok())
}

impl Node {
    /// Connects to the local mongod, checks it is a replica-set member (not a mongos,
    /// not a standalone), reads its identity and opens the PBM DB connection.
    ///
    /// # Errors
    /// A bad URI, an unreachable server, wrong credentials, or an unsuitable server.
    pub async fn connect(opts: &ConnectOptions) -> Result<Self, NodeError> {
        let redacted = redact_uri(&opts.uri);
        let timeout = opts.server_selection_timeout;
        let mut local_opts =
            ClientOptions::parse(&opts.uri)
                .await
                .map_err(|e| NodeError::InvalidUri {
                    uri: redacted.clone(),
                    reason: concise(&e),
                })?;
        let base = local_opts.clone();
        local_opts.direct_connection = Some(true);
        local_opts.server_selection_timeout = Some(timeout);
        local_opts.connect_timeout = Some(timeout);
        local_opts.app_name = Some("rbm-agent".into());
        if local_opts.hosts.len() > 1 {
            // A direct connection takes one host; the first one is the local node.
            local_opts.hosts.truncate(1);
        }
        let local = Client::with_options(local_opts).map_err(|e| NodeError::InvalidUri {
            uri: redacted.clone(),
            reason: concise(&e),
        })?;
        let admin = local.database("admin");
        let hello = admin
            .run_command(doc! {"hello": 1})
            .await
            .map_err(|e| classify(e, &redacted, timeout, "hello"))?;
        if hello.get_str("msg").ok() == Some("isdbgrid") {
            return Err(NodeError::Mongos { uri: redacted });
        }
        let Ok(replset) = hello.get_str("setName").map(str::to_string) else {
            return Err(NodeError::Standalone { uri: redacted });
        };
        // hello does not need auth; buildInfo tells us whether the credentials work.
        let build = admin
            .run_command(doc! {"buildInfo": 1})
            .await
            .map_err(|e| classify(e, &redacted, timeout, "buildInfo"))?;
        // connectionStatus/ping succeed unauthenticated; listing databases does not.
        admin
            .run_command(doc! {"listDatabases": 1, "nameOnly": true})
            .await
            .map_err(|e| classify(e, &redacted, timeout, "listDatabases"))?;
        let mongo_version = build.get_str("version").unwrap_or_default().to_string();
        let percona_version = build
            .get_str("psmdbVersion")
            .unwrap_or_default()
            .to_string();
        let hosts: Vec<String> = hello
            .get_array("hosts")
            .map(|a| {
                a.iter()
                    .filter_map(|h| h.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let me = hello.get_str("me").unwrap_or_default().to_string();
        let info = NodeInfo {
            name: opts.node_name.clone().unwrap_or(me),
            replset: replset.clone(),
            role: opts.node_role.unwrap_or_else(|| role_of(&hello)),
            passive: hello.get_bool("passive").unwrap_or(false),
            hosts,
            mongo_version,
            percona_version,
        };

        let mut pbm_opts = base;
        pbm_opts.server_selection_timeout = Some(timeout);
        pbm_opts.connect_timeout = Some(timeout);
        pbm_opts.app_name = Some("rbm-agent".into());
        if pbm_opts.direct_connection != Some(true) && pbm_opts.repl_set_name.is_none() {
            // Like PBM's leadConn: a URI naming only the local node still reaches the
            // whole replica set.
            pbm_opts.repl_set_name = Some(replset);
        }
        // PBM's defaults for the control database; a URI may override them.
        if pbm_opts.read_concern.is_none() {
            pbm_opts.read_concern = Some(ReadConcern::majority());
        }
        if pbm_opts.write_concern.is_none() {
            pbm_opts.write_concern = Some(WriteConcern::majority());
        }
        if pbm_opts.selection_criteria.is_none() {
            pbm_opts.selection_criteria =
                Some(SelectionCriteria::ReadPreference(ReadPreference::Primary));
        }
        let pbm = Client::with_options(pbm_opts).map_err(|e| NodeError::InvalidUri {
            uri: redacted.clone(),
            reason: concise(&e),
        })?;
        pbm.database("admin")
            .run_command(doc! {"ping": 1})
            .await
            .map_err(|e| classify(e, &redacted, timeout, "ping of the replica set"))?;

        if !supported_version(&info.mongo_version) {
            tracing::warn!(
                version = %info.mongo_version,
                "MongoDB {} is not a supported version (PBM 2.x supports 7.0 and 8.0); continuing",
                info.mongo_version
            );
        }
        Ok(Self {
            local,
            pbm,
            info,
            redacted_uri: redacted,
            node_role_override: opts.node_role,
        })
    }

    /// The URI without credentials, for messages.
    pub fn uri(&self) -> &str {
        &self.redacted_uri
    }

    /// `hello` on the local node: its current role and the cluster time, in one round trip.
    ///
    /// # Errors
    /// The node does not answer, or the reply has no cluster time.
    pub async fn hello(&self) -> Result<(NodeRole, Timestamp), NodeError> {
        let reply = self
            .local
            .database("admin")
            .run_command(doc! {"hello": 1})
            .await
            .map_err(|e| NodeError::Command {
                what: "hello",
                uri: self.redacted_uri.clone(),
                reason: concise(&e),
            })?;
        let ct = reply_cluster_time(&reply).ok_or(NodeError::NoClusterTime { what: "hello" })?;
        Ok((
            self.node_role_override.unwrap_or_else(|| role_of(&reply)),
            ct,
        ))
    }

    /// The cluster time as the local node sees it. Liveness decisions use only this,
    /// never the local clock.
    ///
    /// # Errors
    /// See [`Node::hello`].
    pub async fn cluster_time(&self) -> Result<Timestamp, NodeError> {
        self.hello().await.map(|(_, t)| t)
    }
}

fn role_of(hello: &Document) -> NodeRole {
    if hello.get_bool("arbiterOnly").unwrap_or(false) {
        NodeRole::Arbiter
    } else if hello.get_bool("isWritablePrimary").unwrap_or(false)
        || hello.get_bool("ismaster").unwrap_or(false)
    {
        NodeRole::Primary
    } else if hello.get_bool("secondary").unwrap_or(false) {
        if hello.get_bool("hidden").unwrap_or(false) {
            NodeRole::Hidden
        } else {
            NodeRole::Secondary
        }
    } else {
        NodeRole::Other
    }
}

/// PBM 2.x supports MongoDB / PSMDB 7.0 and 8.0.
fn supported_version(v: &str) -> bool {
    let mut parts = v.split('.');
    let major = parts.next().and_then(|m| m.parse::<u32>().ok());
    let minor = parts.next().and_then(|m| m.parse::<u32>().ok());
    matches!((major, minor), (Some(7 | 8), Some(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_credentials() {
        assert_eq!(
            redact_uri("mongodb://user:p%40ss@h1:27017,h2/?authSource=admin"),
            "mongodb://***@h1:27017,h2/?authSource=admin"
        );
        assert_eq!(redact_uri("mongodb://h1:27017/"), "mongodb://h1:27017/");
        assert_eq!(
            redact_uri("mongodb+srv://u:p@x.example.com"),
            "mongodb+srv://***@x.example.com"
        );
        assert_eq!(redact_uri("not a uri"), "not a uri");
    }

    #[test]
    fn versions() {
        assert!(supported_version("7.0.14"));
        assert!(supported_version("8.0.4-2"));
        assert!(!supported_version("8.2.11"));
        assert!(!supported_version("6.0.1"));
    }

    #[test]
    fn roles_from_hello() {
        assert_eq!(
            role_of(&doc! {"isWritablePrimary": true}),
            NodeRole::Primary
        );
        assert_eq!(role_of(&doc! {"secondary": true}), NodeRole::Secondary);
        assert_eq!(
            role_of(&doc! {"secondary": true, "hidden": true}),
            NodeRole::Hidden
        );
        assert_eq!(role_of(&doc! {"arbiterOnly": true}), NodeRole::Arbiter);
    }
}
