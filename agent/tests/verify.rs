//! `rbm verify <name>`: reads every object of a PBM-written backup, checks sizes and
//! CRC-64s, names a missing or corrupted object and exits non-zero; no database writes.

mod agent_common;
#[allow(dead_code)]
mod restore_common;

use agent_common::MongoServer;
use restore_common::*;

const B1: &str = "2026-11-26T11:40:53Z";

async fn setup() -> (MongoServer, tempfile::TempDir) {
    let server = MongoServer::start().await;
    let storage = copy_storage(&fixture("pbm-2.15"));
    configure(&server, storage.path()).await;
    (server, storage)
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_sound_backups_and_name_bad_objects() {
    let (server, storage) = setup().await;
    for name in [B1, "2026-11-26T11:41:08Z"] {
        let r = rbm(&server.uri(), &["verify", name]);
        assert_eq!(r.code, 0, "verify {name}: {} {}", r.stdout, r.stderr);
        assert!(r.stdout.contains("is restorable"), "{}", r.stdout);
        assert!(r.stdout.contains("misc.types.s2") || r.stdout.contains("misc.types.zst"));
    }

    // One flipped byte in the middle of a compressed collection.
    let obj = storage.path().join(B1).join("secantus/misc.types.s2");
    let mut bytes = std::fs::read(&obj).expect("read object");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5a;
    std::fs::write(&obj, &bytes).expect("write object");
    let r = rbm(&server.uri(), &["verify", B1]);
    assert_ne!(r.code, 0, "corrupted object passed: {}", r.stdout);
    assert!(
        r.stderr.contains(&format!("{B1}/secantus/misc.types.s2"))
            && r.stderr.contains("corrupted"),
        "{}",
        r.stderr
    );
    assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);

    // A missing object.
    std::fs::remove_file(storage.path().join(B1).join("secantus/shop.orders.s2")).expect("rm");
    let r = rbm(&server.uri(), &["verify", B1]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains(&format!(
            "backup object {B1}/secantus/shop.orders.s2 is missing"
        )),
        "{}",
        r.stderr
    );

    // An object the metadata does not list: the metadata is incomplete.
    std::fs::copy(
        storage.path().join(B1).join("secantus/geo.events.s2"),
        storage.path().join(B1).join("secantus/geo.unlisted.s2"),
    )
    .expect("copy");
    let r = rbm(&server.uri(), &["verify", B1]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("geo.unlisted.s2 is not listed in"),
        "{}",
        r.stderr
    );

    // Unknown backup name.
    let r = rbm(&server.uri(), &["verify", "2020-01-01T00:00:00Z"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("not found"), "{}", r.stderr);
    assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_detects_a_crc_mismatch_in_clean_bson() {
    // Re-encode one collection object with a changed document but a valid stream, so
    // only the CRC-64/size check can catch it: uncompressed objects are plain BSON.
    let (server, storage) = setup().await;
    let dir = storage.path().join(B1).join("secantus");
    let obj = dir.join("misc.mixed_ids.s2");
    let bytes = std::fs::read(&obj).expect("read");
    // Decompress with the project's codec, change one value byte, compress again.
    let plain =
        rbm_storage::codec::decoder(rbm_storage::Compression::S2, std::io::Cursor::new(bytes))
            .and_then(|mut r| {
                let mut v = Vec::new();
                std::io::Read::read_to_end(&mut r, &mut v).map(|_| v)
            })
            .expect("decompress");
    let mut plain = plain;
    let last = plain.len() - 2;
    plain[last] ^= 0x01;
    let mut out = Vec::new();
    {
        let mut enc = rbm_storage::codec::encoder(rbm_storage::Compression::S2, None, &mut out)
            .expect("encoder");
        std::io::Write::write_all(&mut enc, &plain).expect("compress");
        enc.finish().expect("finish");
    }
    std::fs::write(&obj, out).expect("write");
    let r = rbm(&server.uri(), &["verify", B1]);
    assert_ne!(r.code, 0, "{}", r.stdout);
    assert!(
        r.stderr.contains("misc.mixed_ids.s2") && r.stderr.contains("CRC-64"),
        "{}",
        r.stderr
    );
}
