//! Records facts about the build that the binary reports and relies on.
//!
//! `BUILDINFO_UNIX_TIME` is the floor for "now" on boards without an RTC (they boot in 1970,
//! and TLS certificates would otherwise look not-yet-valid). `SOURCE_DATE_EPOCH` pins it for
//! reproducible builds.

use std::time::{SystemTime, UNIX_EPOCH};

fn main() {
    let build_time = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        });
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".into());
    let profile = std::env::var("PROFILE").unwrap_or_else(|_| "unknown".into());
    println!("cargo:rustc-env=BUILDINFO_UNIX_TIME={build_time}");
    println!("cargo:rustc-env=BUILDINFO_TARGET={target}");
    println!("cargo:rustc-env=BUILDINFO_PROFILE={profile}");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
}
