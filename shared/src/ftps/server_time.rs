//! The times a server reports for its files: how precise each one is, which zone its
//! wall-clock is in, and which values are too absurd to be believed.
//!
//! A download is known by its flow, remote name, size and modification time before it is
//! fetched, so a time that is coarser than the changes it must tell apart lets a replaced
//! file pass for one already fetched. What each source gives:
//!
//! | source | precision | zone |
//! |---|---|---|
//! | `MLSD` `modify=` fact, `MDTM` reply (RFC 3659) | [`TimePrecision::Exact`] (whole seconds; fractions are dropped so that both sources give the same value) | UTC by the RFC; `MDTM` in `ftps.connection.mdtm_timezone` for servers that break it (vsftpd with `use_localtime=YES`) |
//! | Unix `LIST`, `HH:MM` form (files of the last ~6 months) | [`TimePrecision::Minute`] | the server's local time: `ftps.connection.listing_timezone` |
//! | Unix `LIST`, year form (older files) | [`TimePrecision::Day`] | idem (midnight of that local day) |
//! | DOS/IIS `LIST` | [`TimePrecision::Minute`] | idem |
//! | nothing, or an absurd value | [`TimePrecision::Unknown`] | |
//!
//! **Daylight saving.** A wall-clock time in the hour repeated when clocks go back names two
//! instants, and one in the hour skipped when they go forward names none. ferry takes the
//! earlier of the two instants the wall-clock could mean under the offsets in force just
//! before and just after the change (for the skipped hour, that is the offset after it). The
//! rule is fixed, so one listing line always gives the same instant, hence the same
//! download key; the cost is that a file written in the second pass of a repeated hour looks
//! one hour older than it is.
//!
//! **Absurd values.** A partner's reply is untrusted input: a time before 1970 or more than
//! a year after ferry's clock (year 0, year 9999) is no evidence of when the file changed,
//! so it is treated as no time at all ([`TimePrecision::Unknown`] in a listing, an error
//! from `MDTM`), never as a value that every version of the file would share.

use chrono::{DateTime, NaiveDateTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;

/// How precisely a [`RemoteEntry`](super::RemoteEntry)'s modification time is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimePrecision {
    /// To the second, from `MLSD` or `MDTM`: two versions of a file written in different
    /// seconds have different times.
    Exact,
    /// To the minute, from a `LIST` line (`Nov  5 13:46`, or the DOS format): a file
    /// replaced within the same minute keeps its time.
    Minute,
    /// To the day, from a `LIST` line of an older file (`Nov  5  2024`): the time is
    /// midnight of that day in the listing's zone.
    Day,
    /// The server gave no time, or one that cannot be believed.
    Unknown,
}

impl TimePrecision {
    /// Whether the time is to the second.
    pub fn is_exact(self) -> bool {
        self == TimePrecision::Exact
    }

    /// How much later than the stated time the file may really have changed: the rest of
    /// its second, minute or day (a local day lasts up to 25 hours); `None` when unknown.
    /// Add one hour for a time in the repeated hour of a daylight-saving change (see the
    /// module docs).
    pub fn span(self) -> Option<TimeDelta> {
        match self {
            TimePrecision::Exact => Some(TimeDelta::seconds(1)),
            TimePrecision::Minute => Some(TimeDelta::minutes(1)),
            TimePrecision::Day => Some(TimeDelta::hours(25)),
            TimePrecision::Unknown => None,
        }
    }

    /// A short stable name: `exact`, `minute`, `day`, `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            TimePrecision::Exact => "exact",
            TimePrecision::Minute => "minute",
            TimePrecision::Day => "day",
            TimePrecision::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for TimePrecision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How far past ferry's clock a server's time may lie and still be believed.
const FAR_FUTURE: TimeDelta = TimeDelta::days(366);

/// `local`, a wall-clock time in `zone`, as an instant: the earlier instant in a repeated
/// hour, the offset after the change in a skipped one (module docs). `None` only at the
/// edges of chrono's range.
pub(crate) fn to_utc(local: NaiveDateTime, zone: Tz) -> Option<DateTime<Utc>> {
    use chrono::LocalResult;
    match zone.from_local_datetime(&local) {
        LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
        LocalResult::Ambiguous(a, b) => Some(a.min(b).with_timezone(&Utc)),
        LocalResult::None => {
            // A day either side lies outside the gap (no zone changes its offset twice in
            // a day); read the wall-clock with each of those offsets and keep the earlier.
            let day = TimeDelta::days(1);
            [local.checked_sub_signed(day), local.checked_add_signed(day)]
                .into_iter()
                .flatten()
                .filter_map(|around| {
                    let offset = zone.offset_from_utc_datetime(&around);
                    let shift = TimeDelta::seconds(i64::from(
                        chrono::Offset::fix(&offset).local_minus_utc(),
                    ));
                    local.checked_sub_signed(shift)
                })
                .min()
                .map(|utc| Utc.from_utc_datetime(&utc))
        }
    }
}

/// Whether `t` can be a file's modification time seen at `now`: not before 1970 (less a
/// day, for zones east of UTC) and not more than a year ahead.
pub(crate) fn plausible(t: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    let earliest = DateTime::<Utc>::UNIX_EPOCH - TimeDelta::days(1);
    t >= earliest
        && now
            .checked_add_signed(FAR_FUTURE)
            .is_none_or(|latest| t <= latest)
}

/// `YYYYMMDDHHMMSS[.sss]` (RFC 3659 `time-val`) as a wall-clock time, fractions dropped.
/// Strict: exactly fourteen digits, then optionally `.` and one or more digits.
pub(crate) fn parse_time_val(text: &str) -> Option<NaiveDateTime> {
    let (main, fraction) = match text.split_once('.') {
        Some((m, f)) => (m, Some(f)),
        None => (text, None),
    };
    if main.len() != 14 || !main.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if fraction.is_some_and(|f| f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit())) {
        return None;
    }
    NaiveDateTime::parse_from_str(main, "%Y%m%d%H%M%S").ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn wall(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, mo, d)
            .unwrap()
            .and_hms_opt(h, mi, 0)
            .unwrap()
    }

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    #[test]
    fn local_times_become_instants() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        // Winter (+01:00) and summer (+02:00).
        assert_eq!(
            to_utc(wall(2026, 12, 4, 9, 30), berlin),
            Some(utc(2026, 12, 4, 8, 30))
        );
        assert_eq!(
            to_utc(wall(2026, 7, 1, 9, 30), berlin),
            Some(utc(2026, 7, 1, 7, 30))
        );
        // A zone 5:45 ahead: minutes count too.
        let kathmandu: Tz = "Asia/Kathmandu".parse().unwrap();
        assert_eq!(
            to_utc(wall(2026, 12, 4, 9, 0), kathmandu),
            Some(utc(2026, 12, 4, 3, 15))
        );
        assert_eq!(
            to_utc(wall(2026, 12, 4, 9, 0), Tz::UTC),
            Some(utc(2026, 12, 4, 9, 0))
        );
    }

    #[test]
    fn the_repeated_hour_is_its_first_pass() {
        // 25 October 2026: Berlin goes from 03:00 CEST back to 02:00 CET, so 02:30 happens
        // at 00:30 UTC and again at 01:30 UTC.
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        assert_eq!(
            to_utc(wall(2026, 10, 25, 2, 30), berlin),
            Some(utc(2026, 10, 25, 0, 30))
        );
        // New York, 1 November 2026: 01:30 EDT (05:30 UTC), then 01:30 EST (06:30 UTC).
        let new_york: Tz = "America/New_York".parse().unwrap();
        assert_eq!(
            to_utc(wall(2026, 11, 1, 1, 30), new_york),
            Some(utc(2026, 11, 1, 5, 30))
        );
    }

    #[test]
    fn the_skipped_hour_takes_the_earlier_reading() {
        // 29 March 2026: Berlin jumps from 02:00 CET to 03:00 CEST; 02:30 never shows. Read
        // as CET it is 01:30 UTC, as CEST 00:30 UTC: the earlier one.
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        assert_eq!(
            to_utc(wall(2026, 3, 29, 2, 30), berlin),
            Some(utc(2026, 3, 29, 0, 30))
        );
        // New York, 8 March 2026, 02:30 skipped: EST reading 07:30 UTC, EDT reading 06:30.
        let new_york: Tz = "America/New_York".parse().unwrap();
        assert_eq!(
            to_utc(wall(2026, 3, 8, 2, 30), new_york),
            Some(utc(2026, 3, 8, 6, 30))
        );
        // The same line always gives the same instant.
        assert_eq!(
            to_utc(wall(2026, 3, 29, 2, 30), berlin),
            to_utc(wall(2026, 3, 29, 2, 30), berlin)
        );
    }

    #[test]
    fn time_vals_are_strict() {
        assert_eq!(
            parse_time_val("20261204031017"),
            Some(wall(2026, 12, 4, 3, 10) + TimeDelta::seconds(17))
        );
        assert_eq!(
            parse_time_val("20261204031017.999"),
            Some(wall(2026, 12, 4, 3, 10) + TimeDelta::seconds(17))
        );
        for bad in [
            "",
            "garbage",
            "2026120403101",
            "202612040310170",
            "20261304031017",
            "20261232031017",
            "20261204251017",
            "+0261204031017",
            " 0261204031017",
            "20261204031017.",
            "20261204031017.x",
            "191261204031017",
            "2026-12-04T03:10:17Z",
            "٢٠٢٦١٢٠٤٠٣١٠١٧",
        ] {
            assert_eq!(parse_time_val(bad), None, "{bad:?}");
        }
        // Year 0 parses as a date; plausible() refuses it.
        assert!(parse_time_val("00000101000000").is_some());
    }

    #[test]
    fn absurd_times_are_not_plausible() {
        let now = utc(2026, 12, 4, 12, 0);
        assert!(plausible(utc(2026, 12, 4, 11, 59), now));
        assert!(plausible(DateTime::<Utc>::UNIX_EPOCH, now));
        // Clock skew: a little ahead is believed.
        assert!(plausible(utc(2026, 12, 10, 0, 0), now));
        assert!(!plausible(utc(2028, 1, 1, 0, 0), now));
        assert!(!plausible(utc(9999, 12, 31, 23, 59), now));
        assert!(!plausible(utc(1900, 1, 1, 0, 0), now));
        let year_zero = Utc.from_utc_datetime(&parse_time_val("00000101000000").unwrap());
        assert!(!plausible(year_zero, now));
        assert!(!plausible(DateTime::<Utc>::MAX_UTC, now));
        assert!(plausible(utc(2026, 1, 1, 0, 0), DateTime::<Utc>::MAX_UTC));
    }

    #[test]
    fn precision_spans() {
        assert!(TimePrecision::Exact.is_exact());
        assert!(!TimePrecision::Minute.is_exact());
        assert_eq!(TimePrecision::Minute.span(), Some(TimeDelta::minutes(1)));
        assert_eq!(TimePrecision::Unknown.span(), None);
        assert_eq!(TimePrecision::Day.to_string(), "day");
    }
}
