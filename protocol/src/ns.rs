//! Namespace selection: PBM's `--ns` patterns (`db.coll`, `db.*`, `*.*`), shared by
//! selective backup, selective restore and oplog replay so that all three agree on what
//! a pattern means.

use std::fmt;

/// A bad `--ns` pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid namespace {ns:?}: {why}")]
pub struct NsError {
    pub ns: String,
    pub why: &'static str,
}

/// One pattern: a whole database or one collection.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum NsPattern {
    /// `db.*`
    Db(String),
    /// `db.coll`
    Coll(String, String),
}

impl NsPattern {
    /// Parses one `db.coll` or `db.*`.
    ///
    /// # Errors
    /// [`NsError`] naming the pattern and what is wrong with it.
    pub fn parse(ns: &str) -> Result<Self, NsError> {
        let bad = |why| NsError {
            ns: ns.to_string(),
            why,
        };
        let (db, coll) = ns
            .split_once('.')
            .ok_or_else(|| bad("expected <db>.<collection> or <db>.*"))?;
        if db.is_empty() || coll.is_empty() {
            return Err(bad("expected <db>.<collection> or <db>.*"));
        }
        if db.contains('*') {
            return Err(bad("wildcard database names are not supported"));
        }
        if db.contains(['/', '\\', ' ', '"', '$', '\0']) {
            return Err(bad("invalid character in database name"));
        }
        if coll == "*" {
            return Ok(NsPattern::Db(db.to_string()));
        }
        if coll.contains('*') {
            return Err(bad(
                "only a whole-collection wildcard (<db>.*) is supported",
            ));
        }
        if coll.contains(['\0', '$']) {
            return Err(bad("invalid character in collection name"));
        }
        Ok(NsPattern::Coll(db.to_string(), coll.to_string()))
    }

    /// The database the pattern is in.
    pub fn db(&self) -> &str {
        match self {
            NsPattern::Db(d) | NsPattern::Coll(d, _) => d,
        }
    }

    fn matches(&self, db: &str, coll: &str) -> bool {
        match self {
            NsPattern::Db(d) => d == db,
            NsPattern::Coll(d, c) => d == db && c == coll,
        }
    }
}

impl fmt::Display for NsPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NsPattern::Db(d) => write!(f, "{d}.*"),
            NsPattern::Coll(d, c) => write!(f, "{d}.{c}"),
        }
    }
}

/// A set of patterns; empty means everything (PBM's `*.*` or no `--ns`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NsFilter {
    patterns: Vec<NsPattern>,
}

impl NsFilter {
    /// Everything.
    pub fn all() -> Self {
        Self::default()
    }

    /// Parses patterns as stored in `pbmCmd`/`pbmBackups` `nss` (one per entry, or
    /// comma-separated as the CLI takes them). `*.*` anywhere selects everything.
    ///
    /// # Errors
    /// The first bad pattern.
    pub fn parse<S: AsRef<str>>(list: &[S]) -> Result<Self, NsError> {
        let mut patterns = Vec::new();
        for item in list {
            for ns in item.as_ref().split(',').map(str::trim) {
                if ns.is_empty() {
                    continue;
                }
                if ns == "*.*" {
                    return Ok(Self::all());
                }
                let p = NsPattern::parse(ns)?;
                if !patterns.contains(&p) {
                    patterns.push(p);
                }
            }
        }
        Ok(Self { patterns })
    }

    /// True when no pattern restricts the selection.
    pub fn is_all(&self) -> bool {
        self.patterns.is_empty()
    }

    /// The patterns, in the order given.
    pub fn patterns(&self) -> &[NsPattern] {
        &self.patterns
    }

    /// Whether collection `db.coll` is selected.
    pub fn matches(&self, db: &str, coll: &str) -> bool {
        self.is_all() || self.patterns.iter().any(|p| p.matches(db, coll))
    }

    /// Whether `db` holds anything selected.
    pub fn matches_db(&self, db: &str) -> bool {
        self.is_all() || self.patterns.iter().any(|p| p.db() == db)
    }

    /// Whether `db.coll` (a full namespace) is selected; a namespace without a dot
    /// (`db` alone, as in `db.$cmd` split wrongly) is matched as a database.
    pub fn matches_ns(&self, ns: &str) -> bool {
        match ns.split_once('.') {
            Some((db, coll)) => self.matches(db, coll),
            None => self.matches_db(ns),
        }
    }

    /// The patterns as `nss` stores them.
    pub fn to_strings(&self) -> Vec<String> {
        self.patterns.iter().map(ToString::to_string).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_matches() {
        let f = NsFilter::parse(&["shop.*,misc.types", " misc.types"]).unwrap();
        assert_eq!(f.to_strings(), vec!["shop.*", "misc.types"]);
        assert!(f.matches("shop", "orders"));
        assert!(f.matches("misc", "types"));
        assert!(!f.matches("misc", "blobs"));
        assert!(f.matches_db("misc"));
        assert!(!f.matches_db("geo"));
        assert!(f.matches_ns("misc.types"));
        assert!(f.matches_ns("shop.a.b"));
        assert!(NsFilter::parse(&["*.*"]).unwrap().is_all());
        assert!(NsFilter::parse::<&str>(&[]).unwrap().matches("x", "y"));
    }

    #[test]
    fn rejects_bad_patterns() {
        for bad in ["shop", ".x", "x.", "*.coll", "db.co*", "d b.c", "a$.b"] {
            let e = NsFilter::parse(&[bad]).unwrap_err();
            assert_eq!(e.ns, bad, "{e}");
        }
    }
}
