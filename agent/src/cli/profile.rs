//! `rbm profile list|show|add|remove|sync`: PBM's storage profiles (`cmd/pbm/profile.go`).
//! Profiles are `{name, profile: true, storage}` documents in `admin.pbmConfig`; adding
//! and removing go through the agents (`addConfigProfile` / `removeConfigProfile`),
//! which check the storage and clear the profile's backup list.

use super::config::get_config;
use super::conn::Conn;
use super::error::CliError;
use super::ops::{check_for_another_operation, send_command, wait_for_op};
use super::OutputFormat;
use bson::doc;
use rbm_protocol::command::{Command, ProfileCmd, ResyncCmd};
use rbm_protocol::defs;
use rbm_protocol::Config;
use std::time::Duration;

/// PBM's `ProfileFlag`: a profile named `main` is the main config, not a profile.
fn check_name(name: &str) -> Result<(), CliError> {
    if name.is_empty() {
        return Err(CliError::InvalidArgument(
            "argument `profile-name` should not be empty".into(),
        ));
    }
    if name == "main" {
        return Err(CliError::InvalidArgument(
            "argument `profile-name` should not be \"main\"".into(),
        ));
    }
    Ok(())
}

async fn profiles(conn: &Conn, name: Option<&str>) -> Result<Vec<Config>, CliError> {
    let mut f = doc! {"profile": true};
    if let Some(n) = name {
        f.insert("name", n);
    }
    let mut v: Vec<Config> = super::find_all(conn, defs::CONFIG_COLLECTION, f, None).await?;
    v.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(v)
}

fn render(list: &[Config], out: OutputFormat, wrap: bool) -> Result<String, CliError> {
    match out {
        OutputFormat::Text => {
            let parts: Result<Vec<String>, CliError> = list
                .iter()
                .map(|p| Ok(p.to_masked_yaml()?.trim_end().to_string()))
                .collect();
            Ok(parts?.join("\n---\n"))
        }
        // Compact JSON keeps Go's field order (serde_json's map would sort the keys).
        OutputFormat::Json => {
            let items: Result<Vec<String>, CliError> =
                list.iter().map(|p| Ok(p.to_masked_json()?)).collect();
            let items = items?;
            if wrap {
                Ok(format!("{{\"profiles\":[{}]}}", items.join(",")))
            } else {
                Ok(items.into_iter().next().unwrap_or_default())
            }
        }
        OutputFormat::JsonPretty => {
            let vals: Result<Vec<serde_json::Value>, CliError> = list
                .iter()
                .map(|p| {
                    serde_json::from_str(&p.to_masked_json()?)
                        .map_err(|e| CliError::Output(e.to_string()))
                })
                .collect();
            let vals = vals?;
            if wrap {
                out.json(&serde_json::json!({ "profiles": vals }))
            } else {
                out.json(&vals.into_iter().next().unwrap_or_default())
            }
        }
    }
}

/// `rbm profile list` (also `rbm profile`).
///
/// # Errors
/// Read failures.
pub async fn list(conn: &Conn, out: OutputFormat) -> Result<String, CliError> {
    render(&profiles(conn, None).await?, out, true)
}

/// `rbm profile show <name>`.
///
/// # Errors
/// Bad name, unknown profile.
pub async fn show(conn: &Conn, name: &str, out: OutputFormat) -> Result<String, CliError> {
    check_name(name)?;
    let p = profiles(conn, Some(name)).await?;
    if p.is_empty() {
        return Err(CliError::NotFound(format!("profile {name:?} is not found")));
    }
    render(&p, out, false)
}

/// `rbm profile add <name> <file> [--sync] [-w]`: the file is a config YAML whose
/// `storage` section is kept. An existing profile of that name is replaced.
///
/// # Errors
/// Bad name or file, no main config, another operation, the agent's error.
pub async fn add(
    conn: &Conn,
    name: &str,
    yaml: &str,
    sync: bool,
    wait: bool,
    wait_time: Option<Duration>,
    out: OutputFormat,
) -> Result<String, CliError> {
    check_name(name)?;
    let cfg = Config::from_yaml(yaml)?;
    check_for_another_operation(conn).await?;
    if get_config(conn).await?.is_none() {
        return Err(CliError::InvalidArgument("PBM is not configured".into()));
    }
    let payload = ProfileCmd {
        name: name.to_string(),
        is_profile: true,
        storage: cfg.storage,
    };
    if !profiles(conn, Some(name)).await?.is_empty() {
        let opid = send_command(conn, Command::RemoveConfigProfile(payload.clone())).await?;
        wait_for_op(conn, opid, "clear profile list", None).await?;
    }
    let opid = send_command(conn, Command::AddConfigProfile(payload)).await?;
    wait_for_op(conn, opid, "add config profile", None).await?;
    if sync {
        let opid = send_command(
            conn,
            Command::Resync(Some(ResyncCmd {
                name: name.to_string(),
                ..Default::default()
            })),
        )
        .await?;
        if wait {
            wait_for_op(conn, opid, "sync", wait_time).await?;
        }
    }
    out.msg("OK")
}

/// `rbm profile remove <name> [-w]`.
///
/// # Errors
/// Unknown profile, another operation, the agent's error.
pub async fn remove(
    conn: &Conn,
    name: &str,
    wait: bool,
    wait_time: Option<Duration>,
    out: OutputFormat,
) -> Result<String, CliError> {
    if name.is_empty() {
        return Err(CliError::InvalidArgument(
            "argument `profile-name` should not be empty".into(),
        ));
    }
    check_for_another_operation(conn).await?;
    let Some(p) = profiles(conn, Some(name)).await?.into_iter().next() else {
        return Err(CliError::NotFound(format!("profile {name:?} is not found")));
    };
    let opid = send_command(
        conn,
        Command::RemoveConfigProfile(ProfileCmd {
            name: name.to_string(),
            is_profile: true,
            storage: p.storage,
        }),
    )
    .await?;
    if wait {
        wait_for_op(conn, opid, "remove config profile", wait_time).await?;
    }
    out.msg("OK")
}

/// `rbm profile sync <name> | --all [--clear] [-w]`.
///
/// # Errors
/// Bad arguments, another operation, the agent's error.
pub async fn sync(
    conn: &Conn,
    name: Option<&str>,
    all: bool,
    clear: bool,
    wait: bool,
    wait_time: Option<Duration>,
    out: OutputFormat,
) -> Result<String, CliError> {
    match (name, all) {
        (None, false) => {
            return Err(CliError::InvalidArgument(
                "<profile-name> or --all must be provided".into(),
            ))
        }
        (Some(_), true) => {
            return Err(CliError::InvalidArgument(
                "ambiguous: <profile-name> and --all are provided".into(),
            ))
        }
        (Some(n), false) => check_name(n)?,
        (None, true) => {}
    }
    check_for_another_operation(conn).await?;
    let opid = send_command(
        conn,
        Command::Resync(Some(ResyncCmd {
            name: name.unwrap_or_default().to_string(),
            all,
            clear,
            include_restores: false,
        })),
    )
    .await?;
    if wait {
        wait_for_op(conn, opid, "sync", wait_time).await?;
    }
    out.msg("OK")
}
