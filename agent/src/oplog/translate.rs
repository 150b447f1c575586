//! Entries as ordinary commands (CRUD and database commands), for a server without
//! `applyOps`; index commands go this way on every server, as PBM's replay also builds
//! indexes with `createIndexes` rather than through `applyOps`.
//!
//! Pure: [`actions`] says what to run; the applier runs it.

use bson::raw::RawBsonRef;
use bson::{doc, Bson, Document, RawDocumentBuf};

use super::entry::{to_bson, to_doc, Op};
use super::filter::truthy;
use super::secantus;
use super::update::{translate_update, UpdateForm};

/// NamespaceNotFound.
pub const NS_NOT_FOUND: i32 = 26;
/// IndexNotFound.
pub const INDEX_NOT_FOUND: i32 = 27;

/// One thing to run on the target.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Insert or replace the document `filter` (its `_id`) matches: replay must be
    /// idempotent over a dump that may already hold the entry's effect.
    Upsert {
        ns: String,
        filter: Document,
        doc: RawDocumentBuf,
    },
    /// Operator updates of the document `filter` matches, in order. No upsert: a
    /// missing document was deleted later in the oplog.
    Update {
        ns: String,
        filter: Document,
        steps: Vec<Document>,
    },
    Delete {
        ns: String,
        filter: Document,
    },
    /// `emptycapped`.
    DeleteAll {
        ns: String,
    },
    /// A database command; errors with a code in `done_codes` mean its effect is
    /// already there (dropping what is gone, a rename already made).
    Command {
        db: String,
        cmd: Document,
        done_codes: Vec<i32>,
    },
}

impl Action {
    /// Whether it may run inside a transaction.
    pub fn is_crud(&self) -> bool {
        !matches!(self, Action::Command { .. })
    }
}

/// What is wrong with an entry that cannot be translated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TranslateError {
    Malformed(String),
    UnknownCommand(String),
}

impl From<String> for TranslateError {
    fn from(s: String) -> Self {
        TranslateError::Malformed(s)
    }
}

impl From<&str> for TranslateError {
    fn from(s: &str) -> Self {
        TranslateError::Malformed(s.to_string())
    }
}

/// The `_id` filter of a document.
fn id_filter(d: &bson::RawDocument) -> Result<Document, String> {
    let id = d
        .get("_id")
        .map_err(|e| format!("unreadable _id: {e}"))?
        .ok_or("document without _id")?;
    Ok(doc! {"_id": to_bson(id)?})
}

/// The actions for a CRUD entry or a command, without `applyOps`. `applyOps` and
/// transaction commands are the applier's; skipped entries never get here.
///
/// # Errors
/// A malformed entry, or a command replay does not know.
pub fn actions(op: &Op<'_>) -> Result<Vec<Action>, TranslateError> {
    let ns = op.ns.to_string();
    match op.op {
        "i" => {
            if let Some(v) = system_views(op)? {
                return Ok(v);
            }
            Ok(vec![Action::Upsert {
                ns,
                filter: id_filter(op.o)?,
                doc: op.o.to_owned(),
            }])
        }
        "u" => {
            let o2 = op.o2.ok_or("update without o2")?;
            if let Some(v) = system_views(op)? {
                return Ok(v);
            }
            Ok(vec![match translate_update(op.o)? {
                UpdateForm::Replace => Action::Upsert {
                    ns,
                    filter: to_doc(o2)?,
                    doc: op.o.to_owned(),
                },
                UpdateForm::Steps(steps) => Action::Update {
                    ns,
                    filter: to_doc(o2)?,
                    steps,
                },
            }])
        }
        "d" => {
            if let Some(v) = system_views(op)? {
                return Ok(v);
            }
            Ok(vec![Action::Delete {
                ns,
                filter: to_doc(op.o)?,
            }])
        }
        "c" => command_actions(op),
        "n" => Ok(Vec::new()),
        other => Err(TranslateError::Malformed(format!("unknown op {other:?}"))),
    }
}

fn cmd(db: &str, cmd: Document, done_codes: &[i32]) -> Action {
    Action::Command {
        db: db.to_string(),
        cmd,
        done_codes: done_codes.to_vec(),
    }
}

fn command_actions(op: &Op<'_>) -> Result<Vec<Action>, TranslateError> {
    let (db, _) = op.db_coll();
    let (name, first) = op.command().ok_or("command entry with an empty o")?;
    let coll = || -> Result<String, TranslateError> {
        first
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| TranslateError::Malformed(format!("{name} without a collection name")))
    };
    match name {
        "create" => {
            let c = coll()?;
            let mut create = to_doc(op.o)?;
            secantus::fix_create(&mut create);
            // PBM drops first (its synthetic drop): a collection of that name in the
            // restored dump is an older incarnation the oplog replaces.
            Ok(vec![
                cmd(db, doc! {"drop": &c}, &[NS_NOT_FOUND]),
                cmd(db, create, &[]),
            ])
        }
        "drop" => Ok(vec![cmd(db, doc! {"drop": coll()?}, &[NS_NOT_FOUND])]),
        "dropDatabase" => Ok(vec![cmd(db, doc! {"dropDatabase": 1}, &[])]),
        "renameCollection" => {
            let from = coll()?;
            let to =
                op.o.get_str("to")
                    .map_err(|e| format!("renameCollection without to: {e}"))?;
            let mut c = doc! {"renameCollection": from, "to": to};
            // The oplog records the dropped target's UUID; the command takes a flag.
            if let Ok(Some(v)) = op.o.get("dropTarget") {
                c.insert("dropTarget", truthy(v));
            }
            if let Ok(Some(v)) = op.o.get("stayTemp") {
                c.insert("stayTemp", truthy(v));
            }
            Ok(vec![cmd("admin", c, &[NS_NOT_FOUND])])
        }
        "createIndexes" | "commitIndexBuild" => {
            let specs = index_specs(op)?;
            if specs.is_empty() {
                return Ok(Vec::new());
            }
            let c = doc! {"createIndexes": coll()?, "indexes": specs};
            Ok(vec![cmd(db, c, &[])])
        }
        "dropIndexes" | "deleteIndexes" | "dropIndex" | "deleteIndex" => {
            let index =
                op.o.get("index")
                    .ok()
                    .flatten()
                    .ok_or("dropIndexes without index")?;
            Ok(vec![cmd(
                db,
                doc! {"dropIndexes": coll()?, "index": to_bson(index)?},
                &[NS_NOT_FOUND, INDEX_NOT_FOUND],
            )])
        }
        "collMod" => {
            let mut c = to_doc(op.o)?;
            // Obsolete MMAPv1 flags servers since 4.2 reject.
            c.remove("noPadding");
            c.remove("usePowerOf2Sizes");
            if c.len() == 1 {
                return Ok(Vec::new());
            }
            Ok(vec![cmd(db, c, &[NS_NOT_FOUND])])
        }
        "convertToCapped" => Ok(vec![cmd(db, to_doc(op.o)?, &[])]),
        "emptycapped" => Ok(vec![Action::DeleteAll {
            ns: format!("{db}.{}", coll()?),
        }]),
        "startIndexBuild" | "abortIndexBuild" | "dbCheck" => Ok(Vec::new()),
        other => Err(TranslateError::UnknownCommand(other.to_string())),
    }
}

/// The index specs of a `createIndexes` entry (mongod: one flattened spec beside the
/// command name; SecantusDB: an `indexes` array) or of a `commitIndexBuild`.
///
/// # Errors
/// No spec with a `key` document.
pub fn index_specs(op: &Op<'_>) -> Result<Vec<Bson>, TranslateError> {
    let mut specs = Vec::new();
    match op.o.get("indexes") {
        Ok(Some(RawBsonRef::Array(a))) => {
            for s in a {
                let s = s.map_err(|e| format!("unreadable index spec: {e}"))?;
                let s = s.as_document().ok_or("index spec is not a document")?;
                specs.push(to_doc(s)?);
            }
        }
        Ok(Some(_)) => return Err("indexes is not an array".to_string().into()),
        _ => {
            let mut s = to_doc(op.o)?;
            s.remove("createIndexes");
            specs.push(s);
        }
    }
    let mut out = Vec::with_capacity(specs.len());
    for mut s in specs {
        if !matches!(s.get("key"), Some(Bson::Document(_))) {
            return Err(TranslateError::Malformed(format!(
                "index spec without a key document: {s}"
            )));
        }
        // 4.2 and older specs name their namespace; createIndexes rejects it.
        s.remove("ns");
        secantus::fix_index_spec(&mut s);
        out.push(Bson::Document(s));
    }
    Ok(out)
}

/// Views are stored in `<db>.system.views`; mongod < 5.0 logged view changes as CRUD on
/// it. Without `applyOps` they become view commands.
fn system_views(op: &Op<'_>) -> Result<Option<Vec<Action>>, TranslateError> {
    let (db, coll) = op.db_coll();
    if coll != "system.views" {
        return Ok(None);
    }
    let id = match op.op {
        "u" => op.o2.unwrap_or(op.o).get_str("_id"),
        _ => op.o.get_str("_id"),
    }
    .map_err(|e| format!("system.views entry without a string _id: {e}"))?;
    let view = id
        .strip_prefix(db)
        .and_then(|s| s.strip_prefix('.'))
        .ok_or_else(|| format!("view {id:?} is not in database {db:?}"))?;
    let body = |c: &mut Document| -> Result<(), String> {
        for el in op.o.iter() {
            let (k, v) = el.map_err(|e| format!("unreadable BSON: {e}"))?;
            if k.as_str() != "_id" {
                c.insert(k.as_str(), to_bson(v)?);
            }
        }
        Ok(())
    };
    Ok(Some(match op.op {
        "i" => {
            let mut c = doc! {"create": view};
            body(&mut c)?;
            vec![
                cmd(db, doc! {"drop": view}, &[NS_NOT_FOUND]),
                cmd(db, c, &[]),
            ]
        }
        "u" => {
            let mut c = doc! {"collMod": view};
            body(&mut c)?;
            vec![cmd(db, c, &[])]
        }
        _ => vec![cmd(db, doc! {"drop": view}, &[NS_NOT_FOUND])],
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::rawdoc;

    fn acts(e: RawDocumentBuf) -> Vec<Action> {
        actions(&Op::parse(&e).expect("parses")).expect("translates")
    }

    #[test]
    fn mongod_flat_create_indexes_and_commit_index_build() {
        let a = acts(
            rawdoc! {"op": "c", "ns": "d.$cmd", "o": {"createIndexes": "c", "v": 2, "key": {"x": 1}, "name": "x_1"}},
        );
        assert_eq!(
            a,
            vec![cmd(
                "d",
                doc! {"createIndexes": "c", "indexes": [{"v": 2, "key": {"x": 1}, "name": "x_1"}]},
                &[]
            )]
        );
        let a = acts(
            rawdoc! {"op": "c", "ns": "d.$cmd", "o": {"commitIndexBuild": "c", "indexBuildUUID": bson::Binary::from_uuid(bson::Uuid::new()), "indexes": [{"v": 2, "key": {"y": -1}, "name": "y_-1"}]}},
        );
        assert_eq!(
            a,
            vec![cmd(
                "d",
                doc! {"createIndexes": "c", "indexes": [{"v": 2, "key": {"y": -1}, "name": "y_-1"}]},
                &[]
            )]
        );
    }

    #[test]
    fn secantus_create_indexes_drops_entry_format() {
        let a = acts(
            rawdoc! {"op": "c", "ns": "d.$cmd", "o": {"createIndexes": "c", "indexes": [{"v": 2, "key": {"z": 1}, "name": "zz", "unique": true, "entryFormat": 4}]}},
        );
        assert_eq!(
            a,
            vec![cmd(
                "d",
                doc! {"createIndexes": "c", "indexes": [{"v": 2, "key": {"z": 1}, "name": "zz", "unique": true}]},
                &[]
            )]
        );
    }

    #[test]
    fn rename_with_uuid_drop_target() {
        let a = acts(
            rawdoc! {"op": "c", "ns": "d.$cmd", "o": {"renameCollection": "d.a", "to": "d.b", "stayTemp": false, "dropTarget": bson::Binary::from_uuid(bson::Uuid::new())}},
        );
        assert_eq!(
            a,
            vec![cmd(
                "admin",
                doc! {"renameCollection": "d.a", "to": "d.b", "dropTarget": true, "stayTemp": false},
                &[26]
            )]
        );
    }

    #[test]
    fn insert_is_an_upsert_by_id_and_unknown_command_is_refused() {
        let a = acts(rawdoc! {"op": "i", "ns": "d.c", "o": {"_id": 7, "b": 1}, "o2": {"_id": 7}});
        assert_eq!(
            a,
            vec![Action::Upsert {
                ns: "d.c".into(),
                filter: doc! {"_id": 7},
                doc: rawdoc! {"_id": 7, "b": 1}
            }]
        );
        let e = rawdoc! {"op": "c", "ns": "d.$cmd", "o": {"frobnicate": 1}};
        assert_eq!(
            actions(&Op::parse(&e).expect("parses")),
            Err(TranslateError::UnknownCommand("frobnicate".into()))
        );
    }
}
