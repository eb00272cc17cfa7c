//! Sizes written for humans: `4GB`, `512MB`, `2GiB`, `1.5GB`.

use std::fmt;

/// Units accepted in sizes, for hints and docs.
pub const SIZE_UNITS: &str =
    "B, kB/KB/K, MB/M, GB/G, TB/T, PB/P (powers of 1000) or KiB/Ki, MiB/Mi, GiB/Gi, TiB/Ti, PiB/Pi (powers of 1024)";

/// A size in bytes, kept with the text it was written as.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Quantity {
    /// The size in bytes.
    pub bytes: u64,
    /// The text as written in the manifest, e.g. `4GB`.
    pub text: String,
}

impl Quantity {
    /// Parses a size like `4GB`, `1.5GiB` or `1048576` (bytes). Units are case-insensitive.
    pub fn parse(text: &str) -> Option<Quantity> {
        let trimmed = text.trim();
        let split = trimmed
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(trimmed.len());
        let (number, unit) = trimmed.split_at(split);
        if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
            return None;
        }
        let number: f64 = number.parse().ok()?;
        let multiplier = unit_multiplier(unit.trim())?;
        let bytes = number * multiplier as f64;
        if !bytes.is_finite() || bytes > u64::MAX as f64 {
            return None;
        }
        Some(Quantity {
            bytes: bytes.round() as u64,
            text: text.to_string(),
        })
    }
}

fn unit_multiplier(unit: &str) -> Option<u64> {
    let unit = unit.to_ascii_lowercase();
    let powers = ["", "k", "m", "g", "t", "p"];
    if unit.is_empty() || unit == "b" {
        return Some(1);
    }
    for (exponent, prefix) in powers.iter().enumerate().skip(1) {
        let exponent = exponent as u32;
        if unit == *prefix || unit == format!("{prefix}b") {
            return Some(1000u64.pow(exponent));
        }
        if unit == format!("{prefix}i") || unit == format!("{prefix}ib") {
            return Some(1024u64.pow(exponent));
        }
    }
    None
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_decimal_and_binary_units() {
        let bytes = |s: &str| Quantity::parse(s).map(|q| q.bytes);
        assert_eq!(bytes("4GB"), Some(4_000_000_000));
        assert_eq!(bytes("512MB"), Some(512_000_000));
        assert_eq!(bytes("2GiB"), Some(2 * 1024 * 1024 * 1024));
        assert_eq!(bytes("1.5GB"), Some(1_500_000_000));
        assert_eq!(bytes("10Gi"), Some(10 * 1024 * 1024 * 1024));
        assert_eq!(bytes("100"), Some(100));
        assert_eq!(bytes("8 gb"), Some(8_000_000_000));
        for bad in ["lots", "GB", "4XB", "", "1.", ".5GB", "-1GB"] {
            assert_eq!(bytes(bad), None, "{bad:?}");
        }
    }
}
