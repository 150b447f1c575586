//! `rbm status`: PBM's four sections (`cmd/pbm/status.go`) from the control
//! collections, judged on cluster time.

use super::conn::Conn;
use super::error::CliError;
use super::list::{all_backups, is_incr_base, pitr_ranges, range_text, snapshot_stat};
use super::text::{fmt_ts, pretty_size, storage_label, storage_path, storage_region};
use super::OutputFormat;
use bson::{doc, Document, Timestamp};
use rbm_protocol::cli::{
    ClusterReplset, CurrentOp, NodeStatus, PitrRanges, PitrStat, PrintStatus, StatusOutput,
    StorageStat,
};
use rbm_protocol::defs::{self, CommandKind, Status};
use rbm_protocol::lock::LockData;
use rbm_protocol::meta::{AgentStat, LogEntry, PitrMeta};

/// The sections of `-s`.
pub const SECTIONS: [&str; 4] = ["cluster", "pitr", "running", "backups"];

/// `rbm status`.
///
/// # Errors
/// Unknown section names, read failures.
pub async fn status(
    conn: &Conn,
    sections: &[String],
    out: OutputFormat,
) -> Result<String, CliError> {
    for s in sections {
        if !SECTIONS.contains(&s.as_str()) {
            return Err(CliError::InvalidArgument(format!(
                "invalid --sections value {s:?}: expected any of {}",
                SECTIONS.join(", ")
            )));
        }
    }
    let want = |s: &str| sections.is_empty() || sections.iter().any(|x| x == s);
    let now = conn.cluster_time().await?;
    let cfg = super::config::get_config(conn).await?;
    let mut o = StatusOutput::default();
    if want("cluster") {
        o.cluster = Some(cluster(conn, now).await?);
    }
    if want("pitr") {
        o.pitr = Some(pitr(conn, now, cfg.as_ref()).await?);
    }
    if want("running") {
        o.running = Some(running(conn, now).await?);
    }
    if want("backups") {
        o.backups = match &cfg {
            Some(c) => Some(backups(conn, now, c).await?),
            None => None,
        };
    }
    // rbm's schedule (not PBM's): only shown when the config has tasks, so PBM's
    // output is unchanged otherwise.
    // Only in the full status: `-s` selects PBM's sections.
    let sched = if sections.is_empty() {
        super::schedule_status::tasks(conn, cfg.as_ref()).await?
    } else {
        Vec::new()
    };
    if out != OutputFormat::Text {
        if sched.is_empty() {
            return out.json(&o);
        }
        return out.json(&super::schedule_status::WithSchedule {
            status: &o,
            schedule: &sched,
        });
    }
    let mut s = String::new();
    let head = |s: &mut String, name: &str| {
        s.push_str(&format!("{name}:\n{}\n", "=".repeat(name.len() + 1)));
    };
    if let Some(c) = &o.cluster {
        head(&mut s, "Cluster");
        for rs in c {
            s.push_str(&format!("{}:\n", rs.name));
            for n in &rs.nodes {
                s.push_str(&format!("  - {}\n", node_text(n)));
            }
        }
        s.push_str("\n\n");
    }
    if let Some(p) = &o.pitr {
        head(&mut s, "PITR incremental backup");
        s.push_str(&format!(
            "Status [{}]\n",
            if p.conf || p.run { "ON" } else { "OFF" }
        ));
        if let Some(n) = p.nodes.as_ref().filter(|n| !n.is_empty()) {
            let list: String = n.iter().map(|x| format!("{x}; ")).collect();
            s.push_str(&format!("Running members: {list}\n"));
        }
        if !p.error.is_empty() {
            s.push_str(&format!("! ERROR while running PITR backup: {}\n", p.error));
        }
        s.push('\n');
    }
    if let Some(r) = &o.running {
        head(&mut s, "Currently running");
        s.push_str(&format!("{}\n", running_text(r)));
        for p in &r.progress {
            s.push_str(&format!("  {}\n", crate::progress::cli::line(p)));
        }
        s.push('\n');
    }
    if !sched.is_empty() {
        head(&mut s, "Schedule");
        s.push_str(&super::schedule_status::text(&sched));
        s.push('\n');
    }
    if want("backups") {
        head(&mut s, "Backups");
        match &o.backups {
            Some(b) => s.push_str(&backups_text(b)),
            None => s.push_str("(no storage configured: set it with `rbm config --file`)\n"),
        }
    }
    Ok(s.trim_end().to_string())
}

fn node_text(n: &NodeStatus) -> String {
    if n.role == "A" {
        return format!("{} [!Arbiter]: arbiter node is not supported", n.host);
    }
    let role = if n.role.is_empty() { " " } else { &n.role };
    let ver = if n.agent.is_empty() {
        "NOT FOUND"
    } else {
        &n.agent
    };
    let mut s = if n.prio_backup.is_empty() || n.prio_pitr.is_empty() || n.role == "D" {
        format!("{} [{role}]: pbm-agent [{ver}]", n.host)
    } else {
        format!(
            "{} [{role}], Bkp Prio: [{}], PITR Prio: [{}]: pbm-agent [{ver}]",
            n.host, n.prio_backup, n.prio_pitr
        )
    };
    if n.ok {
        s.push_str(" OK");
        return s;
    }
    if n.errors.is_empty() {
        return s;
    }
    s.push_str(" FAILED status:");
    for e in &n.errors {
        s.push_str(&format!("\n      > ERROR with {e}"));
    }
    s
}

/// Replica sets and their members: from `hello` for the connected set, and from
/// `config.shards` when it is the config server set of a sharded cluster.
async fn members(conn: &Conn) -> Result<Vec<(String, Vec<(String, String)>)>, CliError> {
    let hello = conn.hello_doc().await?;
    let strs = |k: &str| -> Vec<String> {
        hello
            .get_array(k)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let primary = hello.get_str("primary").unwrap_or("").to_string();
    let mut nodes: Vec<(String, String)> = Vec::new();
    for h in strs("hosts").into_iter().chain(strs("passives")) {
        let role = if h == primary { "P" } else { "S" };
        nodes.push((h, role.into()));
    }
    for h in strs("arbiters") {
        nodes.push((h, "A".into()));
    }
    let set = hello.get_str("setName").unwrap_or("").to_string();
    let mut out = vec![(set, nodes)];
    if hello.get_i32("configsvr").is_ok() || hello.get_i64("configsvr").is_ok() {
        use futures::TryStreamExt;
        let shards: Vec<Document> = conn
            .client()
            .database("config")
            .collection::<Document>("shards")
            .find(doc! {})
            .await
            .map_err(|e| CliError::mongo("read config.shards", &e))?
            .try_collect()
            .await
            .map_err(|e| CliError::mongo("read config.shards", &e))?;
        for s in shards {
            let host = s.get_str("host").unwrap_or("");
            let (rs, hosts) = host.split_once('/').unwrap_or(("", host));
            if rs.is_empty() || rs == out[0].0 {
                continue;
            }
            out.push((
                rs.to_string(),
                hosts
                    .split(',')
                    .map(|h| (h.to_string(), String::new()))
                    .collect(),
            ));
        }
    }
    Ok(out)
}

async fn cluster(conn: &Conn, now: Timestamp) -> Result<Vec<ClusterReplset>, CliError> {
    let agents: Vec<AgentStat> =
        super::find_all(conn, defs::AGENTS_COLLECTION, doc! {}, None).await?;
    let mut out = Vec::new();
    for (rs, nodes) in members(conn).await? {
        let mut statuses = Vec::new();
        for (host, role_hint) in nodes {
            // PBM's readers drop entries older than 35 s: such an agent is gone.
            let agent = agents
                .iter()
                .find(|a| a.rs == rs && a.node == host && !a.is_gone(now));
            let n = match agent {
                // PBM takes the role of an agent-less member from its replica set
                // config, where only arbiters (and hidden/delayed members) have one.
                None => NodeStatus {
                    host,
                    agent: String::new(),
                    role: if role_hint == "A" {
                        role_hint
                    } else {
                        String::new()
                    },
                    prio_pitr: String::new(),
                    prio_backup: String::new(),
                    ok: false,
                    errors: Vec::new(),
                },
                Some(a) => {
                    let mut errors = Vec::new();
                    if !a.pbm_status.ok {
                        errors.push(format!("PBM connection: {}", a.pbm_status.err));
                    }
                    if !a.node_status.ok {
                        errors.push(format!("node connection: {}", a.node_status.err));
                    }
                    if !a.storage_status.ok {
                        errors.push(format!("storage: {}", a.storage_status.err));
                    }
                    if a.is_stale(now) {
                        errors.push(format!(
                            "agent: lost, last heartbeat {}s ago (cluster time)",
                            now.time.saturating_sub(a.hb.time)
                        ));
                    }
                    let role = if a.arbiter {
                        "A"
                    } else if a.is_primary() {
                        "P"
                    } else if a.hidden {
                        "H"
                    } else if a.delay_secs > 0 {
                        "D"
                    } else {
                        "S"
                    };
                    NodeStatus {
                        host,
                        agent: format!("v{}", a.agent_ver),
                        role: role.into(),
                        prio_pitr: String::new(),
                        prio_backup: String::new(),
                        ok: errors.is_empty(),
                        errors,
                    }
                }
            };
            statuses.push(n);
        }
        out.push(ClusterReplset {
            name: rs,
            nodes: statuses,
        });
    }
    Ok(out)
}

async fn pitr(
    conn: &Conn,
    now: Timestamp,
    cfg: Option<&rbm_protocol::Config>,
) -> Result<PitrStat, CliError> {
    let conf = cfg.and_then(|c| c.pitr.as_ref()).is_some_and(|p| p.enabled);
    let locks: Vec<LockData> =
        super::find_all(conn, defs::LOCK_OP_COLLECTION, doc! {"type": "pitr"}, None).await?;
    let run = locks.iter().any(|l| !l.is_stale(now));
    let mut nodes = None;
    if conf && run {
        let meta: Vec<PitrMeta> =
            super::find_all(conn, defs::PITR_COLLECTION, doc! {}, None).await?;
        let acked: Vec<String> = meta
            .iter()
            .flat_map(|m| m.nomination.iter())
            .filter(|n| !n.ack.is_empty())
            .map(|n| format!("{}/{}", n.rs, n.ack))
            .collect();
        nodes = Some(acked);
    }
    let mut error = String::new();
    if let Some(epoch) = cfg.and_then(|c| c.epoch) {
        let errs: Vec<LogEntry> = super::find_all(
            conn,
            defs::LOG_COLLECTION,
            doc! {"e": "pitr", "s": 1, "ep": epoch},
            Some(doc! {"$natural": -1}),
        )
        .await?;
        let mut seen = std::collections::BTreeSet::new();
        let mut lines = Vec::new();
        for e in errs {
            if seen.insert(e.rs.clone()) {
                lines.push(e.to_text(0, true, false));
            }
        }
        error = lines.join("; ");
    }
    Ok(PitrStat {
        conf,
        run,
        nodes,
        error,
    })
}

async fn running(conn: &Conn, now: Timestamp) -> Result<CurrentOp, CliError> {
    let locks: Vec<LockData> = super::find_all(conn, defs::LOCK_COLLECTION, doc! {}, None).await?;
    let Some(l) = locks.into_iter().find(|l| !l.is_stale(now)) else {
        return Ok(CurrentOp::default());
    };
    let mut op = CurrentOp {
        kind: l.kind,
        opid: l.opid.clone(),
        ..CurrentOp::default()
    };
    match l.kind {
        Some(CommandKind::Backup) => {
            let b: Vec<rbm_protocol::meta::BackupMeta> =
                super::find_all(conn, defs::BACKUPS_COLLECTION, doc! {"opid": &l.opid}, None)
                    .await?;
            if let Some(b) = b.first() {
                op.name = b.name.clone();
                op.start_ts = b.start_ts;
                op.status = match b.status {
                    Status::Running => "snapshot backup".into(),
                    Status::DumpDone => "oplog backup".into(),
                    s => s.to_string(),
                };
            }
        }
        Some(CommandKind::Restore) => {
            let r: Vec<rbm_protocol::meta::RestoreMeta> = super::find_all(
                conn,
                defs::RESTORES_COLLECTION,
                doc! {"opid": &l.opid},
                None,
            )
            .await?;
            if let Some(r) = r.first() {
                op.name = r.backup.clone();
                op.start_ts = r.start_ts;
                op.status = match r.status {
                    Status::Running => "snapshot restore".into(),
                    Status::DumpDone => "oplog restore".into(),
                    s => s.to_string(),
                };
            }
        }
        _ => {}
    }
    if let Some(coll) = match l.kind {
        Some(CommandKind::Backup) => Some(defs::BACKUPS_COLLECTION),
        Some(CommandKind::Restore) => Some(defs::RESTORES_COLLECTION),
        _ => None,
    } {
        op.progress = crate::progress::cli::read(conn, coll, doc! {"opid": &l.opid}).await;
    }
    Ok(op)
}

/// PBM's `currOp.String()`: Go formats the command with its `String()`, which is the
/// description ("Snapshot backup"), while JSON carries the bare name ("backup").
fn running_text(c: &CurrentOp) -> String {
    match c.kind {
        None => "(none)".into(),
        Some(k @ (CommandKind::Backup | CommandKind::Restore)) => format!(
            "{} \"{}\", started at {}Z. Status: {}. [op id: {}]",
            k.description(),
            c.name,
            fmt_ts(c.start_ts),
            c.status,
            c.opid
        ),
        Some(k) => format!("{} [op id: {}]", k.description(), c.opid),
    }
}

async fn backups(
    conn: &Conn,
    now: Timestamp,
    cfg: &rbm_protocol::Config,
) -> Result<StorageStat, CliError> {
    let metas = all_backups(conn).await?;
    let mut snaps = Vec::new();
    for b in &metas {
        let mut s = snapshot_stat(b);
        s.size = b.size.unwrap_or(0);
        match b.status {
            Status::Done | Status::Canceled | Status::Error => {}
            st => {
                if rbm_protocol::lock::is_stale(b.hb, now) {
                    s.error = format!("Backup stuck at `{st}` stage, last beat ts: {}", b.hb.time);
                    s.status = Status::Error;
                    s.print_status = PrintStatus::Failed;
                }
            }
        }
        if s.status != Status::Done {
            s.restore_to = b.last_transition_ts;
        }
        snaps.push(s);
    }
    snaps.sort_by_key(|s| std::cmp::Reverse(s.restore_to));
    let (ranges, _, size) = pitr_ranges(conn, &metas).await?;
    Ok(StorageStat {
        kind: storage_label(cfg.storage.kind).into(),
        path: storage_path(&cfg.storage),
        region: storage_region(&cfg.storage),
        snapshot: snaps,
        pitr: Some(PitrRanges { ranges, size }),
    })
}

fn backups_text(b: &StorageStat) -> String {
    let mut s = String::from("Main storage:\n");
    s.push_str(&format!("  {:<12}{}\n", "Type:", b.kind));
    if !b.region.is_empty() {
        s.push_str(&format!("  {:<12}{}\n", "Region:", b.region));
    }
    s.push_str(&format!("  {:<12}{}\n", "Path:", b.path));
    let no_pitr = b.pitr.as_ref().is_none_or(|p| p.ranges.is_empty());
    if b.snapshot.is_empty() && no_pitr {
        s.push_str("(no snapshots or PITR chunks)\n");
        return s;
    }
    s.push_str("Snapshots:\n");
    s.push_str(&format!(
        "  {:<26}{:<12}{:<14}{:<22}{:<7}{:<6}{:<21}{}\n  {}\n",
        "NAME",
        "SIZE",
        "TYPE",
        "PROFILE",
        "SEL",
        "BASE",
        "RESTORE TIME",
        "STATUS",
        "-".repeat(114)
    ));
    for n in &b.snapshot {
        let status = match n.status {
            Status::Done => "done".to_string(),
            Status::Canceled => "canceled".to_string(),
            Status::Error => format!("error: {}", n.error),
            st => format!("running: {st}"),
        };
        // PBM cuts a long status to 27 characters and marks the cut.
        let status: String = if status.chars().count() > 30 {
            status.chars().take(27).chain("...".chars()).collect()
        } else {
            status
        };
        s.push_str(&format!(
            "  {:<26}{:<12}{:<14}{:<22}{:<7}{:<6}{:<21}{}\n",
            n.name,
            pretty_size(n.size),
            n.kind.as_str(),
            n.profile,
            if n.namespaces.is_empty() { "no" } else { "yes" },
            if is_incr_base(n) { "yes" } else { "no" },
            fmt_ts(n.restore_to),
            status
        ));
    }
    if let Some(p) = b.pitr.as_ref().filter(|p| !p.ranges.is_empty()) {
        s.push_str(&format!("PITR chunks [{}]:\n", pretty_size(p.size)));
        let mut rs = p.ranges.clone();
        rs.sort_by_key(|r| std::cmp::Reverse(r.range.end));
        for r in &rs {
            s.push_str(&format!("  {}\n", range_text(r)));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_op_named_as_pbm_prints_it() {
        let op = CurrentOp {
            kind: Some(CommandKind::Backup),
            opid: "6b08".into(),
            name: "2026-11-26T11:40:53Z".into(),
            start_ts: 1_795_693_253,
            status: "snapshot backup".into(),
            progress: Vec::new(),
        };
        assert_eq!(
            running_text(&op),
            "Snapshot backup \"2026-11-26T11:40:53Z\", started at 2026-11-26T11:40:53Z. \
             Status: snapshot backup. [op id: 6b08]"
        );
        let resync = CurrentOp {
            kind: Some(CommandKind::Resync),
            opid: "6b09".into(),
            name: String::new(),
            start_ts: 0,
            status: String::new(),
            progress: Vec::new(),
        };
        assert_eq!(running_text(&resync), "Resync storage [op id: 6b09]");
        assert_eq!(running_text(&CurrentOp::default()), "(none)");
    }
}
