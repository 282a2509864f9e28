//! Records the git commit the binary is built from (`GRADLAB_COMMIT`, "unknown" outside a git
//! checkout), for the reproducibility footer of `gradlab report`.

fn main() {
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=GRADLAB_COMMIT={commit}");
    // Every commit and checkout appends to the HEAD log.
    println!("cargo:rerun-if-changed=.git/logs/HEAD");
    println!("cargo:rerun-if-changed=build.rs");
}
