//! Agent heartbeat documents of `pbmAgents` (`pbm/topo/agent.go`).

use crate::defs::{node_state, AGENT_GC_SEC};
use bson::oid::ObjectId;
use bson::Timestamp;
use serde::{Deserialize, Serialize};

/// PBM's `AgentStat`: one agent's status, upserted every 5 s.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentStat {
    #[serde(rename = "_id", default, skip_serializing_if = "Option::is_none")]
    pub id: Option<ObjectId>,
    /// PBM's `n`: `host:port` of the local mongod, the agent's identity.
    #[serde(rename = "n")]
    pub node: String,
    pub rs: String,
    /// PBM's `s`: replica-set member state code (see [`node_state`]).
    #[serde(rename = "s")]
    pub state: i32,
    /// PBM's `str`: `PRIMARY`, `SECONDARY`, ...
    #[serde(rename = "str")]
    pub state_str: String,
    #[serde(rename = "hdn")]
    pub hidden: bool,
    /// PBM's `psv`: priority 0.
    #[serde(rename = "psv")]
    pub passive: bool,
    #[serde(rename = "arb")]
    pub arbiter: bool,
    /// Configured secondary delay, seconds.
    #[serde(rename = "delay")]
    pub delay_secs: i32,
    /// Replication lag, seconds.
    pub repl_lag: i32,
    /// PBM's `v`: agent version.
    #[serde(rename = "v")]
    pub agent_ver: String,
    /// PBM's `mv`: mongod version.
    #[serde(rename = "mv")]
    pub mongo_ver: String,
    /// PBM's `pv`: Percona Server version; absent for MongoDB Community.
    #[serde(rename = "pv", default, skip_serializing_if = "String::is_empty")]
    pub percona_ver: String,
    #[serde(rename = "pbms")]
    pub pbm_status: SubsysStatus,
    #[serde(rename = "nodes")]
    pub node_status: SubsysStatus,
    #[serde(rename = "stors")]
    pub storage_status: SubsysStatus,
    /// Node cluster time at the last beat.
    pub hb: Timestamp,
    /// PBM's `e`: any error.
    #[serde(rename = "e")]
    pub err: String,
}

/// PBM's `SubsysStatus`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SubsysStatus {
    pub ok: bool,
    #[serde(rename = "e")]
    pub err: String,
}

impl AgentStat {
    /// PBM's `AgentStat.IsStale` (30 s of cluster time).
    pub fn is_stale(&self, cluster_time: Timestamp) -> bool {
        crate::lock::is_stale(self.hb, cluster_time)
    }

    /// Readers garbage-collect entries older than 35 s.
    pub fn is_gone(&self, cluster_time: Timestamp) -> bool {
        u64::from(self.hb.time) + u64::from(AGENT_GC_SEC) < u64::from(cluster_time.time)
    }

    /// The node was primary at the last beat.
    pub fn is_primary(&self) -> bool {
        self.state == node_state::PRIMARY
    }

    /// All three subsystems report OK.
    pub fn ok(&self) -> bool {
        self.pbm_status.ok && self.node_status.ok && self.storage_status.ok
    }
}
