//! The cluster settings (`--cluster` and its companions), checked.

use crate::cluster::subject;
use crate::server::config::ConfigError;
use std::path::PathBuf;

/// How this process reaches the NATS servers that link its rooms to
/// other processes' (docs/cluster.md).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterSettings {
    /// Server URLs, `nats://HOST:PORT` or `tls://HOST:PORT`, tried in turn.
    pub servers: Vec<String>,
    /// Some server URL is `tls://`: the connection must be TLS.
    pub tls: bool,
    /// PEM file of the CA the servers' certificates must chain to
    /// (`--cluster-ca`); without it, the system's roots.
    pub ca: Option<PathBuf>,
    /// A NATS credentials file (`--cluster-credentials`).
    pub credentials: Option<PathBuf>,
    /// A file holding the NATS token (`--cluster-token-file`).
    pub token_file: Option<PathBuf>,
    /// Room subjects start with this (`--cluster-subject-prefix`).
    pub subject_prefix: String,
    /// Refuse to start while no NATS server answers (`--cluster-required`).
    pub required: bool,
    /// Bytes of messages waiting for NATS before more are dropped (`--cluster-queue`).
    pub queue: usize,
}

/// The settings as given (flag, environment or file), before checking.
#[derive(Debug, Default)]
pub struct Given {
    /// `--cluster`, comma-separated.
    pub servers: Option<String>,
    /// `--cluster-ca`.
    pub ca: Option<PathBuf>,
    /// `--cluster-credentials`.
    pub credentials: Option<PathBuf>,
    /// `--cluster-token-file`.
    pub token_file: Option<PathBuf>,
    /// `--cluster-subject-prefix`.
    pub subject_prefix: Option<String>,
    /// `--cluster-required`.
    pub required: bool,
    /// `--cluster-queue`.
    pub queue: Option<String>,
}

impl ClusterSettings {
    /// Checks what was given; None without `--cluster`. `rooms`: the reply
    /// mode is `room` (a cluster links rooms, nothing else).
    pub fn resolve(given: Given, rooms: bool) -> Result<Option<ClusterSettings>, ConfigError> {
        let invalid = |setting, value: String, allowed| ConfigError::Invalid { setting, value, allowed };
        let Some(text) = given.servers.filter(|t| !t.trim().is_empty()) else {
            for (setting, set) in [
                ("cluster-ca", given.ca.is_some()),
                ("cluster-credentials", given.credentials.is_some()),
                ("cluster-token-file", given.token_file.is_some()),
                ("cluster-subject-prefix", given.subject_prefix.is_some()),
                ("cluster-queue", given.queue.is_some()),
            ] {
                if set {
                    return Err(invalid(setting, String::new(), "only with --cluster nats://HOST:PORT"));
                }
            }
            return Ok(None);
        };
        if !rooms {
            return Err(invalid("cluster", text, "only with --reply room: a cluster links rooms across processes"));
        }
        let mut servers = Vec::new();
        let mut tls = false;
        for url in text.split(',').map(str::trim) {
            let rest = match url.split_once("://") {
                Some(("nats", rest)) => rest,
                Some(("tls", rest)) => {
                    tls = true;
                    rest
                }
                _ => {
                    return Err(invalid(
                        "cluster",
                        url.into(),
                        "URLs nats://HOST:PORT or tls://HOST:PORT, comma-separated",
                    ))
                }
            };
            let host_port = rest.strip_suffix('/').unwrap_or(rest);
            let port_ok = host_port.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
            if !port_ok || host_port.contains(['@', '/', '?', ' ']) {
                return Err(invalid(
                    "cluster",
                    url.into(),
                    "URLs nats://HOST:PORT or tls://HOST:PORT with a port and no user or password (secrets go in --cluster-credentials or --cluster-token-file)",
                ));
            }
            servers.push(url.to_string());
        }
        if given.credentials.is_some() && given.token_file.is_some() {
            return Err(invalid(
                "cluster-token-file",
                String::new(),
                "either --cluster-credentials or --cluster-token-file, not both",
            ));
        }
        if let Some(ca) = &given.ca {
            if !tls {
                return Err(invalid(
                    "cluster-ca",
                    ca.display().to_string(),
                    "only with tls:// cluster URLs: the CA checks the NATS servers' certificates",
                ));
            }
        }
        for (setting, file) in [
            ("cluster-ca", &given.ca),
            ("cluster-credentials", &given.credentials),
            ("cluster-token-file", &given.token_file),
        ] {
            if let Some(path) = file {
                std::fs::metadata(path).map_err(|source| ConfigError::File { setting, path: path.clone(), source })?;
            }
        }
        let subject_prefix = given.subject_prefix.unwrap_or_else(|| "ricochet.room.".into());
        if !subject::valid_prefix(&subject_prefix) {
            return Err(invalid(
                "cluster-subject-prefix",
                subject_prefix,
                "NATS subject tokens without spaces or wildcards, ending with a dot, such as ricochet.room.",
            ));
        }
        let queue = crate::server::config::parse_size(
            "cluster-queue",
            given.queue.as_deref().unwrap_or("8MiB"),
            64 << 10,
            1 << 34,
        )?;
        Ok(Some(ClusterSettings {
            servers,
            tls,
            ca: given.ca,
            credentials: given.credentials,
            token_file: given.token_file,
            subject_prefix,
            required: given.required,
            queue,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given(servers: &str) -> Given {
        Given { servers: Some(servers.into()), ..Given::default() }
    }

    #[test]
    fn urls_are_checked_and_listed_in_order() {
        let s = ClusterSettings::resolve(given("nats://127.0.0.1:4222, nats://h2:4223"), true).unwrap().unwrap();
        assert_eq!(s.servers, ["nats://127.0.0.1:4222", "nats://h2:4223"]);
        assert!(!s.tls);
        assert_eq!((s.subject_prefix.as_str(), s.queue), ("ricochet.room.", 8 << 20));
        assert!(ClusterSettings::resolve(given("tls://h:4222"), true).unwrap().unwrap().tls);
        for bad in ["h:4222", "http://h:4222", "nats://h", "nats://user:pw@h:4222", "nats://h:99999"] {
            let e = ClusterSettings::resolve(given(bad), true).unwrap_err().to_string();
            assert!(e.starts_with("invalid cluster "), "{bad}: {e}");
        }
    }

    #[test]
    fn a_cluster_needs_rooms_and_companions_need_a_cluster() {
        let e = ClusterSettings::resolve(given("nats://h:4222"), false).unwrap_err().to_string();
        assert!(e.contains("only with --reply room"), "{e}");
        let lone = Given { subject_prefix: Some("x.".into()), ..Given::default() };
        assert!(ClusterSettings::resolve(lone, true).unwrap_err().to_string().contains("only with --cluster"));
        assert_eq!(ClusterSettings::resolve(Given::default(), true).unwrap(), None);
    }

    #[test]
    fn secrets_come_from_files_that_exist() {
        let g = Given { credentials: Some("/nonexistent/x.creds".into()), ..given("nats://h:4222") };
        let e = ClusterSettings::resolve(g, true).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/x.creds"), "{e}");
        let both = Given {
            credentials: Some("/etc/hostname".into()),
            token_file: Some("/etc/hostname".into()),
            ..given("nats://h:4222")
        };
        assert!(ClusterSettings::resolve(both, true).unwrap_err().to_string().contains("not both"));
        let ca = Given { ca: Some("/etc/hostname".into()), ..given("nats://h:4222") };
        assert!(ClusterSettings::resolve(ca, true).unwrap_err().to_string().contains("only with tls://"));
    }
}
