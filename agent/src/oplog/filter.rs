//! Which entries replay skips, as PBM's `pbm/oplog/restore.go` (`handleOp`,
//! `isOpExcluded`, `isOpAllowed`, `isOpSelected`, `isOpForCloning`) decides, and the
//! rewriting of entries for `--ns-from`/`--ns-to` (`cloneEntry`) and UUID removal
//! (`filterUUIDs`).

use bson::raw::{RawBsonRef, RawDocument};
use bson::RawDocumentBuf;
use rbm_protocol::ns::NsFilter;

use super::entry::Op;

/// Commands whose first field names a collection of the entry's database, so that
/// selective replay can place them (`selectedNSSupportedCommands`).
const COLL_COMMANDS: &[&str] = &[
    "create",
    "drop",
    "createIndexes",
    "deleteIndex",
    "deleteIndexes",
    "dropIndex",
    "dropIndexes",
    "collMod",
    "commitIndexBuild",
];

/// Commands replayed when cloning a namespace (`cloningNSSupportedCommands`).
const CLONE_COMMANDS: &[&str] = &[
    "create",
    "drop",
    "createIndexes",
    "deleteIndex",
    "deleteIndexes",
    "dropIndex",
    "dropIndexes",
    "commitIndexBuild",
];

/// Namespaces a restore never writes (`snapshot.ExcludeFromRestore` + `excludeFromOplog`).
fn excluded_ns(ns: &str) -> bool {
    // PBM's control collections, the tmp users/roles copies (pbmRUsers, pbmRRoles) and the
    // deprecated `.old` ones all live in admin and start with "pbm".
    ns.starts_with("admin.pbm")
        || matches!(
            ns,
            "admin.system.version" | "config.version" | "config.shards" | "config.rangeDeletions"
        )
}

/// `config` collections replayed (`configCollToKeep`); `settings` is checked per doc.
const CONFIG_KEEP: &[&str] = &[
    "chunks",
    "collections",
    "databases",
    "shards",
    "tags",
    "version",
];

/// `config` collections whose commands are replayed (`dumprestore.ConfigCollectionsToKeep`).
const CONFIG_CMD_KEEP: &[&str] = &[
    "chunks",
    "collections",
    "databases",
    "settings",
    "shards",
    "tags",
    "version",
];

/// Balancer settings would start the balancer mid-restore.
const SETTINGS_SKIP: &[&str] = &["balancer", "automerge"];

/// The namespace to clone and where to.
#[derive(Debug, Clone)]
pub struct CloneNs {
    pub from: String,
    pub to: String,
}

impl CloneNs {
    fn source_db_coll(&self) -> (&str, &str) {
        self.from.split_once('.').unwrap_or((&self.from, ""))
    }
    fn target_db_coll(&self) -> (&str, &str) {
        self.to.split_once('.').unwrap_or((&self.to, ""))
    }
}

/// Why an entry is skipped, or `None` to apply it.
pub fn skip_reason(
    op: &Op<'_>,
    filter: &NsFilter,
    clone: Option<&CloneNs>,
) -> Option<&'static str> {
    if op.op == "n" {
        return Some("no-op");
    }
    if is_excluded(op) {
        return Some("excluded namespace");
    }
    if !is_config_allowed(op) {
        return Some("config collection not replayed");
    }
    if !is_selected(op, filter) {
        return Some("namespace not selected");
    }
    if let Some(c) = clone {
        if !is_for_clone(op, c) {
            return Some("not the cloned namespace");
        }
    }
    if op.op == "c" {
        if let Some((name, _)) = op.command() {
            if matches!(name, "startIndexBuild" | "abortIndexBuild" | "dbCheck") {
                return Some("index build marker or dbCheck");
            }
        }
    }
    None
}

fn is_excluded(op: &Op<'_>) -> bool {
    let (db, coll) = op.db_coll();
    if coll != "$cmd" {
        return excluded_ns(op.ns);
    }
    let Some((cmd, v)) = op.command() else {
        return false;
    };
    if COLL_COMMANDS.contains(&cmd) {
        return v
            .as_str()
            .is_some_and(|c| excluded_ns(&format!("{db}.{c}")));
    }
    if cmd == "renameCollection" {
        let to = op.o.get_str("to").unwrap_or("");
        return v.as_str().is_some_and(excluded_ns) || excluded_ns(to);
    }
    false
}

fn is_config_allowed(op: &Op<'_>) -> bool {
    let Some(coll) = op.ns.strip_prefix("config.") else {
        return true;
    };
    if CONFIG_KEEP.contains(&coll) {
        return true;
    }
    if coll == "settings" {
        let id = op
            .o2
            .and_then(|d| d.get_str("_id").ok())
            .or_else(|| op.o.get_str("_id").ok());
        return !id.is_some_and(|id| SETTINGS_SKIP.contains(&id));
    }
    if coll != "$cmd" {
        return false;
    }
    match op.command() {
        Some(("applyOps", _)) => true,
        Some((cmd, v)) if COLL_COMMANDS.contains(&cmd) => {
            v.as_str().is_some_and(|c| CONFIG_CMD_KEEP.contains(&c))
        }
        _ => false,
    }
}

fn is_selected(op: &Op<'_>, filter: &NsFilter) -> bool {
    if filter.is_all() {
        return true;
    }
    let (db, coll) = op.db_coll();
    if filter.matches(db, coll) {
        return true;
    }
    if op.op != "c" || coll != "$cmd" {
        return false;
    }
    match op.command() {
        Some(("applyOps", _)) => true,
        Some((cmd, v)) if COLL_COMMANDS.contains(&cmd) => {
            v.as_str().is_some_and(|c| filter.matches(db, c))
        }
        _ => false,
    }
}

/// With a selective filter and users-and-roles restore: whether the entry changes a
/// user or role of a wholly selected database (`_id` is `<db>.<name>`; PBM's
/// `isSelectiveUserOrRoleOp`).
pub fn is_selected_user_or_role(op: &Op<'_>, filter: &NsFilter) -> bool {
    if filter.is_all() || !matches!(op.ns, "admin.system.users" | "admin.system.roles") {
        return false;
    }
    let doc = match op.op {
        "i" | "d" => Some(op.o),
        "u" => op.o2,
        _ => None,
    };
    let Some(id) = doc.and_then(|d| d.get_str("_id").ok()) else {
        return false;
    };
    let db = id.split_once('.').map_or(id, |(d, _)| d);
    filter
        .patterns()
        .iter()
        .any(|p| matches!(p, rbm_protocol::ns::NsPattern::Db(d) if d == db))
}

fn is_for_clone(op: &Op<'_>, c: &CloneNs) -> bool {
    if op.ns == c.from {
        return true;
    }
    let (db, coll) = op.db_coll();
    if op.op != "c" || coll != "$cmd" {
        return false;
    }
    let (from_db, from_coll) = c.source_db_coll();
    match op.command() {
        Some(("applyOps", _)) => true,
        Some((cmd, v)) if db == from_db && CLONE_COMMANDS.contains(&cmd) => {
            v.as_str() == Some(from_coll)
        }
        _ => false,
    }
}

/// Whether `ui` must not be carried to the target (`dontPreserveUUID`).
pub fn drops_uuid(ns: &str, o: &RawDocument, op: &str) -> bool {
    let no_uuid = |ns: &str| {
        matches!(
            ns,
            "admin.system.users"
                | "admin.system.roles"
                | "admin.system.keys"
                | "config.databases"
                | "config.collections"
                | "config.chunks"
        ) || ns
            .split_once('.')
            .is_some_and(|(_, c)| c == "system.views" || c.starts_with("system.buckets."))
    };
    if no_uuid(ns) {
        return true;
    }
    if op == "c" {
        if let (Some(db), Ok(c)) = (ns.strip_suffix(".$cmd"), o.get_str("create")) {
            return no_uuid(&format!("{db}.{c}"));
        }
    }
    false
}

/// The entry rewritten for cloning (namespace and command target renamed, `ui` and a
/// create's `o2` dropped), or with `ui` removed; `None` when it stays as it is.
///
/// # Errors
/// Unreadable BSON.
pub fn rewrite(
    op: &Op<'_>,
    clone: Option<&CloneNs>,
    drop_uuid: bool,
) -> Result<Option<RawDocumentBuf>, String> {
    let mut new_ns: Option<String> = None;
    let mut new_target: Option<&str> = None;
    let mut drop_o2 = false;
    if let Some(c) = clone {
        if op.ns == c.from {
            new_ns = Some(c.to.clone());
        } else if op.op == "c" {
            let (from_db, from_coll) = c.source_db_coll();
            let (to_db, to_coll) = c.target_db_coll();
            if let Some((cmd, v)) = op.command() {
                if op.db_coll().0 == from_db
                    && CLONE_COMMANDS.contains(&cmd)
                    && v.as_str() == Some(from_coll)
                {
                    new_ns = Some(format!("{to_db}.$cmd"));
                    new_target = Some(to_coll);
                    drop_o2 = cmd == "create";
                }
            }
        }
    }
    let drop_ui = drop_uuid || new_ns.is_some();
    if new_ns.is_none() && !(drop_ui && op.raw.get("ui").ok().flatten().is_some()) {
        return Ok(None);
    }
    let mut out = RawDocumentBuf::new();
    for el in op.raw.iter() {
        let (k, v) = el.map_err(|e| format!("unreadable BSON: {e}"))?;
        match k.as_str() {
            "ui" if drop_ui => {}
            "o2" if drop_o2 => {}
            "ns" if new_ns.is_some() => {
                out.append(k, new_ns.as_deref().unwrap_or_default());
            }
            "o" if new_target.is_some() => {
                let mut o = RawDocumentBuf::new();
                for (i, el) in op.o.iter().enumerate() {
                    let (ok, ov) = el.map_err(|e| format!("unreadable BSON: {e}"))?;
                    if i == 0 {
                        o.append(ok, new_target.unwrap_or_default());
                    } else {
                        o.append(ok, ov);
                    }
                }
                out.append(k, &o);
            }
            _ => out.append(k, v),
        }
    }
    Ok(Some(out))
}

/// Whether a value is BSON `true`-ish as the server reads flags (`isTruthy`).
pub fn truthy(v: RawBsonRef<'_>) -> bool {
    match v {
        RawBsonRef::Boolean(b) => b,
        RawBsonRef::Int32(n) => n != 0,
        RawBsonRef::Int64(n) => n != 0,
        RawBsonRef::Double(f) => f != 0.0,
        RawBsonRef::Null | RawBsonRef::Undefined => false,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::rawdoc;

    fn reason(e: &RawDocumentBuf, filter: &NsFilter) -> Option<&'static str> {
        skip_reason(&Op::parse(e).expect("parses"), filter, None)
    }

    #[test]
    fn pbm_rules() {
        let all = NsFilter::all();
        let i = |ns: &str| rawdoc! {"op": "i", "ns": ns, "o": {"_id": 1}};
        assert_eq!(
            reason(&i("admin.pbmLock"), &all),
            Some("excluded namespace")
        );
        assert_eq!(
            reason(&i("admin.pbmRUsers"), &all),
            Some("excluded namespace")
        );
        assert_eq!(
            reason(&i("config.version"), &all),
            Some("excluded namespace")
        );
        assert_eq!(
            reason(&i("config.cache.chunks.x"), &all),
            Some("config collection not replayed")
        );
        assert_eq!(
            reason(&i("config.transaction_coordinators"), &all),
            Some("config collection not replayed")
        );
        assert_eq!(reason(&i("config.chunks"), &all), None);
        assert_eq!(reason(&i("trx.test"), &all), None);
        let bal =
            rawdoc! {"op": "u", "ns": "config.settings", "o": {"x": 1}, "o2": {"_id": "balancer"}};
        assert_eq!(reason(&bal, &all), Some("config collection not replayed"));
        let n = rawdoc! {"op": "n", "ns": "", "o": {"msg": "periodic noop"}};
        assert_eq!(reason(&n, &all), Some("no-op"));
        let sib = rawdoc! {"op": "c", "ns": "a.$cmd", "o": {"startIndexBuild": "c", "indexes": []}};
        assert_eq!(reason(&sib, &all), Some("index build marker or dbCheck"));
        let drop_pbm = rawdoc! {"op": "c", "ns": "admin.$cmd", "o": {"drop": "pbmLock"}};
        assert_eq!(reason(&drop_pbm, &all), Some("excluded namespace"));
    }

    #[test]
    fn selective() {
        let f = NsFilter::parse(&["shop.orders", "geo.*"]).expect("parses");
        let i = |ns: &str| rawdoc! {"op": "i", "ns": ns, "o": {"_id": 1}};
        assert_eq!(reason(&i("shop.orders"), &f), None);
        assert_eq!(reason(&i("geo.x"), &f), None);
        assert_eq!(reason(&i("shop.other"), &f), Some("namespace not selected"));
        let c = |coll: &str| rawdoc! {"op": "c", "ns": "shop.$cmd", "o": {"create": coll}};
        assert_eq!(reason(&c("orders"), &f), None);
        assert_eq!(reason(&c("other"), &f), Some("namespace not selected"));
        let dd = rawdoc! {"op": "c", "ns": "geo.$cmd", "o": {"dropDatabase": 1}};
        assert_eq!(reason(&dd, &f), None);
    }

    #[test]
    fn selective_users_and_roles() {
        let f = NsFilter::parse(&["shop.*", "geo.places"]).expect("parses");
        let user = |id: &str| rawdoc! {"op": "i", "ns": "admin.system.users", "o": {"_id": id, "user": "u", "db": "x"}};
        let yes = user("shop.app");
        assert!(is_selected_user_or_role(
            &Op::parse(&yes).expect("parses"),
            &f
        ));
        // Only whole databases carry their users (PBM).
        let no = user("geo.app");
        assert!(!is_selected_user_or_role(
            &Op::parse(&no).expect("parses"),
            &f
        ));
        assert_eq!(reason(&yes, &f), Some("namespace not selected"));
    }

    #[test]
    fn clone_rewrites_namespace_and_target() {
        let c = CloneNs {
            from: "a.x".into(),
            to: "b.y".into(),
        };
        let e = rawdoc! {"op": "c", "ns": "a.$cmd", "ui": bson::Binary::from_uuid(bson::Uuid::new()), "o": {"create": "x", "capped": true}, "o2": {"k": 1}};
        let op = Op::parse(&e).expect("parses");
        assert_eq!(skip_reason(&op, &NsFilter::all(), Some(&c)), None);
        let out = rewrite(&op, Some(&c), false)
            .expect("rewrites")
            .expect("changed");
        assert_eq!(
            out,
            rawdoc! {"op": "c", "ns": "b.$cmd", "o": {"create": "y", "capped": true}}
        );
        let other = rawdoc! {"op": "i", "ns": "a.z", "o": {"_id": 1}};
        let op = Op::parse(&other).expect("parses");
        assert_eq!(
            skip_reason(&op, &NsFilter::all(), Some(&c)),
            Some("not the cloned namespace")
        );
    }
}
