//! `$backupCursor` (Percona Server): placeholder, filled below.
