//! PBM's JSON form of its BSON documents, as Go's `encoding/json` writes them
//! (`<bcp>.pbm.json`, `pbm ... -o json`).
//!
//! PBM keeps one Go struct per document and marshals it either to BSON (control
//! collections) or to JSON (storage, CLI). The two differ in ways serde cannot tell
//! apart by itself, because bson's own `Document` serializer reports itself as human
//! readable just like serde_json:
//! - `primitive.Timestamp` is a BSON timestamp but the JSON object `{"T": t, "I": i}`;
//! - Go writes integral floats without a fraction (`5018`, not `5018.0`);
//! - Go escapes `<`, `>`, `&`, U+2028 and U+2029 inside strings.
//!
//! So rbm keeps the serde derive on the BSON form and converts here, in document
//! order, between a [`bson::Bson`] tree and Go's JSON text.

use bson::{Bson, Document};
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserializer, Serialize, Serializer};
use std::fmt;
use std::io;

/// Errors converting between PBM's JSON and BSON.
#[derive(Debug, thiserror::Error)]
pub enum GoJsonError {
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("JSON does not fit the document: {0}")]
    Bson(#[from] bson::error::Error),
}

/// Borrows a BSON value and serializes it the way Go's `encoding/json` renders the
/// same Go value.
pub struct GoJson<'a>(pub &'a Bson);

impl Serialize for GoJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Bson::Document(d) => {
                let mut m = s.serialize_map(Some(d.len()))?;
                for (k, v) in d {
                    m.serialize_entry(k, &GoJson(v))?;
                }
                m.end()
            }
            Bson::Array(a) => {
                let mut q = s.serialize_seq(Some(a.len()))?;
                for v in a {
                    q.serialize_element(&GoJson(v))?;
                }
                q.end()
            }
            Bson::Timestamp(ts) => {
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("T", &ts.time)?;
                m.serialize_entry("I", &ts.increment)?;
                m.end()
            }
            Bson::Double(x) => {
                // Go prints integral float64 values without a fraction.
                if x.is_finite() && x.fract() == 0.0 && x.abs() < 9.0e15 {
                    s.serialize_i64(*x as i64)
                } else {
                    s.serialize_f64(*x)
                }
            }
            Bson::String(v) => s.serialize_str(v),
            Bson::Boolean(b) => s.serialize_bool(*b),
            Bson::Int32(i) => s.serialize_i32(*i),
            Bson::Int64(i) => s.serialize_i64(*i),
            Bson::Null | Bson::Undefined => s.serialize_unit(),
            // Go's primitive.ObjectID marshals as its hex string.
            Bson::ObjectId(o) => s.serialize_str(&o.to_hex()),
            // Types PBM never puts in its JSON documents: bson's own extended-JSON form.
            other => other.serialize(s),
        }
    }
}

/// Go's string escaping on top of serde_json's: `encoding/json` also escapes `<`, `>`
/// and `&` (HTML safety) and the JavaScript line separators.
struct GoFormatter<F>(F);

impl<F: serde_json::ser::Formatter> serde_json::ser::Formatter for GoFormatter<F> {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            let esc = match c {
                '<' => "\\u003c",
                '>' => "\\u003e",
                '&' => "\\u0026",
                '\u{2028}' => "\\u2028",
                '\u{2029}' => "\\u2029",
                _ => continue,
            };
            w.write_all(&fragment.as_bytes()[start..i])?;
            w.write_all(esc.as_bytes())?;
            start = i + c.len_utf8();
        }
        w.write_all(&fragment.as_bytes()[start..])
    }
    fn begin_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.begin_array(w)
    }
    fn end_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_array(w)
    }
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.0.begin_array_value(w, first)
    }
    fn end_array_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_array_value(w)
    }
    fn begin_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.begin_object(w)
    }
    fn end_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_object(w)
    }
    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.0.begin_object_key(w, first)
    }
    fn end_object_key<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_object_key(w)
    }
    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.begin_object_value(w)
    }
    fn end_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_object_value(w)
    }
}

/// Go's `json.MarshalIndent(v, "", "\t")`: what PBM writes to `<bcp>.pbm.json`.
pub fn to_string_indented(value: &Bson) -> Result<String, GoJsonError> {
    let mut out = Vec::new();
    let fmt = GoFormatter(serde_json::ser::PrettyFormatter::with_indent(b"\t"));
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    GoJson(value).serialize(&mut ser)?;
    // The serializer only ever writes valid UTF-8.
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Go's `json.Marshal(v)`: the compact form (`pbm ... -o json`).
pub fn to_string_compact(value: &Bson) -> Result<String, GoJsonError> {
    let mut out = Vec::new();
    let fmt = GoFormatter(serde_json::ser::CompactFormatter);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    GoJson(value).serialize(&mut ser)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// The same rendering as a [`serde_json::Value`] (key order is not kept).
pub fn to_value(value: &Bson) -> Result<serde_json::Value, GoJsonError> {
    Ok(serde_json::to_value(GoJson(value))?)
}

/// Parses PBM's JSON into BSON, keeping key order. An object with exactly the two
/// integer keys `T` and `I` is a Go `primitive.Timestamp`: that is how Go's encoder
/// writes one, and no other PBM JSON object has that shape. Integers become Int32
/// when they fit (Go's driver writes `int` fields that way) and Int64 otherwise; the
/// typed structs accept either.
pub fn parse(text: &str) -> Result<Bson, GoJsonError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let v = BsonSeed.deserialize(&mut de)?;
    de.end()?;
    Ok(v)
}

struct BsonSeed;

impl<'de> DeserializeSeed<'de> for BsonSeed {
    type Value = Bson;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Bson, D::Error> {
        d.deserialize_any(BsonVisitor)
    }
}

struct BsonVisitor;

impl<'de> Visitor<'de> for BsonVisitor {
    type Value = Bson;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Bson, E> {
        Ok(Bson::Boolean(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Bson, E> {
        Ok(i32::try_from(v).map(Bson::Int32).unwrap_or(Bson::Int64(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Bson, E> {
        i64::try_from(v)
            .map(|v| self.visit_i64::<E>(v))
            .map_err(|_| E::custom(format!("integer {v} does not fit int64")))?
    }
    fn visit_f64<E>(self, v: f64) -> Result<Bson, E> {
        Ok(Bson::Double(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Bson, E> {
        Ok(Bson::String(v.to_string()))
    }
    fn visit_unit<E>(self) -> Result<Bson, E> {
        Ok(Bson::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Bson, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(BsonSeed)? {
            out.push(v);
        }
        Ok(Bson::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Bson, A::Error> {
        let mut d = Document::new();
        while let Some(k) = map.next_key::<String>()? {
            let v = map.next_value_seed(BsonSeed)?;
            d.insert(k, v);
        }
        if d.len() == 2 {
            let part = |k: &str| match d.get(k) {
                Some(Bson::Int32(v)) => u32::try_from(*v).ok(),
                Some(Bson::Int64(v)) => u32::try_from(*v).ok(),
                _ => None,
            };
            if let (Some(time), Some(increment)) = (part("T"), part("I")) {
                return Ok(Bson::Timestamp(bson::Timestamp { time, increment }));
            }
        }
        Ok(Bson::Document(d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn timestamps_and_floats_as_go_writes_them() {
        let d = bson::doc! {
            "ts": bson::Timestamp { time: 5, increment: 7 },
            "f": 5018.0,
            "h": 0.5,
            "s": "a<b&c>",
        };
        let s = to_string_compact(&Bson::Document(d.clone())).expect("json");
        assert_eq!(
            s,
            r#"{"ts":{"T":5,"I":7},"f":5018,"h":0.5,"s":"a\u003cb\u0026c\u003e"}"#
        );
        let back = parse(&s).expect("parse");
        let mut want = d;
        want.insert("f", 5018);
        assert_eq!(back, Bson::Document(want));
    }

    fn leaf() -> impl Strategy<Value = Bson> {
        prop_oneof![
            any::<bool>().prop_map(Bson::Boolean),
            any::<i32>().prop_map(Bson::Int32),
            (i64::from(i32::MAX) + 1..i64::MAX).prop_map(Bson::Int64),
            (any::<u32>(), any::<u32>())
                .prop_map(|(time, increment)| Bson::Timestamp(bson::Timestamp { time, increment })),
            "[a-z<>&\u{2028}\u{e9}\"\\\n ]{0,12}".prop_map(Bson::String),
            (-1.0e6f64..1.0e6)
                .prop_filter("fraction", |f| f.fract() != 0.0)
                .prop_map(Bson::Double),
            Just(Bson::Null),
        ]
    }

    fn tree() -> impl Strategy<Value = Bson> {
        leaf().prop_recursive(3, 32, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Bson::Array),
                // Keys other than exactly {T, I}, which is the timestamp shape.
                prop::collection::vec(("[a-zA-Z_]{1,6}", inner), 0..4).prop_map(|kv| {
                    let d: Document = kv.into_iter().collect();
                    Bson::Document(d)
                }),
            ]
        })
    }

    proptest! {
        #[test]
        fn json_round_trips_in_order(t in tree()) {
            let doc = Bson::Document(bson::doc! {"v": t});
            let text = to_string_indented(&doc).expect("json");
            let back = parse(&text).expect("parse");
            prop_assert_eq!(back, doc);
        }
    }

    #[test]
    fn tab_indent() {
        let d = bson::doc! {"a": [1, 2], "b": {"c": true}};
        let s = to_string_indented(&Bson::Document(d)).expect("json");
        assert_eq!(
            s,
            "{\n\t\"a\": [\n\t\t1,\n\t\t2\n\t],\n\t\"b\": {\n\t\t\"c\": true\n\t}\n}"
        );
    }
}
