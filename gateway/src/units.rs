//! Sizes as the CLI reads and prints them.

/// `10GiB`, `500G`, `1T` or a byte count; units are binary.
pub fn parse_size(s: &str) -> Result<u64, String> {
    parse_size::Config::new().with_binary().parse_size(s).map_err(|e| format!("invalid size {s:?}: {e}"))
}

/// Bytes in the largest binary unit that keeps the number at least 1.
pub fn size_text(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A Unix time as a UTC date for people: `2026-12-04 16:30:05 UTC`.
pub fn date_text(unix_secs: u64) -> String {
    match i64::try_from(unix_secs).ok().and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok()) {
        Some(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        None => format!("@{unix_secs}"),
    }
}

#[cfg(test)]
mod date_tests {
    #[test]
    fn dates() {
        assert_eq!(super::date_text(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(super::date_text(1_796_400_000), "2026-12-04 16:00:00 UTC");
    }
}
