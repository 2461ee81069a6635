//! Sizes as the CLI reads and prints them.

/// A byte count or a number with a unit, each with its true meaning:
/// `10GB` is 10^10 bytes, `10GiB` is 10 * 2^30. A bare letter (`500G`,
/// `1T`) is binary, as in qemu-img and dd, because that is what admins
/// sizing disks mean by it.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    if t.starts_with('-') {
        return Err(format!("invalid size {s:?}: a size cannot be negative"));
    }
    let bare_letter = t.len() >= 2
        && t.ends_with(|c: char| "kKmMgGtTpPeE".contains(c))
        && t[..t.len() - 1].trim_end().ends_with(|c: char| c.is_ascii_digit());
    let spelled = if bare_letter { format!("{t}iB") } else { t.to_owned() };
    let bytes = parse_size::Config::new()
        .parse_size(&spelled)
        .map_err(|e| format!("invalid size {s:?}: {e} (use a byte count or units like 512MiB, 10GiB, 10GB)"))?;
    if bytes == 0 {
        return Err(format!("invalid size {s:?}: a size must be more than 0 bytes"));
    }
    Ok(bytes)
}

#[cfg(test)]
mod size_tests {
    use super::parse_size;

    #[test]
    fn decimal_and_binary_units_keep_their_meanings() {
        assert_eq!(parse_size("10GB"), Ok(10_000_000_000));
        assert_eq!(parse_size("10GiB"), Ok(10 << 30));
        assert_eq!(parse_size("10G"), Ok(10 << 30));
        assert_eq!(parse_size("1 TB"), Ok(1_000_000_000_000));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert_eq!(parse_size("4096"), Ok(4096));
        for bad in ["10XB", "-1", "0", "", "GiB", "1.5.5G"] {
            assert!(parse_size(bad).is_err(), "{bad} accepted");
        }
        assert!(parse_size("-1").unwrap_err().contains("negative"));
    }
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
    date_text_in(unix_secs, "UTC")
}

/// A Unix time as a date in the IANA timezone `tz` (the gateway's, chosen
/// at activation), with the zone's abbreviation: `2026-12-04 17:30:05 CET`.
/// An unknown zone falls back to UTC.
pub fn date_text_in(unix_secs: u64, tz: &str) -> String {
    let Some(at) = i64::try_from(unix_secs).ok().and_then(|s| jiff::Timestamp::from_second(s).ok()) else {
        return format!("@{unix_secs}");
    };
    let zone = jiff::tz::TimeZone::get(tz).unwrap_or(jiff::tz::TimeZone::UTC);
    at.to_zoned(zone).strftime("%Y-%m-%d %H:%M:%S %Z").to_string()
}

#[cfg(test)]
mod date_tests {
    #[test]
    fn dates() {
        assert_eq!(super::date_text(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(super::date_text(1_796_400_000), "2026-12-04 16:00:00 UTC");
        assert_eq!(super::date_text_in(1_796_400_000, "No/Such_Zone"), "2026-12-04 16:00:00 UTC");
        // Where the system has zoneinfo (the appliance ships tzdata).
        if std::path::Path::new("/usr/share/zoneinfo/Europe/Paris").exists() {
            assert_eq!(super::date_text_in(1_796_400_000, "Europe/Paris"), "2026-12-04 17:00:00 CET");
            assert_eq!(super::date_text_in(1_782_000_000, "Europe/Paris"), "2026-06-21 02:00:00 CEST");
        }
    }
}
