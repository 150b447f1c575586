//! Operation events in PBM's capped `pbmLog` (what `pbm logs` shows), mirrored to the
//! agent's own `tracing` output.

use super::unix_now;
use bson::Timestamp;
use mongodb::Collection;
use rbm_protocol::defs::{DB, LOG_COLLECTION};
use rbm_protocol::meta::log::{LogEntry, Severity};

/// Writes log entries for one agent.
#[derive(Clone, Debug)]
pub struct PbmLog {
    coll: Collection<LogEntry>,
    rs: String,
    node: String,
}

/// What an entry is about.
#[derive(Debug, Clone, Default)]
pub struct Event<'a> {
    /// PBM's event name: `backup`, `restore`, `resync`, ... or empty.
    pub event: &'a str,
    /// The event object, e.g. a backup name.
    pub obj: &'a str,
    pub opid: &'a str,
    pub epoch: Option<Timestamp>,
}

impl PbmLog {
    pub fn new(pbm: &mongodb::Client, rs: &str, node: &str) -> Self {
        Self {
            coll: pbm.database(DB).collection(LOG_COLLECTION),
            rs: rs.to_string(),
            node: node.to_string(),
        }
    }

    /// Logs `msg` to stderr (tracing) and to `pbmLog`. A failing `pbmLog` write is only
    /// reported on stderr: losing a log line must not fail the operation.
    pub async fn write(&self, severity: Severity, ev: &Event<'_>, msg: &str) {
        match severity {
            Severity::Fatal | Severity::Error => {
                tracing::error!(event = ev.event, obj = ev.obj, opid = ev.opid, "{msg}")
            }
            Severity::Warning => {
                tracing::warn!(event = ev.event, obj = ev.obj, opid = ev.opid, "{msg}")
            }
            Severity::Info => {
                tracing::info!(event = ev.event, obj = ev.obj, opid = ev.opid, "{msg}")
            }
            Severity::Debug => {
                tracing::debug!(event = ev.event, obj = ev.obj, opid = ev.opid, "{msg}")
            }
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let entry = LogEntry {
            id: None,
            ts: unix_now(),
            ts_nanos: now.subsec_nanos() as i32,
            // The agent logs in UTC.
            tz_offset: 0,
            severity,
            rs: self.rs.clone(),
            node: self.node.clone(),
            event: ev.event.to_string(),
            obj_name: ev.obj.to_string(),
            epoch: ev.epoch,
            opid: ev.opid.to_string(),
            msg: msg.to_string(),
        };
        if let Err(e) = self.coll.insert_one(entry).await {
            tracing::warn!("cannot write to admin.{LOG_COLLECTION}: {e}");
        }
    }
}
