//! This process's resource figures from `/proc` (Linux), measured the way
//! `../shared/notes/perf-baseline.md` measures PBM's agent: peak RSS is `VmHWM`, reset by
//! writing `5` to `clear_refs`; CPU is utime + stime. Used by the memory-bound test and
//! the speed test.

/// Resets the peak-RSS counter (writing `5` to `/proc/self/clear_refs`).
///
/// # Errors
/// When the kernel refuses.
pub fn reset_peak() -> std::io::Result<()> {
    std::fs::write("/proc/self/clear_refs", "5")
}

/// `VmHWM` in bytes.
///
/// # Errors
/// When `/proc/self/status` cannot be read or parsed.
pub fn peak_rss() -> std::io::Result<u64> {
    field("VmHWM:")
}

/// `VmRSS` in bytes.
///
/// # Errors
/// When `/proc/self/status` cannot be read or parsed.
pub fn rss() -> std::io::Result<u64> {
    field("VmRSS:")
}

fn field(key: &str) -> std::io::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .ok_or_else(|| std::io::Error::other(format!("no {key} in /proc/self/status")))
}

/// utime + stime in seconds (fields 14 and 15 of `/proc/self/stat`).
pub fn cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may contain spaces; the fields after ')' are fixed.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // USER_HZ is 100 on every Linux ABI rbm targets; avoids a libc dependency.
    Some(ticks / 100.0)
}
