//! The storage conformance suite against every backend on its real service:
//! filesystem (a temp dir), S3 (s3s-fs and moto) and Azure Blob (Azurite).

use rbm_e2e::{azure_conf, fs_conf, moto_conf, s3_conf, TEST_PART_SIZE};
use rbm_storage::conformance::{self as c, Suite};
use rbm_storage::{from_config, DynStorage};

macro_rules! conformance {
    ($backend:ident, $make:expr) => {
        mod $backend {
            use super::*;

            async fn storage() -> (DynStorage, Option<tempfile::TempDir>) {
                #[allow(clippy::redundant_closure_call)]
                let (conf, dir) = ($make)();
                let s = from_config(&conf, None)
                    .await
                    .unwrap_or_else(|e| panic!("storage from config: {e}"));
                (s, dir)
            }

            fn suite(check: &str) -> Suite {
                Suite::new(&format!("{}-{check}", stringify!($backend)), TEST_PART_SIZE)
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sizes_and_ranges() {
                let (s, _d) = storage().await;
                c::sizes_and_ranges(s, &suite("sizes")).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn listing_2500_keys() {
                let (s, _d) = storage().await;
                c::listing(s, &suite("list")).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn overwrite_delete_missing() {
                let (s, _d) = storage().await;
                c::overwrite_delete_missing(s, &suite("overwrite")).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn split_parts() {
                let (s, _d) = storage().await;
                c::split_parts(s, &suite("split")).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn concurrent_writers() {
                let (s, _d) = storage().await;
                c::concurrent_writers(s, &suite("concurrent")).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn interrupted_upload() {
                let (s, _d) = storage().await;
                c::interrupted_upload(s, &suite("interrupted")).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn retries() {
                let (s, _d) = storage().await;
                c::retries(s, &suite("retries")).await;
            }
        }
    };
}

conformance!(filesystem, || {
    let dir = tempfile::tempdir().expect("temp dir");
    (fs_conf(dir.path()), Some(dir))
});
conformance!(s3_s3sfs, || (s3_conf(None), None));
conformance!(s3_moto, || (moto_conf(), None));
conformance!(azure_azurite, || (azure_conf(), None));
