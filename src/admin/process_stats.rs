//! The process metrics Prometheus users expect of any exporter
//! (`process_cpu_seconds_total` and the rest, as the Go and Python clients
//! name them), read from `/proc/self` at scrape time.

use std::io;

/// One reading of the process's resource use.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProcessStats {
    /// User plus system CPU time, in seconds.
    pub cpu_seconds: f64,
    /// Resident memory, in bytes.
    pub resident_bytes: u64,
    /// Virtual memory, in bytes.
    pub virtual_bytes: u64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// The soft limit on open file descriptors.
    pub max_fds: u64,
    /// When the process started, in seconds since the Unix epoch.
    pub start_time_seconds: f64,
    /// Threads.
    pub threads: u64,
}

impl ProcessStats {
    /// Reads `/proc/self/stat`, `/proc/self/fd`, `/proc/stat` and the
    /// `RLIMIT_NOFILE` limit.
    pub fn read() -> io::Result<ProcessStats> {
        let stat = std::fs::read_to_string("/proc/self/stat")?;
        let boot_time = std::fs::read_to_string("/proc/stat")?
            .lines()
            .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<u64>().ok())
            .ok_or_else(|| io::Error::other("no btime in /proc/stat"))?;
        // SAFETY: sysconf and getrlimit only read process-wide values into
        // the locals given.
        let (ticks, page, max_fds) = unsafe {
            let mut lim: libc::rlimit = std::mem::zeroed();
            let max = if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 { lim.rlim_cur } else { 0 };
            (libc::sysconf(libc::_SC_CLK_TCK), libc::sysconf(libc::_SC_PAGESIZE), max)
        };
        let open_fds = std::fs::read_dir("/proc/self/fd")?.count().saturating_sub(1) as u64; // the listing's own
        parse_stat(&stat, ticks.max(1) as u64, page.max(1) as u64, boot_time, open_fds, max_fds)
    }
}

/// Reads `/proc/self/stat` (proc(5)): the fields after the command, which
/// is in parentheses and may itself hold spaces and parentheses.
fn parse_stat(
    stat: &str,
    ticks_per_second: u64,
    page_size: u64,
    boot_time: u64,
    open_fds: u64,
    max_fds: u64,
) -> io::Result<ProcessStats> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "unexpected /proc/self/stat");
    let rest = &stat[stat.rfind(')').ok_or_else(bad)? + 1..];
    // Fields from 3 (state) on; proc(5) numbers them from 1.
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> io::Result<u64> { f.get(n - 3).ok_or_else(bad)?.parse().map_err(|_| bad()) };
    let tps = ticks_per_second as f64;
    Ok(ProcessStats {
        cpu_seconds: (field(14)? + field(15)?) as f64 / tps,
        threads: field(20)?,
        start_time_seconds: boot_time as f64 + field(22)? as f64 / tps,
        virtual_bytes: field(23)?,
        resident_bytes: field(24)? * page_size,
        open_fds,
        max_fds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_read_after_a_command_with_spaces_and_parentheses() {
        // A real line's shape, with utime 250 and stime 50 ticks, 3 threads,
        // started 1000 ticks after boot, 4096 KiB virtual, 300 pages resident.
        let line = "1234 (a (b) c) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 1000 4194304 300 \
                    18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0";
        let s = parse_stat(line, 100, 4096, 1_700_000_000, 7, 20_000).unwrap();
        assert_eq!(s.cpu_seconds, 3.0);
        assert_eq!(s.threads, 3);
        assert_eq!(s.start_time_seconds, 1_700_000_010.0);
        assert_eq!(s.virtual_bytes, 4_194_304);
        assert_eq!(s.resident_bytes, 300 * 4096);
        assert_eq!((s.open_fds, s.max_fds), (7, 20_000));
        assert!(parse_stat("garbage", 100, 4096, 0, 0, 0).is_err());
    }

    #[test]
    fn this_process_reads_as_itself() {
        let s = ProcessStats::read().unwrap();
        assert!(s.resident_bytes > 0 && s.threads >= 1 && s.open_fds >= 3 && s.max_fds >= s.open_fds);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        assert!(s.start_time_seconds <= now + 1.0 && s.start_time_seconds > now - 86_400.0 * 365.0);
    }
}
