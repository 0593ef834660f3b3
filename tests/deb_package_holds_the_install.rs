//! `make deb`'s package (cargo-deb over this test's binary, in a scratch
//! target directory): the binary, stripped; the systemd unit with Debian's
//! paths, the sysctl.d file, the guides, the man pages and shell
//! completions, the example config as a conffile, and a postinst that applies
//! the sysctl file; checked with `dpkg-deb`, `man -l` and `readelf`.

use std::process::Command;

#[test]
fn the_package_holds_every_file_and_keeps_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path();
    std::fs::create_dir_all(target.join("release")).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_ricochet"), target.join("release/ricochet")).unwrap();
    // What `make deb` does before packaging.
    let generated = target.join("release/generated");
    let ok = Command::new(env!("CARGO_BIN_EXE_ricochet")).arg("generate").arg(&generated).status().unwrap();
    assert!(ok.success());
    let root = env!("CARGO_MANIFEST_DIR");
    // Only target/release/ is moved to CARGO_TARGET_DIR by cargo-deb (which
    // other target/ paths follow it differs between its versions), so every
    // other asset is a checked-in file.
    let deb = target.join("ricochet.deb");
    let out = Command::new("cargo")
        .args(["deb", "--no-build", "--strip", "--fast", "--output"])
        .arg(&deb)
        .env("CARGO_TARGET_DIR", target)
        .current_dir(root)
        .output()
        .expect("cargo deb (make deb-tools installs it)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let contents = Command::new("dpkg-deb").arg("-c").arg(&deb).output().unwrap();
    let contents = String::from_utf8_lossy(&contents.stdout);
    for f in [
        "./usr/bin/ricochet",
        "./lib/systemd/system/ricochet.service",
        "./lib/systemd/system/ricochet.socket",
        "./etc/sysctl.d/99-ricochet.conf",
        "./etc/ricochet/ricochet.toml",
        "./usr/share/doc/ricochet/docs/tuning.md",
        "./usr/share/doc/ricochet/docs/operating.md",
        "./usr/share/man/man1/ricochet.1",
        "./usr/share/man/man1/ricochet-serve.1",
        "./usr/share/man/man1/ricochet-bench.1",
        "./usr/share/man/man1/ricochet-tune.1",
        "./usr/share/bash-completion/completions/ricochet",
        "./usr/share/zsh/vendor-completions/_ricochet",
        "./usr/share/fish/vendor_completions.d/ricochet.fish",
    ] {
        assert!(contents.lines().any(|l| l.ends_with(f)), "{f} missing:\n{contents}");
    }
    let conffiles = Command::new("dpkg-deb").arg("-I").arg(&deb).arg("conffiles").output().unwrap();
    assert!(String::from_utf8_lossy(&conffiles.stdout).contains("/etc/ricochet/ricochet.toml"));

    let unpacked = target.join("root");
    assert!(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked).status().unwrap().success());
    let unit = std::fs::read_to_string(unpacked.join("lib/systemd/system/ricochet.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/bin/ricochet serve --config /etc/ricochet/ricochet.toml"), "{unit}");
    assert!(!unit.contains("/usr/local"), "{unit}");

    // The man page renders, and names the settings --help names.
    let page = Command::new("man")
        .arg("-l")
        .arg(unpacked.join("usr/share/man/man1/ricochet-serve.1"))
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .output()
        .unwrap();
    let page = String::from_utf8_lossy(&page.stdout);
    assert!(page.contains("--idle-timeout") && page.contains("--close-timeout"), "{page}");
    // Stripped: no debug sections (the test binary has line tables).
    let sections = Command::new("readelf").arg("-S").arg(unpacked.join("usr/bin/ricochet")).output().unwrap();
    let sections = String::from_utf8_lossy(&sections.stdout);
    assert!(!sections.contains(".debug_info") && !sections.contains(".debug_line"), "debug info kept:\n{sections}");
    // postinst applies the sysctl file.
    let postinst = Command::new("dpkg-deb").arg("-I").arg(&deb).arg("postinst").output().unwrap();
    assert!(String::from_utf8_lossy(&postinst.stdout).contains("99-ricochet.conf"), "no postinst");
}
