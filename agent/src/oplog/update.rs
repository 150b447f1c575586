//! `u` entries as ordinary update commands, for servers without `applyOps`: the
//! `$v:1` modifier form, the `$v:2` diff form mongod 5.0+ writes, and (in
//! [`super::secantus`]) the test server's own diff shape.
//!
//! A diff becomes one or more update-operator documents, applied in order to the same
//! document. More than one is needed where one update document could not express the
//! diff: update operators may not touch a path and its prefix at once (`$push` to
//! truncate `a` and `$set` of `a.1`), and a field mongod re-inserts (`i` on a field
//! that exists) must be removed before it is appended so that it lands at the end.

use bson::raw::{RawBsonRef, RawDocument};
use bson::{doc, Document};

use super::entry::{to_bson, to_doc};

/// What an update entry does to the document it matches.
#[derive(Debug, Clone, PartialEq)]
pub enum UpdateForm {
    /// `o` is the whole new document.
    Replace,
    /// Update-operator documents, applied one after the other.
    Steps(Vec<Document>),
}

/// Reads the update in `o`.
///
/// # Errors
/// A diff that cannot be read or cannot be expressed with update operators.
pub fn translate_update(o: &RawDocument) -> Result<UpdateForm, String> {
    let mut first = None;
    let mut version = None;
    for el in o.iter() {
        let (k, v) = el.map_err(|e| format!("unreadable update: {e}"))?;
        if first.is_none() {
            first = Some(k.as_str());
        }
        if k.as_str() == "$v" {
            version = Some(match v {
                RawBsonRef::Int32(n) => i64::from(n),
                RawBsonRef::Int64(n) => n,
                RawBsonRef::Double(f) => f as i64,
                other => return Err(format!("$v has BSON type {:?}", other.element_type())),
            });
        }
    }
    match version {
        Some(2) => {
            let diff = o
                .get_document("diff")
                .map_err(|e| format!("$v:2 update without a diff document: {e}"))?;
            if super::secantus::is_change_stream_diff(diff) {
                return super::secantus::diff_to_steps(diff).map(UpdateForm::Steps);
            }
            diff_to_steps(diff).map(UpdateForm::Steps)
        }
        Some(1) | None if first.is_some_and(|k| k.starts_with('$')) => {
            let mut d = to_doc(o)?;
            d.remove("$v");
            Ok(UpdateForm::Steps(vec![d]))
        }
        None => Ok(UpdateForm::Replace),
        Some(v) => Err(format!("unknown update format $v:{v}")),
    }
}

/// Collects the operators of a diff, then orders them into steps.
#[derive(Debug, Default)]
pub(crate) struct Steps {
    /// `$push: {path: {$each: [], $slice: n}}`: array truncations, applied first.
    pub truncate: Document,
    pub unset: Document,
    /// Fields appended by the diff that may already exist: removed before `set`.
    pub moved: Document,
    pub set: Document,
}

impl Steps {
    pub fn truncate(&mut self, path: String, len: i64) {
        self.truncate
            .insert(path, doc! {"$each": [], "$slice": len});
    }

    pub fn into_steps(self) -> Vec<Document> {
        let mut out = Vec::new();
        if !self.truncate.is_empty() {
            out.push(doc! {"$push": self.truncate});
        }
        let mut unset = self.unset;
        let split = !self.moved.is_empty();
        for (k, v) in self.moved {
            unset.insert(k, v);
        }
        let mut last = Document::new();
        if !unset.is_empty() {
            last.insert("$unset", unset);
        }
        if split && !last.is_empty() {
            out.push(std::mem::take(&mut last));
        }
        if !self.set.is_empty() {
            last.insert("$set", self.set);
        }
        if !last.is_empty() {
            out.push(last);
        }
        out
    }
}

/// A dotted path from `prefix` and one more field name. Names that a dotted path cannot
/// address (with a `.`, a leading `$`, or empty) are refused rather than misapplied.
pub(crate) fn path(prefix: &str, field: &str) -> Result<String, String> {
    if field.is_empty() || field.contains('.') || field.starts_with('$') {
        return Err(format!(
            "field name {field:?} under {prefix:?} cannot be addressed by an update operator"
        ));
    }
    Ok(if prefix.is_empty() {
        field.to_string()
    } else {
        format!("{prefix}.{field}")
    })
}

/// mongod's `$v:2` diff (`u`, `i`, `d`, `s<field>`; arrays `a: true`, `u<idx>`,
/// `s<idx>`, `l`) as update-operator steps.
///
/// # Errors
/// An unknown diff key, or a field name operators cannot address.
pub fn diff_to_steps(diff: &RawDocument) -> Result<Vec<Document>, String> {
    let mut steps = Steps::default();
    object_diff(diff, "", &mut steps)?;
    Ok(steps.into_steps())
}

fn sub_doc<'a>(v: RawBsonRef<'a>, key: &str) -> Result<&'a RawDocument, String> {
    v.as_document()
        .ok_or_else(|| format!("diff key {key:?} is not a document"))
}

fn object_diff(diff: &RawDocument, prefix: &str, out: &mut Steps) -> Result<(), String> {
    for el in diff.iter() {
        let (k, v) = el.map_err(|e| format!("unreadable diff: {e}"))?;
        let k = k.as_str();
        match k {
            "d" => {
                for f in sub_doc(v, k)?.iter() {
                    let (f, _) = f.map_err(|e| format!("unreadable diff: {e}"))?;
                    out.unset.insert(path(prefix, f.as_str())?, "");
                }
            }
            "u" | "i" => {
                for f in sub_doc(v, k)?.iter() {
                    let (f, val) = f.map_err(|e| format!("unreadable diff: {e}"))?;
                    let p = path(prefix, f.as_str())?;
                    if k == "i" {
                        out.moved.insert(p.clone(), "");
                    }
                    out.set.insert(p, to_bson(val)?);
                }
            }
            _ if k.starts_with('s') && k.len() > 1 => {
                let p = path(prefix, &k[1..])?;
                nested_diff(sub_doc(v, k)?, &p, out)?;
            }
            _ => return Err(format!("unknown key {k:?} in an object diff at {prefix:?}")),
        }
    }
    Ok(())
}

/// A sub-diff: of an array when it has `a: true`, else of an object.
fn nested_diff(diff: &RawDocument, prefix: &str, out: &mut Steps) -> Result<(), String> {
    if matches!(diff.get("a"), Ok(Some(RawBsonRef::Boolean(true)))) {
        array_diff(diff, prefix, out)
    } else {
        object_diff(diff, prefix, out)
    }
}

fn array_diff(diff: &RawDocument, prefix: &str, out: &mut Steps) -> Result<(), String> {
    for el in diff.iter() {
        let (k, v) = el.map_err(|e| format!("unreadable diff: {e}"))?;
        let k = k.as_str();
        match k {
            "a" => {}
            "l" => {
                let len = match v {
                    RawBsonRef::Int32(n) => i64::from(n),
                    RawBsonRef::Int64(n) => n,
                    other => {
                        return Err(format!(
                            "array length at {prefix:?} has BSON type {:?}",
                            other.element_type()
                        ))
                    }
                };
                out.truncate(prefix.to_string(), len);
            }
            _ if (k.starts_with('u') || k.starts_with('s')) && index(&k[1..]) => {
                let p = format!("{prefix}.{}", &k[1..]);
                if k.starts_with('u') {
                    out.set.insert(p, to_bson(v)?);
                } else {
                    nested_diff(sub_doc(v, k)?, &p, out)?;
                }
            }
            _ => return Err(format!("unknown key {k:?} in an array diff at {prefix:?}")),
        }
    }
    Ok(())
}

fn index(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::rawdoc;

    fn steps(o: bson::RawDocumentBuf) -> Vec<Document> {
        match translate_update(&o).expect("translates") {
            UpdateForm::Steps(s) => s,
            UpdateForm::Replace => panic!("not a replacement"),
        }
    }

    #[test]
    fn v1_modifiers_pass_through_without_v() {
        let s = steps(rawdoc! {"$v": 1, "$set": {"a": 1, "b.c": "x"}, "$unset": {"z": true}});
        assert_eq!(
            s,
            vec![doc! {"$set": {"a": 1, "b.c": "x"}, "$unset": {"z": true}}]
        );
        // Before 3.6 there was no $v at all.
        let s = steps(rawdoc! {"$inc": {"n": 2}});
        assert_eq!(s, vec![doc! {"$inc": {"n": 2}}]);
    }

    #[test]
    fn replacement_is_recognised() {
        let o = rawdoc! {"_id": 1, "a": 2};
        assert_eq!(translate_update(&o), Ok(UpdateForm::Replace));
    }

    #[test]
    fn v2_object_diff_keeps_listed_insert_order() {
        // Real mongod 5.0 shape from the pbm-legacy fixture, plus d and i.
        let s = steps(rawdoc! {"$v": 2, "diff": {
            "d": {"old": false},
            "u": {"ping": 5, "up": 1181},
            "i": {"zeta": 1, "alpha": 2},
        }});
        assert_eq!(
            s,
            vec![
                doc! {"$unset": {"old": "", "zeta": "", "alpha": ""}},
                doc! {"$set": {"ping": 5, "up": 1181, "zeta": 1, "alpha": 2}},
            ]
        );
    }

    #[test]
    fn v2_update_and_delete_only_is_one_step() {
        let s = steps(rawdoc! {"$v": 2, "diff": {"d": {"x": false}, "u": {"y": 1}}});
        assert_eq!(s, vec![doc! {"$unset": {"x": ""}, "$set": {"y": 1}}]);
    }

    #[test]
    fn v2_nested_object_and_array_diffs() {
        // From the pbm-legacy cfg oplog (pbmBackups status update), shortened.
        let s = steps(rawdoc! {"$v": 2, "diff": {"sreplsets": {
            "a": true,
            "s2": {
                "u": {"status": "dumpDone"},
                "i": {"error": ""},
                "sconditions": {"a": true, "u1": {"status": "x"}},
            },
            "u3": {"name": "rs3"},
        }}});
        assert_eq!(
            s,
            vec![
                doc! {"$unset": {"replsets.2.error": ""}},
                doc! {"$set": {
                    "replsets.2.status": "dumpDone",
                    "replsets.2.error": "",
                    "replsets.2.conditions.1": {"status": "x"},
                    "replsets.3": {"name": "rs3"},
                }},
            ]
        );
    }

    #[test]
    fn v2_array_truncation_comes_first() {
        let s = steps(rawdoc! {"$v": 2, "diff": {"sarr": {"a": true, "l": 2, "u1": 9}}});
        assert_eq!(
            s,
            vec![
                doc! {"$push": {"arr": {"$each": [], "$slice": 2_i64}}},
                doc! {"$set": {"arr.1": 9}},
            ]
        );
    }

    #[test]
    fn v2_nested_array_in_array() {
        let s = steps(rawdoc! {"$v": 2, "diff": {"sm": {"a": true, "s0": {"a": true, "l": 1}}}});
        assert_eq!(
            s,
            vec![doc! {"$push": {"m.0": {"$each": [], "$slice": 1_i64}}}]
        );
    }

    #[test]
    fn unaddressable_names_are_refused() {
        let o = rawdoc! {"$v": 2, "diff": {"i": {"a.b": 1}}};
        assert!(translate_update(&o).unwrap_err().contains("a.b"));
        let o = rawdoc! {"$v": 2, "diff": {"q": {}}};
        assert!(translate_update(&o).unwrap_err().contains("unknown key"));
        let o = rawdoc! {"$v": 3, "diff": {}};
        assert!(translate_update(&o).is_err());
    }
}
