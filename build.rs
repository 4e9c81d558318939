//! Writes `long_version.txt` to OUT_DIR for `ringway --version`: the package version and, on a
//! second line, the git commit the build came from. Without git or outside a repository (a source
//! tarball) the commit line is left out. Only the local repository is read, never a network.

use std::process::Command;

fn main() {
    let version = env!("CARGO_PKG_VERSION");
    let long_version = match git(&["rev-parse", "--short=12", "HEAD"]) {
        Some(commit) => {
            rerun_when_head_moves();
            format!("{version}\ncommit {commit}")
        }
        None => version.to_owned(),
    };
    // A file, because cargo:rustc-env values cannot contain a newline.
    let out_dir = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR for build scripts");
    let path = std::path::Path::new(&out_dir).join("long_version.txt");
    std::fs::write(&path, long_version).expect("OUT_DIR is writable");
}

/// Returns the trimmed output of a successful git command, or `None`.
fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// Reruns this script when HEAD or the branch it points to moves, so the commit stays current
/// without rebuilding on every source change.
fn rerun_when_head_moves() {
    for name in ["HEAD", "packed-refs"] {
        if let Some(path) = git(&["rev-parse", "--git-path", name]) {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    if let Some(reference) = git(&["symbolic-ref", "-q", "HEAD"])
        && let Some(path) = git(&["rev-parse", "--git-path", &reference])
    {
        println!("cargo:rerun-if-changed={path}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
