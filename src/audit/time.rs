//! Event times: RFC 3339 in UTC with microseconds.

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ` for UNIX seconds (UTC); times before 1970 clamp to it.
pub fn rfc3339_micros(secs: f64) -> String {
    let micros = if secs.is_finite() && secs > 0.0 {
        (secs * 1e6).round() as u64
    } else {
        0
    };
    let (s, us) = (micros / 1_000_000, micros % 1_000_000);
    let (days, rem) = (s / 86_400, s % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    let mut out = *b"0000-00-00T00:00:00.000000Z";
    let mut put = |at: usize, width: usize, mut v: u64| {
        for i in (at..at + width).rev() {
            if let Some(c) = out.get_mut(i) {
                *c = b'0' + (v % 10) as u8;
            }
            v /= 10;
        }
    };
    put(0, 4, y.clamp(0, 9999) as u64);
    put(5, 2, u64::from(m));
    put(8, 2, u64::from(d));
    put(11, 2, rem / 3600);
    put(14, 2, rem % 3600 / 60);
    put(17, 2, rem % 60);
    put(20, 6, us);
    out.iter().map(|&b| char::from(b)).collect()
}

/// Parses what [`rfc3339_micros`] writes back to UNIX seconds.
pub fn parse_rfc3339_micros(t: &str) -> Option<f64> {
    let b = t.as_bytes();
    if b.len() != 27 || b.get(26) != Some(&b'Z') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> { t.get(r)?.parse().ok() };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss, us) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..26)?);
    let days = days_from_civil(y, m, d);
    Some((days * 86_400 + hh * 3600 + mm * 60 + ss) as f64 + us as f64 / 1e6)
}

// Howard Hinnant's civil calendar algorithms (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_round_trips() {
        for s in [
            0.0,
            1.5,
            951_782_400.25,
            1_800_000_000.123_456,
            4_102_444_800.0,
        ] {
            let t = rfc3339_micros(s);
            assert_eq!(t.len(), 27, "{t}");
            assert!((parse_rfc3339_micros(&t).unwrap() - s).abs() < 1e-6, "{t}");
        }
        assert_eq!(rfc3339_micros(951_782_400.0), "2000-02-29T00:00:00.000000Z");
        assert_eq!(rfc3339_micros(-5.0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(parse_rfc3339_micros("2000-02-29T00:00:00Z"), None);
    }
}
