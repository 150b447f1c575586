//! Formatting helpers shared by the text outputs: PBM's time layouts and size units.

use rbm_protocol::names::UtcTime;

/// Go's `2006-01-02T15:04:05` in UTC, as PBM prints restore times and PITR ranges.
pub fn fmt_ts(unix: i64) -> String {
    let t = UtcTime::from_unix(unix);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    )
}

/// RFC 3339 UTC (`2006-01-02T15:04:05Z`).
pub fn fmt_rfc3339(unix: i64) -> String {
    format!("{}Z", fmt_ts(unix))
}

/// PBM's `storage.PrettySize`: binary multiples with SI-looking suffixes, 2 decimals.
pub fn pretty_size(size: i64) -> String {
    const KB: f64 = 1024.0;
    const MB: f64 = KB * 1024.0;
    const GB: f64 = MB * 1024.0;
    const TB: f64 = GB * 1024.0;
    let s = size as f64;
    if size < 0 {
        return "NaN".into();
    }
    if s >= TB {
        format!("{:.2}TB", s / TB)
    } else if s >= GB {
        format!("{:.2}GB", s / GB)
    } else if s >= MB {
        format!("{:.2}MB", s / MB)
    } else if s >= KB {
        format!("{:.2}KB", s / KB)
    } else {
        format!("{s:.2}B")
    }
}

/// PBM's `byteCountIEC` (what `describe-backup` prints): `20.5 KiB`, `2.4 MiB`, `0 B`.
pub fn ibytes(b: i64) -> String {
    const UNIT: i64 = 1024;
    if b < UNIT {
        return format!("{b} B");
    }
    let (mut div, mut exp) = (UNIT, 0usize);
    let mut n = b / UNIT;
    while n >= UNIT {
        div *= UNIT;
        exp += 1;
        n /= UNIT;
    }
    format!("{:.1} {}iB", b as f64 / div as f64, &"KMGTPE"[exp..=exp])
}

/// PBM's storage type label in `status` (`Typ()`).
pub fn storage_label(t: rbm_protocol::StorageType) -> &'static str {
    use rbm_protocol::StorageType as T;
    match t {
        T::S3 => "S3",
        T::Minio => "Minio",
        T::Gcs => "GCS",
        T::Azure => "Azure",
        T::Filesystem => "FS",
        T::Oss => "OSS",
        T::Oci => "OCI",
        T::Blackhole => "blackhole",
        T::Undefined => "Unknown",
    }
}

/// PBM's `StorageConf.Path()`: where backups go, without credentials.
pub fn storage_path(c: &rbm_protocol::StorageConf) -> String {
    use rbm_protocol::StorageType as T;
    let join = |scheme: &str, endpoint: Option<&String>, bucket: &str, prefix: &str| {
        // PBM adds the scheme only when the endpoint has none of its own
        // (`http://127.0.0.1:9000/bucket`, but `s3://bucket` without an endpoint).
        let mut s = String::new();
        match endpoint.filter(|e| !e.is_empty()) {
            Some(e) if e.contains("://") => s.push_str(e.trim_end_matches('/')),
            Some(e) => {
                s.push_str(&format!("{scheme}://"));
                s.push_str(e.trim_end_matches('/'));
            }
            None => s.push_str(&format!("{scheme}:/")),
        }
        s.push('/');
        s.push_str(bucket);
        if !prefix.is_empty() {
            s.push('/');
            s.push_str(prefix);
        }
        s
    };
    let doc_str = |d: Option<&bson::Document>, k: &str| {
        d.and_then(|d| d.get_str(k).ok()).unwrap_or("").to_string()
    };
    match c.kind {
        T::Filesystem => c
            .filesystem
            .as_ref()
            .map(|f| f.path.clone())
            .unwrap_or_default(),
        T::S3 => {
            c.s3.as_ref()
                .map(|s| join("s3", s.endpoint_url.as_ref(), &s.bucket, &s.prefix))
                .unwrap_or_default()
        }
        T::Azure => c
            .azure
            .as_ref()
            .map(|a| join("azure", a.endpoint_url.as_ref(), &a.container, &a.prefix))
            .unwrap_or_default(),
        T::Minio => join(
            "s3",
            Some(&doc_str(c.minio.as_ref(), "endpoint")),
            &doc_str(c.minio.as_ref(), "bucket"),
            &doc_str(c.minio.as_ref(), "prefix"),
        ),
        T::Gcs => join(
            "gs",
            None,
            &doc_str(c.gcs.as_ref(), "bucket"),
            &doc_str(c.gcs.as_ref(), "prefix"),
        ),
        T::Oss => join(
            "oss",
            None,
            &doc_str(c.oss.as_ref(), "bucket"),
            &doc_str(c.oss.as_ref(), "prefix"),
        ),
        T::Oci => join(
            "oci",
            None,
            &doc_str(c.oci.as_ref(), "bucket"),
            &doc_str(c.oci.as_ref(), "prefix"),
        ),
        T::Blackhole | T::Undefined => String::new(),
    }
}

/// PBM's `StorageConf.Region()`.
pub fn storage_region(c: &rbm_protocol::StorageConf) -> String {
    match c.kind {
        rbm_protocol::StorageType::S3 => {
            c.s3.as_ref().map(|s| s.region.clone()).unwrap_or_default()
        }
        rbm_protocol::StorageType::Minio => c
            .minio
            .as_ref()
            .and_then(|d| d.get_str("region").ok())
            .unwrap_or("")
            .to_string(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_match_pbm_fixtures() {
        assert_eq!(pretty_size(1_786_607), "1.70MB");
        assert_eq!(pretty_size(477_542), "466.35KB");
        assert_eq!(ibytes(2_519_486), "2.4 MiB");
        assert_eq!(ibytes(0), "0 B");
        assert_eq!(ibytes(20_965), "20.5 KiB");
        assert_eq!(ibytes(1023), "1023 B");
        assert_eq!(ibytes(1024), "1.0 KiB");
        assert_eq!(fmt_ts(1_795_693_273), "2026-11-26T11:41:13");
    }
}

#[cfg(test)]
mod storage_path_tests {
    use super::storage_path;
    use rbm_protocol::{S3Conf, StorageConf, StorageType};

    fn s3(endpoint: Option<&str>) -> StorageConf {
        StorageConf {
            kind: StorageType::S3,
            s3: Some(S3Conf {
                bucket: "bkt".into(),
                prefix: "rbm/test".into(),
                endpoint_url: endpoint.map(String::from),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn s3_paths_as_pbm_prints_them() {
        assert_eq!(
            storage_path(&s3(Some("http://127.0.0.1:9999"))),
            "http://127.0.0.1:9999/bkt/rbm/test"
        );
        assert_eq!(storage_path(&s3(None)), "s3://bkt/rbm/test");
        assert_eq!(
            storage_path(&s3(Some("minio.local:9000"))),
            "s3://minio.local:9000/bkt/rbm/test"
        );
    }
}
