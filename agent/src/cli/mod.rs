//! The `rbm` CLI verbs: PBM's `pbm` commands against the same control collections,
//! with PBM's text and JSON output, so that the Percona Operator and scripts written
//! for `pbm` can drive rbm unchanged. The binary (`bin/rbm.rs`) only parses flags and
//! prints what these functions return.

pub mod config;
pub mod conn;
pub mod delete;
pub mod describe;
pub mod error;
mod goyaml;
pub mod list;
pub mod logs;
pub mod ops;
pub mod profile;
pub mod schedule_status;
pub mod status;
pub mod text;
pub mod verify;

pub use conn::Conn;
pub use error::CliError;

use futures::TryStreamExt;

/// `-o`: PBM's output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Text,
    Json,
    JsonPretty,
}

impl OutputFormat {
    /// Renders a serialisable value as PBM does (`json.Marshal` or
    /// `json.MarshalIndent(v, "", "  ")`).
    ///
    /// # Errors
    /// [`CliError::Output`].
    pub fn json<T: serde::Serialize>(self, v: &T) -> Result<String, CliError> {
        let r = if self == OutputFormat::JsonPretty {
            serde_json::to_string_pretty(v)
        } else {
            serde_json::to_string(v)
        };
        r.map(|s| go_html_escape(&s))
            .map_err(|e| CliError::Output(e.to_string()))
    }

    /// A short message: the text itself, or PBM's `outMsg` JSON `{"msg": ...}`.
    ///
    /// # Errors
    /// [`CliError::Output`].
    pub fn msg(self, text: &str) -> Result<String, CliError> {
        match self {
            OutputFormat::Text => Ok(text.to_string()),
            _ => self.json(&serde_json::json!({ "msg": text })),
        }
    }
}

/// Go's `json.Marshal` escapes `<`, `>`, `&`, U+2028 and U+2029 inside strings
/// (`\u003c` ...); scripts that compare PBM's JSON byte for byte see the same. These
/// characters never occur outside strings in JSON, so escaping the whole text is exact.
pub(crate) fn go_html_escape(json: &str) -> String {
    if !json.contains(['<', '>', '&', '\u{2028}', '\u{2029}']) {
        return json.to_string();
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// Reads every document of a control collection that matches `filter`, typed.
pub(crate) async fn find_all<T: serde::de::DeserializeOwned + Send + Sync>(
    conn: &Conn,
    coll: &str,
    filter: bson::Document,
    sort: Option<bson::Document>,
) -> Result<Vec<T>, CliError> {
    let c = conn.admin().collection::<bson::Document>(coll);
    let mut find = c.find(filter);
    if let Some(s) = sort {
        find = find.sort(s);
    }
    let docs: Vec<bson::Document> = find
        .await
        .map_err(|e| CliError::mongo(format!("read admin.{coll}"), &e))?
        .try_collect()
        .await
        .map_err(|e| CliError::mongo(format!("read admin.{coll}"), &e))?;
    docs.into_iter()
        .map(|d| {
            bson::deserialize_from_document(d)
                .map_err(|e| CliError::BadDocument(format!("a document in admin.{coll}: {e}")))
        })
        .collect()
}
