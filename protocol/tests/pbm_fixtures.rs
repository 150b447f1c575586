//! Round trips on documents written by the real PBM (2.15 and 1.6), read in place
//! from `shared/fixtures` (override with `RBM_FIXTURES`).

use bson::{Bson, Document};
use rbm_protocol::command::CommandDoc;
use rbm_protocol::config::Config;
use rbm_protocol::lock::{LockData, OpLogHeader};
use rbm_protocol::meta::{
    AgentStat, ArchiveMetaV2, BackupDescription, BackupMeta, CollectionCrc, LogEntry,
    NamespaceType, PitrChunk, PitrMeta, RestoreMeta,
};
use rbm_protocol::names;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::io::Read;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    match std::env::var_os("RBM_FIXTURES") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures"),
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
    for e in entries {
        let p = e.expect("dir entry").path();
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn files(filter: impl Fn(&Path) -> bool) -> Vec<PathBuf> {
    let mut all = Vec::new();
    walk(&fixtures(), &mut all);
    all.retain(|p| filter(p));
    all.sort();
    all
}

fn name_of(p: &Path) -> &str {
    p.file_name()
        .and_then(|n| n.to_str())
        .expect("utf-8 file name")
}

/// The first place two JSON values differ, as a path.
fn json_diff(path: &str, a: &serde_json::Value, b: &serde_json::Value) -> Option<String> {
    use serde_json::Value::*;
    match (a, b) {
        (Object(x), Object(y)) => {
            for k in x.keys().chain(y.keys()) {
                let p = format!("{path}.{k}");
                match (x.get(k), y.get(k)) {
                    (Some(u), Some(v)) => {
                        if let Some(d) = json_diff(&p, u, v) {
                            return Some(d);
                        }
                    }
                    (u, v) => return Some(format!("{p}: {u:?} vs {v:?}")),
                }
            }
            None
        }
        (Array(x), Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (u, v))| json_diff(&format!("{path}[{i}]"), u, v)),
        _ if a == b => None,
        _ => Some(format!("{path}: {a} vs {b}")),
    }
}

/// The first place two BSON documents differ (type included), as a path.
fn bson_diff(path: &str, a: &Bson, b: &Bson) -> Option<String> {
    match (a, b) {
        (Bson::Document(x), Bson::Document(y)) => {
            for k in x.keys().chain(y.keys()) {
                let p = format!("{path}.{k}");
                match (x.get(k), y.get(k)) {
                    (Some(u), Some(v)) => {
                        if let Some(d) = bson_diff(&p, u, v) {
                            return Some(d);
                        }
                    }
                    (u, v) => return Some(format!("{p}: {u:?} vs {v:?}")),
                }
            }
            let (kx, ky): (Vec<_>, Vec<_>) = (x.keys().collect(), y.keys().collect());
            (kx != ky).then(|| format!("{path}: key order {kx:?} vs {ky:?}"))
        }
        (Bson::Array(x), Bson::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (u, v))| bson_diff(&format!("{path}[{i}]"), u, v)),
        _ if a == b => None,
        _ => Some(format!("{path}: {a:?} vs {b:?}")),
    }
}

fn decompress(p: &Path) -> Vec<u8> {
    let f = std::fs::File::open(p).unwrap_or_else(|e| panic!("open {}: {e}", p.display()));
    let mut out = Vec::new();
    let name = name_of(p);
    let res = if name.ends_with(".s2") {
        minlz::Reader::new(f).read_to_end(&mut out)
    } else if name.ends_with(".zst") {
        zstd::stream::read::Decoder::new(f).and_then(|mut d| d.read_to_end(&mut out))
    } else {
        std::io::BufReader::new(f).read_to_end(&mut out)
    };
    res.unwrap_or_else(|e| panic!("decompress {}: {e}", p.display()));
    out
}

/// Splits concatenated BSON documents.
fn documents(p: &Path, bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let len = rest
            .get(..4)
            .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .unwrap_or_else(|| panic!("{}: truncated length", p.display()));
        assert!(
            len >= 5 && len <= rest.len(),
            "{}: bad document length {len}",
            p.display()
        );
        out.push(rest[..len].to_vec());
        rest = &rest[len..];
    }
    out
}

#[test]
fn backup_meta_json_round_trips() {
    let metas = files(|p| name_of(p).ends_with(".pbm.json"));
    assert!(
        metas.len() >= 3,
        "expected the 2.15 and legacy metas, found {metas:?}"
    );
    for p in metas {
        let text = std::fs::read_to_string(&p).expect("read meta");
        let meta =
            BackupMeta::from_pbm_json(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let original: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        let ours = meta.to_json_value().expect("to json");
        if let Some(d) = json_diff("", &original, &ours) {
            panic!("{}: re-serialized meta differs at {d}", p.display());
        }
        // PBM 2.15 files are untouched Go output: rbm writes the same bytes.
        if p.to_string_lossy().contains("pbm-2.15") {
            assert_eq!(
                meta.to_pbm_json().expect("json"),
                text,
                "{}: bytes differ",
                p.display()
            );
        }
        // Its BSON form reads back to the same meta.
        let doc = bson::serialize_to_document(&meta).expect("bson");
        let back: BackupMeta = bson::deserialize_from_document(doc).expect("bson back");
        assert_eq!(back, meta, "{}: BSON round trip", p.display());
        // Every replica set's objects are named as PBM names them.
        for rs in &meta.replsets {
            let bcp = &meta.name;
            let (dump, oplog) = if meta.pbm_version.starts_with("1.") {
                let ext =
                    names::suffix_for_compression(&meta.compression).expect("known compression");
                (
                    names::legacy_dump_name(bcp, &rs.name, ext),
                    names::legacy_oplog_name(bcp, &rs.name, ext),
                )
            } else {
                (
                    names::metadata_json(bcp, &rs.name),
                    names::backup_oplog_dir(bcp, &rs.name),
                )
            };
            assert_eq!(
                rs.dump_name,
                dump,
                "{}: replsets[{}].backup_name",
                p.display(),
                rs.name
            );
            assert_eq!(
                rs.oplog_name,
                oplog,
                "{}: replsets[{}].oplog_name",
                p.display(),
                rs.name
            );
        }
    }
}

#[test]
fn describe_backup_output_round_trips() {
    let descs = files(|p| name_of(p).starts_with("describe-") && name_of(p).ends_with(".json"));
    assert!(!descs.is_empty(), "no describe-*.json fixtures");
    for p in descs {
        let text = std::fs::read_to_string(&p).expect("read");
        let d: BackupDescription =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let original: serde_json::Value = serde_json::from_str(&text).expect("json");
        let ours = serde_json::to_value(&d).expect("to json");
        if let Some(diff) = json_diff("", &original, &ours) {
            panic!("{}: differs at {diff}", p.display());
        }
        // It describes the meta of the same name.
        let meta_path = fixtures()
            .join("pbm-2.15/storage")
            .join(names::backup_meta_file(&d.name));
        let meta = BackupMeta::from_pbm_json(&std::fs::read_to_string(&meta_path).expect("meta"))
            .expect("meta");
        assert_eq!(d.opid, meta.opid, "{}: opid", p.display());
        assert_eq!(
            d.last_write_ts,
            i64::from(meta.last_write_ts.time),
            "{}: last_write_ts",
            p.display()
        );
        assert_eq!(
            d.last_write_time,
            names::backup_name(d.last_write_ts),
            "{}: last_write_time",
            p.display()
        );
        assert_eq!(Some(d.size), meta.size, "{}: size", p.display());
    }
}

#[test]
fn archive_meta_round_trips_and_checksums_match() {
    let metas = files(|p| name_of(p) == names::META_FILE);
    assert!(metas.len() >= 2, "no meta.pbm fixtures");
    for p in metas {
        let bytes = std::fs::read(&p).expect("read");
        let meta = ArchiveMetaV2::from_bson_bytes(&bytes)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let back = meta.to_bson_bytes().expect("serialize");
        if back != bytes {
            let a = Bson::Document(Document::from_reader(bytes.as_slice()).expect("doc"));
            let b = Bson::Document(Document::from_reader(back.as_slice()).expect("doc"));
            panic!(
                "{}: bytes differ; first difference {:?}",
                p.display(),
                bson_diff("", &a, &b)
            );
        }
        // crc and size describe the collection file as PBM computed them.
        let dir = p.parent().expect("rs dir");
        let bcp = BackupMeta::from_pbm_json(
            &std::fs::read_to_string(
                dir.parent()
                    .and_then(|b| b.parent())
                    .expect("storage")
                    .join(names::backup_meta_file(name_of(
                        dir.parent().expect("bcp dir"),
                    ))),
            )
            .expect("backup meta"),
        )
        .expect("backup meta");
        let ext = names::suffix_for_compression(&bcp.compression).expect("known compression");
        for ns in &meta.namespaces {
            let data = dir.join(format!("{}.{}{ext}", ns.db, ns.name));
            if ns.kind == NamespaceType::View || ns.size == 0 {
                assert!(
                    !data.exists(),
                    "{}: {} has no documents but a file",
                    p.display(),
                    ns.ns()
                );
                continue;
            }
            let raw = decompress(&data);
            let mut crc = CollectionCrc::new();
            crc.update(&raw);
            assert_eq!(
                raw.len() as i64,
                ns.size,
                "{}: {} size",
                p.display(),
                ns.ns()
            );
            assert_eq!(crc.finish(), ns.crc, "{}: {} crc", p.display(), ns.ns());
        }
    }
}

fn round_trip<T: DeserializeOwned + Serialize>(p: &Path, i: usize, raw: &[u8]) -> Option<String> {
    let doc = Document::from_reader(raw).unwrap_or_else(|e| panic!("{} doc {i}: {e}", p.display()));
    let typed: T = bson::deserialize_from_slice(raw)
        .unwrap_or_else(|e| panic!("{} doc {i}: {e}\n{doc}", p.display()));
    let back = bson::serialize_to_document(&typed).expect("serialize");
    let ours = bson::serialize_to_vec(&back).expect("bytes");
    if ours == raw {
        return None;
    }
    match bson_diff("", &Bson::Document(doc), &Bson::Document(back)) {
        Some(d) if d.contains("key order") => Some(d),
        Some(d) => panic!(
            "{} doc {i}: re-serialized document differs at {d}",
            p.display()
        ),
        None => panic!(
            "{} doc {i}: bytes differ but documents are equal",
            p.display()
        ),
    }
}

#[test]
fn control_collections_round_trip() {
    let dumps = files(|p| name_of(p).starts_with("admin.pbm"));
    assert!(
        dumps.len() >= 18,
        "expected the control collections of both 2.15 backups, got {dumps:?}"
    );
    let mut checked = 0;
    for p in dumps {
        let name = name_of(&p);
        let coll = name
            .trim_start_matches("admin.")
            .split('.')
            .next()
            .expect("collection");
        let bytes = decompress(&p);
        for (i, raw) in documents(&p, &bytes).iter().enumerate() {
            let reordered = match coll {
                "pbmAgents" => round_trip::<AgentStat>(&p, i, raw),
                "pbmBackups" => round_trip::<BackupMeta>(&p, i, raw),
                "pbmCmd" => round_trip::<CommandDoc>(&p, i, raw),
                "pbmConfig" => round_trip::<Config>(&p, i, raw),
                "pbmLock" | "pbmLockOp" => round_trip::<LockData>(&p, i, raw),
                "pbmLog" => round_trip::<LogEntry>(&p, i, raw),
                "pbmOpLog" => round_trip::<OpLogHeader>(&p, i, raw),
                "pbmPITRChunks" => round_trip::<PitrChunk>(&p, i, raw),
                "pbmPITR" => round_trip::<PitrMeta>(&p, i, raw),
                "pbmRestores" => round_trip::<RestoreMeta>(&p, i, raw),
                // Copies of admin.system.users/roles: server documents, not PBM's.
                "pbmRUsers" | "pbmRRoles" => continue,
                other => panic!("{}: unexpected control collection {other}", p.display()),
            };
            // PBM updates backup metas with $set, which appends fields PBM's struct
            // declares earlier (`error`); rbm writes struct order. Same document,
            // and the only order difference the fixtures show.
            if let Some(d) = reordered {
                assert_eq!(coll, "pbmBackups", "{} doc {i}: {d}", p.display());
            }
            checked += 1;
        }
    }
    assert!(checked > 20, "only {checked} documents checked");
}

#[test]
fn pbm_config_output_matches_pbm() {
    let p = fixtures().join("pbm-2.15/storage/2026-11-26T11:40:53Z/secantus/admin.pbmConfig.s2");
    let bytes = decompress(&p);
    let docs = documents(&p, &bytes);
    let mut c: Config = bson::deserialize_from_slice(&docs[0]).expect("config");
    // What the fixture run did before `pbm config` printed cli/pbm-config.txt.
    c.set("pitr.enabled", "true").expect("set");
    c.set("pitr.oplogSpanMin", "0.5").expect("set");
    c.set("pitr.enabled", "false").expect("set");
    let want = std::fs::read_to_string(fixtures().join("pbm-2.15/cli/pbm-config.txt"))
        .expect("pbm-config.txt");
    assert_eq!(c.to_masked_yaml().expect("yaml"), want);
}

#[test]
fn storage_object_names_parse() {
    let chunks = files(|p| p.to_string_lossy().contains("/pbmPitr/"));
    assert!(chunks.len() >= 7, "no PITR chunks found");
    for p in chunks {
        let s = p.to_string_lossy();
        let rel = &s[s.find("pbmPitr/").expect("prefix")..];
        let c = names::parse_pitr_chunk_path(rel).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.path(), rel, "{rel}: re-formatted name");
        assert!(c.start < c.end, "{rel}: start < end");
        // The pbmPITRChunks document PBM would index for it.
        let doc = PitrChunk {
            id: None,
            rs: c.rs.clone(),
            file_name: c.path(),
            compression: names::compression_for_suffix(&c.ext)
                .expect("known")
                .to_string(),
            start_ts: c.start,
            end_ts: c.end,
            size: 1,
        };
        let back: PitrChunk =
            bson::deserialize_from_document(bson::serialize_to_document(&doc).expect("ser"))
                .expect("de");
        assert_eq!(back, doc, "{rel}");
    }
    let slices = files(|p| p.parent().is_some_and(|d| name_of(d) == "oplog"));
    assert!(slices.len() >= 2, "no backup oplog slices found");
    for p in slices {
        let name = name_of(&p);
        let (start, end, ext) =
            names::parse_backup_oplog_chunk_name(name).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(names::backup_oplog_chunk_name(start, end, ext), name);
    }
    let legacy = files(|p| {
        p.parent().is_some_and(|d| name_of(d) == "pbm_disttxn_50") && name_of(p).contains("Z_")
    });
    assert_eq!(
        legacy.len(),
        6,
        "legacy dump and oplog objects of cfg, rs1, rs2"
    );
    for p in legacy {
        let l = names::parse_legacy_name(name_of(&p)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(l.backup, "2022-02-07T14:05:59Z", "{}", p.display());
    }
}

#[test]
fn status_and_list_output_round_trip() {
    use rbm_protocol::cli::{ListOutput, StatusOutput};
    for (file, parse) in [
        (
            "pbm-list.json",
            (|t: &str| {
                serde_json::from_str::<ListOutput>(t).and_then(|v| serde_json::to_string(&v))
            }) as fn(&str) -> serde_json::Result<String>,
        ),
        ("pbm-status.json", |t: &str| {
            serde_json::from_str::<StatusOutput>(t).and_then(|v| serde_json::to_string(&v))
        }),
    ] {
        let p = fixtures().join("pbm-2.15/cli").join(file);
        let text = std::fs::read_to_string(&p).expect("read");
        let ours = parse(text.trim_end()).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert_eq!(
            ours,
            text.trim_end(),
            "{}: re-serialized output differs",
            p.display()
        );
    }
}

/// The collections PBM created on the fixture server, as recorded in the backup's
/// own meta.pbm, match rbm's creation specs.
#[test]
fn control_collection_specs_match_what_pbm_created() {
    use rbm_protocol::defs::COLLECTION_SPECS;
    let p = fixtures().join("pbm-2.15/storage/2026-11-26T11:40:53Z/secantus/meta.pbm");
    let meta = ArchiveMetaV2::from_bson_bytes(&std::fs::read(&p).expect("read")).expect("meta.pbm");
    let mut seen = 0;
    for ns in meta.namespaces.iter().filter(|n| n.db == "admin") {
        let Some(spec) = COLLECTION_SPECS.iter().find(|s| s.name == ns.name) else {
            continue;
        };
        seen += 1;
        let capped = ns.options.get_bool("capped").unwrap_or(false);
        assert_eq!(
            capped,
            spec.capped_size.is_some(),
            "{}: admin.{} capped",
            p.display(),
            ns.name
        );
        if let Some(size) = spec.capped_size {
            let got = ns
                .options
                .get("size")
                .and_then(|b| b.as_i64().or(b.as_i32().map(i64::from)));
            assert_eq!(
                got,
                Some(size as i64),
                "{}: admin.{} options.size",
                p.display(),
                ns.name
            );
        }
        let theirs: Vec<&Document> = ns
            .indexes
            .iter()
            .filter(|i| i.get_str("name").ok() != Some("_id_"))
            .collect();
        assert_eq!(
            theirs.len(),
            spec.indexes.len(),
            "{}: admin.{} index count",
            p.display(),
            ns.name
        );
        // The server lists indexes in its own order: match them by name.
        for want in spec.indexes {
            let want = want.create_document();
            let name = want.get_str("name").expect("name");
            let idx = theirs
                .iter()
                .find(|i| i.get_str("name").ok() == Some(name))
                .unwrap_or_else(|| {
                    panic!("{}: admin.{} has no index {name}", p.display(), ns.name)
                });
            let field = |d: &Document, k: &str| d.get(k).cloned();
            for k in ["name", "unique", "sparse"] {
                assert_eq!(
                    field(idx, k),
                    field(&want, k),
                    "{}: admin.{} index {k}",
                    p.display(),
                    ns.name
                );
            }
            let keys = |d: &Document| -> Vec<(String, i64)> {
                d.get_document("key")
                    .expect("key")
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            v.as_i64()
                                .or(v.as_i32().map(i64::from))
                                .expect("numeric key"),
                        )
                    })
                    .collect()
            };
            assert_eq!(
                keys(idx),
                keys(&want),
                "{}: admin.{} index key",
                p.display(),
                ns.name
            );
        }
    }
    assert!(
        seen >= 8,
        "only {seen} control collections found in {}",
        p.display()
    );
}
