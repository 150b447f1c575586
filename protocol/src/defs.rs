//! PBM's fixed vocabulary: control collection names and their shapes on creation,
//! status and backup-type strings, command kinds and timing constants
//! (`pbm/defs/defs.go`, `pbm/ctrl/cmd.go`, `cmd/pbm-agent/setup.go`).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// PBM's `defs.DB`: every control collection lives in `admin`.
pub const DB: &str = "admin";

/// The PBM version rbm's formats are compatible with. Written where PBM records its
/// own version for compatibility checks (backup meta `pbm_version`, `.pbm.init`), so
/// the real PBM accepts what rbm writes; rbm's own version is reported separately
/// (agent heartbeats, `rbm version`).
pub const PBM_COMPAT_VERSION: &str = "2.15.0";

/// PBM's `CmdStreamCollection`: commands from the CLI to the agents.
pub const CMD_COLLECTION: &str = "pbmCmd";
/// PBM's `AgentsStatusCollection`: one heartbeat document per agent.
pub const AGENTS_COLLECTION: &str = "pbmAgents";
/// PBM's `LockCollection`: one exclusive operation per replica set.
pub const LOCK_COLLECTION: &str = "pbmLock";
/// PBM's `LockOpCollection`: locks that may coexist with `pbmLock` (PITR slicing).
pub const LOCK_OP_COLLECTION: &str = "pbmLockOp";
/// PBM's `PBMOpLogCollection`: a log of acquired locks, so an OPID runs once per RS.
pub const OP_LOG_COLLECTION: &str = "pbmOpLog";
/// PBM's `ConfigCollection`: the main config document and storage profiles.
pub const CONFIG_COLLECTION: &str = "pbmConfig";
/// PBM's `BcpCollection`: backup metadata.
pub const BACKUPS_COLLECTION: &str = "pbmBackups";
/// PBM's `RestoresCollection`: restore metadata.
pub const RESTORES_COLLECTION: &str = "pbmRestores";
/// PBM's `PITRChunksCollection`: index of PITR oplog chunks on storage.
pub const PITR_CHUNKS_COLLECTION: &str = "pbmPITRChunks";
/// PBM's `PITRCollection`: the single document coordinating PITR slicing.
pub const PITR_COLLECTION: &str = "pbmPITR";
/// PBM's `LogCollection`: structured agent logs.
pub const LOG_COLLECTION: &str = "pbmLog";
/// PBM's `TmpUsersCollection`: copy of `admin.system.users` during a logical backup/restore.
pub const TMP_USERS_COLLECTION: &str = "pbmRUsers";
/// PBM's `TmpRolesCollection`: copy of `admin.system.roles` during a logical backup/restore.
pub const TMP_ROLES_COLLECTION: &str = "pbmRRoles";
/// Pre-1.x names that restores still exclude.
pub const DEPRECATED_COLLECTIONS: [&str; 2] = ["pbmBackups.old", "pbmPITRChunks.old"];

/// Every control collection PBM creates or uses, in the order the agent sets them up.
pub const CONTROL_COLLECTIONS: [&str; 13] = [
    CMD_COLLECTION,
    LOG_COLLECTION,
    LOCK_COLLECTION,
    LOCK_OP_COLLECTION,
    OP_LOG_COLLECTION,
    PITR_CHUNKS_COLLECTION,
    PITR_COLLECTION,
    BACKUPS_COLLECTION,
    RESTORES_COLLECTION,
    AGENTS_COLLECTION,
    CONFIG_COLLECTION,
    TMP_USERS_COLLECTION,
    TMP_ROLES_COLLECTION,
];

/// True for any `admin` collection PBM owns, including the deprecated ones: restores
/// and oplog replay must never touch them.
pub fn is_control_collection(coll: &str) -> bool {
    CONTROL_COLLECTIONS.contains(&coll) || DEPRECATED_COLLECTIONS.contains(&coll)
}

/// An index as PBM creates it on a control collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexSpec {
    /// Explicit name, or `None` for the server's default (`replset_1`, ...).
    pub name: Option<&'static str>,
    /// Key fields and directions, in order.
    pub keys: &'static [(&'static str, i32)],
    pub unique: bool,
    pub sparse: bool,
}

impl IndexSpec {
    const fn plain(keys: &'static [(&'static str, i32)]) -> Self {
        Self {
            name: None,
            keys,
            unique: false,
            sparse: false,
        }
    }
    const fn unique_sparse(keys: &'static [(&'static str, i32)]) -> Self {
        Self {
            name: None,
            keys,
            unique: true,
            sparse: true,
        }
    }
    const fn named(name: &'static str, keys: &'static [(&'static str, i32)]) -> Self {
        Self {
            name: Some(name),
            keys,
            unique: false,
            sparse: false,
        }
    }

    /// The `key` document for `createIndexes`.
    pub fn key_document(&self) -> bson::Document {
        self.keys
            .iter()
            .map(|(k, d)| (k.to_string(), bson::Bson::Int32(*d)))
            .collect()
    }

    /// The entry for a `createIndexes` command's `indexes` array. Unnamed specs get the
    /// server's conventional name (`field_1_other_-1`), which is what PBM ends up with.
    pub fn create_document(&self) -> bson::Document {
        let name = match self.name {
            Some(n) => n.to_string(),
            None => self
                .keys
                .iter()
                .map(|(k, d)| format!("{k}_{d}"))
                .collect::<Vec<_>>()
                .join("_"),
        };
        let mut d = bson::doc! { "key": self.key_document(), "name": name };
        if self.unique {
            d.insert("unique", true);
        }
        if self.sparse {
            d.insert("sparse", true);
        }
        d
    }
}

/// How PBM creates one control collection (`cmd/pbm-agent/setup.go`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CollectionSpec {
    pub name: &'static str,
    /// `Some(bytes)` for a capped collection.
    pub capped_size: Option<u64>,
    pub indexes: &'static [IndexSpec],
}

/// `pbmCmd` is capped at 1 MiB.
pub const CMD_COLLECTION_SIZE: u64 = 1 << 20;
/// `pbmOpLog` is capped at 10 MiB.
pub const OP_LOG_COLLECTION_SIZE: u64 = 10 << 20;
/// `pbmLog` is capped at 50 MiB.
pub const LOG_COLLECTION_SIZE: u64 = 50 << 20;

/// The collections the agent creates at start-up, with their indexes. Creation is
/// idempotent in PBM ("already exists" is ignored); the tmp users/roles collections
/// and `pbmConfig` are created implicitly by their first write.
pub const COLLECTION_SPECS: [CollectionSpec; 10] = [
    CollectionSpec {
        name: CMD_COLLECTION,
        capped_size: Some(CMD_COLLECTION_SIZE),
        indexes: &[],
    },
    CollectionSpec {
        name: LOG_COLLECTION,
        capped_size: Some(LOG_COLLECTION_SIZE),
        indexes: &[
            IndexSpec::named("opid_ts", &[("opid", 1), ("ts", -1)]),
            IndexSpec::named(
                "epoch_rs_event_severity_ts",
                &[("ep", 1), ("rs", 1), ("e", 1), ("s", 1), ("ts", -1)],
            ),
            IndexSpec::named(
                "event_severity_rs_ts",
                &[("e", 1), ("s", 1), ("rs", 1), ("ts", -1)],
            ),
        ],
    },
    CollectionSpec {
        name: LOCK_COLLECTION,
        capped_size: None,
        indexes: &[IndexSpec::unique_sparse(&[("replset", 1)])],
    },
    CollectionSpec {
        name: LOCK_OP_COLLECTION,
        capped_size: None,
        indexes: &[IndexSpec::unique_sparse(&[("replset", 1), ("type", 1)])],
    },
    CollectionSpec {
        name: OP_LOG_COLLECTION,
        capped_size: Some(OP_LOG_COLLECTION_SIZE),
        indexes: &[IndexSpec::unique_sparse(&[("opid", 1), ("replset", 1)])],
    },
    CollectionSpec {
        name: PITR_CHUNKS_COLLECTION,
        capped_size: None,
        indexes: &[
            IndexSpec::unique_sparse(&[("rs", 1), ("start_ts", 1), ("end_ts", 1)]),
            IndexSpec::plain(&[("start_ts", 1), ("end_ts", 1)]),
        ],
    },
    CollectionSpec {
        name: PITR_COLLECTION,
        capped_size: None,
        indexes: &[],
    },
    CollectionSpec {
        name: BACKUPS_COLLECTION,
        capped_size: None,
        indexes: &[
            IndexSpec::unique_sparse(&[("name", 1)]),
            IndexSpec::plain(&[("start_ts", 1), ("status", 1)]),
        ],
    },
    CollectionSpec {
        name: RESTORES_COLLECTION,
        capped_size: None,
        indexes: &[],
    },
    CollectionSpec {
        name: AGENTS_COLLECTION,
        capped_size: None,
        indexes: &[],
    },
];

impl CollectionSpec {
    /// The `create` command PBM sends (`{create, capped, size}`).
    pub fn create_command(&self) -> bson::Document {
        let mut d = bson::doc! { "create": self.name };
        if let Some(size) = self.capped_size {
            d.insert("capped", true);
            // PBM passes a Go int, which the driver writes as int32 when it fits.
            d.insert(
                "size",
                i32::try_from(size)
                    .map(bson::Bson::Int32)
                    .unwrap_or(bson::Bson::Int64(size as i64)),
            );
        }
        d
    }
}

/// PBM's `StaleFrameSec`: a heartbeat older than this many seconds of cluster time is dead.
pub const STALE_FRAME_SEC: u32 = 30;
/// PBM's `MaxReplicationLagTimeSec`: nodes lagging more are not nominated.
pub const MAX_REPLICATION_LAG_SEC: u32 = 21;
/// PBM's `PITRcheckRange`: how often each agent re-evaluates PITR slicing.
pub const PITR_CHECK_RANGE: Duration = Duration::from_secs(15);
/// PBM's `AgentsStatCheckRange`: agent status heartbeat period.
pub const AGENTS_STAT_CHECK_RANGE: Duration = Duration::from_secs(5);
/// Lock, backup-meta, restore-meta and PITR-meta heartbeat period (`hbRate`).
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);
/// PBM's `WaitActionStart`: nomination wait, cleanup-state convergence.
pub const WAIT_ACTION_START: Duration = Duration::from_secs(15);
/// PBM's `WaitBackupStart` (= `WaitActionStart + PITRcheckRange*12/10`): default
/// `backup.timeouts.startingStatus`.
pub const WAIT_BACKUP_START: Duration = Duration::from_secs(33);
/// Readers drop `pbmAgents` entries whose `hb` is older than this.
pub const AGENT_GC_SEC: u32 = 35;
/// PBM's `DefaultPITRInterval`: default `pitr.oplogSpanMin`.
pub const DEFAULT_PITR_INTERVAL: Duration = Duration::from_secs(10 * 60);
/// Physical restore: heartbeat files are rewritten this often (`hbFrameSec`)...
pub const PHYS_RESTORE_HB_FRAME_SEC: u64 = 120;
/// ...and are stale after twice that.
pub const PHYS_RESTORE_STALE_SEC: u64 = 240;
/// Nomination: how long the leader leaves each priority group to take the lock.
pub const NOMINATION_GROUP_WAIT: Duration = Duration::from_secs(5);
/// PBM's `DefaultCompression`.
pub const DEFAULT_COMPRESSION: &str = "s2";

/// A PBM status string (`defs.Status`), shared by backups, restores and their
/// per-replica-set entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Status {
    #[serde(rename = "init")]
    Init,
    #[serde(rename = "ready")]
    Ready,
    /// Physical restore: the shards' mongod processes have been stopped.
    #[serde(rename = "down")]
    Down,
    #[serde(rename = "starting")]
    Starting,
    #[serde(rename = "cleanupCluster")]
    CleanupCluster,
    #[serde(rename = "running")]
    Running,
    #[serde(rename = "dumpDone")]
    DumpDone,
    #[serde(rename = "copyReady")]
    CopyReady,
    #[serde(rename = "copyDone")]
    CopyDone,
    #[serde(rename = "partlyDone")]
    PartlyDone,
    #[serde(rename = "done")]
    Done,
    /// PBM spells it with one `l`.
    #[serde(rename = "canceled")]
    Canceled,
    #[serde(rename = "error")]
    Error,
    /// PBM's `StatusExtTS`: an external restore exchanging its last op timestamp.
    #[serde(rename = "lastTS")]
    ExtTs,
}

impl Status {
    /// Every status, in PBM's declaration order.
    pub const ALL: [Status; 14] = [
        Status::Init,
        Status::Ready,
        Status::Down,
        Status::Starting,
        Status::CleanupCluster,
        Status::Running,
        Status::DumpDone,
        Status::CopyReady,
        Status::CopyDone,
        Status::PartlyDone,
        Status::Done,
        Status::Canceled,
        Status::Error,
        Status::ExtTs,
    ];

    /// PBM's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Init => "init",
            Status::Ready => "ready",
            Status::Down => "down",
            Status::Starting => "starting",
            Status::CleanupCluster => "cleanupCluster",
            Status::Running => "running",
            Status::DumpDone => "dumpDone",
            Status::CopyReady => "copyReady",
            Status::CopyDone => "copyDone",
            Status::PartlyDone => "partlyDone",
            Status::Done => "done",
            Status::Canceled => "canceled",
            Status::Error => "error",
            Status::ExtTs => "lastTS",
        }
    }

    /// PBM's `IsRunning`: anything but done, canceled or error (so `partlyDone` counts
    /// as running, as in PBM).
    pub fn is_running(self) -> bool {
        !matches!(self, Status::Done | Status::Canceled | Status::Error)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Status::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| UnknownName {
                what: "status",
                name: s.to_string(),
            })
    }
}

/// A string that is not one of PBM's names for the thing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {name:?}")]
pub struct UnknownName {
    pub what: &'static str,
    pub name: String,
}

/// PBM's `defs.BackupType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupType {
    Logical,
    Physical,
    Incremental,
    External,
}

impl BackupType {
    /// PBM's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            BackupType::Logical => "logical",
            BackupType::Physical => "physical",
            BackupType::Incremental => "incremental",
            BackupType::External => "external",
        }
    }
}

impl fmt::Display for BackupType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BackupType {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            BackupType::Logical,
            BackupType::Physical,
            BackupType::Incremental,
            BackupType::External,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
        .ok_or_else(|| UnknownName {
            what: "backup type",
            name: s.to_string(),
        })
    }
}

/// PBM's `ctrl.Command`: the `cmd` field of a `pbmCmd` document and the `type` of a lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CommandKind {
    #[serde(rename = "addConfigProfile")]
    AddConfigProfile,
    #[serde(rename = "removeConfigProfile")]
    RemoveConfigProfile,
    #[serde(rename = "backup")]
    Backup,
    #[serde(rename = "restore")]
    Restore,
    #[serde(rename = "replay")]
    Replay,
    #[serde(rename = "cancelBackup")]
    CancelBackup,
    #[serde(rename = "resync")]
    Resync,
    #[serde(rename = "pitr")]
    Pitr,
    #[serde(rename = "delete")]
    DeleteBackup,
    #[serde(rename = "deletePitr")]
    DeletePitr,
    #[serde(rename = "cleanup")]
    Cleanup,
}

impl CommandKind {
    /// Every command, in PBM's declaration order.
    pub const ALL: [CommandKind; 11] = [
        CommandKind::AddConfigProfile,
        CommandKind::RemoveConfigProfile,
        CommandKind::Backup,
        CommandKind::Restore,
        CommandKind::Replay,
        CommandKind::CancelBackup,
        CommandKind::Resync,
        CommandKind::Pitr,
        CommandKind::DeleteBackup,
        CommandKind::DeletePitr,
        CommandKind::Cleanup,
    ];

    /// The `cmd` string.
    pub fn as_str(self) -> &'static str {
        match self {
            CommandKind::AddConfigProfile => "addConfigProfile",
            CommandKind::RemoveConfigProfile => "removeConfigProfile",
            CommandKind::Backup => "backup",
            CommandKind::Restore => "restore",
            CommandKind::Replay => "replay",
            CommandKind::CancelBackup => "cancelBackup",
            CommandKind::Resync => "resync",
            CommandKind::Pitr => "pitr",
            CommandKind::DeleteBackup => "delete",
            CommandKind::DeletePitr => "deletePitr",
            CommandKind::Cleanup => "cleanup",
        }
    }

    /// PBM's human description (`Command.String()`), used in logs and `pbm status`.
    pub fn description(self) -> &'static str {
        match self {
            CommandKind::AddConfigProfile => "Add Config Profile",
            CommandKind::RemoveConfigProfile => "Remove Config Profile",
            CommandKind::Backup => "Snapshot backup",
            CommandKind::Restore => "Snapshot restore",
            CommandKind::Replay => "Oplog replay",
            CommandKind::CancelBackup => "Backup cancellation",
            CommandKind::Resync => "Resync storage",
            CommandKind::Pitr => "PITR incremental backup",
            CommandKind::DeleteBackup => "Delete",
            CommandKind::DeletePitr => "Delete PITR chunks",
            CommandKind::Cleanup => "Cleanup backups and PITR chunks",
        }
    }
}

impl fmt::Display for CommandKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CommandKind {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CommandKind::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| UnknownName {
                what: "command",
                name: s.to_string(),
            })
    }
}

/// PBM's `OPID`: the ObjectId `_id` of the command document, which names the whole
/// operation; written into locks, logs and metadata as its 24-digit hex string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OpId(pub bson::oid::ObjectId);

impl OpId {
    /// PBM's `NilOPID`.
    pub const NIL: OpId = OpId(bson::oid::ObjectId::from_bytes([0; 12]));

    /// The hex form stored in `opid` fields.
    pub fn to_hex(self) -> String {
        self.0.to_hex()
    }
}

impl fmt::Display for OpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.to_hex())
    }
}

impl FromStr for OpId {
    type Err = UnknownName;
    /// PBM's `ParseOPID`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        bson::oid::ObjectId::parse_str(s)
            .map(OpId)
            .map_err(|_| UnknownName {
                what: "operation id",
                name: s.to_string(),
            })
    }
}

/// PBM's `defs.NodeState`: mongod replica-set member state codes.
pub mod node_state {
    /// mongod `STARTUP`.
    pub const STARTUP: i32 = 0;
    /// mongod `PRIMARY`.
    pub const PRIMARY: i32 = 1;
    /// mongod `SECONDARY`.
    pub const SECONDARY: i32 = 2;
    /// mongod `RECOVERING`.
    pub const RECOVERING: i32 = 3;
    /// mongod `STARTUP2`.
    pub const STARTUP2: i32 = 5;
    /// mongod `UNKNOWN`.
    pub const UNKNOWN: i32 = 6;
    /// mongod `ARBITER`.
    pub const ARBITER: i32 = 7;
    /// mongod `DOWN`.
    pub const DOWN: i32 = 8;
    /// mongod `ROLLBACK`.
    pub const ROLLBACK: i32 = 9;
    /// mongod `REMOVED`.
    pub const REMOVED: i32 = 10;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_strings_are_pbms() {
        for s in Status::ALL {
            let b = bson::serialize_to_bson(&s).expect("serialize");
            assert_eq!(b, bson::Bson::String(s.as_str().into()));
            assert_eq!(s.as_str().parse::<Status>(), Ok(s));
        }
        assert_eq!(Status::Canceled.as_str(), "canceled");
        assert_eq!(Status::ExtTs.as_str(), "lastTS");
        assert!(Status::PartlyDone.is_running());
        assert!(!Status::Canceled.is_running());
    }

    #[test]
    fn command_kinds_round_trip() {
        for c in CommandKind::ALL {
            let b = bson::serialize_to_bson(&c).expect("serialize");
            assert_eq!(b, bson::Bson::String(c.as_str().into()));
            assert_eq!(c.as_str().parse::<CommandKind>(), Ok(c));
        }
    }

    #[test]
    fn index_specs_match_pbm_names() {
        let lock = COLLECTION_SPECS
            .iter()
            .find(|c| c.name == LOCK_COLLECTION)
            .expect("pbmLock");
        let d = lock.indexes[0].create_document();
        assert_eq!(d.get_str("name").ok(), Some("replset_1"));
        assert_eq!(d.get_bool("unique").ok(), Some(true));
        let cmd = COLLECTION_SPECS[0].create_command();
        assert_eq!(
            cmd,
            bson::doc! {"create": "pbmCmd", "capped": true, "size": 1_048_576}
        );
    }

    #[test]
    fn opid_is_hex() {
        let o: OpId = "6b081ac530932961ee3cc9eb".parse().expect("hex");
        assert_eq!(o.to_string(), "6b081ac530932961ee3cc9eb");
        assert!("nope".parse::<OpId>().is_err());
    }
}
