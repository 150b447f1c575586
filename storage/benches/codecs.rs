//! Codec throughput on one core, on BSON documents shaped like the PBM peer data set
//! (`shared/tools/pbm-peer/pbm-peer-gendata.py`: ~716 B docs, seeded).
//!
//! `cargo bench -p rbm-storage --bench codecs`; `RBM_BENCH_MB` sets the data size
//! (default 200), `RBM_BENCH_REPEAT` the runs per measurement (best is kept, default 1).
//! `RBM_BENCH_DUMP=<path>` writes the generated data to `<path>` and exits without
//! measuring, so that another implementation can be measured on exactly the same bytes;
//! `RBM_BENCH_OUT=<dir>` keeps each codec's compressed output there, for PBM's readers.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use bson::{doc, DateTime};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rbm_storage::codec::{compress_reader, decoder, decompress_reader, encoder};
use rbm_storage::{ByteReader, Compression};
use tokio::io::AsyncReadExt;

const MB: f64 = 1e6;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Concatenated BSON documents, as a PBM collection file holds them before compression.
fn gen_data(target: usize) -> (Vec<u8>, usize) {
    let mut rng = StdRng::seed_from_u64(42);
    let words: Vec<String> = (0..2000)
        .map(|_| {
            let n = rng.random_range(3..=10);
            (0..n)
                .map(|_| rng.random_range(b'a'..=b'z') as char)
                .collect()
        })
        .collect();
    let pick = |rng: &mut StdRng| words[rng.random_range(0..words.len())].clone();
    let start =
        DateTime::parse_rfc3339_str("2024-01-01T00:00:00Z").map_or(0, |d| d.timestamp_millis());
    let mut out = Vec::with_capacity(target + 4096);
    let mut i: i64 = 0;
    while out.len() < target {
        // Python's bson writes an int as int32 when it fits: do the same.
        let int = |v: i64| match i32::try_from(v) {
            Ok(v) => bson::Bson::Int32(v),
            Err(_) => bson::Bson::Int64(v),
        };
        let text: String = (0..70)
            .map(|_| pick(&mut rng))
            .collect::<Vec<_>>()
            .join(" ");
        let text: String = text.chars().take(450).collect();
        let cat = ["a", "b", "c", "d", "e", "f"][rng.random_range(0..6)];
        let d = doc! {
            "_id": int(i),
            "seq": int(i),
            "user": format!("user{:06}", rng.random_range(0..=50_000)),
            "cat": cat,
            "score": rng.random::<f64>() * 1000.0,
            "n": int(rng.random_range(0..=(1i64 << 40))),
            "ts": DateTime::from_millis(start + i * 1000),
            "tags": (0..5).map(|_| pick(&mut rng)).collect::<Vec<_>>(),
            "addr": {
                "city": pick(&mut rng),
                "zip": format!("{:05}", rng.random_range(0..=99_999)),
                "street": (0..3).map(|_| pick(&mut rng)).collect::<Vec<_>>().join(" "),
            },
            "text": text,
        };
        if let Err(e) = d.to_writer(&mut out) {
            panic!("bson encode: {e}");
        }
        i += 1;
    }
    (out, i as usize)
}

/// CPU time of this thread so far (Linux; `None` elsewhere). On a loaded machine wall
/// time depends on what else runs; MB per CPU-second is the per-core cost. The sync
/// codecs run on this thread only; `/proc/thread-self/schedstat` counts nanoseconds,
/// where the process's `/proc/self/stat` counts 10 ms ticks (8% of a 0.13 s decode).
fn cpu_time() -> Option<Duration> {
    let ns = std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok());
    match ns {
        Some(ns) => Some(Duration::from_nanos(ns)),
        None => rbm_storage::procstat::cpu_secs().map(Duration::from_secs_f64),
    }
}

/// The fastest of `repeat` runs: (wall time, CPU time of that run, its result).
fn best<T>(repeat: usize, mut f: impl FnMut() -> T) -> (Duration, Option<Duration>, T) {
    let mut best: Option<(Duration, Option<Duration>, T)> = None;
    for _ in 0..repeat.max(1) {
        let c = cpu_time();
        let t = Instant::now();
        let v = f();
        let d = t.elapsed();
        let cpu = cpu_time().zip(c).map(|(b, a)| b.saturating_sub(a));
        if best.as_ref().is_none_or(|(b, _, _)| d < *b) {
            best = Some((d, cpu, v));
        }
    }
    best.expect("at least one run")
}

/// MB per CPU-second, if the run took at least a few ticks.
fn per_cpu(len: f64, cpu: Option<Duration>) -> Option<f64> {
    cpu.filter(|c| *c >= Duration::from_millis(50))
        .map(|c| len / MB / c.as_secs_f64())
}

fn compress(c: Compression, level: Option<i32>, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / 2);
    let mut enc = encoder(c, level, &mut out).expect("encoder");
    for piece in data.chunks(1 << 20) {
        enc.write_all(piece).expect("compress");
    }
    enc.finish().expect("finish");
    out
}

fn decompress(c: Compression, z: &[u8], expect: &[u8]) {
    let mut dec = decoder(c, z).expect("decoder");
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = 0;
    loop {
        let n = dec.read(&mut buf).expect("decompress");
        if n == 0 {
            break;
        }
        assert!(
            buf[..n] == expect[pos..pos + n],
            "{c}: decoded bytes differ at {pos}"
        );
        pos += n;
    }
    assert_eq!(pos, expect.len(), "{c}: decoded size");
}

/// PBM 2.15 figures from `shared/notes/perf-baseline.md`: pbm-speed-test compression MB/s,
/// and the ratio of the logical backup of the same data set (dataSize / stored bytes).
fn pbm(c: Compression) -> (Option<f64>, Option<f64>) {
    match c {
        Compression::None => (Some(475.0), Some(214_677_356.0 / 214_756_856.0)),
        Compression::S2 => (Some(1240.0), Some(214_677_356.0 / 111_714_487.0)),
        Compression::Snappy => (Some(813.0), None),
        Compression::Lz4 => (Some(607.0), None),
        Compression::Zstd => (Some(1130.0), Some(214_677_356.0 / 72_795_043.0)),
        Compression::Gzip => (Some(152.0), None),
        Compression::Pgzip => (Some(406.0), None),
    }
}

/// The exact codec settings a row measures (what `codec::encoder`/`decoder` build for it).
fn settings(c: Compression, level: Option<i32>) -> &'static str {
    match (c, level) {
        (Compression::S2, Some(3)) => {
            "codec::s2_better (minlz 1.2 encode_better, fixed-size tables), 1 MiB blocks, CRC-32C; \
             dec: FramedReader + codec::s2_block"
        }
        (Compression::S2, _) => {
            "minlz 1.2 Encoder::encode (tables reused), 1 MiB blocks, CRC-32C; \
             dec: FramedReader + codec::s2_block"
        }
        (Compression::Snappy, _) => "snap 1 FrameEncoder (64 KiB blocks); dec: FramedReader",
        (Compression::Lz4, _) => {
            "lz4_flex 0.14 frame (features std, frame, checked-decode: no safe-encode/-decode), \
             fast, 4 MiB independent blocks, content checksum"
        }
        (Compression::Zstd, Some(1)) => "libzstd 1.5.7 level 1, checksum, 1 thread",
        (Compression::Zstd, _) => "libzstd 1.5.7 level 3, checksum, 1 thread",
        (Compression::Gzip | Compression::Pgzip, _) => {
            "libdeflate (libdeflater 1.26) level 6, one gzip member per 1 MiB of input; dec: flate2 MultiGzDecoder"
        }
        (Compression::None, _) => "copy",
    }
}

fn opt(v: Option<f64>, prec: usize) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.prec$}"))
}

fn main() {
    // `cargo bench` passes `--bench`; anything else (e.g. `cargo test --benches`) only
    // checks that the benchmark runs, on a small data set.
    let bench = std::env::args().any(|a| a == "--bench");
    let mb = env_usize("RBM_BENCH_MB", if bench { 200 } else { 4 });
    let repeat = env_usize("RBM_BENCH_REPEAT", 1);
    let (data, docs) = gen_data(mb * 1_000_000);
    let len = data.len() as f64;
    let out_dir = std::env::var_os("RBM_BENCH_OUT");
    if let Some(path) = std::env::var_os("RBM_BENCH_DUMP") {
        if let Err(e) = std::fs::write(&path, &data) {
            panic!("RBM_BENCH_DUMP {}: {e}", path.to_string_lossy());
        }
        println!(
            "rbm codecs: wrote {} bytes ({docs} docs) to {}",
            data.len(),
            path.to_string_lossy()
        );
        return;
    }
    println!(
        "rbm codecs: {:.1} MB of BSON, {docs} docs (avg {:.0} B), single thread, best of {repeat}",
        len / MB,
        len / docs as f64
    );
    println!(
        "{:<8} {:>5} {:>10} {:>10} {:>10} {:>10} {:>7} | {:>9} {:>7} {:>9} {:>9}",
        "codec",
        "level",
        "comp MB/s",
        "comp cpu",
        "dec MB/s",
        "dec cpu",
        "ratio",
        "PBM MB/s",
        "rbm/PBM",
        "PBM ratio",
        "rbm/PBM"
    );
    let default_rows = [
        (Compression::S2, None),
        (Compression::S2, Some(3)),
        (Compression::Snappy, None),
        (Compression::Lz4, None),
        (Compression::Zstd, None),
        (Compression::Zstd, Some(1)),
        (Compression::Gzip, None),
        (Compression::Pgzip, None),
    ];
    // RBM_BENCH_ROWS="s2,gzip:5" measures only those codec[:level] rows.
    let rows: Vec<(Compression, Option<i32>)> = match std::env::var("RBM_BENCH_ROWS") {
        Ok(spec) => spec
            .split(',')
            .map(|r| {
                let (c, l) = r.split_once(':').map_or((r, None), |(c, l)| (c, Some(l)));
                let c = c
                    .trim()
                    .parse()
                    .unwrap_or_else(|e| panic!("RBM_BENCH_ROWS: {e}"));
                let l = l.map(|l| {
                    l.trim()
                        .parse()
                        .unwrap_or_else(|e| panic!("RBM_BENCH_ROWS: {e}"))
                });
                (c, l)
            })
            .collect(),
        Err(_) => default_rows.to_vec(),
    };
    let rows = &rows[..];
    for &(c, level) in rows {
        let (ct, ccpu, z) = best(repeat, || compress(c, level, &data));
        if let Some(dir) = &out_dir {
            // For reading back with PBM's Go readers (what rbm writes must stay readable).
            let name = format!(
                "data.{}{}{}",
                c.as_str(),
                level.map_or_else(String::new, |l| format!("-{l}")),
                c.extension()
            );
            if let Err(e) = std::fs::write(std::path::Path::new(dir).join(&name), &z) {
                panic!("RBM_BENCH_OUT {name}: {e}");
            }
        }
        let (dt, dcpu, ()) = best(repeat, || decompress(c, &z, &data));
        let comp = len / MB / ct.as_secs_f64();
        let ratio = len / z.len() as f64;
        let (pbm_speed, pbm_ratio) = if level.is_none() {
            pbm(c)
        } else {
            (None, None)
        };
        println!(
            "{:<8} {:>5} {:>10.0} {:>10} {:>10.0} {:>10} {:>7.2} | {:>9} {:>7} {:>9} {:>9}",
            c.as_str(),
            level.map_or_else(|| "def".into(), |l| l.to_string()),
            comp,
            opt(per_cpu(len, ccpu), 0),
            len / MB / dt.as_secs_f64(),
            opt(per_cpu(len, dcpu), 0),
            ratio,
            opt(pbm_speed, 0),
            opt(pbm_speed.map(|p| comp / p), 2),
            opt(pbm_ratio, 2),
            opt(pbm_ratio.map(|p| ratio / p), 2),
        );
    }
    println!("\n(cpu: MB per CPU-second of the benchmark thread in the fastest run)");
    println!("settings:");
    for &(c, level) in rows {
        println!(
            "  {:<8} {:>5}  {}",
            c.as_str(),
            level.map_or_else(|| "def".into(), |l| l.to_string()),
            settings(c, level)
        );
    }

    // The same through the async adapters (codec on a blocking thread, bounded channel).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    println!(
        "\nthrough compress_reader / decompress_reader (1 worker + the codec's blocking thread):"
    );
    for c in [Compression::S2, Compression::Zstd] {
        // Process CPU (every thread: the codec's and the runtime's), input copy excluded.
        let proc_cpu = || rbm_storage::procstat::cpu_secs().unwrap_or(0.0);
        let (ct, _, (z, ccpu)) = best(repeat, || {
            let input: ByteReader = Box::new(std::io::Cursor::new(data.clone()));
            let c0 = proc_cpu();
            let out = rt.block_on(async {
                let mut out = Vec::with_capacity(data.len());
                compress_reader(input, c, None)
                    .read_to_end(&mut out)
                    .await
                    .expect("compress_reader");
                out
            });
            (out, proc_cpu() - c0)
        });
        let (dt, _, (n, dcpu)) = best(repeat, || {
            let input: ByteReader = Box::new(std::io::Cursor::new(z.clone()));
            let c0 = proc_cpu();
            let n = rt.block_on(async {
                let mut r = decompress_reader(input, c);
                let (mut buf, mut n) = (vec![0u8; 1 << 20], 0usize);
                loop {
                    let k = r.read(&mut buf).await.expect("decompress_reader");
                    if k == 0 {
                        break n;
                    }
                    n += k;
                }
            });
            (n, proc_cpu() - c0)
        });
        assert_eq!(n, data.len(), "{c}: adapter round trip size");
        let per = |secs: f64| opt((secs >= 0.05).then(|| len / MB / secs), 0);
        println!(
            "{:<8} comp {:>6.0} MB/s ({:>5} per CPU-s), dec {:>6.0} MB/s ({:>5} per CPU-s)",
            c.as_str(),
            len / MB / ct.as_secs_f64(),
            per(ccpu),
            len / MB / dt.as_secs_f64(),
            per(dcpu),
        );
    }
    println!(
        "\nPBM MB/s: pbm-speed-test on synthetic, highly compressible data (1 GB, one process, \
         2 cores, Go codecs may use several goroutines), so rbm/PBM is indicative only. \
         PBM ratio: PBM 2.15 logical backup of this data set (perf-baseline.md). \
         The machine is shared with other jobs."
    );
}
