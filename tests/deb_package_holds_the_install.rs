//! `make deb`'s package (cargo-deb over this test's binary, in a scratch
//! target directory): the binary, the systemd unit with Debian's paths, the
//! sysctl.d file, the guides, and the example config as a conffile, checked
//! with `dpkg-deb`.

use std::process::Command;

#[test]
fn the_package_holds_every_file_and_keeps_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path();
    std::fs::create_dir_all(target.join("release")).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_ricochet"), target.join("release/ricochet")).unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    // Only target/release/ is moved to CARGO_TARGET_DIR by cargo-deb (which
    // other target/ paths follow it differs between its versions), so every
    // other asset is a checked-in file.
    let deb = target.join("ricochet.deb");
    let out = Command::new("cargo")
        .args(["deb", "--no-build", "--no-strip", "--fast", "--output"])
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
        "./etc/sysctl.d/99-ricochet.conf",
        "./etc/ricochet/ricochet.toml",
        "./usr/share/doc/ricochet/tuning/README.md",
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
}
