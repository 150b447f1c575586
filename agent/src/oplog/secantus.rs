//! SecantusDB, the test server: where its oplog differs from mongod's, and how entries
//! are fixed up for it. Everything server-specific about oplog replay is here.
//!
//! Its oplog (see `/work/shared/notes/test-stack.md`):
//! - updates are `{$v:2, diff:{updatedFields, removedFields, truncatedArrays}}` (the
//!   change-stream shape) instead of mongod's `u/i/d/s<field>` diff;
//! - a transaction is N plain `i`/`u`/`d` entries carrying `lsid` and `txnNumber` and
//!   sharing one `ts`, with no `applyOps` entry;
//! - `createIndexes` carries `indexes: [...]` whose specs hold `entryFormat` (and
//!   `multikey`), which its own `createIndexes` command then rejects;
//! - a view's `create` carries `viewPipeline` (and an `idIndex`) where the command takes
//!   `pipeline`.

use bson::raw::{RawBsonRef, RawDocument};
use bson::Document;

use super::entry::{to_bson, Op};
use super::update::Steps;

/// Whether an `$v:2` diff is in the change-stream shape. mongod's diff cannot hold these
/// keys: its sub-diffs are prefixed with `s`.
pub fn is_change_stream_diff(diff: &RawDocument) -> bool {
    diff.iter().flatten().any(|(k, _)| {
        matches!(
            k.as_str(),
            "updatedFields" | "removedFields" | "truncatedArrays"
        )
    })
}

/// `{updatedFields, removedFields, truncatedArrays}` as update-operator steps:
/// truncations first (the arrays' later elements may be updated too), then `$unset`
/// and `$set`. `updatedFields` keys are dotted paths already; new fields are appended in
/// the order listed.
///
/// # Errors
/// A malformed diff.
pub fn diff_to_steps(diff: &RawDocument) -> Result<Vec<Document>, String> {
    let mut steps = Steps::default();
    for el in diff.iter() {
        let (k, v) = el.map_err(|e| format!("unreadable diff: {e}"))?;
        match (k.as_str(), v) {
            ("updatedFields", RawBsonRef::Document(d)) => {
                for f in d.iter() {
                    let (f, val) = f.map_err(|e| format!("unreadable diff: {e}"))?;
                    steps.set.insert(f.as_str(), to_bson(val)?);
                }
            }
            ("removedFields", RawBsonRef::Array(a)) => {
                for f in a {
                    let f = f.map_err(|e| format!("unreadable diff: {e}"))?;
                    let f = f.as_str().ok_or("removedFields holds a non-string")?;
                    steps.unset.insert(f, "");
                }
            }
            ("truncatedArrays", RawBsonRef::Array(a)) => {
                for t in a {
                    let t = t.map_err(|e| format!("unreadable diff: {e}"))?;
                    let t = t
                        .as_document()
                        .ok_or("truncatedArrays holds a non-document")?;
                    let field = t
                        .get_str("field")
                        .map_err(|e| format!("truncatedArrays entry: {e}"))?;
                    let len = match t.get("newSize") {
                        Ok(Some(RawBsonRef::Int32(n))) => i64::from(n),
                        Ok(Some(RawBsonRef::Int64(n))) => n,
                        _ => return Err("truncatedArrays entry without an integer newSize".into()),
                    };
                    steps.truncate(field.to_string(), len);
                }
            }
            (k, _) => return Err(format!("unexpected {k:?} in a change-stream diff")),
        }
    }
    Ok(steps.into_steps())
}

/// A plain CRUD entry written inside a transaction (SecantusDB's shape): the key that
/// groups it with the other entries of the same transaction. mongod's retryable writes
/// carry `lsid`/`txnNumber` too, but each has its own `ts`, so they form groups of one.
pub fn plain_txn_key(op: &Op<'_>) -> Option<(Vec<u8>, i64, bson::Timestamp)> {
    if !matches!(op.op, "i" | "u" | "d") {
        return None;
    }
    Some((op.lsid?.as_bytes().to_vec(), op.txn_number?, op.ts?))
}

/// Index specs from the oplog, made acceptable to its `createIndexes`: it logs catalog
/// fields (`entryFormat`, and `multikey` for an index over an array) that the command
/// rejects as unknown.
pub fn fix_index_spec(spec: &mut Document) {
    spec.remove("entryFormat");
    spec.remove("multikey");
}

/// A `create` from the oplog, made acceptable to its `create` command.
pub fn fix_create(cmd: &mut Document) {
    if let Some(p) = cmd.remove("viewPipeline") {
        cmd.insert("pipeline", p);
    }
    if cmd.contains_key("viewOn") {
        cmd.remove("idIndex");
    }
}

/// Error codes that mean a command's effect is already there, beyond mongod's: when an
/// identical index is re-created with its options in another order, SecantusDB answers
/// IndexKeySpecsConflict (86) where mongod says "already exists". Replay must be
/// idempotent over the indexes a restore already built.
pub fn extra_done_codes(cmd: &Document) -> &'static [i32] {
    if cmd.contains_key("createIndexes") {
        &[86]
    } else {
        &[]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::{doc, rawdoc};

    #[test]
    fn change_stream_diff_to_steps() {
        let d = rawdoc! {
            "updatedFields": {"z": 1, "b": 2, "sub.q": 3, "arr.1": 9},
            "removedFields": ["x"],
            "truncatedArrays": [{"field": "arr", "newSize": 2}],
        };
        assert!(is_change_stream_diff(&d));
        assert_eq!(
            diff_to_steps(&d).expect("translates"),
            vec![
                doc! {"$push": {"arr": {"$each": [], "$slice": 2_i64}}},
                doc! {"$unset": {"x": ""}, "$set": {"z": 1, "b": 2, "sub.q": 3, "arr.1": 9}},
            ]
        );
        let d = rawdoc! {"updatedFields": {}, "removedFields": [], "truncatedArrays": []};
        assert_eq!(
            diff_to_steps(&d).expect("translates"),
            Vec::<Document>::new()
        );
        assert!(!is_change_stream_diff(&rawdoc! {"u": {"a": 1}}));
    }

    #[test]
    fn view_create_fixup() {
        let mut c = doc! {"create": "v", "viewOn": "a", "viewPipeline": [], "idIndex": {"v": 2}};
        fix_create(&mut c);
        assert_eq!(c, doc! {"create": "v", "viewOn": "a", "pipeline": []});
    }
}
