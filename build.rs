//! Records the git commit the binary is built from (`GRADLAB_COMMIT`, "unknown" outside a git
//! checkout), for the reproducibility footer of `gradlab report`; and which SIMD instruction sets
//! the building CPU has (`cpu_avx2`, `cpu_avx2_fma`, `cpu_avx512f`), so that a test of a kernel
//! variant the CPU cannot run is reported as ignored, with the reason, not passed.

fn main() {
    for feature in ["cpu_avx2", "cpu_avx2_fma", "cpu_avx512f"] {
        println!("cargo:rustc-check-cfg=cfg({feature})");
    }
    #[cfg(target_arch = "x86_64")]
    {
        let avx2 = std::arch::is_x86_feature_detected!("avx2");
        if avx2 {
            println!("cargo:rustc-cfg=cpu_avx2");
        }
        if avx2 && std::arch::is_x86_feature_detected!("fma") {
            println!("cargo:rustc-cfg=cpu_avx2_fma");
        }
        if std::arch::is_x86_feature_detected!("avx512f") {
            println!("cargo:rustc-cfg=cpu_avx512f");
        }
    }
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
