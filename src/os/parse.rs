//! Allocation-free parsers for the /proc and cgroup text formats.
//!
//! Every function takes bytes and returns `None` for anything malformed: text from
//! the kernel (or a fixture, or a broken mount) never panics the sampler.

/// v1 reports "no limit" as the largest page-aligned `i64`: 0x7FFF_FFFF_FFFF_F000 with
/// 4 KiB pages, 0x7FFF_FFFF_FFFF_0000 with 64 KiB pages. Anything at or above the
/// smaller one is no limit.
pub(crate) const V1_UNLIMITED: u64 = 0x7FFF_FFFF_FFFF_0000;

/// Strips ASCII whitespace from both ends.
pub(crate) fn trim(mut bytes: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = bytes {
        if first.is_ascii_whitespace() {
            bytes = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = bytes {
        if last.is_ascii_whitespace() {
            bytes = rest;
        } else {
            break;
        }
    }
    bytes
}

/// A decimal `u64`, surrounding whitespace allowed; `None` if empty, not all digits,
/// or overflowing.
pub(crate) fn parse_u64(bytes: &[u8]) -> Option<u64> {
    let bytes = trim(bytes);
    if bytes.is_empty() {
        return None;
    }
    let mut value: u64 = 0;
    for &b in bytes {
        if !b.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(value)
}

/// A cgroup limit file: `Some(None)` for no limit (v2 `max`, v1's sentinel),
/// `Some(Some(bytes))` for a limit, `None` if malformed.
pub(crate) fn parse_limit(bytes: &[u8]) -> Option<Option<u64>> {
    let bytes = trim(bytes);
    if bytes == b"max" {
        return Some(None);
    }
    let value = parse_u64(bytes)?;
    Some((value < V1_UNLIMITED).then_some(value))
}

/// A non-negative decimal with an optional fraction ("12.34"); `None` if malformed.
pub(crate) fn parse_decimal(bytes: &[u8]) -> Option<f64> {
    let bytes = trim(bytes);
    let (whole, fraction) = match bytes.iter().position(|&b| b == b'.') {
        Some(dot) => (&bytes[..dot], &bytes[dot + 1..]),
        None => (bytes, &b""[..]),
    };
    let mut value = parse_u64(whole)? as f64;
    let mut scale = 0.1;
    for &b in fraction {
        if !b.is_ascii_digit() {
            return None;
        }
        value += f64::from(b - b'0') * scale;
        scale /= 10.0;
    }
    Some(value)
}

/// The rest of the first line that starts with `key` followed by whitespace (or by
/// nothing), trimmed. `key` includes any separator, e.g. `b"MemAvailable:"`.
pub(crate) fn field<'a>(text: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    text.split(|&b| b == b'\n').find_map(|line| {
        let rest = line.strip_prefix(key)?;
        match rest.first() {
            None => Some(rest),
            Some(b) if b.is_ascii_whitespace() => Some(trim(rest)),
            Some(_) => None,
        }
    })
}

/// A `key value` line of `memory.stat`, in bytes.
pub(crate) fn stat_value(text: &[u8], key: &[u8]) -> Option<u64> {
    parse_u64(field(text, key)?)
}

/// A `/proc/meminfo` line (`MemAvailable:   24321104 kB`), in bytes.
pub(crate) fn meminfo_value(text: &[u8], key: &[u8]) -> Option<u64> {
    let rest = field(text, key)?;
    let mut tokens = rest
        .split(|b| b.is_ascii_whitespace())
        .filter(|t| !t.is_empty());
    let number = parse_u64(tokens.next()?)?;
    match tokens.next() {
        None => Some(number),
        Some(b"kB") => number.checked_mul(1024),
        Some(_) => None,
    }
}

/// Resident pages from `/proc/self/statm` (its second field).
pub(crate) fn statm_resident_pages(text: &[u8]) -> Option<u64> {
    let mut tokens = trim(text)
        .split(|b| b.is_ascii_whitespace())
        .filter(|t| !t.is_empty());
    tokens.next()?;
    parse_u64(tokens.next()?)
}

/// `avg10` of the `some` and `full` lines of a PSI file, in percent. `full` is absent
/// on old kernels' system-wide CPU file; for memory it is always there.
pub(crate) fn psi_avg10(text: &[u8]) -> Option<(f64, Option<f64>)> {
    let avg10 = |line: &[u8]| {
        line.split(|b| b.is_ascii_whitespace())
            .find_map(|token| token.strip_prefix(b"avg10="))
            .and_then(parse_decimal)
    };
    let some = avg10(field(text, b"some")?)?;
    let full = field(text, b"full").and_then(avg10);
    Some((some, full))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers() {
        assert_eq!(parse_u64(b" 42\n"), Some(42));
        assert_eq!(parse_u64(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64(b"18446744073709551616"), None);
        assert_eq!(parse_u64(b""), None);
        assert_eq!(parse_u64(b"-1"), None);
        assert_eq!(parse_u64(b"12a"), None);
        assert_eq!(parse_u64(b"1 2"), None);
    }

    #[test]
    fn limits() {
        assert_eq!(parse_limit(b"max\n"), Some(None));
        assert_eq!(parse_limit(b"9223372036854771712\n"), Some(None)); // 4 KiB pages
        assert_eq!(parse_limit(b"9223372036854710272\n"), Some(None)); // 64 KiB pages
        assert_eq!(parse_limit(b"536870912\n"), Some(Some(512 << 20)));
        assert_eq!(parse_limit(b"0\n"), Some(Some(0)));
        assert_eq!(parse_limit(b"maximum"), None);
        assert_eq!(parse_limit(b""), None);
    }

    #[test]
    fn decimals() {
        assert_eq!(parse_decimal(b"0.00"), Some(0.0));
        assert_eq!(parse_decimal(b"12"), Some(12.0));
        assert!((parse_decimal(b"12.34").unwrap() - 12.34).abs() < 1e-9);
        assert_eq!(parse_decimal(b"1.2.3"), None);
        assert_eq!(parse_decimal(b".5"), None);
        assert_eq!(parse_decimal(b"x"), None);
    }

    #[test]
    fn fields_match_whole_keys() {
        let stat = b"inactive_file_extra 1\ninactive_file 4096\ntotal_inactive_file 8192\n";
        assert_eq!(stat_value(stat, b"inactive_file"), Some(4096));
        assert_eq!(stat_value(stat, b"total_inactive_file"), Some(8192));
        assert_eq!(stat_value(stat, b"active_file"), None);
        assert_eq!(stat_value(b"inactive_file lots\n", b"inactive_file"), None);
    }

    #[test]
    fn meminfo() {
        let text = b"MemTotal:       24684096 kB\nMemFree: 1 kB\nMemAvailable:   24321104 kB\nHugePages_Total:       0\n";
        assert_eq!(meminfo_value(text, b"MemTotal:"), Some(24684096 * 1024));
        assert_eq!(meminfo_value(text, b"MemAvailable:"), Some(24321104 * 1024));
        assert_eq!(meminfo_value(text, b"HugePages_Total:"), Some(0));
        assert_eq!(meminfo_value(b"MemTotal: 5 MB\n", b"MemTotal:"), None);
        assert_eq!(meminfo_value(b"MemTotal: kB\n", b"MemTotal:"), None);
    }

    #[test]
    fn statm() {
        assert_eq!(statm_resident_pages(b"765 443 415 5 0 123 0\n"), Some(443));
        assert_eq!(statm_resident_pages(b"765\n"), None);
        assert_eq!(statm_resident_pages(b""), None);
    }

    #[test]
    fn psi() {
        let text = b"some avg10=1.50 avg60=0.00 avg300=0.00 total=10\nfull avg10=0.25 avg60=0.00 avg300=0.00 total=2\n";
        let (some, full) = psi_avg10(text).unwrap();
        assert!((some - 1.5).abs() < 1e-9);
        assert!((full.unwrap() - 0.25).abs() < 1e-9);
        assert_eq!(psi_avg10(b"some avg60=1.00\n"), None);
        assert_eq!(psi_avg10(b"garbage"), None);
        let only_some = psi_avg10(b"some avg10=3.00 avg60=0.00\n").unwrap();
        assert_eq!(only_some, (3.0, None));
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever the kernel, a fixture or a broken mount hands over: no panic.
        #[test]
        fn arbitrary_bytes_never_panic(text in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_u64(&text);
            let _ = parse_limit(&text);
            let _ = parse_decimal(&text);
            let _ = stat_value(&text, b"inactive_file");
            let _ = meminfo_value(&text, b"MemAvailable:");
            let _ = statm_resident_pages(&text);
            let _ = psi_avg10(&text);
        }

        #[test]
        fn integers_round_trip(n in any::<u64>()) {
            let text = std::format!(" {n}\n");
            prop_assert_eq!(parse_u64(text.as_bytes()), Some(n));
            let meminfo = std::format!("MemTotal: {n} kB\n");
            prop_assert_eq!(meminfo_value(meminfo.as_bytes(), b"MemTotal:"), n.checked_mul(1024));
        }
    }
}
