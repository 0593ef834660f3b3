//! `make install` (here its `install-files` half, with the test's binary)
//! into a scratch root with DESTDIR and PREFIX: the binary, a systemd unit
//! whose paths follow PREFIX, the sysctl.d file, the example config (kept
//! when one is there), the guides, the man pages and shell completions.

use std::path::Path;
use std::process::Command;

fn install(root: &Path) -> std::process::Output {
    let generated = format!("{}-generated", root.display());
    let out = Command::new("make")
        .args(["-s", "install-files", "PREFIX=/opt/ricochet"])
        .arg(format!("DESTDIR={}", root.display()))
        .arg(format!("BIN={}", env!("CARGO_BIN_EXE_ricochet")))
        // Each run its own generated pages: the tests run at once.
        .arg(format!("GEN={generated}"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run make");
    let _ = std::fs::remove_dir_all(&generated);
    out
}

#[test]
fn every_file_lands_where_the_unit_expects_it() {
    let root = tempfile::tempdir().unwrap();
    let out = install(root.path());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for f in [
        "opt/ricochet/bin/ricochet",
        "etc/systemd/system/ricochet.service",
        "etc/systemd/system/ricochet.socket",
        "etc/sysctl.d/99-ricochet.conf",
        "etc/ricochet/ricochet.toml",
        "opt/ricochet/share/doc/ricochet/README.md",
        "opt/ricochet/share/doc/ricochet/docs/operating.md",
        "opt/ricochet/share/doc/ricochet/docs/settings.md",
        "opt/ricochet/share/doc/ricochet/docs/tuning.md",
        "opt/ricochet/share/man/man1/ricochet.1",
        "opt/ricochet/share/man/man1/ricochet-serve.1",
        "opt/ricochet/share/bash-completion/completions/ricochet",
        "opt/ricochet/share/zsh/vendor-completions/_ricochet",
        "opt/ricochet/share/fish/vendor_completions.d/ricochet.fish",
    ] {
        assert!(root.path().join(f).is_file(), "{f} missing");
    }
    let unit = std::fs::read_to_string(root.path().join("etc/systemd/system/ricochet.service")).unwrap();
    assert!(unit.contains("ExecStart=/opt/ricochet/bin/ricochet serve --config /etc/ricochet/ricochet.toml"), "{unit}");
    assert!(unit.contains("file:///opt/ricochet/share/doc/ricochet/"), "{unit}");
    assert!(unit.contains("Type=notify") && !unit.contains("/usr/"), "{unit}");
    // The staged binary runs, and reads the staged config as it is.
    let bin = root.path().join("opt/ricochet/bin/ricochet");
    let v = Command::new(&bin).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&v.stdout).starts_with("ricochet "));
    let config = root.path().join("etc/ricochet/ricochet.toml");
    let check =
        Command::new(&bin).args(["serve", "--config"]).arg(&config).args(["--listen", "nowhere"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert!(stderr.contains("listen") && !stderr.contains("config"), "the staged config itself is valid: {stderr}");
}

#[test]
fn an_existing_config_is_kept() {
    let root = tempfile::tempdir().unwrap();
    let config = root.path().join("etc/ricochet/ricochet.toml");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    std::fs::write(&config, "shards = 3\n").unwrap();
    assert!(install(root.path()).status.success());
    assert_eq!(std::fs::read_to_string(&config).unwrap(), "shards = 3\n");
}
