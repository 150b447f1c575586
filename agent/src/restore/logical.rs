//! The logical restore engine, in steps the caller drives (and reports between):
//! [`LogicalRestore::prepare`] → [`load`](LogicalRestore::load) →
//! [`switch`](LogicalRestore::switch) → [`users_and_roles`](LogicalRestore::users_and_roles)
//! → [`replay_oplog`](LogicalRestore::replay_oplog) → [`indexes`](LogicalRestore::indexes)
//! → [`views`](LogicalRestore::views). See the module docs of [`super`] for the safety
//! rule.

use super::source::{self, RsBackup};
use super::verify::DumpReader;
use super::{excluded, secantus, RestoreError};
use crate::oplog::{self, Applier, ApplyOptions, ReplayRange, ReplayStats};
use bson::{doc, Bson, Document, RawDocumentBuf};
use futures::{StreamExt, TryStreamExt};
use mongodb::options::WriteConcern;
use mongodb::Client;
use rbm_protocol::defs::{TMP_ROLES_COLLECTION, TMP_USERS_COLLECTION};
use rbm_protocol::meta::archive::{NamespaceType, NamespaceV2};
use rbm_protocol::meta::BackupMeta;
use rbm_protocol::ns::NsFilter;
use rbm_storage::bson_stream::BsonReader;
use rbm_storage::{codec, Compression, DynStorage};
use std::sync::Arc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Batches never exceed this many bytes (a 48 MB message holds it with room).
const MAX_BATCH_BYTES: usize = 16 << 20;

/// How to restore.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// `--ns` patterns; empty for everything.
    pub namespaces: Vec<String>,
    /// `--ns-from`/`--ns-to`.
    pub clone: Option<(String, String)>,
    /// `--with-users-and-roles`.
    pub users_and_roles: bool,
    /// Parallel insert batches per collection.
    pub insertion_workers: usize,
    /// Collections loaded at once.
    pub parallel_collections: usize,
    /// Documents per insert batch (PBM's `restore.batchSize`, default 500).
    pub batch_size: usize,
    /// Unique per restore: names the temporary collections.
    pub tag: String,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        Self {
            namespaces: Vec::new(),
            clone: None,
            users_and_roles: false,
            insertion_workers: 2,
            parallel_collections: 2,
            batch_size: 500,
            tag: "0".into(),
        }
    }
}

/// One collection to restore.
#[derive(Debug, Clone)]
struct Target {
    ns: NamespaceV2,
    object: String,
    db: String,
    coll: String,
    temp: String,
    loaded: bool,
    /// Loaded straight into its target after its object was verified (SecantusDB):
    /// there is no temporary to switch or drop.
    in_place: bool,
    /// The temporary was created with the backup's UUID (a rename within its database
    /// keeps it).
    uuid_kept: bool,
}

/// What the restore did, for the logs.
#[derive(Debug, Clone, Default)]
pub struct RestoreSummary {
    pub collections: usize,
    pub documents: u64,
    pub oplog: ReplayStats,
    pub users: usize,
    pub roles: usize,
}

/// A restore of one replica set's part of a logical backup.
pub struct LogicalRestore {
    client: Client,
    storage: DynStorage,
    rsb: RsBackup,
    opts: RestoreOptions,
    filter: NsFilter,
    targets: Vec<Target>,
    views: Vec<NamespaceV2>,
    /// Databases whose users and roles are swapped; `None` for all; not restored when
    /// the outer option is `None`.
    users_dbs: Option<Option<Vec<String>>>,
    /// Create temporaries with the backup's UUIDs (`applyOps`), as PBM's mongorestore
    /// with `preserveUUID`; never for a clone.
    keep_uuids: bool,
    pub summary: RestoreSummary,
    /// Counts the loaded bytes and collections, for `rbm status` (set by the caller).
    pub progress: crate::progress::Progress,
}

impl LogicalRestore {
    /// Reads the backup's metadata, resolves the selection and checks that every object
    /// it needs exists, before anything is written.
    ///
    /// # Errors
    /// An incompatible backup, a bad selection, a missing object.
    pub async fn prepare(
        client: Client,
        storage: DynStorage,
        meta: &BackupMeta,
        rs: &str,
        opts: RestoreOptions,
    ) -> Result<Self, RestoreError> {
        let filter =
            NsFilter::parse(&opts.namespaces).map_err(|e| RestoreError::BadNs(e.to_string()))?;
        let rsb = source::open_rs_backup(storage.as_ref(), meta, rs).await?;
        let backup_filter =
            NsFilter::parse(&meta.namespaces).map_err(|e| RestoreError::Incompatible {
                backup: meta.name.clone(),
                why: format!("its namespace list: {e}"),
            })?;
        let clone = match &opts.clone {
            Some((from, to)) => {
                let split = |s: &str| {
                    s.split_once('.')
                        .filter(|(d, c)| !d.is_empty() && !c.is_empty() && !s.contains('*'))
                        .map(|(d, c)| (d.to_string(), c.to_string()))
                        .ok_or_else(|| {
                            RestoreError::BadNs(format!(
                                "{s:?}: --ns-from/--ns-to take a full <db>.<collection>"
                            ))
                        })
                };
                let f = split(from)?;
                let t = split(to)?;
                // PBM's nsIsTaken: cloning never overwrites an existing collection.
                let taken = client
                    .database(&t.0)
                    .list_collection_names()
                    .filter(doc! {"name": &t.1})
                    .await
                    .map_err(RestoreError::db(format!("listCollections in {}", t.0)))?;
                if !taken.is_empty() {
                    return Err(RestoreError::BadNs(format!(
                        "cloning namespace (--ns-to) {to} is already in use, specify another one that doesn't exist in database"
                    )));
                }
                if excluded(&t.0, &t.1) {
                    return Err(RestoreError::BadNs(format!(
                        "{to:?} is a reserved namespace"
                    )));
                }
                Some((f, t))
            }
            None => None,
        };
        if !filter.is_all() && clone.is_some() {
            return Err(RestoreError::BadNs(
                "--ns cannot be combined with --ns-from/--ns-to".into(),
            ));
        }
        let mut targets = Vec::new();
        let mut views = Vec::new();
        for ns in &rsb.namespaces {
            if excluded(&ns.db, &ns.name) {
                continue;
            }
            let (db, coll) = match &clone {
                Some((f, t)) => {
                    if ns.db != f.0 || ns.name != f.1 {
                        continue;
                    }
                    t.clone()
                }
                None => {
                    let plain = ns.name.strip_prefix("system.buckets.").unwrap_or(&ns.name);
                    if !filter.matches(&ns.db, plain) {
                        continue;
                    }
                    (ns.db.clone(), ns.name.clone())
                }
            };
            match ns.kind {
                NamespaceType::View => {
                    if clone.is_some() {
                        return Err(RestoreError::BadNs(format!(
                            "{}.{} is a view; --ns-from takes a collection",
                            ns.db, ns.name
                        )));
                    }
                    views.push(ns.clone());
                }
                NamespaceType::Timeseries => {
                    return Err(RestoreError::Incompatible {
                        backup: meta.name.clone(),
                        why: format!(
                            "{} is a time-series collection; this build does not restore them",
                            ns.ns()
                        ),
                    })
                }
                NamespaceType::Collection => targets.push(Target {
                    object: rsb.object(ns),
                    temp: format!("rbm_restore_{}.{}", opts.tag, coll),
                    in_place: false,
                    ns: ns.clone(),
                    db,
                    coll,
                    loaded: false,
                    uuid_kept: false,
                }),
            }
        }
        if let Some((f, _)) = &clone {
            if targets.is_empty() {
                return Err(RestoreError::BadNs(format!(
                    "{}.{} is not a collection of backup '{}'",
                    f.0, f.1, meta.name
                )));
            }
        } else if !filter.is_all() {
            for p in filter.patterns() {
                let found = rsb.namespaces.iter().any(|n| {
                    n.db == p.db()
                        && !excluded(&n.db, &n.name)
                        && NsFilter::parse(&[p.to_string()])
                            .map(|f| f.matches(&n.db, &n.name))
                            .unwrap_or(false)
                });
                if !found {
                    return Err(RestoreError::BadNs(format!(
                        "{p} matches nothing in backup '{}'",
                        meta.name
                    )));
                }
            }
        }
        // PBM's shouldRestoreUsersAndRoles.
        let users_dbs = if clone.is_some() || (!backup_filter.is_all() && !meta.sel_users_and_roles)
        {
            None
        } else if !filter.is_all() {
            opts.users_and_roles.then(|| {
                Some(
                    filter
                        .patterns()
                        .iter()
                        .map(|p| p.db().to_string())
                        .filter(|d| d != "admin")
                        .collect(),
                )
            })
        } else if !backup_filter.is_all() {
            Some(Some(
                backup_filter
                    .patterns()
                    .iter()
                    .map(|p| p.db().to_string())
                    .collect(),
            ))
        } else {
            Some(None)
        };
        let keep_uuids = clone.is_none() && secantus::has_apply_ops(&client).await;
        let me = Self {
            keep_uuids,
            client,
            storage,
            rsb,
            opts,
            filter,
            targets,
            views,
            users_dbs,
            summary: RestoreSummary::default(),
            progress: Default::default(),
        };
        me.check_objects().await?;
        Ok(me)
    }

    /// The collections to restore, as `db.coll` of their targets.
    pub fn target_names(&self) -> Vec<String> {
        self.targets
            .iter()
            .map(|t| format!("{}.{}", t.db, t.coll))
            .collect()
    }

    /// Every object the restore reads exists.
    async fn check_objects(&self) -> Result<(), RestoreError> {
        let mut objects: Vec<String> = self.targets.iter().map(|t| t.object.clone()).collect();
        if self.users_dbs.is_some() {
            for c in [TMP_USERS_COLLECTION, TMP_ROLES_COLLECTION] {
                if let Some(ns) = self.rsb.find("admin", c) {
                    objects.push(self.rsb.object(ns));
                }
            }
        }
        let empty: Vec<String> = self
            .targets
            .iter()
            .filter(|t| t.ns.size == 0)
            .map(|t| t.object.clone())
            .collect();
        for o in objects {
            match self.storage.stat(&o).await {
                Ok(_) => {}
                // PBM writes no object for an empty collection.
                Err(e) if e.kind == rbm_storage::ErrorKind::NotFound && empty.contains(&o) => {}
                Err(e) => return Err(source::storage_err(&o, e)),
            }
        }
        if source::oplog_chunks(self.storage.as_ref(), &self.rsb)
            .await?
            .is_empty()
        {
            return Err(RestoreError::MissingObject {
                object: format!("{}/*", self.rsb.oplog_dir()),
            });
        }
        Ok(())
    }

    /// Loads every selected collection into its temporary collection and verifies it.
    /// On failure the temporaries are dropped and nothing else was touched.
    ///
    /// # Errors
    /// A read, verification or insert failure, naming the object or namespace.
    pub async fn load(&mut self, cancel: &CancellationToken) -> Result<(), RestoreError> {
        let r = self.load_all(cancel).await;
        if r.is_err() {
            self.drop_temps().await;
        }
        r
    }

    async fn load_all(&mut self, cancel: &CancellationToken) -> Result<(), RestoreError> {
        if secantus::is_secantus(&self.client).await {
            // Verify every object first, then load in place (see secantus.rs): its
            // renameCollection is a full copy, so temporaries would double the work.
            // The server waits meanwhile: one object per core at once.
            let cores = std::thread::available_parallelism().map_or(2, usize::from);
            let mut set: JoinSet<Result<(), RestoreError>> = JoinSet::new();
            let mut pending = self.targets.iter();
            loop {
                while set.len() < cores {
                    let Some(t) = pending.next() else { break };
                    let (storage, compression) = (self.storage.clone(), self.rsb.compression);
                    let (object, ns) = (t.object.clone(), t.ns.clone());
                    set.spawn(async move {
                        secantus::verify_object(storage.as_ref(), &object, compression, &ns).await
                    });
                }
                let verified = tokio::select! {
                    j = set.join_next() => j,
                    _ = cancel.cancelled() => return Err(RestoreError::Cancelled),
                };
                let Some(j) = verified else { break };
                j.map_err(|e| RestoreError::Read {
                    object: "verify task".into(),
                    why: e.to_string(),
                })??;
            }
            for t in &mut self.targets {
                t.temp = t.coll.clone();
                t.in_place = true;
            }
        }
        self.progress.set_totals(
            self.targets.iter().map(|t| t.ns.size.max(0) as u64).sum(),
            self.targets.len() as u64,
        );
        let parallel = self.opts.parallel_collections.max(1);
        let mut set: JoinSet<(usize, Result<Loaded, RestoreError>)> = JoinSet::new();
        let mut next = 0;
        let mut result = Ok(());
        loop {
            while result.is_ok() && set.len() < parallel && next < self.targets.len() {
                let t = self.targets[next].clone();
                let i = next;
                next += 1;
                let client = self.client.clone();
                let storage = self.storage.clone();
                let compression = self.rsb.compression;
                let opts = self.opts.clone();
                let cancel = cancel.clone();
                let keep_uuid = self.keep_uuids;
                let progress = self.progress.clone();
                set.spawn(async move {
                    let r = load_one(
                        &client,
                        storage,
                        compression,
                        &t,
                        &opts,
                        keep_uuid,
                        &cancel,
                        &progress,
                    )
                    .await;
                    progress.collection_done();
                    (i, r)
                });
            }
            let Some(joined) = set.join_next().await else {
                break;
            };
            match joined {
                Ok((i, Ok((n, uuid_kept)))) => {
                    self.targets[i].loaded = true;
                    self.targets[i].uuid_kept = uuid_kept;
                    self.summary.documents += n;
                }
                Ok((i, Err(e))) => {
                    // Temporaries created so far must be dropped even for a failed one.
                    self.targets[i].loaded = true;
                    if result.is_ok() {
                        result = Err(e);
                    }
                }
                Err(e) => {
                    if result.is_ok() {
                        result = Err(RestoreError::Read {
                            object: "load task".into(),
                            why: e.to_string(),
                        });
                    }
                }
            }
        }
        // Unstarted targets have no temporary; started ones are marked.
        for t in self.targets.iter_mut().skip(next) {
            t.loaded = false;
        }
        result
    }

    async fn drop_temps(&self) {
        for t in self.targets.iter().filter(|t| t.loaded && !t.in_place) {
            if let Err(e) = self
                .client
                .database(&t.db)
                .collection::<Document>(&t.temp)
                .drop()
                .await
            {
                tracing::warn!("cannot drop temporary {}.{}: {e}", t.db, t.temp);
            }
        }
    }

    /// Renames each verified temporary onto its target. Same database: the target
    /// keeps the temporary's UUID. From here on the old data is gone.
    ///
    /// # Errors
    /// A rename failure (the remaining temporaries stay for inspection; a rerun drops them).
    pub async fn switch(&mut self) -> Result<(), RestoreError> {
        let secantus = secantus::is_secantus(&self.client).await;
        for t in &self.targets {
            if t.in_place {
                continue;
            }
            if secantus && !secantus::rename_keeps(&t.ns.options) {
                secantus::switch_by_copy(&self.client, &t.db, &t.temp, &t.coll, &t.ns.options)
                    .await?;
                continue;
            }
            let from = format!("{}.{}", t.db, t.temp);
            let to = format!("{}.{}", t.db, t.coll);
            self.client
                .database("admin")
                .run_command(doc! {"renameCollection": &from, "to": &to, "dropTarget": true})
                .await
                .map_err(RestoreError::db(format!("renameCollection {from} to {to}")))?;
        }
        self.summary.collections = self.targets.len();
        Ok(())
    }

    /// PBM's swapUsers from the dumped `admin.pbmRUsers`/`pbmRRoles`.
    ///
    /// # Errors
    /// Unreadable dumps or refused user/role writes.
    pub async fn users_and_roles(&mut self) -> Result<(), RestoreError> {
        let Some(dbs) = self.users_dbs.clone() else {
            return Ok(());
        };
        let users = self.read_admin_dump(TMP_USERS_COLLECTION).await?;
        let roles = self.read_admin_dump(TMP_ROLES_COLLECTION).await?;
        let keep = |d: &Document| match &dbs {
            None => true,
            Some(list) => d.get_str("db").is_ok_and(|db| list.iter().any(|x| x == db)),
        };
        let users: Vec<Document> = users.into_iter().filter(|d| keep(d)).collect();
        let roles: Vec<Document> = roles.into_iter().filter(|d| keep(d)).collect();
        self.summary.users = users.len();
        self.summary.roles = roles.len();
        let current = current_user(&self.client).await?;
        if secantus::is_secantus(&self.client).await {
            return secantus::swap_users(&self.client, &users, &roles, dbs.as_deref(), &current)
                .await;
        }
        swap_users(&self.client, &users, &roles, dbs.as_deref(), &current).await
    }

    async fn read_admin_dump(&self, coll: &str) -> Result<Vec<Document>, RestoreError> {
        let Some(ns) = self.rsb.find("admin", coll) else {
            return Ok(Vec::new());
        };
        let object = self.rsb.object(ns);
        let Some(mut r) =
            DumpReader::open_or_empty(self.storage.as_ref(), &object, self.rsb.compression, ns)
                .await?
        else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        while let Some(d) = r.next().await? {
            out.push(
                Document::try_from(d.as_ref()).map_err(|e| RestoreError::Corrupted {
                    object: object.clone(),
                    why: e.to_string(),
                })?,
            );
        }
        r.finish(ns)?;
        Ok(out)
    }

    /// Applies the backup's oplog slice from `first_write_ts` to `last_write_ts`.
    ///
    /// # Errors
    /// Unreadable chunks or entries the applier refuses.
    pub async fn replay_oplog(&mut self, cancel: &CancellationToken) -> Result<(), RestoreError> {
        self.replay_oplog_to(&[], None, cancel).await
    }

    /// Applies the backup's oplog slice, then the PITR chunk objects `pitr` (on the same
    /// storage, in order) up to and including `target` (PBM's PITR restore). One applier
    /// runs through both, so a transaction is applied whole at its commit, or not at all
    /// when the commit lies after the target, and entries the chunks repeat are applied
    /// once.
    ///
    /// # Errors
    /// Unreadable chunks or entries the applier refuses.
    pub async fn replay_oplog_to(
        &mut self,
        pitr: &[String],
        target: Option<bson::Timestamp>,
        cancel: &CancellationToken,
    ) -> Result<(), RestoreError> {
        let chunks = source::oplog_chunks(self.storage.as_ref(), &self.rsb).await?;
        let remap = self.opts.clone.clone();
        let filter = match &remap {
            Some((from, _)) => {
                NsFilter::parse(&[from]).map_err(|e| RestoreError::BadNs(e.to_string()))?
            }
            None => self.filter.clone(),
        };
        let mut applier = Applier::new(
            self.client.clone(),
            ApplyOptions {
                filter,
                remap,
                // Entries name collections by `ui` only when every restored collection
                // got the backup's UUID back.
                drop_uuids: !self.targets.iter().all(|t| t.uuid_kept),
                force_commands: false,
            },
        )
        .await?;
        let range = ReplayRange {
            start: self.rsb.first_write,
            end: self.rsb.last_write,
        };
        for object in chunks {
            if cancel.is_cancelled() {
                return Err(RestoreError::Cancelled);
            }
            let past_end = replay_object(&self.storage, &object, range, &mut applier).await?;
            if past_end {
                break;
            }
        }
        if let Some(target) = target {
            let range = ReplayRange {
                start: self.rsb.last_write,
                end: target,
            };
            for object in pitr {
                if cancel.is_cancelled() {
                    return Err(RestoreError::Cancelled);
                }
                if replay_object(&self.storage, object, range, &mut applier).await? {
                    break;
                }
            }
        }
        self.summary.oplog = applier.finish().await?;
        Ok(())
    }

    /// Builds the recorded secondary indexes (PBM drops `v` and `ns`). An index listed
    /// without a collation on a collection with a default collation inherits it, as
    /// mongod does, so it is created without one (PBM would add `{locale: "simple"}`).
    ///
    /// # Errors
    /// A createIndexes failure naming the collection.
    pub async fn indexes(&mut self) -> Result<(), RestoreError> {
        // One createIndexes per collection, several collections at once as mongorestore
        // does (bounded like the load): on mongod the builds of different collections
        // run in parallel; the first failure ends the step.
        let builds: Vec<(String, String, Vec<Bson>)> = self
            .targets
            .iter()
            .map(|t| {
                let specs: Vec<Bson> =
                    t.ns.indexes
                        .iter()
                        .filter(|s| !is_id_index(s))
                        .map(|s| {
                            let mut s = s.clone();
                            s.remove("v");
                            s.remove("ns");
                            Bson::Document(s)
                        })
                        .collect();
                (t.db.clone(), t.coll.clone(), specs)
            })
            .filter(|(_, _, specs)| !specs.is_empty())
            .collect();
        let client = &self.client;
        futures::stream::iter(builds.into_iter().map(|(db, coll, specs)| async move {
            client
                .database(&db)
                .run_command(doc! {"createIndexes": &coll, "indexes": specs})
                .await
                .map_err(RestoreError::db(format!("createIndexes for {db}.{coll}")))
        }))
        .buffer_unordered(self.opts.parallel_collections.max(1))
        .try_collect::<Vec<_>>()
        .await?;
        Ok(())
    }

    /// Re-creates the selected views (a view holds no data, so an existing one of the
    /// same name is replaced).
    ///
    /// # Errors
    /// A refused create.
    pub async fn views(&mut self) -> Result<(), RestoreError> {
        for v in &self.views {
            let db = self.client.database(&v.db);
            let exists = db
                .list_collection_names()
                .filter(doc! {"name": &v.name, "type": "view"})
                .await
                .map_err(RestoreError::db(format!("listCollections in {}", v.db)))?;
            if !exists.is_empty() {
                db.collection::<Document>(&v.name)
                    .drop()
                    .await
                    .map_err(RestoreError::db(format!("drop view {}.{}", v.db, v.name)))?;
            }
            let mut cmd = doc! {"create": &v.name};
            for (k, val) in &v.options {
                cmd.insert(k.clone(), val.clone());
            }
            db.run_command(cmd)
                .await
                .map_err(RestoreError::db(format!("create view {}.{}", v.db, v.name)))?;
        }
        Ok(())
    }
}

/// A UUID as `meta.pbm` stores it (32 hex digits) → BSON binary subtype 4.
/// Applies the in-range entries of one stored oplog object (backup slice or PITR chunk)
/// and says whether an entry past `range.end` was met. PBM's `ExcludeFromRestore`
/// applies to the oplog too: control collections and config/local are never replayed.
///
/// # Errors
/// An unreadable or corrupted object, or an entry that cannot be applied.
pub(crate) async fn replay_object(
    storage: &DynStorage,
    object: &str,
    range: ReplayRange,
    applier: &mut Applier,
) -> Result<bool, RestoreError> {
    let raw = storage
        .open(object)
        .await
        .map_err(|e| source::storage_err(object, e))?;
    let mut reader = BsonReader::new(codec::decompress_reader(
        raw,
        Compression::from_file_name(object),
    ));
    while let Some(entry) = reader
        .next()
        .await
        .map_err(|e| RestoreError::stream(object, e))?
    {
        let ts = entry
            .get_timestamp("ts")
            .map_err(|e| RestoreError::Corrupted {
                object: object.to_string(),
                why: format!("oplog entry without ts: {e}"),
            })?;
        if oplog::ts_lt(ts, range.start) {
            continue;
        }
        if oplog::ts_lt(range.end, ts) {
            return Ok(true);
        }
        if let Ok(ns) = entry.get_str("ns") {
            if let Some((db, coll)) = ns.split_once('.') {
                if coll != "$cmd" && excluded(db, coll) {
                    continue;
                }
            }
        }
        applier.apply(&entry).await?;
    }
    Ok(false)
}

fn uuid_from_hex(hex: &str) -> Option<bson::Binary> {
    if hex.len() != 32 {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..16)
        .map(|i| u8::from_str_radix(hex.get(i * 2..i * 2 + 2)?, 16).ok())
        .collect();
    Some(bson::Binary {
        subtype: bson::spec::BinarySubtype::Uuid,
        bytes: bytes?,
    })
}

fn is_id_index(spec: &Document) -> bool {
    spec.get_document("key")
        .is_ok_and(|k| k.len() == 1 && k.contains_key("_id"))
}

/// Documents loaded, and whether the backup's UUID was kept.
type Loaded = (u64, bool);

/// Loads one collection into its temporary and checks the dump's size and CRC-64.
// One task's whole context; bundling it in a struct would only rename the arguments.
#[allow(clippy::too_many_arguments)]
async fn load_one(
    client: &Client,
    storage: DynStorage,
    compression: Compression,
    t: &Target,
    opts: &RestoreOptions,
    keep_uuid: bool,
    cancel: &CancellationToken,
    progress: &crate::progress::Progress,
) -> Result<Loaded, RestoreError> {
    let db = client.database(&t.db);
    // A leftover of an interrupted restore with the same tag is ours to drop.
    db.collection::<Document>(&t.temp)
        .drop()
        .await
        .map_err(RestoreError::db(format!("drop {}.{}", t.db, t.temp)))?;
    let mut create = doc! {"create": &t.temp};
    for (k, v) in &t.ns.options {
        create.insert(k.clone(), v.clone());
    }
    let mut uuid_kept = false;
    if let (true, Some(ui)) = (keep_uuid, uuid_from_hex(&t.ns.uuid)) {
        // mongorestore's preserveUUID: `create` through applyOps with the UUID. It fails
        // when the UUID is in use (restoring onto the cluster the backup came from,
        // where the old collection still exists): then the collection gets a new one.
        let op = doc! {"op": "c", "ns": format!("{}.$cmd", t.db), "ui": ui, "o": create.clone()};
        match client
            .database("admin")
            .run_command(doc! {"applyOps": [op]})
            .await
        {
            Ok(_) => uuid_kept = true,
            Err(e) => tracing::info!(
                "{}.{}: cannot keep the backup's UUID ({e}); a new one is used",
                t.db,
                t.coll
            ),
        }
    }
    if !uuid_kept {
        db.run_command(create)
            .await
            .map_err(RestoreError::db(format!(
                "create {}.{} (for {}.{})",
                t.db, t.temp, t.db, t.coll
            )))?;
    }
    let coll = Arc::new(
        db.collection_with_options::<RawDocumentBuf>(
            &t.temp,
            mongodb::options::CollectionOptions::builder()
                .write_concern(WriteConcern::majority())
                .build(),
        ),
    );
    // Capped collections keep insertion order: one writer.
    let capped = t.ns.options.get_bool("capped").unwrap_or(false);
    let workers = if capped {
        1
    } else {
        opts.insertion_workers.max(1)
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<RawDocumentBuf>>(workers * 2);
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let mut set: JoinSet<Result<(), RestoreError>> = JoinSet::new();
    for _ in 0..workers {
        let rx = rx.clone();
        let coll = coll.clone();
        let what = format!("insert into {}.{} (for {}.{})", t.db, t.temp, t.db, t.coll);
        set.spawn(async move {
            loop {
                let batch = { rx.lock().await.recv().await };
                let Some(batch) = batch else { return Ok(()) };
                coll.insert_many(batch)
                    .bypass_document_validation(true)
                    .ordered(true)
                    .await
                    .map_err(RestoreError::db(what.clone()))?;
            }
        });
    }
    let read = async {
        let Some(mut r) =
            DumpReader::open_or_empty(storage.as_ref(), &t.object, compression, &t.ns).await?
        else {
            drop(tx);
            return Ok(0);
        };
        let mut batch = Vec::new();
        let mut bytes = 0usize;
        while let Some(d) = r.next().await? {
            if cancel.is_cancelled() {
                return Err(RestoreError::Cancelled);
            }
            bytes += d.as_bytes().len();
            progress.add_bytes(d.as_bytes().len() as u64);
            batch.push(d);
            if batch.len() >= opts.batch_size.max(1) || bytes >= MAX_BATCH_BYTES {
                if tx.send(std::mem::take(&mut batch)).await.is_err() {
                    break;
                }
                bytes = 0;
            }
        }
        if !batch.is_empty() {
            let _ = tx.send(batch).await;
        }
        drop(tx);
        r.finish(&t.ns)
    };
    let read_result = read.await;
    let mut insert_result = Ok(());
    while let Some(j) = set.join_next().await {
        let r = j.unwrap_or_else(|e| {
            Err(RestoreError::Read {
                object: t.object.clone(),
                why: format!("insert task: {e}"),
            })
        });
        if insert_result.is_ok() {
            insert_result = r;
        }
    }
    // A read error explains a failed insert better than the reverse.
    let n = read_result?;
    insert_result?;
    Ok((n, uuid_kept))
}

/// The authenticated user of this connection (PBM keeps it when swapping users).
async fn current_user(client: &Client) -> Result<Option<(String, String)>, RestoreError> {
    let r = client
        .database("admin")
        .run_command(doc! {"connectionStatus": 1})
        .await
        .map_err(RestoreError::db("connectionStatus"))?;
    let u = r
        .get_document("authInfo")
        .ok()
        .and_then(|a| a.get_array("authenticatedUsers").ok())
        .and_then(|a| a.first())
        .and_then(Bson::as_document)
        .and_then(|u| {
            Some((
                u.get_str("db").ok()?.to_string(),
                u.get_str("user").ok()?.to_string(),
            ))
        });
    Ok(u)
}

/// PBM's `swapUsers` on mongod: replace `admin.system.roles`/`system.users` entries of
/// the selected databases with the backup's, keeping the restoring user.
async fn swap_users(
    client: &Client,
    users: &[Document],
    roles: &[Document],
    dbs: Option<&[String]>,
    current: &Option<(String, String)>,
) -> Result<(), RestoreError> {
    let admin = client.database("admin");
    let mut rf = doc! {};
    let mut uf = doc! {};
    if let Some((db, user)) = current {
        uf.insert("_id", doc! {"$ne": format!("{db}.{user}")});
    }
    if let Some(dbs) = dbs {
        rf.insert("db", doc! {"$in": dbs});
        uf.insert("db", doc! {"$in": dbs});
    }
    let rc = admin.collection::<Document>("system.roles");
    rc.delete_many(rf)
        .await
        .map_err(RestoreError::db("delete from admin.system.roles"))?;
    if !roles.is_empty() {
        rc.insert_many(roles)
            .await
            .map_err(RestoreError::db("insert into admin.system.roles"))?;
    }
    let uc = admin.collection::<Document>("system.users");
    uc.delete_many(uf)
        .await
        .map_err(RestoreError::db("delete from admin.system.users"))?;
    let cur_id = current.as_ref().map(|(d, u)| format!("{d}.{u}"));
    let users: Vec<&Document> = users
        .iter()
        .filter(|u| cur_id.as_deref() != u.get_str("_id").ok())
        .collect();
    if !users.is_empty() {
        uc.insert_many(users)
            .await
            .map_err(RestoreError::db("insert into admin.system.users"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_from_meta_hex() {
        let b = uuid_from_hex("5ae482037c0b4c2eb2e31c07768e1b75").expect("uuid");
        assert_eq!(b.subtype, bson::spec::BinarySubtype::Uuid);
        assert_eq!(b.bytes[0], 0x5a);
        assert_eq!(b.bytes[15], 0x75);
        assert!(uuid_from_hex("").is_none());
        assert!(uuid_from_hex("zz e482037c0b4c2eb2e31c07768e1b7").is_none());
    }

    #[test]
    fn excluded_namespaces_follow_pbm() {
        for (db, c) in [
            ("admin", "pbmBackups"),
            ("admin", "system.version"),
            ("config", "shards"),
            ("local", "oplog.rs"),
            ("shop", "system.views"),
        ] {
            assert!(excluded(db, c), "{db}.{c}");
        }
        for (db, c) in [
            ("admin", "mydata"),
            ("shop", "orders"),
            ("shop", "system.js"),
        ] {
            assert!(!excluded(db, c), "{db}.{c}");
        }
    }
}
