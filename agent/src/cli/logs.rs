//! `rbm logs`: entries of the capped `admin.pbmLog`, filtered as PBM's
//! `LogRequest` does, oldest first; `--follow` tails the collection.

use super::conn::Conn;
use super::error::CliError;
use super::OutputFormat;
use bson::{doc, Document};
use futures::TryStreamExt;
use mongodb::options::CursorType;
use rbm_protocol::defs;
use rbm_protocol::meta::{LogEntry, Severity};
use std::io::Write;

/// `rbm logs` flags.
#[derive(Debug, Clone)]
pub struct LogsArgs {
    /// `-t`: last N entries; 0 = all.
    pub tail: i64,
    /// `-n rs[/host:port]`.
    pub node: Option<String>,
    /// `-s D|I|W|E|F`: this severity and worse.
    pub severity: String,
    /// `-e event[/name]`.
    pub event: Option<String>,
    /// `-i opid`.
    pub opid: Option<String>,
    /// `-x`: show the OPID in text lines.
    pub extra: bool,
    pub follow: bool,
    /// `--timezone` as a UTC offset in seconds.
    pub utc_offset: i32,
}

impl Default for LogsArgs {
    fn default() -> Self {
        Self {
            tail: 20,
            node: None,
            severity: "I".into(),
            event: None,
            opid: None,
            extra: false,
            follow: false,
            utc_offset: 0,
        }
    }
}

fn severity(s: &str) -> Result<i32, CliError> {
    Ok(match s {
        "F" => 0,
        "E" => 1,
        "W" => 2,
        "I" => 3,
        "D" => 4,
        other => {
            return Err(CliError::InvalidArgument(format!(
                "invalid --severity {other:?}: expected one of D, I, W, E, F"
            )))
        }
    })
}

fn filter(args: &LogsArgs) -> Result<Document, CliError> {
    let mut f = doc! {"s": {"$lte": severity(&args.severity)?}};
    if let Some(n) = &args.node {
        match n.split_once('/') {
            Some((rs, node)) => {
                f.insert("rs", rs);
                f.insert("node", node);
            }
            None => {
                f.insert("rs", n.as_str());
            }
        }
    }
    if let Some(e) = &args.event {
        match e.split_once('/') {
            Some((ev, obj)) => {
                f.insert("e", ev);
                f.insert("eobj", obj);
            }
            None => {
                f.insert("e", e.as_str());
            }
        }
    }
    if let Some(o) = &args.opid {
        f.insert("opid", o.as_str());
    }
    Ok(f)
}

/// PBM's JSON of a log entry (`log.Entry`: `ts`, `s`, `rs`, `node`, `e`, `eobj`,
/// `ep`, `opid`, `msg`).
fn entry_json(e: &LogEntry) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    m.insert("ts".into(), e.ts.into());
    m.insert("s".into(), severity_num(e.severity).into());
    m.insert("rs".into(), e.rs.clone().into());
    m.insert("node".into(), e.node.clone().into());
    m.insert("e".into(), e.event.clone().into());
    m.insert("eobj".into(), e.obj_name.clone().into());
    // Go's `omitempty` never omits a struct, so PBM always prints `ep`.
    let ep = e.epoch.unwrap_or(bson::Timestamp {
        time: 0,
        increment: 0,
    });
    m.insert(
        "ep".into(),
        serde_json::json!({"T": ep.time, "I": ep.increment}),
    );
    if !e.opid.is_empty() {
        m.insert("opid".into(), e.opid.clone().into());
    }
    m.insert("msg".into(), e.msg.clone().into());
    serde_json::Value::Object(m)
}

fn severity_num(s: Severity) -> i32 {
    match s.letter() {
        "F" => 0,
        "E" => 1,
        "W" => 2,
        "I" => 3,
        _ => 4,
    }
}

/// `pbm logs` text (PBM's `Entries.String`): the time is RFC 3339 in the chosen
/// zone (`2026-11-26T11:40:54Z`, `2026-11-26T06:10:54-05:30`), unlike the agents' own
/// log lines, which carry milliseconds.
fn text_line(e: &LogEntry, utc_offset: i32, show_node: bool, extra: bool) -> String {
    let line = e.to_text(0, show_node, extra);
    let rest = line.split_once(' ').map(|(_, r)| r).unwrap_or("");
    let local = super::text::fmt_ts(e.ts + i64::from(utc_offset));
    let zone = if utc_offset == 0 {
        "Z".to_string()
    } else {
        let off = utc_offset.unsigned_abs();
        let sign = if utc_offset < 0 { '-' } else { '+' };
        format!("{sign}{:02}:{:02}", off / 3600, off % 3600 / 60)
    };
    format!("{local}{zone} {rest}")
}

fn decode(d: Document) -> Result<LogEntry, CliError> {
    bson::deserialize_from_document(d)
        .map_err(|e| CliError::BadDocument(format!("an entry of admin.pbmLog: {e}")))
}

/// `rbm logs`: writes the entries to `w` (streaming with `--follow`, which ends only
/// on an error or when the process is stopped).
///
/// # Errors
/// Bad flags, read failures, write failures.
pub async fn logs(
    conn: &Conn,
    args: &LogsArgs,
    out: OutputFormat,
    w: &mut dyn Write,
) -> Result<(), CliError> {
    let f = filter(args)?;
    // Node names are shown unless the user asked for one node.
    let show_node = args.node.as_deref().is_none_or(|n| !n.contains('/'));
    let coll = conn.coll(defs::LOG_COLLECTION);
    let mut find = coll.find(f.clone()).sort(doc! {"ts": -1, "ns": -1});
    if args.tail > 0 {
        find = find.limit(args.tail);
    }
    let mut docs: Vec<Document> = find
        .await
        .map_err(|e| CliError::mongo("read admin.pbmLog", &e))?
        .try_collect()
        .await
        .map_err(|e| CliError::mongo("read admin.pbmLog", &e))?;
    docs.reverse();
    let last_id = docs.last().and_then(|d| d.get_object_id("_id").ok());
    let entries: Vec<LogEntry> = docs.into_iter().map(decode).collect::<Result<_, _>>()?;
    let put = |w: &mut dyn Write, s: String| {
        writeln!(w, "{s}")
            .and_then(|_| w.flush())
            .map_err(|e| CliError::Output(e.to_string()))
    };
    if !args.follow {
        return match out {
            OutputFormat::Text => {
                // PBM prints its (then empty) entry list with Println: one blank line.
                if entries.is_empty() {
                    return put(w, String::new());
                }
                for e in &entries {
                    put(w, text_line(e, args.utc_offset, show_node, args.extra))?;
                }
                Ok(())
            }
            _ => {
                let v: Vec<serde_json::Value> = entries.iter().map(entry_json).collect();
                put(w, out.json(&v)?)
            }
        };
    }
    let line = |e: &LogEntry| -> Result<String, CliError> {
        match out {
            OutputFormat::Text => Ok(text_line(e, args.utc_offset, show_node, args.extra)),
            // One JSON object per line, so a follower can parse as it reads.
            _ => serde_json::to_string(&entry_json(e))
                .map(|s| super::go_html_escape(&s))
                .map_err(|e| CliError::Output(e.to_string())),
        }
    };
    for e in &entries {
        put(w, line(e)?)?;
    }
    let mut tail_filter = f;
    if let Some(id) = last_id {
        tail_filter.insert("_id", doc! {"$gt": id});
    }
    let mut cursor = coll
        .find(tail_filter)
        .cursor_type(CursorType::TailableAwait)
        .await
        .map_err(|e| CliError::mongo("tail admin.pbmLog", &e))?;
    while let Some(d) = cursor
        .try_next()
        .await
        .map_err(|e| CliError::mongo("tail admin.pbmLog", &e))?
    {
        put(w, line(&decode(d)?)?)?;
    }
    Err(CliError::Mongo {
        context: "tail admin.pbmLog".into(),
        reason: "the server closed the tailable cursor".into(),
    })
}
