// SPDX-License-Identifier: GPL-2.0

//! Sizes in human units: `512K`, `1G`, `2048s` (sectors), plain bytes.

/// Parses a size: a number with an optional binary suffix `K`, `M`, `G`,
/// `T` (KiB, MiB, ...; `KiB` and `k` accepted too), `s` for 512-byte
/// sectors, or none for bytes. Returns bytes.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(format!("'{s}' is not a size (e.g. 512K, 1G, 2048s)"));
    }
    let n: u64 = num
        .parse()
        .map_err(|_| format!("'{s}': number too large"))?;
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "s" => 512,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => {
            return Err(format!(
                "'{s}': unknown unit '{unit}' (use K, M, G, T or s)"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("'{s}': size too large"))
}

/// Parses a size that must be a whole number of 512-byte sectors; returns
/// sectors.
pub fn parse_sectors(s: &str) -> Result<u64, String> {
    let b = parse_bytes(s)?;
    if b % 512 != 0 {
        return Err(format!("'{s}' is not a multiple of 512 bytes"));
    }
    Ok(b / 512)
}

/// Formats a byte count with a binary unit and at most one decimal:
/// `512.0K`, `1.5G`, `100B`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["K", "M", "G", "T", "P"];
    if bytes < 1024 {
        return format!("{bytes}B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if v.fract() == 0.0 {
        format!("{v:.0}{}", UNITS[u])
    } else {
        format!("{v:.1}{}", UNITS[u])
    }
}

/// Formats seconds as `1h02m`, `3m05s` or `12s`.
pub fn duration(secs: u64) -> String {
    if secs >= 3600 {
        format!("{}h{:02}m", secs / 3600, secs % 3600 / 60)
    } else if secs >= 60 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{secs}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("512K"), Ok(512 << 10));
        assert_eq!(parse_bytes("512k"), Ok(512 << 10));
        assert_eq!(parse_bytes("1G"), Ok(1 << 30));
        assert_eq!(parse_bytes("1GiB"), Ok(1 << 30));
        assert_eq!(parse_bytes("2048s"), Ok(2048 * 512));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert!(parse_bytes("").is_err());
        assert!(parse_bytes("K").is_err());
        assert!(parse_bytes("-1K").is_err());
        assert!(parse_bytes("1X").is_err());
        assert!(parse_bytes("99999999999999999999").is_err());
        assert!(parse_bytes("16777216T").is_err());
        assert_eq!(parse_sectors("512K"), Ok(1024));
        assert!(parse_sectors("100").is_err());
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human(100), "100B");
        assert_eq!(human(512 << 10), "512K");
        assert_eq!(human(3 << 29), "1.5G");
        assert_eq!(duration(5), "5s");
        assert_eq!(duration(185), "3m05s");
        assert_eq!(duration(3720), "1h02m");
    }
}
