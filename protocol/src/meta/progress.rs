//! rbm's extension to PBM's control documents: the progress of a running backup or
//! restore, per replica set, at `replsets.$.progress` in `pbmBackups` and `pbmRestores`.
//!
//! PBM's Go decoder ignores fields it does not know, and rbm's own meta structs do not
//! deny unknown fields, so the extra field is invisible to both; it is read on its own
//! (see [`ProgressOnly`]) by `rbm status` and `--wait`.

use serde::{Deserialize, Serialize};

/// How far one node got. Byte counts are uncompressed document bytes; `bytes_total` is
/// 0 when the size is unknown in advance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpProgress {
    /// The node (`host:port`) doing the work.
    #[serde(default)]
    pub node: String,
    #[serde(default)]
    pub bytes: i64,
    #[serde(default)]
    pub bytes_total: i64,
    #[serde(default)]
    pub collections: i64,
    #[serde(default)]
    pub collections_total: i64,
    /// Unix seconds of the first report, for the average rate.
    #[serde(default)]
    pub started: i64,
    /// Unix seconds of the last report.
    #[serde(default)]
    pub updated: i64,
}

impl OpProgress {
    /// Average bytes per second since the start, if measurable.
    pub fn rate(&self) -> Option<f64> {
        let secs = self.updated - self.started;
        (secs > 0 && self.bytes > 0).then(|| self.bytes as f64 / secs as f64)
    }

    /// Seconds left at the average rate, when the total is known.
    pub fn eta_secs(&self) -> Option<i64> {
        let rate = self.rate()?;
        (self.bytes_total > 0)
            .then(|| ((self.bytes_total - self.bytes).max(0) as f64 / rate) as i64)
    }
}

/// One replica set's progress, as `rbm status -o json` lists it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RsProgress {
    pub rs: String,
    #[serde(flatten)]
    pub progress: OpProgress,
}

/// The projection of a `pbmBackups` / `pbmRestores` document that carries progress.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ProgressOnly {
    #[serde(default, deserialize_with = "super::backup::null_as_empty")]
    pub replsets: Vec<ProgressReplset>,
}

/// A replica set entry's name and progress.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ProgressReplset {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub progress: Option<OpProgress>,
}

impl ProgressOnly {
    /// The replica sets that reported progress.
    pub fn into_list(self) -> Vec<RsProgress> {
        self.replsets
            .into_iter()
            .filter_map(|r| {
                r.progress.map(|p| RsProgress {
                    rs: r.name,
                    progress: p,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_and_eta_come_from_the_report() {
        let p = OpProgress {
            bytes: 10,
            bytes_total: 40,
            started: 100,
            updated: 105,
            ..Default::default()
        };
        assert_eq!(p.rate(), Some(2.0));
        assert_eq!(p.eta_secs(), Some(15));
        let unknown = OpProgress {
            bytes_total: 0,
            ..p.clone()
        };
        assert_eq!(unknown.eta_secs(), None);
        assert_eq!(OpProgress::default().rate(), None);
    }
}
