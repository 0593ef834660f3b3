// The commit a build comes from, as `ricochet --version` shows it: shared by
// `build.rs` (through `include!`) and the test that checks asking for it
// leaves the checkout alone (`tests/a_second_build_compiles_nothing.rs`).
// Not a module of the crate.

/// `git rev-parse --short=12 HEAD` in `dir`, with `-modified` when tracked
/// files differ from it; "unknown" outside a git checkout (a source package).
///
/// Git is asked with `--no-optional-locks`: a plain `git status` refreshes
/// and rewrites `.git/index` (it does in every fresh clone), one of the files
/// `build.rs` reruns on, so the next `make run` rebuilt everything (#24).
pub fn git_commit(dir: &std::path::Path) -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("--no-optional-locks")
            .args(args)
            .current_dir(dir)
            .output()
            .ok()
            .filter(|o| o.status.success())
    };
    let commit = git(&["rev-parse", "--short=12", "HEAD"])
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|c| !c.is_empty());
    let Some(commit) = commit else { return "unknown".into() };
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|o| !o.stdout.is_empty());
    if dirty {
        format!("{commit}-modified")
    } else {
        commit
    }
}
