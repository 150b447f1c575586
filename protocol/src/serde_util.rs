//! Serde helpers for Go's zero-value conventions.

/// For `skip_serializing_if`: Go's `omitempty` on a `bool`.
pub(crate) fn is_false(b: &bool) -> bool {
    !*b
}

/// A Go string-typed enum whose zero value `""` means "not set": `None` ↔ `""`.
pub(crate) mod empty_as_none {
    use serde::de::{Deserialize, DeserializeOwned, Deserializer, IntoDeserializer};
    use serde::ser::{Serialize, Serializer};

    pub fn serialize<T: Serialize, S: Serializer>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => v.serialize(s),
            None => s.serialize_str(""),
        }
    }

    pub fn deserialize<'de, T: DeserializeOwned, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<T>, D::Error> {
        let s = Option::<String>::deserialize(d)?.unwrap_or_default();
        if s.is_empty() {
            return Ok(None);
        }
        let de: serde::de::value::StringDeserializer<D::Error> = s.into_deserializer();
        T::deserialize(de).map(Some)
    }
}
