//! The listening TCP sockets a process holds, read from `/proc` (its
//! descriptors, and `/proc/net/tcp{,6}` for which of them listen).

/// (inode, local port) of every listening TCP socket `pid` holds.
pub fn listening(pid: u32) -> Vec<(u64, u16)> {
    let mut mine = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().flatten() {
        if let Ok(t) = std::fs::read_link(e.path()) {
            let t = t.to_string_lossy().into_owned();
            if let Some(i) = t.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')) {
                mine.push(i.parse::<u64>().unwrap());
            }
        }
    }
    let mut out = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        for line in std::fs::read_to_string(table).unwrap_or_default().lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // local_address is ADDR:PORT in hex; state 0A is LISTEN; the inode is field 9.
            if f.len() > 9 && f[3] == "0A" {
                let Ok(inode) = f[9].parse::<u64>() else { continue };
                if mine.contains(&inode) {
                    let port = f[1].rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok()).unwrap();
                    out.push((inode, port));
                }
            }
        }
    }
    out
}
