//! How the CLI shows progress: one line per replica set for `rbm status`, and for
//! `--wait` progress bars on a terminal or plain periodic lines otherwise. Both go to
//! stderr, so stdout stays what PBM prints (scripts parse it).

use crate::cli::conn::Conn;
use crate::cli::text::pretty_size;
use bson::doc;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use rbm_protocol::meta::progress::{ProgressOnly, RsProgress};
use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Plain lines at most this often per replica set.
const PLAIN_EVERY: Duration = Duration::from_secs(2);

/// `rs0/host:27017: 1.20MB of 5.00MB (24%), 3/10 collections, 512.00KB/s, ETA 7s`.
pub fn line(p: &RsProgress) -> String {
    let g = &p.progress;
    let mut s = format!("{}/{}: {}", p.rs, g.node, pretty_size(g.bytes));
    if g.bytes_total > 0 {
        let pct = (g.bytes as f64 * 100.0 / g.bytes_total as f64).min(100.0);
        s.push_str(&format!(" of {} ({pct:.0}%)", pretty_size(g.bytes_total)));
    }
    s.push_str(&format!(
        ", {}/{} collections",
        g.collections, g.collections_total
    ));
    if let Some(r) = g.rate() {
        s.push_str(&format!(", {}/s", pretty_size(r as i64)));
    }
    if let Some(eta) = g.eta_secs() {
        s.push_str(&format!(", ETA {}", fmt_secs(eta)));
    }
    s
}

fn fmt_secs(s: i64) -> String {
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// The progress reported in the document `name` of `coll`.
pub async fn read(conn: &Conn, coll: &str, filter: bson::Document) -> Vec<RsProgress> {
    let Ok(Some(d)) = conn
        .coll(coll)
        .find_one(filter)
        .projection(doc! {"replsets.name": 1, "replsets.progress": 1})
        .await
    else {
        return Vec::new();
    };
    bson::deserialize_from_document::<ProgressOnly>(d)
        .map(ProgressOnly::into_list)
        .unwrap_or_default()
}

enum Mode {
    Off,
    Bars {
        multi: MultiProgress,
        bars: HashMap<String, ProgressBar>,
    },
    Plain {
        shown: HashMap<String, (Instant, RsProgress)>,
    },
}

/// Progress while `--wait` polls.
pub struct WaitProgress {
    mode: Mode,
    /// When the progress was last read: callers may poll faster than it is worth showing.
    read_at: Option<Instant>,
}

/// The progress is read at most this often, however fast the caller polls.
const READ_EVERY: Duration = Duration::from_millis(500);

impl WaitProgress {
    /// Bars when stderr is a terminal, plain lines when it is not; nothing unless `text`.
    pub fn new(text: bool) -> Self {
        let mode = if !text {
            Mode::Off
        } else if std::io::stderr().is_terminal() {
            Mode::Bars {
                multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
                bars: HashMap::new(),
            }
        } else {
            Mode::Plain {
                shown: HashMap::new(),
            }
        };
        Self {
            mode,
            read_at: None,
        }
    }

    /// Bars replace PBM's dots on a terminal.
    pub fn draws_bars(&self) -> bool {
        matches!(self.mode, Mode::Bars { .. })
    }

    /// Reads the operation's progress and shows it.
    pub async fn poll(&mut self, conn: &Conn, coll: &str, name: &str) {
        if matches!(self.mode, Mode::Off) || self.read_at.is_some_and(|t| t.elapsed() < READ_EVERY)
        {
            return;
        }
        self.read_at = Some(Instant::now());
        let list = read(conn, coll, doc! {"name": name}).await;
        self.show(&list);
    }

    fn show(&mut self, list: &[RsProgress]) {
        match &mut self.mode {
            Mode::Off => {}
            Mode::Bars { multi, bars } => {
                for p in list {
                    let g = &p.progress;
                    // Rate and ETA from the agent's own figures: the bar only sees a
                    // sample a second, and its first one would look like a burst.
                    let mut msg = format!("{}/{} colls", g.collections, g.collections_total);
                    if let Some(r) = g.rate() {
                        msg.push_str(&format!(", {}/s", pretty_size(r as i64)));
                    }
                    if let Some(eta) = g.eta_secs() {
                        msg.push_str(&format!(", ETA {}", fmt_secs(eta)));
                    }
                    let template = if g.bytes_total > 0 {
                        "{prefix} [{bar:30}] {bytes}/{total_bytes} {msg}"
                    } else {
                        "{prefix} {spinner} {bytes} {msg}"
                    };
                    let style = ProgressStyle::with_template(template)
                        .unwrap_or_else(|_| ProgressStyle::default_spinner())
                        .progress_chars("=> ");
                    let bar = bars.entry(p.rs.clone()).or_insert_with(|| {
                        multi.add(
                            ProgressBar::no_length()
                                .with_style(style.clone())
                                .with_prefix(format!("{}/{}", p.rs, g.node)),
                        )
                    });
                    if g.bytes_total > 0 {
                        bar.set_length(g.bytes_total.max(g.bytes) as u64);
                    }
                    bar.set_style(style);
                    bar.set_message(msg);
                    bar.set_position(g.bytes.max(0) as u64);
                }
            }
            Mode::Plain { shown } => {
                let mut err = std::io::stderr().lock();
                for p in list {
                    let due = match shown.get(&p.rs) {
                        None => true,
                        Some((at, last)) => {
                            (last.progress.bytes != p.progress.bytes
                                || last.progress.collections != p.progress.collections)
                                && at.elapsed() >= PLAIN_EVERY
                        }
                    };
                    if due {
                        let _ = writeln!(err, "progress {}", line(p));
                        shown.insert(p.rs.clone(), (Instant::now(), p.clone()));
                    }
                }
            }
        }
    }

    /// Shows the final figures and removes the bars.
    pub async fn finish(&mut self, conn: &Conn, coll: &str, name: &str) {
        match &mut self.mode {
            Mode::Off => {}
            Mode::Bars { bars, .. } => {
                for b in bars.values() {
                    b.finish_and_clear();
                }
            }
            Mode::Plain { shown } => {
                let list = read(conn, coll, doc! {"name": name}).await;
                let mut err = std::io::stderr().lock();
                for p in &list {
                    if shown.get(&p.rs).map(|(_, l)| l) != Some(p) {
                        let _ = writeln!(err, "progress {}", line(p));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rbm_protocol::meta::progress::OpProgress;

    #[test]
    fn a_line_says_how_far_and_how_fast() {
        let p = RsProgress {
            rs: "rs0".into(),
            progress: OpProgress {
                node: "n1:27017".into(),
                bytes: 1 << 20,
                bytes_total: 4 << 20,
                collections: 1,
                collections_total: 3,
                started: 100,
                updated: 102,
            },
        };
        assert_eq!(
            line(&p),
            "rs0/n1:27017: 1.00MB of 4.00MB (25%), 1/3 collections, 512.00KB/s, ETA 6s"
        );
        let unknown = RsProgress {
            progress: OpProgress {
                bytes_total: 0,
                updated: 100,
                ..p.progress.clone()
            },
            ..p
        };
        assert_eq!(line(&unknown), "rs0/n1:27017: 1.00MB, 1/3 collections");
    }
}
