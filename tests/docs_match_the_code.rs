//! docs/ cannot drift from the code: the settings and metrics references are
//! what `ricochet generate` writes now (`make docs` refreshes them), and
//! every `--flag` the README and docs/ name is a flag of ricochet (or of a
//! tool they show being run, listed below with where it comes from).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

#[test]
fn the_generated_references_are_current() {
    let dir = tempfile::tempdir().unwrap();
    let ok = Command::new(env!("CARGO_BIN_EXE_ricochet")).arg("generate").arg(dir.path()).status().unwrap();
    assert!(ok.success());
    for (fresh, kept) in [("settings.md", "docs/settings.md"), ("metrics.md", "docs/metrics-reference.md")] {
        let fresh = std::fs::read_to_string(dir.path().join(fresh)).unwrap();
        let kept = std::fs::read_to_string(Path::new(ROOT).join(kept)).unwrap();
        assert!(fresh == kept, "{} is stale: run `make docs`", kept.len());
    }
}

/// Flags of other tools the documentation shows being run.
const OTHER_TOOLS: &[&str] = &[
    "--cases",           // shared/autobahn/run.sh
    "--require-ok",      // shared/autobahn/run.sh
    "--deploy-hook",     // certbot
    "--features",        // cargo
    "--release",         // cargo
    "--now",             // systemctl enable
    "--system",          // sysctl
    "--only",            // ricochet-bench (bench/runner)
    "--out",             // ricochet-bench
    "--readme",          // ricochet-bench
    "--guide",           // ricochet-bench
    "--summary",         // ricochet-bench
    "--render",          // ricochet-bench
    "--sizes",           // ricochet-bench
    "--pipelined-sizes", // ricochet-bench
    "--tls-sizes",       // ricochet-bench
    "--deflate-sizes",   // ricochet-bench
    "--latency-loads",   // ricochet-bench
    "--storm",           // ricochet-bench
    "--quick",           // ricochet-bench
    "--bench",           // scripts/install-deps.sh (what make bench needs)
];

fn flags_in(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let b = text.as_bytes();
    let mut i = 0;
    while i + 2 < b.len() {
        let starts =
            b[i] == b'-' && b[i + 1] == b'-' && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'-'));
        if starts && b[i + 2].is_ascii_lowercase() {
            let mut j = i + 2;
            while j < b.len() && (b[j].is_ascii_lowercase() || b[j].is_ascii_digit() || b[j] == b'-') {
                j += 1;
            }
            out.insert(text[i..j].trim_end_matches('-').to_string());
            i = j;
        } else {
            i += 1;
        }
    }
    out
}

#[test]
fn every_flag_the_documentation_names_exists() {
    let mut known: BTreeSet<String> = OTHER_TOOLS.iter().map(|s| s.to_string()).collect();
    for sub in [&["--help"][..], &["serve", "--help"], &["bench", "--help"], &["tune", "--help"]] {
        let out = Command::new(env!("CARGO_BIN_EXE_ricochet")).args(sub).output().unwrap();
        known.extend(flags_in(&String::from_utf8_lossy(&out.stdout)));
    }
    let mut pages = vec![Path::new(ROOT).join("README.md"), Path::new(ROOT).join("tuning/README.md")];
    for e in std::fs::read_dir(Path::new(ROOT).join("docs")).unwrap().flatten() {
        if e.path().extension().is_some_and(|x| x == "md") {
            pages.push(e.path());
        }
    }
    let mut unknown = Vec::new();
    for p in &pages {
        let text = std::fs::read_to_string(p).unwrap();
        for f in flags_in(&text) {
            if !known.contains(&f) {
                unknown.push(format!("{}: {f}", p.display()));
            }
        }
    }
    assert!(unknown.is_empty(), "flags that do not exist:\n{}", unknown.join("\n"));
}

#[test]
fn every_crate_the_workspace_uses_is_in_the_dependencies_chapter() {
    let chapter = std::fs::read_to_string(Path::new(ROOT).join("docs/dependencies.md")).unwrap();
    let mut missing = Vec::new();
    for manifest in ["Cargo.toml", "bench/peers/Cargo.toml", "bench/runner/Cargo.toml"] {
        let text = std::fs::read_to_string(Path::new(ROOT).join(manifest)).unwrap();
        let doc: toml::Table = text.parse().unwrap();
        for section in ["dependencies", "dev-dependencies", "build-dependencies"] {
            let Some(deps) = doc.get(section).and_then(|d| d.as_table()) else { continue };
            for (key, spec) in deps {
                // `webpki = { package = "rustls-webpki" }`: the crate's own name.
                let name = spec.get("package").and_then(|p| p.as_str()).unwrap_or(key);
                if spec.get("path").is_some() {
                    continue; // a member of this workspace
                }
                if !chapter.contains(&format!("`{name}`")) {
                    missing.push(format!("{manifest} [{section}] {name}"));
                }
            }
        }
    }
    assert!(missing.is_empty(), "docs/dependencies.md does not account for:\n{}", missing.join("\n"));
}
