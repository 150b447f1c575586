//! The `pbmCmd` document: a command from the CLI to every agent (`pbm/ctrl/cmd.go`).
//!
//! PBM stores `{_id, cmd, <payload>, ts}` where the payload sits under a key named
//! after the command (`{cmd: "backup", backup: {...}}`); the profile commands share
//! the key `profile`, and `resync`'s payload is optional. Keys are written in the
//! order of PBM's Go struct: `_id, cmd, resync, profile, backup, restore, replay,
//! delete, deletePitr, cleanup, ts`.

use crate::config::StorageConf;
use crate::defs::{BackupType, CommandKind, OpId};
use crate::serde_util::{empty_as_none, is_false};
use bson::oid::ObjectId;
use bson::Timestamp;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;

/// One document of `admin.pbmCmd` (PBM's `ctrl.Cmd`).
#[derive(Debug, Clone, PartialEq)]
pub struct CommandDoc {
    /// The document `_id`, which PBM calls the OPID. `None` before insertion.
    pub id: Option<ObjectId>,
    pub command: Command,
    /// PBM's `ts`: unix seconds of the CLI's clock when it sent the command.
    pub ts: i64,
}

impl CommandDoc {
    /// The operation id (`_id` as PBM's `OPID`), if the document was inserted.
    pub fn opid(&self) -> Option<OpId> {
        self.id.map(OpId)
    }
}

/// What the command asks for, with its payload.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Backup(BackupCmd),
    Restore(RestoreCmd),
    /// PBM's `replay` (`pbm oplog-replay`).
    Replay(ReplayCmd),
    /// PBM's `resync`; `pbm config --force-resync` sends it without a payload.
    Resync(Option<ResyncCmd>),
    /// PBM's `pitr`: wakes the agents' PITR loop; no payload.
    Pitr,
    /// PBM's `delete` (`pbm delete-backup`).
    DeleteBackup(DeleteBackupCmd),
    /// PBM's `deletePitr`.
    DeletePitr(DeletePitrCmd),
    Cleanup(CleanupCmd),
    /// PBM's `cancelBackup`; no payload.
    CancelBackup,
    AddConfigProfile(ProfileCmd),
    RemoveConfigProfile(ProfileCmd),
}

impl Command {
    /// The `cmd` string.
    pub fn kind(&self) -> CommandKind {
        match self {
            Command::Backup(_) => CommandKind::Backup,
            Command::Restore(_) => CommandKind::Restore,
            Command::Replay(_) => CommandKind::Replay,
            Command::Resync(_) => CommandKind::Resync,
            Command::Pitr => CommandKind::Pitr,
            Command::DeleteBackup(_) => CommandKind::DeleteBackup,
            Command::DeletePitr(_) => CommandKind::DeletePitr,
            Command::Cleanup(_) => CommandKind::Cleanup,
            Command::CancelBackup => CommandKind::CancelBackup,
            Command::AddConfigProfile(_) => CommandKind::AddConfigProfile,
            Command::RemoveConfigProfile(_) => CommandKind::RemoveConfigProfile,
        }
    }
}

/// PBM's `BackupCmd`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupCmd {
    #[serde(rename = "type")]
    pub kind: BackupType,
    /// `--base`: start a new incremental chain.
    #[serde(rename = "base", default)]
    pub incr_base: bool,
    pub name: String,
    /// Selective backup namespaces (`db.*`, `db.coll`).
    #[serde(rename = "nss", default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// PBM's compression name (`s2`, `zstd`, ...).
    pub compression: String,
    #[serde(rename = "level", default, skip_serializing_if = "Option::is_none")]
    pub compression_level: Option<i32>,
    #[serde(
        rename = "numParallelColls",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub num_parallel_colls: Option<i32>,
    #[serde(
        rename = "numParallelFiles",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub num_parallel_files: Option<i32>,
    /// External backups: also upload the file list (`--list-files`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub filelist: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub profile: String,
    #[serde(rename = "usersAndRoles", default, skip_serializing_if = "is_false")]
    pub users_and_roles: bool,
}

/// PBM's `RestoreCmd`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreCmd {
    /// The restore's name (RFC 3339 with nanoseconds).
    pub name: String,
    #[serde(rename = "backupName")]
    pub backup_name: String,
    #[serde(rename = "nss", default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    #[serde(rename = "nsFrom", default, skip_serializing_if = "String::is_empty")]
    pub ns_from: String,
    #[serde(rename = "nsTo", default, skip_serializing_if = "String::is_empty")]
    pub ns_to: String,
    #[serde(rename = "usersAndRoles", default, skip_serializing_if = "is_false")]
    pub users_and_roles: bool,
    /// Replica-set remapping, target name → name in the backup.
    #[serde(rename = "rsMap", default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rs_map: BTreeMap<String, String>,
    /// Not `omitempty` in PBM: `None` is written as `null`.
    #[serde(rename = "fallbackEnabled", default)]
    pub fallback_enabled: Option<bool>,
    /// Not `omitempty` in PBM: `None` is written as `null`.
    #[serde(rename = "allowPartlyDone", default)]
    pub allow_partly_done: Option<bool>,
    #[serde(
        rename = "numParallelColls",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub num_parallel_colls: Option<i32>,
    #[serde(
        rename = "numParallelFiles",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub num_parallel_files: Option<i32>,
    #[serde(
        rename = "numInsertionWorkers",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub num_insertion_workers: Option<i32>,
    /// `votingMembers`, `majority` or a number of members.
    #[serde(
        rename = "indexCommitQuorum",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub index_commit_quorum: String,
    /// PITR target; omitted for a snapshot restore.
    #[serde(rename = "oplogTS", default, skip_serializing_if = "Option::is_none")]
    pub oplog_ts: Option<Timestamp>,
    #[serde(default)]
    pub external: bool,
    /// External restore: mongod options per replica set. Not `omitempty` in PBM: a
    /// nil map is written as `null`.
    #[serde(rename = "extConf", default)]
    pub ext_conf: Option<BTreeMap<String, bson::Document>>,
    #[serde(rename = "extTS", default = "zero_ts")]
    pub ext_ts: Timestamp,
    #[serde(default)]
    pub exit: bool,
    /// rbm extension (`rbm restore --batch-size`): documents per insert batch, overriding
    /// the config's `restore.batchSize`. PBM agents ignore the field.
    #[serde(rename = "batchSize", default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<i32>,
}

fn zero_ts() -> Timestamp {
    Timestamp {
        time: 0,
        increment: 0,
    }
}

/// PBM's `ReplayCmd`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplayCmd {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<Timestamp>,
    #[serde(rename = "rsMap", default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rs_map: BTreeMap<String, String>,
}

/// PBM's `ResyncCmd` (`pbm profile sync`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ResyncCmd {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub all: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub clear: bool,
    #[serde(rename = "includeRestores", default, skip_serializing_if = "is_false")]
    pub include_restores: bool,
}

/// PBM's `DeleteBackupCmd`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeleteBackupCmd {
    /// Backup name, or empty with `older_than`.
    pub backup: String,
    /// Unix seconds; 0 when deleting by name.
    #[serde(rename = "olderthan")]
    pub older_than: i64,
    /// `None` is PBM's empty type (any).
    #[serde(rename = "type", with = "empty_as_none", default)]
    pub kind: Option<BackupType>,
    pub profile: String,
}

/// PBM's `DeletePITRCmd`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeletePitrCmd {
    /// Unix seconds.
    #[serde(rename = "olderthan")]
    pub older_than: i64,
}

/// PBM's `CleanupCmd`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CleanupCmd {
    #[serde(rename = "olderThan")]
    pub older_than: Timestamp,
    pub profile: String,
}

/// PBM's `ProfileCmd` (add/remove a storage profile).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileCmd {
    pub name: String,
    #[serde(rename = "profile")]
    pub is_profile: bool,
    pub storage: StorageConf,
}

/// The document as PBM's Go struct lays it out, every payload optional: borrowed
/// for writing...
#[derive(Serialize)]
struct WireOut<'a> {
    #[serde(rename = "_id", default, skip_serializing_if = "Option::is_none")]
    id: Option<ObjectId>,
    cmd: CommandKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    resync: Option<&'a ResyncCmd>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    profile: Option<&'a ProfileCmd>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    backup: Option<&'a BackupCmd>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    restore: Option<&'a RestoreCmd>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    replay: Option<&'a ReplayCmd>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    delete: Option<&'a DeleteBackupCmd>,
    #[serde(
        rename = "deletePitr",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    delete_pitr: Option<&'a DeletePitrCmd>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cleanup: Option<&'a CleanupCmd>,
    ts: i64,
}

/// ...and owned for reading.
#[derive(Deserialize)]
struct WireIn {
    #[serde(rename = "_id", default, skip_serializing_if = "Option::is_none")]
    id: Option<ObjectId>,
    cmd: CommandKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    resync: Option<ResyncCmd>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    profile: Option<ProfileCmd>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    backup: Option<BackupCmd>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    restore: Option<RestoreCmd>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    replay: Option<ReplayCmd>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    delete: Option<DeleteBackupCmd>,
    #[serde(
        rename = "deletePitr",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    delete_pitr: Option<DeletePitrCmd>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cleanup: Option<CleanupCmd>,
    ts: i64,
}

impl Serialize for CommandDoc {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut w = WireOut {
            id: self.id,
            cmd: self.command.kind(),
            resync: None,
            profile: None,
            backup: None,
            restore: None,
            replay: None,
            delete: None,
            delete_pitr: None,
            cleanup: None,
            ts: self.ts,
        };
        match &self.command {
            Command::Backup(b) => w.backup = Some(b),
            Command::Restore(r) => w.restore = Some(r),
            Command::Replay(r) => w.replay = Some(r),
            Command::Resync(r) => w.resync = r.as_ref(),
            Command::DeleteBackup(d) => w.delete = Some(d),
            Command::DeletePitr(d) => w.delete_pitr = Some(d),
            Command::Cleanup(c) => w.cleanup = Some(c),
            Command::AddConfigProfile(p) | Command::RemoveConfigProfile(p) => w.profile = Some(p),
            Command::Pitr | Command::CancelBackup => {}
        }
        w.serialize(s)
    }
}

impl<'de> Deserialize<'de> for CommandDoc {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = WireIn::deserialize(d)?;
        let missing = |key: &str| {
            serde::de::Error::custom(format!("command {} has no {key:?} payload", w.cmd.as_str()))
        };
        let command = match w.cmd {
            CommandKind::Backup => Command::Backup(w.backup.ok_or_else(|| missing("backup"))?),
            CommandKind::Restore => Command::Restore(w.restore.ok_or_else(|| missing("restore"))?),
            CommandKind::Replay => Command::Replay(w.replay.ok_or_else(|| missing("replay"))?),
            CommandKind::Resync => Command::Resync(w.resync),
            CommandKind::Pitr => Command::Pitr,
            CommandKind::DeleteBackup => {
                Command::DeleteBackup(w.delete.ok_or_else(|| missing("delete"))?)
            }
            CommandKind::DeletePitr => {
                Command::DeletePitr(w.delete_pitr.ok_or_else(|| missing("deletePitr"))?)
            }
            CommandKind::Cleanup => Command::Cleanup(w.cleanup.ok_or_else(|| missing("cleanup"))?),
            CommandKind::CancelBackup => Command::CancelBackup,
            CommandKind::AddConfigProfile => {
                Command::AddConfigProfile(w.profile.ok_or_else(|| missing("profile"))?)
            }
            CommandKind::RemoveConfigProfile => {
                Command::RemoveConfigProfile(w.profile.ok_or_else(|| missing("profile"))?)
            }
        };
        Ok(CommandDoc {
            id: w.id,
            command,
            ts: w.ts,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(doc: bson::Document) -> CommandDoc {
        let c: CommandDoc = bson::deserialize_from_document(doc.clone()).expect("deserialize");
        let back = bson::serialize_to_document(&c).expect("serialize");
        assert_eq!(
            bson::serialize_to_vec(&back).expect("bytes"),
            bson::serialize_to_vec(&doc).expect("bytes"),
            "{back} != {doc}"
        );
        c
    }

    #[test]
    fn backup_payload_under_its_own_key() {
        let oid = ObjectId::parse_str("6b081ac530932961ee3cc9eb").expect("oid");
        let c = round_trip(bson::doc! {
            "_id": oid, "cmd": "backup",
            "backup": {"type": "logical", "base": false, "name": "2026-11-26T11:40:53Z", "compression": "s2"},
            "ts": 1_795_693_253_i64,
        });
        assert_eq!(
            c.opid().map(|o| o.to_string()).as_deref(),
            Some("6b081ac530932961ee3cc9eb")
        );
        match c.command {
            Command::Backup(b) => assert_eq!(b.kind, BackupType::Logical),
            other => panic!("not a backup: {other:?}"),
        }
    }

    #[test]
    fn payloadless_and_nullable_fields() {
        round_trip(bson::doc! {"cmd": "resync", "ts": 1_i64});
        round_trip(bson::doc! {"cmd": "cancelBackup", "ts": 1_i64});
        round_trip(
            bson::doc! {"cmd": "resync", "resync": {"name": "p1", "all": true}, "ts": 1_i64},
        );
        round_trip(bson::doc! {
            "cmd": "restore",
            "restore": {
                "name": "2026-11-26T12:00:00.123456789Z", "backupName": "b",
                "fallbackEnabled": null, "allowPartlyDone": null,
                "oplogTS": bson::Timestamp { time: 9, increment: 1 },
                "external": false, "extConf": null,
                "extTS": bson::Timestamp { time: 0, increment: 0 }, "exit": false,
            },
            "ts": 2_i64,
        });
        round_trip(bson::doc! {
            "cmd": "delete",
            "delete": {"backup": "", "olderthan": 5_i64, "type": "", "profile": ""},
            "ts": 3_i64,
        });
        round_trip(bson::doc! {
            "cmd": "cleanup",
            "cleanup": {"olderThan": bson::Timestamp { time: 9, increment: 0 }, "profile": ""},
            "ts": 3_i64,
        });
        round_trip(bson::doc! {
            "cmd": "addConfigProfile",
            "profile": {"name": "p", "profile": true, "storage": {"type": "filesystem", "filesystem": {"path": "/x"}}},
            "ts": 3_i64,
        });
    }

    #[test]
    fn missing_payload_is_an_error() {
        let e = bson::deserialize_from_document::<CommandDoc>(
            bson::doc! {"cmd": "backup", "ts": 1_i64},
        )
        .expect_err("must fail");
        assert!(e.to_string().contains("backup"), "{e}");
    }
}
