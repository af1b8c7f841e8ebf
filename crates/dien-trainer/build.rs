//! Records the source revision for run records (`DIEN_REVISION`): the git
//! commit when the source is a git checkout, `unknown` otherwise.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    let rev = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=DIEN_REVISION={rev}");
    // Build again when HEAD moves: HEAD itself (branch switch) and the
    // branch it points at (commit), loose or packed. Only files that exist
    // are named: a missing one would make every build rerun this script.
    let branch = git(&["symbolic-ref", "-q", "HEAD"]);
    let watched = ["HEAD", branch.as_deref().unwrap_or("HEAD"), "packed-refs"];
    for name in watched {
        if let Some(file) = git(&["rev-parse", "--git-path", name])
            && std::path::Path::new(&file).exists()
        {
            println!("cargo:rerun-if-changed={file}");
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
