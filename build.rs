//! Records the git commit the binary is built from, for `ricochet --version`
//! (see `src/build_commit.rs`).

include!("src/build_commit.rs");

fn main() {
    let commit = git_commit(std::path::Path::new("."));
    println!("cargo:rustc-env=RICOCHET_GIT_COMMIT={commit}");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/index");
    println!("cargo:rerun-if-changed=src/build_commit.rs");
}
