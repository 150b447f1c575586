//! Which way a node takes a physical backup. Chosen per node from what the server can
//! do, unless the agent's `--physical-backup-mode` names one.

use super::PhysicalError;
use crate::node::NodeRole;

/// A way to take a consistent copy of the dbPath.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Percona Server's `$backupCursor`: the node keeps running.
    BackupCursor,
    /// MongoDB Community: `fsync {lock: true}` on a secondary or hidden member.
    FsyncLock,
    /// Stop the node, copy, start it.
    Cold,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::BackupCursor => "backupCursor",
            Mode::FsyncLock => "fsyncLock",
            Mode::Cold => "cold",
        }
    }
}

/// The agent's `--physical-backup-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModeOverride {
    Auto,
    Only(Mode),
}

impl std::str::FromStr for ModeOverride {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "auto" | "" => ModeOverride::Auto,
            "backupCursor" | "backup-cursor" => ModeOverride::Only(Mode::BackupCursor),
            "fsyncLock" | "fsync-lock" => ModeOverride::Only(Mode::FsyncLock),
            "cold" => ModeOverride::Only(Mode::Cold),
            other => {
                return Err(format!(
                "unknown physical backup mode {other:?}: use auto, backupCursor, fsyncLock or cold"
            ))
            }
        })
    }
}

/// What the node offers.
#[derive(Debug, Clone)]
pub struct NodeCaps {
    /// `buildInfo.psmdbVersion` is set: `$backupCursor` exists.
    pub percona: bool,
    pub role: NodeRole,
    /// Data-bearing members of the replica set.
    pub members: usize,
    /// The agent can stop and start its node (a start command and a dbPath).
    pub can_restart: bool,
}

/// Picks the mode. Automatic choice never stops a primary that has other members:
/// that would force an election in the middle of the application's traffic.
///
/// # Errors
/// [`PhysicalError::Config`] when no mode fits, saying what would make one fit.
pub fn choose(over: ModeOverride, caps: &NodeCaps) -> Result<Mode, PhysicalError> {
    let lockable = matches!(caps.role, NodeRole::Secondary | NodeRole::Hidden);
    let cold_ok = caps.can_restart && (caps.members <= 1 || caps.role != NodeRole::Primary);
    match over {
        ModeOverride::Only(Mode::BackupCursor) if !caps.percona => Err(PhysicalError::Config(
            "physical backup mode backupCursor needs Percona Server for MongoDB ($backupCursor)"
                .into(),
        )),
        ModeOverride::Only(Mode::FsyncLock) if !lockable => Err(PhysicalError::Config(
            "physical backup mode fsyncLock runs on a secondary or hidden member only".into(),
        )),
        ModeOverride::Only(Mode::Cold) if !caps.can_restart => Err(PhysicalError::Config(
            "physical backup mode cold needs the agent's --mongod-start-cmd and the dbPath (--dbpath)"
                .into(),
        )),
        ModeOverride::Only(m) => Ok(m),
        ModeOverride::Auto if caps.percona => Ok(Mode::BackupCursor),
        ModeOverride::Auto if lockable => Ok(Mode::FsyncLock),
        ModeOverride::Auto if cold_ok => Ok(Mode::Cold),
        ModeOverride::Auto => Err(PhysicalError::Config(
            "no physical backup mode fits this node: $backupCursor needs Percona Server, fsyncLock a \
             secondary or hidden member, cold a single-member replica set (or a secondary) and the \
             agent's --mongod-start-cmd and --dbpath"
                .into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(percona: bool, role: NodeRole, members: usize, can_restart: bool) -> NodeCaps {
        NodeCaps {
            percona,
            role,
            members,
            can_restart,
        }
    }

    #[test]
    fn automatic_choice() {
        let a = ModeOverride::Auto;
        assert_eq!(
            choose(a, &caps(true, NodeRole::Primary, 3, false)).unwrap(),
            Mode::BackupCursor
        );
        assert_eq!(
            choose(a, &caps(false, NodeRole::Hidden, 3, false)).unwrap(),
            Mode::FsyncLock
        );
        assert_eq!(
            choose(a, &caps(false, NodeRole::Primary, 1, true)).unwrap(),
            Mode::Cold
        );
        // Never stop a primary of a bigger set on its own accord.
        assert!(choose(a, &caps(false, NodeRole::Primary, 3, true)).is_err());
        assert!(choose(a, &caps(false, NodeRole::Primary, 1, false)).is_err());
    }

    #[test]
    fn overrides_are_checked() {
        let cold = ModeOverride::Only(Mode::Cold);
        assert_eq!(
            choose(cold, &caps(true, NodeRole::Primary, 3, true)).unwrap(),
            Mode::Cold
        );
        assert!(choose(cold, &caps(false, NodeRole::Primary, 1, false)).is_err());
        let fs = ModeOverride::Only(Mode::FsyncLock);
        assert!(choose(fs, &caps(false, NodeRole::Primary, 1, true)).is_err());
        let bc = ModeOverride::Only(Mode::BackupCursor);
        assert!(choose(bc, &caps(false, NodeRole::Secondary, 3, true)).is_err());
        assert_eq!("fsync-lock".parse::<ModeOverride>().unwrap(), fs);
        assert!("warm".parse::<ModeOverride>().is_err());
    }
}
