//! The CLI's connection to the cluster: PBM's "PBM DB" connection (majority reads and
//! writes on the primary of the config server replica set, or of the only replica
//! set), with a short server-selection timeout so a wrong address fails fast.

use super::error::{one_line, CliError};
use bson::{doc, Document, Timestamp};
use mongodb::error::ErrorKind;
use mongodb::options::{ClientOptions, ReadConcern, SelectionCriteria, WriteConcern};
use mongodb::{Client, Collection, Database};
use std::time::Duration;

/// How long the driver looks for a usable server before giving up: long enough for
/// an election, short enough that a typo in the address is reported promptly.
pub const SERVER_SELECTION_TIMEOUT: Duration = Duration::from_secs(10);

/// A connected cluster.
#[derive(Debug, Clone)]
pub struct Conn {
    client: Client,
    admin: Database,
    /// The URI with its password masked, for messages.
    pub uri_redacted: String,
}

impl Conn {
    /// Connects to the deployment behind `uri`, refusing what PBM refuses, and moves
    /// to the config server replica set when `uri` names a shard member.
    ///
    /// # Errors
    /// [`CliError::BadUri`], [`CliError::Unsupported`], [`CliError::Connect`],
    /// [`CliError::Auth`].
    pub async fn connect(uri: &str) -> Result<Self, CliError> {
        let redacted = redact_uri(uri);
        if uri.starts_with("mongodb+srv://") {
            return Err(CliError::Unsupported(format!(
                "{redacted}: mongodb+srv:// connection strings are not supported (as in PBM): \
                 give a mongodb:// URI of a cluster member"
            )));
        }
        let opts = ClientOptions::parse(uri)
            .await
            .map_err(|e| CliError::BadUri {
                uri: redacted.clone(),
                reason: scrub(&e, uri),
            })?;
        let conn = Self::with_options(opts.clone(), redacted.clone(), uri).await?;
        let hello = conn.hello(uri).await?;
        if hello.get_str("msg").ok() == Some("isdbgrid") {
            return Err(CliError::Unsupported(format!(
                "{redacted} is a mongos: connect to a config server or shard member instead (as PBM requires)"
            )));
        }
        if hello.get_str("setName").is_err() {
            return Err(CliError::Unsupported(format!(
                "{redacted} is a standalone mongod: PBM and rbm need a replica set"
            )));
        }
        // A shard member: PBM's control collections live on the config servers.
        let shard_identity = conn
            .admin
            .collection::<Document>("system.version")
            .find_one(doc! {"_id": "shardIdentity"})
            .await
            .map_err(|e| conn.map_err("read shardIdentity", &e, uri))?;
        if let Some(csrs) = shard_identity
            .as_ref()
            .and_then(|d| d.get_str("configsvrConnectionString").ok())
        {
            let hosts = csrs.split_once('/').map(|(_, h)| h).unwrap_or(csrs);
            let mut csrs_opts = opts;
            csrs_opts.hosts = hosts
                .split(',')
                .map(|h| {
                    mongodb::options::ServerAddress::parse(h).map_err(|e| CliError::BadUri {
                        uri: csrs.to_string(),
                        reason: one_line(&e.to_string()),
                    })
                })
                .collect::<Result<_, _>>()?;
            csrs_opts.repl_set_name = csrs.split_once('/').map(|(rs, _)| rs.to_string());
            csrs_opts.direct_connection = None;
            return Self::with_options(
                csrs_opts,
                format!("{redacted} (config servers {csrs})"),
                uri,
            )
            .await;
        }
        Ok(conn)
    }

    async fn with_options(
        mut opts: ClientOptions,
        redacted: String,
        uri: &str,
    ) -> Result<Self, CliError> {
        opts.server_selection_timeout
            .get_or_insert(SERVER_SELECTION_TIMEOUT);
        opts.connect_timeout.get_or_insert(Duration::from_secs(5));
        opts.app_name.get_or_insert_with(|| "rbm".to_string());
        // PBM's leadConn defaults; a connection string may still override them.
        opts.read_concern.get_or_insert(ReadConcern::majority());
        opts.write_concern.get_or_insert(WriteConcern::majority());
        opts.selection_criteria
            .get_or_insert(SelectionCriteria::ReadPreference(
                mongodb::options::ReadPreference::Primary,
            ));
        let client = Client::with_options(opts).map_err(|e| CliError::BadUri {
            uri: redacted.clone(),
            reason: scrub(&e, uri),
        })?;
        let admin = client.database(rbm_protocol::defs::DB);
        let conn = Self {
            client,
            admin,
            uri_redacted: redacted,
        };
        // Fails now, with a clear message, rather than on the first real operation.
        conn.admin
            .run_command(doc! {"ping": 1})
            .await
            .map_err(|e| conn.map_err("ping", &e, uri))?;
        Ok(conn)
    }

    async fn hello(&self, uri: &str) -> Result<Document, CliError> {
        self.admin
            .run_command(doc! {"hello": 1})
            .await
            .map_err(|e| self.map_err("hello", &e, uri))
    }

    fn map_err(&self, what: &str, e: &mongodb::error::Error, uri: &str) -> CliError {
        let reason = scrub(e, uri);
        // The driver's Display of an auth failure nests the server reply; the user
        // needs "wrong user or password" and the mechanism's own words.
        let auth = match e.kind.as_ref() {
            ErrorKind::Authentication { message, .. } => Some(message.clone()),
            ErrorKind::Command(c) if c.code == 18 => Some(c.message.clone()),
            _ if reason.contains("AuthenticationFailed") => Some(reason.clone()),
            _ => None,
        };
        if let Some(why) = auth {
            let why = match password_of(uri).filter(|p| !p.is_empty()) {
                Some(pw) => one_line(&why).replace(pw, "***"),
                None => one_line(&why),
            };
            return CliError::Auth {
                uri: self.uri_redacted.clone(),
                reason: format!("check the user, password and authSource ({why})"),
            };
        }
        match e.kind.as_ref() {
            ErrorKind::ServerSelection { .. } => CliError::Connect {
                uri: self.uri_redacted.clone(),
                reason: selection_reason(&reason),
            },
            ErrorKind::Io(_) | ErrorKind::DnsResolve { .. } => CliError::Connect {
                uri: self.uri_redacted.clone(),
                reason,
            },
            _ => CliError::Mongo {
                context: format!("{what} on {}", self.uri_redacted),
                reason,
            },
        }
    }

    /// The `admin` database.
    pub fn admin(&self) -> &Database {
        &self.admin
    }

    /// A control collection of `admin`.
    pub fn coll(&self, name: &str) -> Collection<Document> {
        self.admin.collection(name)
    }

    /// The driver client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The server's cluster time (`$clusterTime.clusterTime`, or `operationTime`):
    /// every liveness decision compares heartbeats with this, never the local clock,
    /// so a skewed CLI host cannot call live agents dead.
    ///
    /// # Errors
    /// [`CliError::Mongo`] if the server sends neither.
    pub async fn cluster_time(&self) -> Result<Timestamp, CliError> {
        let reply = self
            .admin
            .run_command(doc! {"hello": 1})
            .await
            .map_err(|e| CliError::mongo("read cluster time", &e))?;
        reply
            .get_document("$clusterTime")
            .ok()
            .and_then(|c| c.get_timestamp("clusterTime").ok())
            .or_else(|| reply.get_timestamp("operationTime").ok())
            .ok_or_else(|| CliError::Mongo {
                context: "read cluster time".into(),
                reason: "the server sent no $clusterTime (is it a replica set member?)".into(),
            })
    }

    /// `hello` of the connected replica set.
    ///
    /// # Errors
    /// [`CliError::Mongo`].
    pub async fn hello_doc(&self) -> Result<Document, CliError> {
        self.admin
            .run_command(doc! {"hello": 1})
            .await
            .map_err(|e| CliError::mongo("hello", &e))
    }
}

/// The driver's server-selection error dumps its whole topology; users need the
/// timeout and the last per-server error ("Connection refused", a DNS failure).
fn selection_reason(full: &str) -> String {
    let secs = SERVER_SELECTION_TIMEOUT.as_secs();
    let cause = full
        .split("Error: Kind: ")
        .nth(1)
        .and_then(|rest| rest.split(", labels").next())
        .map(str::trim)
        .filter(|c| !c.is_empty());
    match cause {
        Some(c) => format!("no reachable server (last error: {c})"),
        None => format!("no reachable primary within the server selection timeout ({secs} s unless the URI sets serverSelectionTimeoutMS)"),
    }
}

/// A driver error as one line without the URI's password.
fn scrub(e: &mongodb::error::Error, uri: &str) -> String {
    let mut s = one_line(&e.to_string());
    if let Some(pw) = password_of(uri) {
        if !pw.is_empty() {
            s = s.replace(pw, "***");
        }
    }
    s
}

fn password_of(uri: &str) -> Option<&str> {
    let rest = uri.split_once("://")?.1;
    let userinfo = rest.split_once('@')?.0;
    // An `@` in the path or query is not userinfo.
    if userinfo.contains('/') {
        return None;
    }
    userinfo.split_once(':').map(|(_, p)| p)
}

/// The URI with the password replaced by `***` (PBM's CLI masks it the same way).
pub fn redact_uri(uri: &str) -> String {
    match (uri.split_once("://"), password_of(uri)) {
        (Some((scheme, rest)), Some(_)) => {
            let (userinfo, tail) = rest.split_once('@').unwrap_or((rest, ""));
            let user = userinfo.split_once(':').map(|(u, _)| u).unwrap_or(userinfo);
            format!("{scheme}://{user}:***@{tail}")
        }
        _ => uri.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_password_only() {
        assert_eq!(
            redact_uri("mongodb://bk:s3cret@h1:27017,h2/?replicaSet=rs0"),
            "mongodb://bk:***@h1:27017,h2/?replicaSet=rs0"
        );
        assert_eq!(redact_uri("mongodb://h1:27017/"), "mongodb://h1:27017/");
        assert_eq!(redact_uri("mongodb://h1/?x=a@b"), "mongodb://h1/?x=a@b");
    }
}
