//! The packaging files agree with each other and with the code: the Dockerfile builds
//! and ships the binaries `agent/Cargo.toml` declares, docker-compose.yml wires a
//! replica set, its agents, MinIO and Azurite consistently with the rbm configs it
//! mounts (which parse as rbm's config), and the systemd unit runs the agent with the
//! environment it reads. No Docker engine exists on the test machines, so none of this
//! is run; `systemd-analyze` checks the unit where it is installed.

use rbm_protocol::{Config, StorageType};
use serde_norway::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

/// The `[[bin]]` names of `agent/Cargo.toml`.
fn agent_bins() -> BTreeSet<String> {
    let mut bins = BTreeSet::new();
    let mut in_bin = false;
    for line in read("agent/Cargo.toml").lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_bin = line == "[[bin]]";
        } else if in_bin {
            if let Some(v) = line.strip_prefix("name = ") {
                bins.insert(v.trim_matches('"').to_string());
            }
        }
    }
    assert!(bins.contains("rbm-agent"), "bins: {bins:?}");
    bins
}

// ---------------------------------------------------------------------------------
// Dockerfile

struct Instr {
    op: String,
    args: String,
}

/// Dockerfile instructions with continuation lines joined and comments dropped.
fn dockerfile() -> Vec<Instr> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in read("Dockerfile").lines() {
        let t = line.trim();
        if cur.is_empty() && (t.is_empty() || t.starts_with('#')) {
            continue;
        }
        if let Some(body) = t.strip_suffix('\\') {
            cur.push_str(body);
            cur.push(' ');
            continue;
        }
        cur.push_str(t);
        let (op, args) = cur.split_once(char::is_whitespace).unwrap_or((&cur, ""));
        out.push(Instr {
            op: op.to_ascii_uppercase(),
            args: args.split_whitespace().collect::<Vec<_>>().join(" "),
        });
        cur.clear();
    }
    assert!(cur.is_empty(), "Dockerfile ends in a continuation");
    out
}

#[test]
fn dockerfile_builds_and_ships_the_declared_binaries_as_non_root() {
    let instrs = dockerfile();
    let bins = agent_bins();
    let known_ops = [
        "ARG",
        "FROM",
        "WORKDIR",
        "COPY",
        "ENV",
        "RUN",
        "LABEL",
        "USER",
        "ENTRYPOINT",
        "CMD",
    ];
    for i in &instrs {
        assert!(known_ops.contains(&i.op.as_str()), "unknown op {}", i.op);
    }

    // ARG defaults resolve the stage images.
    let args: BTreeMap<String, String> = instrs
        .iter()
        .filter(|i| i.op == "ARG")
        .filter_map(|i| i.args.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let resolve = |s: &str| -> String {
        let mut s = s.to_string();
        for (k, v) in &args {
            s = s.replace(&format!("${{{k}}}"), v);
        }
        s
    };

    // Stages: (name, image, instructions).
    let mut stages: Vec<(String, String, Vec<&Instr>)> = Vec::new();
    for i in &instrs {
        if i.op == "FROM" {
            let parts: Vec<&str> = i.args.split(' ').collect();
            let (image, name) = match parts.as_slice() {
                [img, as_kw, name] if as_kw.eq_ignore_ascii_case("as") => (*img, *name),
                [img] => (*img, ""),
                other => panic!("FROM {other:?}"),
            };
            stages.push((name.to_string(), resolve(image), Vec::new()));
        } else if let Some(last) = stages.last_mut() {
            last.2.push(i);
        }
    }
    assert!(stages.len() >= 2, "a multi-stage build");
    let (_, builder_image, builder) = &stages[0];
    assert!(
        builder_image.starts_with("rust:1."),
        "builder: {builder_image}"
    );
    // The builder's toolchain is at least the workspace's rust-version.
    let minor = |v: &str| -> u32 {
        v.split('.')
            .nth(1)
            .and_then(|m| m.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|m| m.parse().ok())
            .unwrap_or_else(|| panic!("no minor version in {v}"))
    };
    let rust_version = read("Cargo.toml")
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .map(|v| v.trim_matches('"').to_string())
        .expect("workspace rust-version");
    assert!(
        minor(builder_image.trim_start_matches("rust:")) >= minor(&rust_version),
        "{builder_image} is older than rust-version {rust_version}"
    );
    let (_, runtime_image, runtime) = stages.last().expect("final stage");
    assert!(
        runtime_image == "debian:bookworm-slim"
            || runtime_image.starts_with("gcr.io/distroless/cc"),
        "runtime: {runtime_image}"
    );
    for (name, image, _) in &stages {
        assert!(
            image.contains(':') && !image.ends_with(":latest"),
            "stage {name}: image {image} is not pinned"
        );
    }

    // Every COPY --from names an earlier stage.
    for (idx, (_, _, body)) in stages.iter().enumerate() {
        for i in body.iter().filter(|i| i.op == "COPY") {
            if let Some(from) = i.args.split(' ').find_map(|a| a.strip_prefix("--from=")) {
                assert!(
                    stages[..idx].iter().any(|(n, _, _)| n == from),
                    "COPY --from={from} names no earlier stage"
                );
            }
        }
    }

    // The build: release, locked, all of rbm-agent's binaries; each one is copied out.
    let build = builder
        .iter()
        .find(|i| i.op == "RUN" && i.args.contains("cargo build"))
        .expect("a cargo build step");
    for flag in ["--release", "--locked", "-p rbm-agent", "--bins"] {
        assert!(build.args.contains(flag), "cargo build without {flag}");
    }
    for bin in &bins {
        assert!(
            build.args.contains(&format!("target/release/{bin}")),
            "{bin} is not taken from the build"
        );
    }

    // The runtime stage: PBM's names link to rbm's; a non-root numeric user; the
    // entrypoint is our binary where it was copied.
    let run_text: String = runtime
        .iter()
        .filter(|i| i.op == "RUN")
        .map(|i| i.args.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    for (pbm, rbm) in [
        ("pbm", "rbm"),
        ("pbm-agent", "rbm-agent"),
        ("pbm-agent-entrypoint", "rbm-agent-entrypoint"),
    ] {
        assert!(bins.contains(rbm), "{rbm} is not a binary of rbm-agent");
        assert!(
            run_text.contains(&format!("ln -s {rbm} /usr/bin/{pbm}")),
            "no {pbm} -> {rbm} link"
        );
    }
    let copy = runtime
        .iter()
        .find(|i| i.op == "COPY" && i.args.starts_with("--from="))
        .expect("binaries copied from the builder");
    assert!(copy.args.ends_with("/usr/bin/"), "COPY {}", copy.args);
    let user = runtime
        .iter()
        .rev()
        .find(|i| i.op == "USER")
        .expect("USER in the final stage");
    let uid = user.args.split(':').next().unwrap_or_default();
    let uid: u32 = uid
        .parse()
        .unwrap_or_else(|_| panic!("USER {} is not numeric", user.args));
    assert_ne!(uid, 0, "runs as root");
    assert!(
        run_text.contains(&format!("useradd --system --uid {uid}")),
        "uid {uid} is not created"
    );
    let entry = runtime
        .iter()
        .rev()
        .find(|i| i.op == "ENTRYPOINT")
        .expect("ENTRYPOINT");
    let entry: Vec<String> = serde_norway::from_str(&entry.args).expect("exec-form ENTRYPOINT");
    assert_eq!(entry, ["/usr/bin/rbm-agent-entrypoint"]);
    assert!(bins.contains("rbm-agent-entrypoint"));
}

/// The image builds with `--locked`: Cargo.lock must already match the manifests.
/// Not `--offline`: metadata resolves every platform's packages, and a host build never
/// downloads the Windows-only ones (e.g. `encode_unicode`), so a fresh machine lacks them.
#[test]
fn lockfile_allows_the_images_locked_build() {
    let out = std::process::Command::new(option_env!("CARGO").unwrap_or("cargo"))
        .args(["metadata", "--locked", "--format-version", "1"])
        .current_dir(root())
        .stdout(std::process::Stdio::null())
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "Cargo.lock is out of date for a --locked build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn dockerignore_keeps_the_workspace_and_drops_build_output() {
    let ignore: Vec<String> = read(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    for must in ["target", ".git"] {
        assert!(ignore.iter().any(|l| l == must), "{must} not ignored");
    }
    // Everything cargo needs to load the workspace stays in the context.
    for needed in [
        "Cargo.toml",
        "Cargo.lock",
        "agent",
        "protocol",
        "storage",
        "tests",
    ] {
        assert!(
            !ignore.iter().any(|l| l.trim_start_matches('/') == needed),
            "{needed} is ignored"
        );
        assert!(root().join(needed).exists(), "{needed} missing");
    }
}

// ---------------------------------------------------------------------------------
// docker-compose.yml

/// docker-compose.yml with its `<<` merge keys applied, as Compose reads it.
fn compose() -> Value {
    let mut v: Value =
        serde_norway::from_str(&read("docker-compose.yml")).expect("docker-compose.yml parses");
    v.apply_merge().expect("merge keys");
    v
}

fn services(c: &Value) -> &serde_norway::Mapping {
    c.get("services")
        .and_then(Value::as_mapping)
        .expect("services")
}

fn svc<'a>(c: &'a Value, name: &str) -> &'a Value {
    services(c)
        .get(name)
        .unwrap_or_else(|| panic!("service {name}"))
}

fn str_list(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Sequence(s)) => s
            .iter()
            .map(|x| match x {
                Value::String(s) => s.clone(),
                other => panic!("not a string: {other:?}"),
            })
            .collect(),
        Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
        None => Vec::new(),
        Some(other) => panic!("not a list: {other:?}"),
    }
}

fn env_of(s: &Value) -> BTreeMap<String, String> {
    match s.get("environment") {
        Some(Value::Mapping(m)) => m
            .iter()
            .map(|(k, v)| {
                let k = k.as_str().expect("env key").to_string();
                let v = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    other => panic!("env {k}: {other:?}"),
                };
                (k, v)
            })
            .collect(),
        None => BTreeMap::new(),
        Some(other) => panic!("environment as a list is not used here: {other:?}"),
    }
}

fn depends_on(s: &Value) -> BTreeMap<String, String> {
    match s.get("depends_on") {
        Some(Value::Mapping(m)) => m
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().expect("service name").to_string(),
                    v.get("condition")
                        .and_then(Value::as_str)
                        .unwrap_or("service_started")
                        .to_string(),
                )
            })
            .collect(),
        None => BTreeMap::new(),
        Some(other) => panic!("depends_on as a list is not used here: {other:?}"),
    }
}

/// `(source, target)` of each volume entry; named volumes have sources without '/'.
fn volumes_of(s: &Value) -> Vec<(String, String)> {
    str_list(s.get("volumes"))
        .into_iter()
        .map(|v| {
            let mut p = v.split(':');
            let src = p.next().unwrap_or_default().to_string();
            let dst = p.next().unwrap_or_else(|| panic!("volume {v}")).to_string();
            (src, dst)
        })
        .collect()
}

/// The repository file behind the bind mount of `target` in service `s`.
fn mounted_file(s: &Value, target: &str) -> String {
    let (src, _) = volumes_of(s)
        .into_iter()
        .find(|(_, d)| d == target)
        .unwrap_or_else(|| panic!("nothing mounted at {target}"));
    let rel = src
        .strip_prefix("./")
        .unwrap_or_else(|| panic!("{src} is not a bind mount"));
    read(rel)
}

const MEMBERS: [&str; 3] = ["mongo1", "mongo2", "mongo3"];
const AGENTS: [(&str, &str); 3] = [
    ("agent1", "mongo1"),
    ("agent2", "mongo2"),
    ("agent3", "mongo3"),
];

#[test]
fn compose_images_are_pinned_and_volumes_declared() {
    let c = compose();
    let declared: BTreeSet<String> = c
        .get("volumes")
        .and_then(Value::as_mapping)
        .expect("top-level volumes")
        .keys()
        .map(|k| k.as_str().expect("volume name").to_string())
        .collect();
    let mut used = BTreeSet::new();
    for (name, s) in services(&c) {
        let name = name.as_str().expect("service name");
        let image = s
            .get("image")
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("{name}: no image"));
        let (_, tag) = image
            .rsplit_once(':')
            .unwrap_or_else(|| panic!("{name}: image {image} has no tag"));
        assert!(
            tag != "latest" && !tag.contains('/'),
            "{name}: image {image} is not pinned"
        );
        if image.starts_with("rbm:") {
            assert!(s.get("build").is_some(), "{name}: rbm image not built here");
        }
        for (src, _) in volumes_of(s) {
            if src.starts_with('.') || src.starts_with('/') {
                assert!(
                    root().join(src.trim_start_matches("./")).is_file(),
                    "{name}: bind mount {src} missing from the repository"
                );
            } else {
                used.insert(src);
            }
        }
        for dep in depends_on(s).keys() {
            assert!(
                services(&c).contains_key(dep.as_str()),
                "{name} depends on unknown {dep}"
            );
        }
    }
    assert_eq!(used, declared, "named volumes used vs declared");
    // The agent image is built from this repository's Dockerfile.
    let build = svc(&c, "agent1").get("build").expect("agent1 build");
    assert_eq!(build.as_str(), Some("."));
    assert!(root().join("Dockerfile").is_file());
}

#[tokio::test]
async fn compose_replica_set_and_agents_agree() {
    let c = compose();
    let mut set_names = BTreeSet::new();
    for m in MEMBERS {
        let s = svc(&c, m);
        let cmd = str_list(s.get("command"));
        assert_eq!(cmd.first().map(String::as_str), Some("mongod"), "{m}");
        let rs = cmd
            .iter()
            .position(|a| a == "--replSet")
            .and_then(|i| cmd.get(i + 1))
            .unwrap_or_else(|| panic!("{m}: no --replSet"));
        set_names.insert(rs.clone());
        assert!(
            cmd.iter().any(|a| a == "--bind_ip_all"),
            "{m}: not reachable"
        );
        assert!(
            s.get("image")
                .and_then(Value::as_str)
                .is_some_and(|i| i.starts_with("mongo:")),
            "{m}: not the official image"
        );
        let port = cmd
            .iter()
            .position(|a| a == "--port")
            .and_then(|i| cmd.get(i + 1))
            .map(String::as_str);
        assert_eq!(port, Some("27017"), "{m}");
        // The keyfile volume is where --keyFile points.
        let key = cmd
            .iter()
            .position(|a| a == "--keyFile")
            .and_then(|i| cmd.get(i + 1))
            .expect("--keyFile");
        assert!(
            volumes_of(s)
                .iter()
                .any(|(_, d)| key.starts_with(d.as_str())),
            "{m}: {key} not mounted"
        );
        assert_eq!(
            s.get("hostname").and_then(Value::as_str),
            Some(m),
            "{m}: hostname"
        );
    }
    assert_eq!(
        set_names.len(),
        1,
        "members in different sets: {set_names:?}"
    );
    let rs = set_names.into_iter().next().expect("set name");

    // The init step initiates that set with those members and creates the user the
    // agents log in as.
    let init = svc(&c, "rs-init");
    let env = env_of(init);
    assert_eq!(env.get("RS_NAME"), Some(&rs));
    assert_eq!(
        env.get("RS_MEMBERS").map(String::as_str),
        Some("mongo1:27017,mongo2:27017,mongo3:27017")
    );
    assert_eq!(
        init.get("network_mode").and_then(Value::as_str),
        Some("service:mongo1"),
        "the localhost exception needs mongo1's network"
    );
    for m in MEMBERS {
        assert_eq!(
            depends_on(init).get(m).map(String::as_str),
            Some("service_healthy"),
            "rs-init waits for {m}"
        );
    }
    let cmd = str_list(init.get("command"));
    let script_path = cmd
        .iter()
        .position(|a| a == "--file")
        .and_then(|i| cmd.get(i + 1))
        .expect("rs-init --file");
    let script = mounted_file(init, script_path);
    for needle in [
        "rs.initiate",
        "env.RS_NAME",
        "env.RS_MEMBERS",
        "env.PBM_USER",
        "env.PBM_PASSWORD",
        "pbmAnyAction",
        "anyAction",
        "clusterMonitor",
        "'backup'",
        "'restore'",
        "'readWrite'",
    ] {
        assert!(script.contains(needle), "init script lacks {needle}");
    }
    let (user, password) = (&env["PBM_USER"], &env["PBM_PASSWORD"]);

    // One agent per member: sidecar mode, a URI naming its own member only (no
    // replicaSet, no directConnection, as PBM's agents take it), the init user.
    for (agent, member) in AGENTS {
        let s = svc(&c, agent);
        let env = env_of(s);
        assert_eq!(
            env.get("PBM_AGENT_SIDECAR").map(String::as_str),
            Some("true")
        );
        let uri = env.get("PBM_MONGODB_URI").expect("PBM_MONGODB_URI");
        let opts = mongodb::options::ClientOptions::parse(uri.as_str())
            .await
            .unwrap_or_else(|e| panic!("{agent}: bad URI: {e}"));
        let hosts: Vec<String> = opts.hosts.iter().map(|h| h.to_string()).collect();
        assert_eq!(hosts, [format!("{member}:27017")], "{agent}");
        assert_eq!(opts.direct_connection, None, "{agent}");
        assert_eq!(opts.repl_set_name, None, "{agent}");
        let cred = opts.credential.expect("credentials");
        assert_eq!(cred.username.as_ref(), Some(user), "{agent}");
        assert_eq!(cred.password.as_ref(), Some(password), "{agent}");
        assert_eq!(cred.source.as_deref(), Some("admin"), "{agent}");
        assert_eq!(
            depends_on(s).get("rs-init").map(String::as_str),
            Some("service_completed_successfully"),
            "{agent} waits for the users"
        );
        assert_eq!(s.get("image").and_then(Value::as_str), Some("rbm:local"));
    }
    // Exactly one agent per member.
    let agent_count = services(&c)
        .values()
        .filter(|s| env_of(s).contains_key("PBM_AGENT_SIDECAR"))
        .count();
    assert_eq!(agent_count, MEMBERS.len());
}

#[test]
fn compose_configs_parse_and_match_minio_and_azurite() {
    let c = compose();

    // MinIO: credentials, port and the bucket the bucket step makes.
    let minio = svc(&c, "minio");
    let menv = env_of(minio);
    let cmd = str_list(minio.get("command"));
    let port = cmd
        .iter()
        .position(|a| a == "--address")
        .and_then(|i| cmd.get(i + 1))
        .and_then(|a| a.rsplit(':').next())
        .unwrap_or("9000")
        .to_string();
    let mb = svc(&c, "minio-bucket");
    assert_eq!(
        depends_on(mb).get("minio").map(String::as_str),
        Some("service_started")
    );
    let mb_cmd = str_list(mb.get("command")).join(" ");
    let alias = format!(
        "mc alias set local http://minio:{port} {} {}",
        menv["MINIO_ROOT_USER"], menv["MINIO_ROOT_PASSWORD"]
    );
    assert!(mb_cmd.contains(&alias), "bucket step: {mb_cmd}");

    let agent = svc(&c, "agent1");
    let conf = Config::from_yaml(&mounted_file(agent, "/etc/rbm/rbm-config.yaml"))
        .expect("the S3 config parses as rbm's config");
    assert_eq!(conf.storage.kind, StorageType::S3);
    let s3 = conf.storage.s3.as_ref().expect("s3 section");
    assert_eq!(
        s3.endpoint_url.as_deref(),
        Some(format!("http://minio:{port}").as_str())
    );
    assert!(
        mb_cmd.contains(&format!("mc mb --ignore-existing local/{}", s3.bucket)),
        "bucket {} is not created: {mb_cmd}",
        s3.bucket
    );
    assert_eq!(
        s3.credentials.access_key_id.expose(),
        menv["MINIO_ROOT_USER"].as_str()
    );
    assert_eq!(
        s3.credentials.secret_access_key.expose(),
        menv["MINIO_ROOT_PASSWORD"].as_str()
    );

    // The config step stores the same file, after the bucket exists.
    let cfg = svc(&c, "rbm-config");
    let cmd = str_list(cfg.get("command"));
    assert_eq!(cmd[..2], ["config", "--file"]);
    assert_eq!(
        mounted_file(cfg, &cmd[2]),
        mounted_file(agent, "/etc/rbm/rbm-config.yaml")
    );
    assert_eq!(str_list(cfg.get("entrypoint")), ["rbm"]);
    assert_eq!(
        depends_on(cfg).get("minio-bucket").map(String::as_str),
        Some("service_completed_successfully")
    );
    assert_eq!(
        env_of(cfg).get("PBM_MONGODB_URI"),
        env_of(agent).get("PBM_MONGODB_URI")
    );

    // Azurite: the endpoint, account and container that the container step makes.
    let az = svc(&c, "azurite");
    let az_cmd = str_list(az.get("command"));
    let blob_port = az_cmd
        .iter()
        .position(|a| a == "--blobPort")
        .and_then(|i| az_cmd.get(i + 1))
        .expect("--blobPort");
    let conf = Config::from_yaml(&mounted_file(agent, "/etc/rbm/rbm-config-azure.yaml"))
        .expect("the Azure config parses as rbm's config");
    assert_eq!(conf.storage.kind, StorageType::Azure);
    let a = conf.storage.azure.as_ref().expect("azure section");
    assert_eq!(
        a.endpoint_url.as_deref(),
        Some(format!("http://azurite:{blob_port}/{}", a.account).as_str())
    );
    let ac = svc(&c, "azurite-container");
    let conn = &env_of(ac)["AZURE_STORAGE_CONNECTION_STRING"];
    assert!(
        conn.contains(&format!("AccountName={};", a.account)),
        "{conn}"
    );
    assert!(
        conn.contains(&format!("AccountKey={};", a.credentials.key.expose())),
        "{conn}"
    );
    assert!(
        conn.contains(&format!(
            "BlobEndpoint=http://azurite:{blob_port}/{};",
            a.account
        )),
        "{conn}"
    );
    let ac_cmd = str_list(ac.get("command")).join(" ");
    assert!(
        ac_cmd.contains(&format!(
            "az storage container create --name {}",
            a.container
        )),
        "{ac_cmd}"
    );
}

// ---------------------------------------------------------------------------------
// systemd

/// `section -> [(key, value)]`, keys repeated as systemd allows.
fn unit(text: &str) -> BTreeMap<String, Vec<(String, String)>> {
    let mut out: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut section = None;
    for (n, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') || t.starts_with(';') {
            continue;
        }
        if let Some(name) = t.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            section = Some(name.to_string());
            out.entry(name.to_string()).or_default();
            continue;
        }
        let (k, v) = t
            .split_once('=')
            .unwrap_or_else(|| panic!("line {}: not key=value: {t}", n + 1));
        let s = section
            .as_ref()
            .unwrap_or_else(|| panic!("line {}: outside a section", n + 1));
        out.get_mut(s)
            .expect("section")
            .push((k.trim().to_string(), v.trim().to_string()));
    }
    out
}

fn get<'a>(
    u: &'a BTreeMap<String, Vec<(String, String)>>,
    sec: &str,
    key: &str,
) -> Option<&'a str> {
    u.get(sec)?
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

const UNIT: &str = "packaging/systemd/rbm-agent.service";
const ENV_FILE: &str = "packaging/systemd/rbm-agent.env";

#[test]
fn systemd_unit_restarts_reads_its_environment_and_is_hardened() {
    let u = unit(&read(UNIT));
    for s in ["Unit", "Service", "Install"] {
        assert!(u.contains_key(s), "no [{s}]");
    }
    assert!(matches!(
        get(&u, "Service", "Restart"),
        Some("on-failure" | "always")
    ));
    assert!(get(&u, "Service", "RestartSec").is_some());
    assert_eq!(get(&u, "Service", "Type"), Some("simple"));
    assert_eq!(get(&u, "Install", "WantedBy"), Some("multi-user.target"));
    let env_file = get(&u, "Service", "EnvironmentFile").expect("EnvironmentFile");
    assert!(env_file.starts_with("/etc/"), "{env_file}");

    let exec = get(&u, "Service", "ExecStart").expect("ExecStart");
    let bin = Path::new(exec.split_whitespace().next().expect("program"));
    assert!(bin.is_absolute(), "{exec}");
    let name = bin.file_name().and_then(|n| n.to_str()).expect("name");
    assert!(agent_bins().contains(name), "{name} is not an rbm binary");
    assert_eq!(name, "rbm-agent");

    let user = get(&u, "Service", "User").expect("User");
    assert_ne!(user, "root");
    for (k, v) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectControlGroups", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("LockPersonality", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("CapabilityBoundingSet", ""),
    ] {
        assert_eq!(get(&u, "Service", k), Some(v), "{k}");
    }
    let families = get(&u, "Service", "RestrictAddressFamilies").expect("address families");
    for f in ["AF_INET", "AF_INET6", "AF_UNIX"] {
        assert!(
            families.contains(f),
            "{f} needed to reach mongod and storage"
        );
    }
    assert!(get(&u, "Service", "SystemCallFilter").is_some());
}

#[test]
fn systemd_env_file_sets_what_the_agent_reads() {
    let agent_src = read("agent/src/bin/rbm-agent.rs");
    let mut keys = BTreeMap::new();
    for line in read(ENV_FILE).lines() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let (k, v) = t.split_once('=').unwrap_or_else(|| panic!("{t}"));
        keys.insert(k.to_string(), v.trim_matches('"').to_string());
    }
    for k in ["PBM_MONGODB_URI", "LOG_LEVEL", "LOG_JSON"] {
        assert!(keys.contains_key(k), "{k} missing from the env file");
        assert!(
            agent_src.contains(&format!("env = \"{k}\"")),
            "rbm-agent does not read {k}"
        );
    }
    let uri = &keys["PBM_MONGODB_URI"];
    assert!(uri.starts_with("mongodb://"), "{uri}");
    assert!(!uri.contains("directConnection"), "{uri}");
    assert!(["D", "I", "W", "E", "F"].contains(&keys["LOG_LEVEL"].as_str()));
}

/// `systemd-analyze verify` and the offline security score, where systemd-analyze
/// exists. Verify insists the ExecStart program exists, so a copy of the unit runs
/// /bin/true instead; every other line is checked as written.
#[test]
fn systemd_analyze_accepts_the_unit() {
    let Ok(out) = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
    else {
        eprintln!("systemd-analyze is not installed: only the parsed checks ran");
        return;
    };
    assert!(out.status.success());
    let dir = tempfile::tempdir().expect("dir");
    let text: String = read(UNIT)
        .lines()
        .map(|l| {
            if l.starts_with("ExecStart=") {
                "ExecStart=/bin/true".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let path = dir.path().join("rbm-agent.service");
    std::fs::write(&path, text).expect("write unit");

    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("run systemd-analyze verify");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    // verify exits 0 on unknown keys; any message is a finding.
    assert!(
        out.status.success() && stderr.trim().is_empty() && stdout.trim().is_empty(),
        "systemd-analyze verify: {}\n{stdout}{stderr}",
        out.status
    );

    let out = std::process::Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&path)
        .output()
        .expect("run systemd-analyze security");
    let text = String::from_utf8_lossy(&out.stdout);
    let score: f64 = text
        .lines()
        .find_map(|l| l.split("rbm-agent.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{text}"));
    assert!(score <= 2.0, "exposure {score}:\n{text}");
}
