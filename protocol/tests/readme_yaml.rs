//! Every YAML block of the README is valid YAML, and every one with a `storage:`
//! section is a config `rbm config --file` accepts: users copy them verbatim.

use rbm_protocol::config::{Config, StorageType};

fn yaml_blocks(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut cur: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        match &mut cur {
            None if line.trim_start() == "```yaml" => cur = Some((i + 1, String::new())),
            None => {}
            Some(_) if line.trim_start() == "```" => out.extend(cur.take()),
            Some((_, body)) => {
                body.push_str(line);
                body.push('\n');
            }
        }
    }
    out
}

#[test]
fn readme_configs_parse_as_rbm_config() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
    let text = std::fs::read_to_string(path).expect("README.md");
    let blocks = yaml_blocks(&text);
    let mut kinds = Vec::new();
    for (line, body) in &blocks {
        let v: serde_norway::Value = serde_norway::from_str(body)
            .unwrap_or_else(|e| panic!("README.md:{line}: not YAML: {e}\n{body}"));
        if v.get("storage").is_none() {
            continue;
        }
        let c = Config::from_yaml(body)
            .unwrap_or_else(|e| panic!("README.md:{line}: not an rbm config: {e}\n{body}"));
        c.storage
            .validate()
            .unwrap_or_else(|e| panic!("README.md:{line}: storage: {e}\n{body}"));
        kinds.push(c.storage.kind);
    }
    for k in [StorageType::S3, StorageType::Azure, StorageType::Filesystem] {
        assert!(kinds.contains(&k), "the README has no {k} config example");
    }
}
