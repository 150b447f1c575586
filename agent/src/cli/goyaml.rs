//! Text output that PBM renders with Go's `gopkg.in/yaml.v2` (`describe-backup`).
//! Written by hand because the Rust YAML emitters quote differently (single quotes,
//! timestamps left plain), and scripts compare these lines with PBM's.

use serde_norway::{Mapping, Value};

/// Renders a value (maps, sequences, scalars; serialise with `serde_norway::to_value`,
/// which keeps field order) as yaml.v2 `Marshal` does, with
/// the keys in `skip` left out at any depth (PBM's `yaml:"-"` fields).
pub fn to_yaml(v: &Value, skip: &[&str]) -> String {
    let mut out = String::new();
    if let Value::Mapping(m) = v {
        write_map(&mut out, m, 0, skip);
    } else {
        out.push_str(&scalar(v));
        out.push('\n');
    }
    out
}

fn write_map(out: &mut String, m: &Mapping, indent: usize, skip: &[&str]) {
    let mut first = true;
    for (k, v) in m {
        let k = match k {
            Value::String(s) => s.clone(),
            other => scalar(other),
        };
        if skip.contains(&k.as_str()) {
            continue;
        }
        // The first key of a map inside a list shares the "- " line.
        if !(first && indent > 0 && out.ends_with("- ")) {
            out.push_str(&" ".repeat(indent));
        }
        first = false;
        out.push_str(&string(&k));
        out.push(':');
        match v {
            Value::Mapping(inner) if !inner.is_empty() => {
                out.push('\n');
                write_map(out, inner, indent + 2, skip);
            }
            Value::Sequence(items) if !items.is_empty() => {
                out.push('\n');
                for item in items {
                    out.push_str(&" ".repeat(indent));
                    out.push_str("- ");
                    match item {
                        Value::Mapping(inner) if !inner.is_empty() => {
                            write_map(out, inner, indent + 2, skip)
                        }
                        other => {
                            out.push_str(&scalar(other));
                            out.push('\n');
                        }
                    }
                }
            }
            Value::Mapping(_) => out.push_str(" {}\n"),
            Value::Sequence(_) => out.push_str(" []\n"),
            other => {
                out.push(' ');
                out.push_str(&scalar(other));
                out.push('\n');
            }
        }
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string(s),
        Value::Tagged(t) => scalar(&t.value),
        Value::Sequence(_) | Value::Mapping(_) => String::new(),
    }
}

/// A string, double-quoted when yaml.v2 would: when it would read back as another
/// type (bool, null, number, timestamp) or needs quoting to parse at all.
fn string(s: &str) -> String {
    if needs_quotes(s) {
        let mut q = String::with_capacity(s.len() + 2);
        q.push('"');
        for c in s.chars() {
            match c {
                '"' => q.push_str("\\\""),
                '\\' => q.push_str("\\\\"),
                '\n' => q.push_str("\\n"),
                '\t' => q.push_str("\\t"),
                c => q.push(c),
            }
        }
        q.push('"');
        q
    } else {
        s.to_string()
    }
}

fn needs_quotes(s: &str) -> bool {
    const SPECIAL_BOOL_NULL: &[&str] = &[
        "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "true", "True", "TRUE", "false",
        "False", "FALSE", "on", "On", "ON", "off", "Off", "OFF", "~", "null", "Null", "NULL",
        ".inf", ".Inf", ".INF", "-.inf", "+.inf", ".nan", ".NaN", ".NAN",
    ];
    let Some(first) = s.chars().next() else {
        return true;
    };
    SPECIAL_BOOL_NULL.contains(&s)
        || s.parse::<f64>().is_ok()
        || looks_like_timestamp(s)
        || "-?:,[]{}#&*!|>'\"%@`".contains(first)
        || first.is_whitespace()
        || s.ends_with(char::is_whitespace)
        || s.contains(": ")
        || s.contains(" #")
        || s.ends_with(':')
        || s.contains(['\n', '\t'])
}

/// yaml.v2 resolves `YYYY-M-D...` as a timestamp.
fn looks_like_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 8 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-' && b[5].is_ascii_digit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_go_yaml_v2() {
        let v: Value = serde_norway::from_str(
            r#"{"name": "2026-11-26T11:40:53Z", "opid": "6b081ac530932961ee3cc9eb", "size": 5,
                "sel_user_and_roles": false, "mongodb_version": "8.2.11", "fcv": "8.2",
                "size_h": "2.4 MiB", "empty": [],
                "replsets": [{"name": "secantus", "node": "127.0.0.1:27201",
                              "size_uncompressed_h": "", "size": 1}]}"#,
        )
        .unwrap();
        assert_eq!(
            to_yaml(&v, &["size"]),
            "name: \"2026-11-26T11:40:53Z\"\nopid: 6b081ac530932961ee3cc9eb\n\
             sel_user_and_roles: false\nmongodb_version: 8.2.11\nfcv: \"8.2\"\nsize_h: 2.4 MiB\n\
             empty: []\nreplsets:\n- name: secantus\n  node: 127.0.0.1:27201\n  size_uncompressed_h: \"\"\n"
        );
    }
}
