//! Facts about this binary: version, target, allocator, compiled features, build time.

/// Cargo features compiled into this build, as `--version` lists them.
pub fn features() -> Vec<&'static str> {
    // One line per optional feature as they land (tensorrt, v4l2, api, ...).
    let all: &[(&str, bool)] = &[
        ("v4l2", cfg!(feature = "v4l2")),
        ("video", cfg!(feature = "video")),
        ("multithread", cfg!(feature = "multithread")),
        ("rten", cfg!(feature = "rten")),
        ("onnxruntime", cfg!(feature = "onnxruntime")),
        ("system-allocator", cfg!(feature = "system-allocator")),
    ];
    all.iter().filter(|(_, on)| *on).map(|(name, _)| *name).collect()
}

pub fn target() -> &'static str {
    env!("BUILDINFO_TARGET")
}

pub fn allocator() -> &'static str {
    if cfg!(all(target_env = "musl", not(feature = "system-allocator"))) {
        "mimalloc"
    } else {
        "system"
    }
}

/// Seconds since the epoch when this binary was built (or `SOURCE_DATE_EPOCH`): the floor for
/// "now" on boards whose clock starts in 1970.
pub fn build_unix_time() -> u64 {
    env!("BUILDINFO_UNIX_TIME").parse().unwrap_or(0)
}

/// The `--version` text.
pub fn version_text() -> String {
    let features = features();
    let features = if features.is_empty() { "none".to_string() } else { features.join(", ") };
    format!(
        "outpost {}\ntarget: {} ({} profile)\nallocator: {}\nfeatures: {}\nbuilt: {}\n",
        env!("CARGO_PKG_VERSION"),
        target(),
        env!("BUILDINFO_PROFILE"),
        allocator(),
        features,
        utc_date(build_unix_time()),
    )
}

/// `YYYY-MM-DD` for a Unix time (Howard Hinnant's civil-from-days).
pub fn utc_date(unix: u64) -> String {
    let days = (unix / 86_400) as i64 + 719_468;
    let era = days.div_euclid(146_097);
    let doe = days.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(951_782_400), "2000-02-29");
        assert_eq!(utc_date(1_795_651_200), "2026-11-26");
    }

    #[test]
    fn build_time_is_recorded() {
        assert!(build_unix_time() > 1_700_000_000);
    }
}
