//! The agent's status document in `pbmAgents` (PBM's `HbStatus`), upserted every 5 s
//! keyed by `{n, rs}` with `hb` = cluster time, and deleted on shutdown.

use super::ControlError;
use crate::node::{Node, NodeRole};
use bson::doc;
use mongodb::Collection;
use rbm_protocol::config::Config;
use rbm_protocol::defs::{AGENTS_COLLECTION, CONFIG_COLLECTION, DB};
use rbm_protocol::meta::agent::{AgentStat, SubsysStatus};
use std::time::{Duration, Instant};

/// PBM checks storage every 15 s, or every beat while it fails.
const STORAGE_CHECK_EVERY: Duration = Duration::from_secs(15);

/// State kept between beats.
#[derive(Debug)]
pub struct Heartbeat {
    node: Node,
    coll: Collection<AgentStat>,
    storage: SubsysStatus,
    storage_checked: Option<Instant>,
}

fn ok() -> SubsysStatus {
    SubsysStatus {
        ok: true,
        err: String::new(),
    }
}

fn failed(e: impl std::fmt::Display) -> SubsysStatus {
    SubsysStatus {
        ok: false,
        err: e.to_string(),
    }
}

impl Heartbeat {
    pub fn new(node: &Node) -> Self {
        Self {
            node: node.clone(),
            coll: node.pbm.database(DB).collection(AGENTS_COLLECTION),
            storage: failed("not checked yet"),
            storage_checked: None,
        }
    }

    /// The main config, if one was set (`pbmConfig` without `profile`).
    pub async fn main_config(node: &Node) -> Result<Option<Config>, ControlError> {
        let coll: Collection<bson::Document> = node.pbm.database(DB).collection(CONFIG_COLLECTION);
        let Some(raw) = coll
            .find_one(doc! {"profile": {"$ne": true}})
            .await
            .map_err(ControlError::db("read admin.pbmConfig"))?
        else {
            return Ok(None);
        };
        bson::deserialize_from_document(raw)
            .map(Some)
            .map_err(ControlError::bson("decode admin.pbmConfig"))
    }

    async fn check_storage(&self) -> SubsysStatus {
        let conf = match Self::main_config(&self.node).await {
            Ok(Some(c)) => c,
            Ok(None) => return failed("no storage configured (run `pbm config`)"),
            Err(e) => return failed(e),
        };
        let storage =
            match rbm_storage::from_config(&conf.storage, Some(&self.node.info.name)).await {
                Ok(s) => s,
                Err(e) => return failed(e),
            };
        // Listing a prefix that names at most one object proves read access cheaply.
        match rbm_storage::list_all(storage.as_ref(), rbm_protocol::names::STORAGE_INIT_FILE).await
        {
            Ok(_) => ok(),
            Err(e) => failed(e),
        }
    }

    /// One beat: probe the node, the PBM DB and (when due) the storage, then upsert.
    ///
    /// # Errors
    /// The status could not be written (the PBM DB is unreachable).
    pub async fn beat(&mut self) -> Result<(), ControlError> {
        let info = &self.node.info;
        let (role, node_status, hb) = match self.node.hello().await {
            Ok((role, t)) => (role, ok(), Some(t)),
            Err(e) => (NodeRole::Other, failed(e), None),
        };
        let pbm_status = match self
            .node
            .pbm
            .database(DB)
            .run_command(doc! {"ping": 1})
            .await
        {
            Ok(_) => ok(),
            Err(e) => failed(crate::node::redact_uri(&e.to_string())),
        };
        let due = match self.storage_checked {
            None => true,
            Some(at) => !self.storage.ok || at.elapsed() >= STORAGE_CHECK_EVERY,
        };
        if due {
            self.storage = self.check_storage().await;
            self.storage_checked = Some(Instant::now());
        }
        // Without a node cluster time the beat cannot be dated; skip it rather than
        // use the local clock.
        let Some(hb) = hb else {
            return Err(ControlError::Node(crate::node::NodeError::NoClusterTime {
                what: "hello",
            }));
        };
        let (state, state_str) = role.state();
        let stat = AgentStat {
            id: None,
            node: info.name.clone(),
            rs: info.replset.clone(),
            state,
            state_str: state_str.to_string(),
            hidden: role == NodeRole::Hidden,
            passive: info.passive,
            arbiter: role == NodeRole::Arbiter,
            delay_secs: 0,
            repl_lag: 0,
            agent_ver: crate::VERSION.to_string(),
            mongo_ver: info.mongo_version.clone(),
            percona_ver: info.percona_version.clone(),
            pbm_status,
            node_status,
            storage_status: self.storage.clone(),
            hb,
            err: String::new(),
        };
        let set = bson::serialize_to_document(&stat)
            .map_err(ControlError::bson("encode agent status"))?;
        self.coll
            .update_one(
                doc! {"n": &info.name, "rs": &info.replset},
                doc! {"$set": set},
            )
            .upsert(true)
            .await
            .map_err(ControlError::db("upsert admin.pbmAgents"))?;
        Ok(())
    }

    /// Removes our status document (shutdown).
    ///
    /// # Errors
    /// Database errors.
    pub async fn remove(&self) -> Result<(), ControlError> {
        let info = &self.node.info;
        self.coll
            .delete_many(doc! {"n": &info.name, "rs": &info.replset})
            .await
            .map_err(ControlError::db("delete from admin.pbmAgents"))?;
        Ok(())
    }
}
