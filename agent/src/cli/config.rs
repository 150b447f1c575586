//! `rbm config`: the main document of `admin.pbmConfig`, as PBM's `config.SetConfig`,
//! `SetConfigVar` and `GetConfig` read and write it.

use super::conn::Conn;
use super::error::CliError;
use super::ops::{send_command, wait_for_op};
use super::OutputFormat;
use bson::{doc, Bson, Document};
use rbm_protocol::command::{Command, ResyncCmd};
use rbm_protocol::defs;
use rbm_protocol::Config;
use std::time::Duration;

/// The main config's filter: PBM keeps profiles in the same collection, marked with
/// `profile: true`.
fn main_filter() -> Document {
    doc! {"profile": {"$exists": false}}
}

/// The stored main config, if any.
///
/// # Errors
/// Read failures, or a stored document rbm cannot read.
pub async fn get_config(conn: &Conn) -> Result<Option<Config>, CliError> {
    let d = conn
        .coll(defs::CONFIG_COLLECTION)
        .find_one(main_filter())
        .await
        .map_err(|e| CliError::mongo("read admin.pbmConfig", &e))?;
    d.map(|d| {
        Config::from_document(d)
            .map_err(|e| CliError::BadDocument(format!("the config in admin.pbmConfig: {e}")))
    })
    .transpose()
}

/// Prints the stored config as PBM does (`pbm config` / `--list`).
///
/// # Errors
/// [`CliError::NoConfig`], read failures.
pub async fn list(conn: &Conn, out: OutputFormat) -> Result<String, CliError> {
    let cfg = get_config(conn).await?.ok_or(CliError::NoConfig)?;
    render(&cfg, out)
}

fn render(cfg: &Config, out: OutputFormat) -> Result<String, CliError> {
    match out {
        OutputFormat::Text => Ok(cfg.to_masked_yaml()?.trim_end().to_string()),
        OutputFormat::Json => Ok(cfg.to_masked_json()?),
        OutputFormat::JsonPretty => {
            let v: serde_json::Value = serde_json::from_str(&cfg.to_masked_json()?)
                .map_err(|e| CliError::Output(e.to_string()))?;
            out.json(&v)
        }
    }
}

/// `rbm config <key>`: one value.
///
/// # Errors
/// Unknown or unset key, no config.
pub async fn get_key(conn: &Conn, key: &str, out: OutputFormat) -> Result<String, CliError> {
    let cfg = get_config(conn).await?.ok_or(CliError::NoConfig)?;
    let v = cfg.with_defaults().get(key)?;
    // PBM answers with its `confKV{key, fmt.Sprint(value)}`: `[key=value]` as text,
    // `{"key": ..., "value": "..."}` as JSON (the value always a string).
    let value = match &v {
        Bson::String(s) => s.clone(),
        Bson::Double(f) => format!("{f}"),
        Bson::Document(_) | Bson::Array(_) => rbm_protocol::gojson::to_string_compact(&v)
            .map_err(|e| CliError::Output(e.to_string()))?,
        other => other.to_string(),
    };
    match out {
        OutputFormat::Text => Ok(format!("[{key}={value}]")),
        _ => out.json(&serde_json::json!({"key": key, "value": value})),
    }
}

/// `rbm config --file`: validates the whole YAML, stores it as the main config with
/// the epoch at the current cluster time (PBM's `SetConfig`), initialises a fresh
/// storage, and asks the agents to resync when the storage changed.
///
/// # Errors
/// Invalid YAML (the message names the key), storage or database failures.
pub async fn set_file(
    conn: &Conn,
    yaml: &str,
    wait: bool,
    wait_time: Option<Duration>,
    out: OutputFormat,
) -> Result<String, CliError> {
    let mut cfg = Config::from_yaml(yaml)?;
    if cfg.is_profile || !cfg.name.is_empty() {
        return Err(CliError::InvalidArgument(
            "a profile config (name/profile keys) goes to `rbm profile add`, not `config --file`"
                .into(),
        ));
    }
    let old = get_config(conn).await?;
    cfg.epoch = Some(conn.cluster_time().await?);
    let d = cfg.to_document()?;
    conn.coll(defs::CONFIG_COLLECTION)
        .replace_one(main_filter(), d)
        .upsert(true)
        .await
        .map_err(|e| CliError::mongo("store config in admin.pbmConfig", &e))?;
    // PBM's CLI never touches the storage here: the config is applied and the agents
    // resync (and report a storage they cannot use in `status`). The Operator relies
    // on that exit 0 while a bucket is still being created, so an unusable storage is
    // a warning on stderr, not a failure.
    if let Err(e) = init_storage(&cfg).await {
        eprintln!("warning: config stored, but the storage is not usable yet: {e}");
    }
    if old.as_ref().map(|o| &o.storage) == Some(&cfg.storage) {
        return render(&cfg, out);
    }
    resync(conn, None, wait, wait_time, out).await
}

/// Writes `.pbm.init` on a storage that has none, as PBM does on first use.
async fn init_storage(cfg: &Config) -> Result<(), CliError> {
    let stg = rbm_storage::from_config(&cfg.storage, None)
        .await
        .map_err(|e| CliError::Storage(e.to_string()))?;
    crate::storage_init::ensure(stg.as_ref(), &tokio_util::sync::CancellationToken::new())
        .await
        .map_err(|e| CliError::Storage(e.to_string()))
}

/// `rbm config --set k=v ...`: every pair is validated against the stored config
/// first (all or nothing), then written with `$set` as PBM's `SetConfigVar` does;
/// `pitr.enabled` also moves the epoch. A storage key triggers a resync.
///
/// # Errors
/// A bad pair (naming the key), no config, database failures.
pub async fn set_vars(
    conn: &Conn,
    pairs: &[String],
    out: OutputFormat,
) -> Result<String, CliError> {
    let mut cfg = get_config(conn).await?.ok_or(CliError::NoConfig)?;
    let mut kv = Vec::new();
    for p in pairs {
        let (k, v) = p.split_once('=').ok_or_else(|| {
            CliError::InvalidArgument(format!("invalid --set {p:?}: expected <key>=<value>"))
        })?;
        cfg.set(k, v)?;
        kv.push((k.to_string(), v.to_string()));
    }
    let stored = cfg.to_document()?;
    let mut set = Document::new();
    let mut bump = false;
    for (k, _) in &kv {
        let v = lookup(&stored, k).cloned().ok_or_else(|| {
            CliError::InvalidArgument(format!("--set {k}: the value did not take effect"))
        })?;
        set.insert(k.clone(), v);
        bump |= Config::set_bumps_epoch(k);
    }
    if bump {
        set.insert("epoch", conn.cluster_time().await?);
    }
    conn.coll(defs::CONFIG_COLLECTION)
        .update_one(main_filter(), doc! {"$set": set})
        .await
        .map_err(|e| CliError::mongo("update admin.pbmConfig", &e))?;
    if kv.iter().any(|(k, _)| k.starts_with("storage.")) {
        send_command(conn, Command::Resync(None)).await?;
    }
    let lines: Vec<String> = kv.iter().map(|(k, v)| format!("[{k}={v}]")).collect();
    out.msg(&lines.join("\n"))
}

fn lookup<'a>(d: &'a Document, dotted: &str) -> Option<&'a Bson> {
    let mut parts = dotted.split('.').peekable();
    let mut cur = d;
    while let Some(p) = parts.next() {
        let v = cur.get(p)?;
        if parts.peek().is_none() {
            return Some(v);
        }
        cur = v.as_document()?;
    }
    None
}

/// `rbm config --force-resync` (also after a storage change): sends `resync`;
/// with `-w`, follows it to the end.
///
/// # Errors
/// No config, no agent (with `-w`), the agent's error.
pub async fn resync(
    conn: &Conn,
    payload: Option<ResyncCmd>,
    wait: bool,
    wait_time: Option<Duration>,
    out: OutputFormat,
) -> Result<String, CliError> {
    get_config(conn).await?.ok_or(CliError::NoConfig)?;
    let opid = send_command(conn, Command::Resync(payload)).await?;
    if !wait {
        return out.msg("Storage resync started");
    }
    wait_for_op(conn, opid, "storage resync", wait_time).await?;
    out.msg("Storage resync finished")
}
