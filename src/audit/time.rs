//! Event times: RFC 3339 in UTC with microseconds (`2027-01-15T08:00:00.250000Z`).
//!
//! Writing is done here by hand, on the filter's audit path: chrono's formatter (which
//! regorus already links) measured 2.6 KB more `.wasm` for ~20-50 ns less per event (of
//! ~3-4 µs natively). The tests check it against chrono. Reading (the offline verifier,
//! never in the filter) is chrono's.

use chrono::DateTime;

/// 9999-12-31T23:59:59.999999Z: the last time RFC 3339's four-digit years can write.
const MAX_MICROS: u64 = 253_402_300_799_999_999;

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ` for UNIX seconds (UTC); times before 1970 (and what is
/// not a number) clamp to 1970, times after 9999 to its last microsecond.
pub fn rfc3339_micros(secs: f64) -> String {
    let micros = if secs.is_finite() && secs > 0.0 {
        // A float-to-int `as` saturates; the clamp keeps the year at four digits.
        ((secs * 1e6).round() as u64).min(MAX_MICROS)
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

/// Howard Hinnant's `civil_from_days` (proleptic Gregorian): days since 1970-01-01 to
/// (year, month, day).
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

/// Parses what [`rfc3339_micros`] writes (exactly that form: `T`, six fraction digits and
/// `Z`) back to UNIX seconds; `None` for anything else, an impossible date included.
pub fn parse_rfc3339_micros(t: &str) -> Option<f64> {
    let b = t.as_bytes();
    if b.len() != 27
        || b.get(10) != Some(&b'T')
        || b.get(19) != Some(&b'.')
        || b.get(26) != Some(&b'Z')
    {
        return None;
    }
    let at = DateTime::parse_from_rfc3339(t).ok()?;
    Some(at.timestamp() as f64 + f64::from(at.timestamp_subsec_micros()) / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{SecondsFormat, Utc};
    use proptest::prelude::*;

    /// What chrono writes for `micros` since the epoch.
    fn chrono_micros(micros: i64) -> String {
        DateTime::<Utc>::from_timestamp_micros(micros)
            .unwrap()
            .to_rfc3339_opts(SecondsFormat::Micros, true)
    }

    /// What chrono writes for UNIX seconds `secs`, at the microsecond the float rounds to
    /// (large seconds lose sub-microsecond precision as f64) and within four-digit years.
    fn chrono_secs(secs: f64) -> String {
        chrono_micros(((secs * 1e6).round() as i64).min(MAX_MICROS as i64))
    }

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

    #[test]
    fn times_are_utc_with_microseconds_and_four_digit_years() {
        assert_eq!(
            rfc3339_micros(1_800_000_000.25),
            "2027-01-15T08:00:00.250000Z"
        );
        assert_eq!(rfc3339_micros(0.000_000_4), "1970-01-01T00:00:00.000000Z");
        assert_eq!(rfc3339_micros(0.000_000_6), "1970-01-01T00:00:00.000001Z");
        for not_a_time in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(rfc3339_micros(not_a_time), "1970-01-01T00:00:00.000000Z");
        }
        for far in [1e12, 1e300] {
            assert_eq!(rfc3339_micros(far), "9999-12-31T23:59:59.999999Z", "{far}");
        }
        assert_eq!(
            rfc3339_micros(MAX_MICROS as f64 / 1e6),
            chrono_micros(MAX_MICROS as i64)
        );
    }

    #[test]
    fn writes_what_chrono_writes_on_calendar_edges() {
        // Leap days, century rules (1900 and 2100 are not leap years, 2000 is), year ends.
        for (y, m, d) in [
            (1970, 1, 1),
            (1972, 2, 29),
            (1999, 12, 31),
            (2000, 2, 29),
            (2000, 3, 1),
            (2024, 2, 29),
            (2100, 2, 28),
            (2100, 3, 1),
            (2400, 2, 29),
            (9999, 12, 31),
        ] {
            let day = chrono::NaiveDate::from_ymd_opt(y, m, d).unwrap();
            for (h, min, s, us) in [(0, 0, 0, 0), (23, 59, 59, 999_999), (12, 30, 1, 1)] {
                let at = day.and_hms_micro_opt(h, min, s, us).unwrap().and_utc();
                let micros = at.timestamp_micros();
                let secs = micros as f64 / 1e6;
                assert_eq!(
                    rfc3339_micros(secs),
                    chrono_secs(secs),
                    "{y}-{m}-{d} {h}:{min}:{s}.{us}"
                );
            }
        }
    }

    proptest! {
        #[test]
        fn writes_what_chrono_writes(micros in 0i64..=MAX_MICROS as i64) {
            let secs = micros as f64 / 1e6;
            prop_assert_eq!(rfc3339_micros(secs), chrono_secs(secs));
        }

        #[test]
        fn reads_what_it_writes(micros in 0i64..=4_102_444_800_000_000) {
            let secs = micros as f64 / 1e6;
            let back = parse_rfc3339_micros(&rfc3339_micros(secs)).unwrap();
            prop_assert!((back - secs).abs() < 1e-6);
        }
    }

    #[test]
    fn only_the_written_form_parses() {
        assert_eq!(
            parse_rfc3339_micros("2027-01-15T08:00:00.250000Z"),
            Some(1_800_000_000.25)
        );
        for other in [
            "2027-01-15T08:00:00.250000+00:00",
            "2027-01-15T08:00:00.25000Z",
            "2027-01-15 08:00:00.250000Z",
            "2027-01-15t08:00:00.250000Z",
            "2027-01-15T08:00:00,250000Z",
            "2027-13-15T08:00:00.250000Z",
            "2027-02-29T08:00:00.250000Z",
            "2027-01-15T24:00:00.250000Z",
            "+027-01-15T08:00:00.250000Z",
            "2027-01-15T08:00:00.2500000",
            "",
        ] {
            assert_eq!(parse_rfc3339_micros(other), None, "{other}");
        }
    }
}
