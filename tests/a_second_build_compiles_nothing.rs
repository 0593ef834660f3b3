//! `build.rs` reruns when `.git/index` changes, so asking git for the commit
//! must not rewrite it: a plain `git status` does in a fresh clone, and the
//! second `make run` there rebuilt everything (#24). Checked on a fresh
//! clone of this checkout: the commit is read, the index is untouched; and
//! the control: a plain `git status` does touch it on this git.

#[path = "../src/build_commit.rs"]
mod build_commit;

use std::path::Path;
use std::process::Command;

fn index_stamp(repo: &Path) -> (std::time::SystemTime, Vec<u8>) {
    let p = repo.join(".git/index");
    (std::fs::metadata(&p).unwrap().modified().unwrap(), std::fs::read(&p).unwrap())
}

#[test]
fn asking_for_the_commit_leaves_the_index_alone() {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    if !here.join(".git").exists() {
        eprintln!("not a git checkout: nothing to check");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let clone = dir.path().join("clone");
    let ok = Command::new("git").args(["clone", "-q", "--no-hardlinks"]).arg(here).arg(&clone).status().unwrap();
    assert!(ok.success());
    // Past the index's own second, so a rewrite shows in its timestamp.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let before = index_stamp(&clone);
    let commit = build_commit::git_commit(&clone);
    assert!(commit.len() >= 12 && !commit.ends_with("-modified"), "{commit}");
    assert!(before == index_stamp(&clone), "reading the commit rewrote .git/index");
    // The control: what build.rs did before rewrites it.
    Command::new("git").args(["status", "--porcelain"]).current_dir(&clone).output().unwrap();
    assert!(before != index_stamp(&clone), "a plain git status left the index alone: the check above proves nothing");
}
