//! Canonical Extended JSON exactly as PBM's Go driver writes it
//! (`bson.MarshalExtJSON(v, canonical=true, escapeHTML=true)`), in document order, and
//! Go's `json.Indent`: `metadata.json` is compared byte for byte by nothing, but it is
//! read by PBM's restore and by humans, so it looks the way PBM's does.
//!
//! Written out here because `bson`'s own ExtJSON goes through `serde_json::Value`, whose
//! map sorts keys: compound index keys (`{b: 1, a: -1}`) must keep their order.

use base64::Engine;
use bson::{Bson, Document};
use std::fmt::Write;

/// Compact canonical ExtJSON of a document.
pub fn to_canonical(doc: &Document) -> String {
    let mut out = String::new();
    write_doc(&mut out, doc);
    out
}

fn write_doc(out: &mut String, doc: &Document) {
    out.push('{');
    for (i, (k, v)) in doc.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(out, k);
        out.push(':');
        write_value(out, v);
    }
    out.push('}');
}

fn single(out: &mut String, key: &str, value: &str) {
    out.push_str("{\"$");
    out.push_str(key);
    out.push_str("\":");
    write_str(out, value);
    out.push('}');
}

fn write_value(out: &mut String, v: &Bson) {
    match v {
        Bson::Double(f) => single(out, "numberDouble", &format_double(*f)),
        Bson::String(s) => write_str(out, s),
        Bson::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, x);
            }
            out.push(']');
        }
        Bson::Document(d) => write_doc(out, d),
        Bson::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
        Bson::Null => out.push_str("null"),
        Bson::RegularExpression(r) => {
            out.push_str("{\"$regularExpression\":{\"pattern\":");
            write_str(out, r.pattern.as_str());
            out.push_str(",\"options\":");
            write_str(out, r.options.as_str());
            out.push_str("}}");
        }
        Bson::JavaScriptCode(c) => single(out, "code", c),
        Bson::JavaScriptCodeWithScope(c) => {
            out.push_str("{\"$code\":");
            write_str(out, &c.code);
            out.push_str(",\"$scope\":");
            write_doc(out, &c.scope);
            out.push('}');
        }
        Bson::Int32(i) => single(out, "numberInt", &i.to_string()),
        Bson::Int64(i) => single(out, "numberLong", &i.to_string()),
        Bson::Timestamp(t) => {
            let _ = write!(
                out,
                "{{\"$timestamp\":{{\"t\":{},\"i\":{}}}}}",
                t.time, t.increment
            );
        }
        Bson::Binary(b) => {
            let sub: u8 = b.subtype.into();
            let _ = write!(
                out,
                "{{\"$binary\":{{\"base64\":\"{}\",\"subType\":\"{:02x}\"}}}}",
                base64::engine::general_purpose::STANDARD.encode(&b.bytes),
                sub
            );
        }
        Bson::ObjectId(o) => single(out, "oid", &o.to_hex()),
        Bson::DateTime(d) => {
            let _ = write!(
                out,
                "{{\"$date\":{{\"$numberLong\":\"{}\"}}}}",
                d.timestamp_millis()
            );
        }
        Bson::Symbol(s) => single(out, "symbol", s),
        Bson::Decimal128(d) => single(out, "numberDecimal", &d.to_string()),
        Bson::Undefined => out.push_str("{\"$undefined\":true}"),
        Bson::MaxKey => out.push_str("{\"$maxKey\":1}"),
        Bson::MinKey => out.push_str("{\"$minKey\":1}"),
        Bson::DbPointer(_) => {
            // bson keeps the parts private: read them back from the wire form
            // (element type 0x0C: string namespace, then 12 bytes of ObjectId).
            let (ns, oid) = db_pointer_parts(v).unwrap_or_default();
            out.push_str("{\"$dbPointer\":{\"$ref\":");
            write_str(out, &ns);
            out.push_str(",\"$id\":");
            single(out, "oid", &oid);
            out.push_str("}}");
        }
    }
}

fn db_pointer_parts(v: &Bson) -> Option<(String, String)> {
    let mut d = Document::new();
    d.insert("x", v.clone());
    let bytes = bson::serialize_to_vec(&d).ok()?;
    // 4 length bytes, type byte, "x\0", then the string's i32 length.
    let body = bytes.get(7..)?;
    let n = i32::from_le_bytes(body.get(..4)?.try_into().ok()?) as usize;
    let ns = std::str::from_utf8(body.get(4..4 + n - 1)?)
        .ok()?
        .to_string();
    let oid: String = body
        .get(4 + n..4 + n + 12)?
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Some((ns, oid))
}

/// Go's `strconv.FormatFloat(f, 'G', -1, 64)` plus the driver's `.0` for integers.
pub fn format_double(f: f64) -> String {
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if f.is_nan() {
        return "NaN".into();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    // Rust's shortest round-trip digits, in scientific form: "-1.2345e6".
    let sci = format!("{f:e}");
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let neg = mant.starts_with('-');
    let digits: String = mant.chars().filter(char::is_ascii_digit).collect();
    let mut s = String::new();
    if neg {
        s.push('-');
    }
    // Go's %G at shortest precision takes the exponent form when exp < -4 || exp >= 6.
    let nd = digits.len() as i32;
    let eprec = 6;
    if exp < -4 || exp >= eprec {
        s.push_str(&digits[..1]);
        if nd > 1 {
            s.push('.');
            s.push_str(&digits[1..]);
        }
        s.push('E');
        s.push(if exp < 0 { '-' } else { '+' });
        let _ = write!(s, "{:02}", exp.abs());
        return s;
    }
    if exp < 0 {
        s.push_str("0.");
        for _ in 0..(-exp - 1) {
            s.push('0');
        }
        s.push_str(&digits);
    } else {
        let int_len = (exp + 1) as usize;
        if digits.len() <= int_len {
            s.push_str(&digits);
            for _ in digits.len()..int_len {
                s.push('0');
            }
            s.push_str(".0");
        } else {
            s.push_str(&digits[..int_len]);
            s.push('.');
            s.push_str(&digits[int_len..]);
        }
    }
    s
}

fn write_str(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{0}'..='\u{1f}' => {
                let b = c as u8;
                out.push_str("\\u00");
                out.push(HEX[(b >> 4) as usize] as char);
                out.push(HEX[(b & 0xf) as usize] as char);
            }
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A JSON string literal with Go's escaping (for values built by hand).
pub fn quote(s: &str) -> String {
    let mut out = String::new();
    write_str(&mut out, s);
    out
}

/// Go's `json.Indent(dst, src, "", indent)` over compact JSON.
pub fn indent(compact: &str, indent: &str) -> String {
    let mut out = String::with_capacity(compact.len() * 2);
    let mut depth = 0usize;
    let mut in_str = false;
    let mut escaped = false;
    let mut need_indent = false;
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        for _ in 0..depth {
            out.push_str(indent);
        }
    };
    for c in compact.chars() {
        if in_str {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_str = false;
            }
            continue;
        }
        if need_indent && c != ']' && c != '}' {
            need_indent = false;
            depth += 1;
            newline(&mut out, depth);
        }
        match c {
            '"' => {
                in_str = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                need_indent = true;
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            '}' | ']' => {
                if need_indent {
                    // An empty object or array stays `{}` / `[]`.
                    need_indent = false;
                } else {
                    depth = depth.saturating_sub(1);
                    newline(&mut out, depth);
                }
                out.push(c);
            }
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    #[test]
    fn doubles_as_go() {
        for (f, s) in [
            (1.0, "1.0"),
            (1.5, "1.5"),
            (100000.0, "100000.0"),
            (1000000.0, "1E+06"),
            (1234567.0, "1.234567E+06"),
            (0.0001, "0.0001"),
            (0.00001, "1E-05"),
            (-2.25, "-2.25"),
            (12345678.5, "1.23456785E+07"),
            (1e21, "1E+21"),
        ] {
            assert_eq!(format_double(f), s, "{f}");
        }
    }

    #[test]
    fn canonical_in_order_and_indented() {
        let d = doc! {"key": {"b": 1, "a": -1_i64}, "s": "<a&b>\n", "e": [], "o": {}};
        let c = to_canonical(&d);
        assert_eq!(
            c,
            r#"{"key":{"b":{"$numberInt":"1"},"a":{"$numberLong":"-1"}},"s":"\u003ca\u0026b\u003e\n","e":[],"o":{}}"#
        );
        assert_eq!(
            indent(&c, "  "),
            "{\n  \"key\": {\n    \"b\": {\n      \"$numberInt\": \"1\"\n    },\n    \"a\": {\n      \"$numberLong\": \"-1\"\n    }\n  },\n  \"s\": \"\\u003ca\\u0026b\\u003e\\n\",\n  \"e\": [],\n  \"o\": {}\n}"
        );
    }
}
