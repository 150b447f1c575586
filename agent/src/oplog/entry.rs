//! One oplog entry, read in place from its raw BSON (no decoding of the documents it
//! carries: their bytes and field order must reach the target unchanged).

use std::fmt;

use bson::raw::{RawBsonRef, RawDocument};
use bson::{Bson, Document, Timestamp};

/// The fields of an entry (top-level, or an op inside `applyOps`) the applier reads.
#[derive(Debug, Clone, Copy)]
pub struct Op<'a> {
    pub raw: &'a RawDocument,
    /// `i`, `u`, `d`, `c` or `n`.
    pub op: &'a str,
    pub ns: &'a str,
    pub o: &'a RawDocument,
    pub o2: Option<&'a RawDocument>,
    /// Absent on ops inside `applyOps`.
    pub ts: Option<Timestamp>,
    pub lsid: Option<&'a RawDocument>,
    pub txn_number: Option<i64>,
}

impl<'a> Op<'a> {
    /// Reads the fields; an entry without `op`, `ns` or `o` is malformed.
    ///
    /// # Errors
    /// A description of what is missing or mistyped.
    pub fn parse(raw: &'a RawDocument) -> Result<Self, String> {
        let mut op = None;
        let mut ns = None;
        let mut o = None;
        let mut o2 = None;
        let mut ts = None;
        let mut lsid = None;
        let mut txn_number = None;
        for el in raw.iter() {
            let (k, v) = el.map_err(|e| format!("unreadable BSON: {e}"))?;
            match (k.as_str(), v) {
                ("op", RawBsonRef::String(s)) => op = Some(s),
                ("ns", RawBsonRef::String(s)) => ns = Some(s),
                ("o", RawBsonRef::Document(d)) => o = Some(d),
                ("o2", RawBsonRef::Document(d)) => o2 = Some(d),
                ("ts", RawBsonRef::Timestamp(t)) => ts = Some(t),
                ("lsid", RawBsonRef::Document(d)) => lsid = Some(d),
                ("txnNumber", RawBsonRef::Int64(n)) => txn_number = Some(n),
                ("txnNumber", RawBsonRef::Int32(n)) => txn_number = Some(i64::from(n)),
                ("op" | "ns" | "o" | "o2" | "ts", other) => {
                    return Err(format!(
                        "field {:?} has BSON type {:?}",
                        k.as_str(),
                        other.element_type()
                    ))
                }
                _ => {}
            }
        }
        Ok(Self {
            raw,
            op: op.ok_or("no `op` field")?,
            ns: ns.ok_or("no `ns` field")?,
            o: o.ok_or("no `o` document")?,
            o2,
            ts,
            lsid,
            txn_number,
        })
    }

    /// `(db, coll)`; `coll` is `$cmd` for commands.
    pub fn db_coll(&self) -> (&'a str, &'a str) {
        self.ns.split_once('.').unwrap_or((self.ns, ""))
    }

    /// The command name of a `c` entry (first key of `o`) and its value.
    pub fn command(&self) -> Option<(&'a str, RawBsonRef<'a>)> {
        self.o
            .iter()
            .next()
            .and_then(Result::ok)
            .map(|(k, v)| (k.as_str(), v))
    }

    /// The collection a command names in its first field (`create: "c"`), if a string.
    pub fn command_coll(&self) -> Option<&'a str> {
        self.command().and_then(|(_, v)| v.as_str())
    }

    /// What errors name: `ts`, `op`, `ns`.
    pub fn id(&self) -> EntryId {
        EntryId {
            ts: self.ts,
            op: self.op.to_string(),
            ns: self.ns.to_string(),
        }
    }
}

/// Names an entry in errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryId {
    pub ts: Option<Timestamp>,
    pub op: String,
    pub ns: String,
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ts {
            Some(ts) => write!(f, "ts {{{} {}}}", ts.time, ts.increment)?,
            None => write!(f, "ts -")?,
        }
        write!(f, " op {:?} ns {:?}", self.op, self.ns)
    }
}

/// A raw document as an ordered `Document` (field order and values are kept exactly:
/// used for filters, update operators and commands, never for stored documents).
///
/// # Errors
/// Invalid BSON inside.
pub fn to_doc(raw: &RawDocument) -> Result<Document, String> {
    Document::try_from(raw).map_err(|e| format!("unreadable BSON: {e}"))
}

/// A raw value as `Bson`.
///
/// # Errors
/// Invalid BSON inside.
pub fn to_bson(v: RawBsonRef<'_>) -> Result<Bson, String> {
    Bson::try_from(v).map_err(|e| format!("unreadable BSON: {e}"))
}
