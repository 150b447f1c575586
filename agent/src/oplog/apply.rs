//! Applying oplog entries onto a database, as PBM's `pbm/oplog/restore.go` does.
//!
//! - Skips what PBM skips ([`super::filter`]): no-ops, PBM's own collections, most of
//!   `config`, index-build markers, and what `--ns` / `--ns-from` leave out.
//! - On a server with `applyOps` (mongod) each entry is applied with `applyOps: [op]`,
//!   as PBM does, and a committed transaction with one `applyOps` of all its CRUD ops
//!   (atomic on mongod). Index commands always go through `createIndexes`/`dropIndexes`
//!   ([`super::translate`]): mongod no longer applies them from the oplog.
//! - On a server without it (the test server) entries become ordinary commands
//!   ([`super::translate`]); a transaction runs in one client-session transaction.
//! - Transactions: `applyOps` entries with `lsid`/`txnNumber` are buffered until their
//!   commit (an unprepared `applyOps` without `partialTxn`, or `commitTransaction` after
//!   `prepare`) and dropped on `abortTransaction`. SecantusDB's transactions (plain
//!   entries sharing one `ts`) are grouped ([`super::secantus`]).
//! - Replay is idempotent (inserts are upserts; deletes and drops of what is gone are
//!   no-ops) and entries repeated at chunk boundaries are applied once.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};

use bson::raw::{cstr, RawArrayBuf, RawBsonRef, RawDocument};
use bson::{doc, Document, RawDocumentBuf, Timestamp};
use mongodb::{Client, ClientSession, Collection};
use rbm_protocol::ns::NsFilter;
use rbm_storage::bson_stream::BsonStreamError;

use super::entry::{EntryId, Op};
use super::filter::{self, CloneNs};
use super::secantus;
use super::translate::{self, Action, TranslateError, NS_NOT_FOUND};

/// Why replay stopped.
#[derive(Debug, thiserror::Error)]
pub enum OplogError {
    #[error("oplog stream: {0}")]
    Stream(#[from] BsonStreamError),
    #[error("malformed oplog entry: {0}")]
    Malformed(String),
    #[error("probing the target for applyOps: {0}")]
    Probe(#[source] mongodb::error::Error),
    #[error("oplog entry {entry}: {reason}")]
    Entry { entry: EntryId, reason: EntryError },
}

/// What went wrong with one entry.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    #[error("malformed: {0}")]
    Malformed(String),
    #[error("unknown oplog command {0:?}")]
    UnknownCommand(String),
    #[error("{what}: {source}")]
    Server {
        what: String,
        #[source]
        source: mongodb::error::Error,
    },
}

impl From<TranslateError> for EntryError {
    fn from(e: TranslateError) -> Self {
        match e {
            TranslateError::Malformed(m) => EntryError::Malformed(m),
            TranslateError::UnknownCommand(c) => EntryError::UnknownCommand(c),
        }
    }
}

/// How to apply.
#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    /// Only these namespaces (selective restore); others are skipped.
    pub filter: NsFilter,
    /// `--ns-from`/`--ns-to`: entries for the first namespace are applied to the second;
    /// everything else is skipped (PBM's namespace cloning).
    pub remap: Option<(String, String)>,
    /// With `applyOps`: drop every entry's `ui`, for targets whose collections were not
    /// created with the source's UUIDs. PBM keeps them (its restore preserves UUIDs).
    pub drop_uuids: bool,
    /// Apply through ordinary commands even where the server has `applyOps`.
    pub force_commands: bool,
}

/// How entries reach the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `applyOps: [op]` (mongod).
    ApplyOps,
    /// Ordinary CRUD and database commands (servers without `applyOps`).
    Commands,
}

/// Counts of what was done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayStats {
    /// Operations applied (an op inside a transaction counts once).
    pub applied: u64,
    /// Entries and transaction ops skipped by PBM's rules or the namespace filter.
    pub skipped: u64,
    /// Entries seen before (chunks overlap at their boundary ts).
    pub duplicates: u64,
    /// Transactions committed.
    pub transactions: u64,
    /// Transactions aborted (their ops were dropped).
    pub aborted_transactions: u64,
    /// Set by [`Applier::finish`]: prepared or partial transactions with no commit by
    /// the end of the range; their ops were not applied (PBM's uncommitted txns).
    pub uncommitted_transactions: u64,
}

type TxnKey = (Vec<u8>, i64);

/// A transaction's ops, buffered until it commits.
struct PendingTxn {
    ops: Vec<RawDocumentBuf>,
    /// The last `applyOps` entry had no `partialTxn`: every op is here.
    complete: bool,
    /// Names the first entry in errors.
    first: EntryId,
}

/// PBM's transaction id: base64 (raw, standard alphabet) of the `lsid` document's
/// bytes, `-`, `txnNumber` (mongo-tools' `txn.ID.String`). Shards exchange these.
pub fn txn_id(lsid: &[u8], txn_number: i64) -> String {
    use base64::Engine;
    format!(
        "{}-{txn_number}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(lsid)
    )
}

/// A distributed (prepared) transaction this replay saw committed, for the other
/// shards (PBM's `RestoreTxn` with state commit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedTxn {
    pub id: String,
    pub commit_ts: Timestamp,
}

/// How many distributed commits are kept for the exchange (PBM's `saveLastDistTxns`).
const KEEP_DIST_COMMITS: usize = 100;

/// SecantusDB's transaction: plain entries sharing `lsid`, `txnNumber` and `ts`.
struct PlainGroup {
    key: (Vec<u8>, i64, Timestamp),
    entries: Vec<RawDocumentBuf>,
}

/// Flags of a transaction entry (mongo-tools' `txn.Meta`).
#[derive(Debug, Default)]
struct TxnMeta {
    apply_ops: bool,
    commit: bool,
    abort: bool,
    partial: bool,
    prepare: bool,
}

/// Applies entries to the database behind `client`.
pub struct Applier {
    client: Client,
    opts: ApplyOptions,
    clone: Option<CloneNs>,
    mode: Mode,
    users_and_roles: bool,
    stats: ReplayStats,
    txns: HashMap<TxnKey, PendingTxn>,
    dist_commits: VecDeque<CommittedTxn>,
    group: Option<PlainGroup>,
    last_ts: Option<Timestamp>,
    seen_at_last_ts: HashSet<u64>,
}

fn entry_err(entry: EntryId, reason: impl Into<EntryError>) -> OplogError {
    OplogError::Entry {
        entry,
        reason: reason.into(),
    }
}

fn malformed(entry: EntryId, m: String) -> OplogError {
    entry_err(entry, EntryError::Malformed(m))
}

fn code(e: &mongodb::error::Error) -> Option<i32> {
    match &*e.kind {
        mongodb::error::ErrorKind::Command(c) => Some(c.code),
        _ => None,
    }
}

/// CommandNotFound.
const COMMAND_NOT_FOUND: i32 = 59;
/// NamespaceExists.
const NAMESPACE_EXISTS: i32 = 48;

impl Applier {
    /// Probes once whether the server has `applyOps`.
    ///
    /// # Errors
    /// When the server cannot be probed.
    pub async fn new(client: Client, opts: ApplyOptions) -> Result<Self, OplogError> {
        let mode = if opts.force_commands {
            Mode::Commands
        } else {
            match client
                .database("admin")
                .run_command(doc! {"applyOps": []})
                .await
            {
                Ok(_) => Mode::ApplyOps,
                Err(e) if code(&e) == Some(COMMAND_NOT_FOUND) => Mode::Commands,
                // Any other server answer means the command exists (it may just not
                // take an empty list); replay then fails on the first entry if it is
                // not allowed to run it, naming that entry.
                Err(e) if code(&e).is_some() => Mode::ApplyOps,
                Err(e) => return Err(OplogError::Probe(e)),
            }
        };
        let clone = opts.remap.as_ref().map(|(from, to)| CloneNs {
            from: from.clone(),
            to: to.clone(),
        });
        Ok(Self {
            client,
            opts,
            clone,
            mode,
            users_and_roles: false,
            stats: ReplayStats::default(),
            txns: HashMap::new(),
            dist_commits: VecDeque::new(),
            group: None,
            last_ts: None,
            seen_at_last_ts: HashSet::new(),
        })
    }

    /// Selective replay also applies `admin.system.users`/`roles` changes of users and
    /// roles defined in a wholly selected database (`--with-users-and-roles`; PBM's
    /// `SetSelectiveUsersAndRolesRestore`).
    pub fn set_users_and_roles(&mut self, on: bool) {
        self.users_and_roles = on;
    }

    /// How entries reach this server.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Counts so far.
    pub fn stats(&self) -> ReplayStats {
        self.stats
    }

    /// Applies one entry (or buffers it, inside a transaction).
    ///
    /// # Errors
    /// A malformed entry, an unknown command, or a server error; the error names the
    /// entry's `ts`, `op` and `ns`.
    pub async fn apply(&mut self, entry: &RawDocument) -> Result<(), OplogError> {
        let op = Op::parse(entry).map_err(|e| {
            let ts = entry
                .get_timestamp("ts")
                .map(|t| format!("ts {{{} {}}}", t.time, t.increment))
                .unwrap_or_else(|_| "entry without ts".into());
            OplogError::Malformed(format!("{ts}: {e}"))
        })?;
        if self.is_duplicate(&op) {
            self.stats.duplicates += 1;
            return Ok(());
        }
        let key = secantus::plain_txn_key(&op);
        if self
            .group
            .as_ref()
            .is_some_and(|g| Some(&g.key) != key.as_ref())
        {
            self.flush_group().await?;
        }
        if let Some(key) = key {
            let raw = entry.to_owned();
            match &mut self.group {
                Some(g) => g.entries.push(raw),
                None => {
                    self.group = Some(PlainGroup {
                        key,
                        entries: vec![raw],
                    })
                }
            }
            return Ok(());
        }
        self.handle_top(&op).await
    }

    /// Applies what is still buffered and returns the counts. Transactions still open
    /// (prepared or partial, no commit by the end of the range) are counted in
    /// `uncommitted_transactions` and not applied, as PBM does.
    ///
    /// # Errors
    /// Applying the last buffered transaction failed.
    pub async fn finish(mut self) -> Result<ReplayStats, OplogError> {
        self.flush_group().await?;
        self.stats.uncommitted_transactions = self.txns.len() as u64;
        Ok(self.stats)
    }

    /// Chunks share their boundary entries (a chunk starts at the previous one's end
    /// ts): an entry at or before the last applied ts that was already seen is skipped.
    /// Several entries may share one ts (SecantusDB's transactions), so identity is the
    /// entry's bytes.
    fn is_duplicate(&mut self, op: &Op<'_>) -> bool {
        let Some(ts) = op.ts else {
            return false;
        };
        let mut h = DefaultHasher::new();
        op.raw.as_bytes().hash(&mut h);
        let h = h.finish();
        match self.last_ts {
            Some(last) if super::ts_lt(ts, last) => true,
            Some(last) if last == ts => !self.seen_at_last_ts.insert(h),
            _ => {
                self.last_ts = Some(ts);
                self.seen_at_last_ts.clear();
                self.seen_at_last_ts.insert(h);
                false
            }
        }
    }

    async fn flush_group(&mut self) -> Result<(), OplogError> {
        let Some(g) = self.group.take() else {
            return Ok(());
        };
        if g.entries.len() == 1 {
            let op = Op::parse(&g.entries[0]).map_err(OplogError::Malformed)?;
            return self.handle_top(&op).await;
        }
        let first = Op::parse(&g.entries[0]).map_err(OplogError::Malformed)?;
        let id = first.id();
        self.apply_transaction(g.entries, id).await
    }

    async fn handle_top(&mut self, op: &Op<'_>) -> Result<(), OplogError> {
        if let Some(why) = self.skip_reason(op) {
            tracing::trace!(entry = %op.id(), why, "oplog entry skipped");
            self.stats.skipped += 1;
            return Ok(());
        }
        if let Some(meta) = txn_meta(op) {
            return self.handle_txn(op, meta).await;
        }
        if let Some(("applyOps", RawBsonRef::Array(inner))) = op.command() {
            // Not a transaction: mongod < 4.0 and vectored inserts wrote these.
            for raw in inner {
                let raw = raw.map_err(|e| malformed(op.id(), format!("applyOps: {e}")))?;
                let raw = raw
                    .as_document()
                    .ok_or_else(|| malformed(op.id(), "applyOps holds a non-document".into()))?;
                let inner = Op::parse(raw).map_err(|e| malformed(op.id(), e))?;
                let inner = Op { ts: op.ts, ..inner };
                if self.skip_reason(&inner).is_some() {
                    self.stats.skipped += 1;
                    continue;
                }
                self.apply_single(&inner).await?;
            }
            return Ok(());
        }
        self.apply_single(op).await
    }

    async fn handle_txn(&mut self, op: &Op<'_>, meta: TxnMeta) -> Result<(), OplogError> {
        let (Some(lsid), Some(n)) = (op.lsid, op.txn_number) else {
            return Ok(());
        };
        let key = (lsid.as_bytes().to_vec(), n);
        if meta.apply_ops {
            let inner =
                op.o.get_array("applyOps")
                    .map_err(|e| malformed(op.id(), format!("applyOps: {e}")))?;
            let t = self.txns.entry(key.clone()).or_insert_with(|| PendingTxn {
                ops: Vec::new(),
                complete: false,
                first: op.id(),
            });
            t.complete = !meta.partial;
            for raw in inner {
                let raw = raw.map_err(|e| malformed(op.id(), format!("applyOps: {e}")))?;
                let raw = raw
                    .as_document()
                    .ok_or_else(|| malformed(op.id(), "applyOps holds a non-document".into()))?;
                t.ops.push(raw.to_owned());
            }
        }
        if meta.abort {
            if self.txns.remove(&key).is_some() {
                self.stats.aborted_transactions += 1;
            }
            return Ok(());
        }
        let commit = meta.commit || (meta.apply_ops && !meta.prepare && !meta.partial);
        if !commit {
            return Ok(());
        }
        if meta.commit {
            // An empty commit closes a prepared (distributed) transaction: the other
            // shards may need to know it committed before the end of the range.
            let commit_ts = op.o.get_timestamp("commitTimestamp").ok().or(op.ts);
            if let Some(commit_ts) = commit_ts {
                if self.dist_commits.len() == KEEP_DIST_COMMITS {
                    self.dist_commits.pop_front();
                }
                self.dist_commits.push_back(CommittedTxn {
                    id: txn_id(&key.0, key.1),
                    commit_ts,
                });
            }
        }
        // A commit whose ops were before the range start has nothing to apply (PBM).
        let Some(t) = self.txns.remove(&key) else {
            return Ok(());
        };
        self.apply_transaction(t.ops, op.id()).await
    }

    /// Ids ([`txn_id`]) of transactions prepared (or partly written) and not committed
    /// or aborted so far.
    pub fn uncommitted(&self) -> Vec<String> {
        self.txns.keys().map(|(l, n)| txn_id(l, *n)).collect()
    }

    /// The last distributed transactions this replay saw committed, oldest first.
    pub fn distributed_commits(&self) -> impl Iterator<Item = &CommittedTxn> {
        self.dist_commits.iter()
    }

    /// After the replay: applies the uncommitted transactions that another shard saw
    /// committed within the range (PBM's `HandleUncommittedTxn`). Returns how many were
    /// applied; one whose ops are incomplete here stays uncommitted.
    ///
    /// # Errors
    /// Applying a transaction failed.
    pub async fn apply_committed_elsewhere(
        &mut self,
        committed: &HashSet<String>,
    ) -> Result<u64, OplogError> {
        let keys: Vec<TxnKey> = self
            .txns
            .iter()
            .filter(|((l, n), t)| t.complete && committed.contains(&txn_id(l, *n)))
            .map(|(k, _)| k.clone())
            .collect();
        let mut n = 0;
        for k in keys {
            if let Some(t) = self.txns.remove(&k) {
                self.apply_transaction(t.ops, t.first).await?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Applies a committed transaction's ops atomically. `commit` names the entry in
    /// errors (its ts; the failing op's own op and ns).
    async fn apply_transaction(
        &mut self,
        ops: Vec<RawDocumentBuf>,
        commit: EntryId,
    ) -> Result<(), OplogError> {
        let mut kept = Vec::with_capacity(ops.len());
        for raw in &ops {
            let op = Op::parse(raw).map_err(|e| malformed(commit.clone(), e))?;
            let op = Op {
                ts: commit.ts,
                ..op
            };
            if self.skip_reason(&op).is_some() {
                self.stats.skipped += 1;
                continue;
            }
            let id = op.id();
            match self.rewrite(&op).map_err(|e| malformed(id, e))? {
                Some(r) => kept.push(r),
                None => kept.push(raw.clone()),
            }
        }
        if kept.is_empty() {
            return Ok(());
        }
        let parsed: Vec<Op<'_>> = kept
            .iter()
            .map(|r| Op::parse(r).map(|o| Op { ts: commit.ts, ..o }))
            .collect::<Result<_, _>>()
            .map_err(|e| malformed(commit.clone(), e))?;
        match self.mode {
            Mode::ApplyOps if parsed.iter().all(|o| o.op != "c") => {
                let n = parsed.len() as u64;
                self.run_apply_ops(parsed.iter().map(|o| o.raw), &commit)
                    .await?;
                self.stats.applied += n;
            }
            Mode::ApplyOps => {
                // Commands inside a transaction (4.4+ `create`): not atomic under
                // applyOps, applied one by one in order.
                for op in &parsed {
                    self.apply_rewritten(op).await?;
                }
            }
            Mode::Commands => {
                let mut batch: Vec<(EntryId, Action)> = Vec::new();
                for op in &parsed {
                    let id = op.id();
                    let actions = translate::actions(op).map_err(|e| entry_err(id.clone(), e))?;
                    for a in actions {
                        if a.is_crud() {
                            batch.push((id.clone(), a));
                        } else {
                            self.run_in_transaction(std::mem::take(&mut batch)).await?;
                            self.run_action(&a, None)
                                .await
                                .map_err(|e| server_err(&id, &a, e))?;
                        }
                    }
                }
                self.run_in_transaction(batch).await?;
                self.stats.applied += parsed.len() as u64;
            }
        }
        self.stats.transactions += 1;
        Ok(())
    }

    fn skip_reason(&self, op: &Op<'_>) -> Option<&'static str> {
        if self.users_and_roles && filter::is_selected_user_or_role(op, &self.opts.filter) {
            return None;
        }
        filter::skip_reason(op, &self.opts.filter, self.clone.as_ref())
    }

    fn rewrite(&self, op: &Op<'_>) -> Result<Option<RawDocumentBuf>, String> {
        let drop_uuid = self.mode == Mode::ApplyOps
            && (self.opts.drop_uuids || filter::drops_uuid(op.ns, op.o, op.op));
        filter::rewrite(op, self.clone.as_ref(), drop_uuid)
    }

    /// One entry outside a transaction, after the skip rules.
    async fn apply_single(&mut self, op: &Op<'_>) -> Result<(), OplogError> {
        let id = op.id();
        match self.rewrite(op).map_err(|e| malformed(id.clone(), e))? {
            Some(raw) => {
                let new = Op::parse(&raw).map_err(|e| malformed(id, e))?;
                let new = Op { ts: op.ts, ..new };
                self.apply_rewritten(&new).await
            }
            None => self.apply_rewritten(op).await,
        }
    }

    async fn apply_rewritten(&mut self, op: &Op<'_>) -> Result<(), OplogError> {
        let id = op.id();
        let cmd = if op.op == "c" {
            op.command().map(|(c, _)| c)
        } else {
            None
        };
        if matches!(cmd, Some("commitTransaction" | "abortTransaction")) {
            // Only meaningful with lsid/txnNumber (handled as transactions).
            return Err(malformed(
                id,
                "transaction command without lsid/txnNumber".into(),
            ));
        }
        let index_cmd = matches!(
            cmd,
            Some(
                "createIndexes"
                    | "commitIndexBuild"
                    | "dropIndexes"
                    | "deleteIndexes"
                    | "dropIndex"
                    | "deleteIndex"
            )
        );
        if self.mode == Mode::ApplyOps && !index_cmd {
            let (db, coll) = op.db_coll();
            if op.op == "i" && coll == "system.views" {
                // PBM-921: applyOps cannot insert a view into a database that does not
                // exist yet.
                let a = Action::Command {
                    db: db.to_string(),
                    cmd: doc! {"create": "system.views"},
                    done_codes: vec![NAMESPACE_EXISTS],
                };
                self.run_action(&a, None)
                    .await
                    .map_err(|e| server_err(&id, &a, e))?;
            }
            if cmd == Some("create") {
                if let Some(coll) = op.command_coll() {
                    // PBM's synthetic drop before create.
                    let a = Action::Command {
                        db: op.db_coll().0.to_string(),
                        cmd: doc! {"drop": coll},
                        done_codes: vec![NS_NOT_FOUND],
                    };
                    self.run_action(&a, None)
                        .await
                        .map_err(|e| server_err(&id, &a, e))?;
                }
            }
            self.run_apply_ops(std::iter::once(op.raw), &id).await?;
        } else {
            for a in translate::actions(op).map_err(|e| entry_err(id.clone(), e))? {
                self.run_action(&a, None)
                    .await
                    .map_err(|e| server_err(&id, &a, e))?;
            }
        }
        self.stats.applied += 1;
        Ok(())
    }

    /// `applyOps` with these ops. Fields the server does not take from an op are left
    /// to it: mongod accepts whole oplog entries.
    async fn run_apply_ops<'a>(
        &self,
        ops: impl Iterator<Item = &'a RawDocument>,
        id: &EntryId,
    ) -> Result<(), OplogError> {
        let mut arr = RawArrayBuf::new();
        for o in ops {
            arr.push(o);
        }
        let mut cmd = RawDocumentBuf::new();
        cmd.append(cstr!("applyOps"), &arr);
        self.client
            .database("admin")
            .run_raw_command(cmd)
            .await
            .map(|_| ())
            .map_err(|source| {
                entry_err(
                    id.clone(),
                    EntryError::Server {
                        what: "applyOps".into(),
                        source,
                    },
                )
            })
    }

    /// CRUD actions in one client-session transaction (one action needs none).
    async fn run_in_transaction(&self, batch: Vec<(EntryId, Action)>) -> Result<(), OplogError> {
        match batch.len() {
            0 => return Ok(()),
            1 => {
                let (id, a) = &batch[0];
                return self
                    .run_action(a, None)
                    .await
                    .map_err(|e| server_err(id, a, e));
            }
            _ => {}
        }
        let first = &batch[0].0;
        let txn_err = |what: &str, source| {
            entry_err(
                first.clone(),
                EntryError::Server {
                    what: format!("transaction: {what}"),
                    source,
                },
            )
        };
        let mut s = self
            .client
            .start_session()
            .await
            .map_err(|e| txn_err("start session", e))?;
        s.start_transaction()
            .await
            .map_err(|e| txn_err("start", e))?;
        for (id, a) in &batch {
            if let Err(e) = self.run_action(a, Some(&mut s)).await {
                // Best effort: the server aborts it anyway when the session ends.
                let _ = s.abort_transaction().await;
                return Err(server_err(id, a, e));
            }
        }
        s.commit_transaction()
            .await
            .map_err(|e| txn_err("commit", e))
    }

    fn coll(&self, ns: &str) -> Collection<RawDocumentBuf> {
        let (db, coll) = ns.split_once('.').unwrap_or((ns, ""));
        self.client.database(db).collection(coll)
    }

    async fn run_action(
        &self,
        a: &Action,
        session: Option<&mut ClientSession>,
    ) -> Result<(), mongodb::error::Error> {
        match a {
            Action::Upsert { ns, filter, doc } => {
                let c = self.coll(ns);
                let q = c.replace_one(filter.clone(), doc).upsert(true);
                match session {
                    Some(s) => q.session(s).await,
                    None => q.await,
                }
                .map(|_| ())
            }
            Action::Update { ns, filter, steps } => {
                let c = self.coll(ns);
                let mut session = session;
                for step in steps {
                    let q = c.update_one(filter.clone(), step.clone());
                    match session.as_deref_mut() {
                        Some(s) => q.session(s).await?,
                        None => q.await?,
                    };
                }
                Ok(())
            }
            Action::Delete { ns, filter } => {
                let c = self.coll(ns);
                let q = c.delete_one(filter.clone());
                match session {
                    Some(s) => q.session(s).await,
                    None => q.await,
                }
                .map(|_| ())
            }
            Action::DeleteAll { ns } => {
                let c = self.coll(ns);
                let q = c.delete_many(Document::new());
                match session {
                    Some(s) => q.session(s).await,
                    None => q.await,
                }
                .map(|_| ())
            }
            Action::Command {
                db,
                cmd,
                done_codes,
            } => {
                let extra: &[i32] = if self.mode == Mode::Commands {
                    secantus::extra_done_codes(cmd)
                } else {
                    &[]
                };
                match self.client.database(db).run_command(cmd.clone()).await {
                    Ok(_) => Ok(()),
                    Err(e)
                        if code(&e)
                            .is_some_and(|c| done_codes.contains(&c) || extra.contains(&c)) =>
                    {
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            }
        }
    }
}

fn server_err(id: &EntryId, a: &Action, source: mongodb::error::Error) -> OplogError {
    let what = match a {
        Action::Upsert { ns, .. } => format!("upsert into {ns}"),
        Action::Update { ns, .. } => format!("update of {ns}"),
        Action::Delete { ns, .. } => format!("delete from {ns}"),
        Action::DeleteAll { ns } => format!("emptying {ns}"),
        Action::Command { db, cmd, .. } => {
            let name = cmd.keys().next().map(String::as_str).unwrap_or("?");
            format!("command {name} on {db}")
        }
    };
    entry_err(id.clone(), EntryError::Server { what, source })
}

/// Transaction flags of a `c` entry with `lsid` and `txnNumber`; `None` when it is not
/// part of a transaction (mongo-tools' `txn.NewMeta`).
fn txn_meta(op: &Op<'_>) -> Option<TxnMeta> {
    if op.op != "c" || op.lsid.is_none() || op.txn_number.is_none() {
        return None;
    }
    // Vectored inserts of a retryable write look alike but are not transactions.
    if matches!(op.raw.get("multiOpType"), Ok(Some(RawBsonRef::Int32(1)))) {
        return None;
    }
    let mut m = TxnMeta::default();
    for (k, v) in op.o.iter().flatten() {
        match k.as_str() {
            "applyOps" => m.apply_ops = true,
            "commitTransaction" => m.commit = true,
            "abortTransaction" => m.abort = true,
            "partialTxn" => m.partial = filter::truthy(v),
            "prepare" => m.prepare = filter::truthy(v),
            _ => {}
        }
    }
    (m.apply_ops || m.commit || m.abort).then_some(m)
}
