//! Directory listings: parsing `MLSD` facts and `LIST` lines (Unix `ls -l` and DOS/IIS
//! formats) into [`RemoteEntry`]s, and the name checks that keep a listing from steering
//! ferry outside the directory it listed.
//!
//! A listing is input from the partner, so it is untrusted: a name with `/`, `\`, NUL, CR/LF
//! or equal to `.`/`..` could make a download write outside its folder or a later command
//! touch another path; such entries are dropped (and counted in a warning) rather than
//! returned. Lines are bounded in length by the reader in the session.
//!
//! Times: `MLSD` gives UTC to the second; `LIST` gives the server's wall-clock to the minute
//! (or the day, for older files), read in the partner's `listing_timezone`. Each entry says
//! how precise its time is ([`TimePrecision`]; rules, daylight saving and absurd values in
//! `server_time.rs`).

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;

use super::server_time::{TimePrecision, parse_time_val, plausible, to_utc};

/// One file or directory of a remote listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteEntry {
    /// The name inside the listed directory (checked by [`check_name`]).
    pub name: String,
    /// Size in bytes, when the server says.
    pub size: Option<u64>,
    /// Last modification (UTC), when the server says; as precise as [`Self::precision`].
    pub modified: Option<DateTime<Utc>>,
    /// How precise [`Self::modified`] is ([`TimePrecision::Unknown`] exactly when it is
    /// `None`).
    pub precision: TimePrecision,
    /// A regular file (as opposed to a directory or a link).
    pub is_file: bool,
}

/// Why a remote or local file name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Empty name.
    #[error("the name is empty")]
    Empty,
    /// `.` or `..`.
    #[error("the name is . or ..")]
    DotOrDotDot,
    /// Contains a path separator.
    #[error("the name contains a path separator")]
    Separator,
    /// Contains NUL, CR or LF (would cut or smuggle a control command).
    #[error("the name contains a NUL, CR or LF character")]
    ControlCharacter,
}

/// Checks that `name` is a single path component that stays inside its directory.
pub fn check_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name == "." || name == ".." {
        return Err(NameError::DotOrDotDot);
    }
    if name.contains('/') || name.contains('\\') {
        return Err(NameError::Separator);
    }
    if name.contains(['\0', '\r', '\n']) {
        return Err(NameError::ControlCharacter);
    }
    Ok(())
}

/// What a listing line turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// A usable entry.
    Entry(RemoteEntry),
    /// The directory itself, its parent, a `total` line: nothing to report.
    Skip,
    /// A name that would escape the directory.
    Unsafe(String),
    /// A line no parser understood.
    Unknown,
}

/// A modification time and how precise it is.
type Stamp = (DateTime<Utc>, TimePrecision);

fn entry(name: &str, size: Option<u64>, stamp: Option<Stamp>, is_file: bool) -> Parsed {
    if name == "." || name == ".." {
        return Parsed::Skip;
    }
    let (modified, precision) = match stamp {
        Some((at, precision)) => (Some(at), precision),
        None => (None, TimePrecision::Unknown),
    };
    match check_name(name) {
        Ok(()) => Parsed::Entry(RemoteEntry {
            name: name.to_string(),
            size,
            modified,
            precision,
            is_file,
        }),
        Err(_) => Parsed::Unsafe(name.to_string()),
    }
}

/// `at` with `precision`, unless it is too absurd to be a file's time (`server_time.rs`).
fn believable(
    at: Option<DateTime<Utc>>,
    precision: TimePrecision,
    now: DateTime<Utc>,
) -> Option<Stamp> {
    at.filter(|t| plausible(*t, now)).map(|t| (t, precision))
}

/// Parses one `MLSD` line: `fact=value;fact=value; name` (RFC 3659 §7). `modify` is UTC.
pub(crate) fn parse_mlsd(line: &str, now: DateTime<Utc>) -> Parsed {
    let line = line.trim_end_matches(['\r', '\n']);
    let (facts, name) = match line.find(' ') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => return Parsed::Unknown,
    };
    let mut kind = None;
    let mut size = None;
    let mut modified = None;
    for fact in facts.split(';').filter(|f| !f.is_empty()) {
        let Some((key, value)) = fact.split_once('=') else {
            continue;
        };
        match key.to_ascii_lowercase().as_str() {
            "type" => kind = Some(value.to_ascii_lowercase()),
            "size" => size = value.parse::<u64>().ok(),
            "modify" => {
                let at = parse_time_val(value).map(|t| Utc.from_utc_datetime(&t));
                modified = believable(at, TimePrecision::Exact, now);
            }
            _ => {}
        }
    }
    match kind.as_deref() {
        Some("cdir" | "pdir") => Parsed::Skip,
        Some("file") => entry(name, size, modified, true),
        Some(_) => entry(name, size, modified, false),
        None => Parsed::Unknown,
    }
}

/// Parses one `LIST` line in Unix or DOS/IIS format. Its times are wall-clock times in
/// `zone`; `now` dates Unix lines without a year.
pub(crate) fn parse_list(line: &str, now: DateTime<Utc>, zone: Tz) -> Parsed {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.trim().is_empty() || line.starts_with("total ") {
        return Parsed::Skip;
    }
    if let Some(p) = parse_unix(line, now, zone) {
        return p;
    }
    if let Some(p) = parse_dos(line, now, zone) {
        return p;
    }
    Parsed::Unknown
}

/// Splits off `n` whitespace-separated fields; returns them and the rest (kept verbatim,
/// after the single run of spaces that follows the last field).
fn fields(line: &str, n: usize) -> Option<(Vec<&str>, &str)> {
    let mut out = Vec::with_capacity(n);
    let mut rest = line;
    for _ in 0..n {
        rest = rest.trim_start_matches(' ');
        let end = rest.find(' ')?;
        out.push(&rest[..end]);
        rest = &rest[end..];
    }
    Some((out, rest.strip_prefix(' ')?.trim_start_matches(' ')))
}

/// `-rw-r--r-- 1 owner group 1234 Nov  5 13:46 name` (group may be missing on some servers).
fn parse_unix(line: &str, now: DateTime<Utc>, zone: Tz) -> Option<Parsed> {
    let type_char = line.chars().next()?;
    if !matches!(type_char, '-' | 'd' | 'l' | 'b' | 'c' | 'p' | 's') {
        return None;
    }
    let perms = line.get(1..10)?;
    if !perms
        .chars()
        .all(|c| matches!(c, 'r' | 'w' | 'x' | 's' | 'S' | 't' | 'T' | '-'))
    {
        return None;
    }
    // With group: perms links owner group size month day time/year name.
    for n in [8usize, 7] {
        let Some((f, name)) = fields(line, n) else {
            continue;
        };
        let size_idx = n - 4;
        let Ok(size) = f[size_idx].parse::<u64>() else {
            continue;
        };
        let Some((wall, precision)) = parse_unix_time(f[n - 3], f[n - 2], f[n - 1], now, zone)
        else {
            continue;
        };
        let modified = believable(to_utc(wall, zone), precision, now);
        if name.is_empty() {
            return Some(Parsed::Unknown);
        }
        let name = if type_char == 'l' {
            name.split(" -> ").next().unwrap_or(name)
        } else {
            name
        };
        return Some(entry(name, Some(size), modified, type_char == '-'));
    }
    Some(Parsed::Unknown)
}

/// The wall-clock time of `Nov  5 13:46` (minute) or `Nov  5  2024` (day, at midnight).
fn parse_unix_time(
    month: &str,
    day: &str,
    time_or_year: &str,
    now: DateTime<Utc>,
    zone: Tz,
) -> Option<(NaiveDateTime, TimePrecision)> {
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let m = MONTHS.iter().position(|x| month.eq_ignore_ascii_case(x))? as u32 + 1;
    let d: u32 = day.parse().ok()?;
    if let Some((h, min)) = time_or_year.split_once(':') {
        let time = NaiveTime::from_hms_opt(h.parse().ok()?, min.parse().ok()?, 0)?;
        // No year: the most recent such date not more than a day ahead of the server's
        // wall-clock now (as ls does). Feb 29 of a common year is last leap year's.
        let server_now = now.with_timezone(&zone).naive_local();
        let latest = server_now.checked_add_signed(TimeDelta::days(1))?;
        let year = server_now.year();
        let wall = [year, year - 1]
            .into_iter()
            .filter_map(|y| Some(NaiveDate::from_ymd_opt(y, m, d)?.and_time(time)))
            .find(|candidate| *candidate <= latest)?;
        Some((wall, TimePrecision::Minute))
    } else {
        let y: i32 = time_or_year.parse().ok()?;
        let wall = NaiveDate::from_ymd_opt(y, m, d)?.and_time(NaiveTime::MIN);
        Some((wall, TimePrecision::Day))
    }
}

/// `11-05-25  01:46PM       <DIR>          name` or `... 1,234 name` (IIS, FileZilla DOS style).
fn parse_dos(line: &str, now: DateTime<Utc>, zone: Tz) -> Option<Parsed> {
    let (f, name) = fields(line, 3)?;
    let date = NaiveDate::parse_from_str(f[0], "%m-%d-%y")
        .or_else(|_| NaiveDate::parse_from_str(f[0], "%m-%d-%Y"))
        .ok()?;
    let time = NaiveTime::parse_from_str(f[1], "%I:%M%p")
        .or_else(|_| NaiveTime::parse_from_str(f[1], "%H:%M"))
        .ok()?;
    let modified = believable(
        to_utc(date.and_time(time), zone),
        TimePrecision::Minute,
        now,
    );
    if f[2].eq_ignore_ascii_case("<DIR>") {
        return Some(entry(name, None, modified, false));
    }
    let size: u64 = f[2].replace(',', "").parse().ok()?;
    Some(entry(name, Some(size), modified, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone(name: &str) -> Tz {
        name.parse().unwrap()
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap()
    }

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    fn e(p: Parsed) -> RemoteEntry {
        match p {
            Parsed::Entry(e) => e,
            other => panic!("expected an entry, got {other:?}"),
        }
    }

    #[test]
    fn names_that_escape_are_refused() {
        assert_eq!(check_name("a.xml"), Ok(()));
        assert_eq!(check_name("with space é.txt"), Ok(()));
        assert_eq!(check_name(".."), Err(NameError::DotOrDotDot));
        assert_eq!(check_name("."), Err(NameError::DotOrDotDot));
        assert_eq!(check_name("a/b"), Err(NameError::Separator));
        assert_eq!(check_name("a\\b"), Err(NameError::Separator));
        assert_eq!(check_name("a\0b"), Err(NameError::ControlCharacter));
        assert_eq!(check_name("a\r\nDELE x"), Err(NameError::ControlCharacter));
        assert_eq!(check_name(""), Err(NameError::Empty));
    }

    #[test]
    fn mlsd_lines() {
        let x = e(parse_mlsd(
            "type=file;size=1234;modify=20251105134601.123;UNIX.mode=0644; report 2025 é.xml",
            now(),
        ));
        assert_eq!(x.name, "report 2025 é.xml");
        assert_eq!(x.size, Some(1234));
        assert!(x.is_file);
        assert_eq!(
            x.modified,
            Some(Utc.with_ymd_and_hms(2025, 11, 5, 13, 46, 1).unwrap())
        );
        let d = e(parse_mlsd("Type=dir;Modify=20250101000000; sub", now()));
        assert!(!d.is_file);
        assert_eq!(parse_mlsd("type=cdir; .", now()), Parsed::Skip);
        assert_eq!(parse_mlsd("type=pdir; ..", now()), Parsed::Skip);
        assert_eq!(
            parse_mlsd("type=file;size=1; ../../etc/passwd", now()),
            Parsed::Unsafe("../../etc/passwd".into())
        );
        assert_eq!(parse_mlsd("type=file;size=1; ..", now()), Parsed::Skip);
        assert_eq!(parse_mlsd("garbage", now()), Parsed::Unknown);
    }

    #[test]
    fn unix_lines() {
        let x = e(parse_list(
            "-rw-r--r--    1 ftp      ftp          1234 Nov 05 13:46 a b.txt",
            now(),
            Tz::UTC,
        ));
        assert_eq!(x.name, "a b.txt");
        assert_eq!(x.size, Some(1234));
        assert!(x.is_file);
        assert_eq!(
            x.modified,
            Some(Utc.with_ymd_and_hms(2026, 11, 5, 13, 46, 0).unwrap())
        );
        // A date later than now belongs to last year.
        let y = e(parse_list(
            "-rw-r--r-- 1 u g 5 Dec 30 10:00 old",
            now(),
            Tz::UTC,
        ));
        assert_eq!(
            y.modified,
            Some(Utc.with_ymd_and_hms(2025, 12, 30, 10, 0, 0).unwrap())
        );
        let d = e(parse_list(
            "drwxr-xr-x 2 u g 4096 Jan  1  2024 dir",
            now(),
            Tz::UTC,
        ));
        assert!(!d.is_file);
        assert_eq!(
            d.modified,
            Some(Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap())
        );
        let l = e(parse_list(
            "lrwxrwxrwx 1 u g 4 Jan  1  2024 link -> target",
            now(),
            Tz::UTC,
        ));
        assert_eq!(l.name, "link");
        assert!(!l.is_file);
        // No group column (some servers).
        let n = e(parse_list(
            "-rw-r--r-- 1 owner 77 Mar  3 09:15 nogroup.csv",
            now(),
            Tz::UTC,
        ));
        assert_eq!(n.size, Some(77));
        assert_eq!(n.name, "nogroup.csv");
        assert_eq!(parse_list("total 12", now(), Tz::UTC), Parsed::Skip);
        assert_eq!(
            parse_list("drwxr-xr-x 2 u g 4096 Jan  1  2024 ..", now(), Tz::UTC),
            Parsed::Skip
        );
        assert_eq!(
            parse_list("-rw-r--r-- 1 u g 1 Jan  1  2024 a/../../b", now(), Tz::UTC),
            Parsed::Unsafe("a/../../b".into())
        );
    }

    #[test]
    fn dos_lines() {
        let x = e(parse_list(
            "11-05-25  01:46PM              1,234 Report Q3.xml",
            now(),
            Tz::UTC,
        ));
        assert_eq!(x.name, "Report Q3.xml");
        assert_eq!(x.size, Some(1234));
        assert_eq!(
            x.modified,
            Some(Utc.with_ymd_and_hms(2025, 11, 5, 13, 46, 0).unwrap())
        );
        let d = e(parse_list(
            "01-02-2024  09:00AM       <DIR>          archive",
            now(),
            Tz::UTC,
        ));
        assert!(!d.is_file);
        assert_eq!(d.size, None);
        assert_eq!(
            parse_list("something else entirely", now(), Tz::UTC),
            Parsed::Unknown
        );
    }

    #[test]
    fn each_format_says_how_precise_its_time_is() {
        let mlsd = e(parse_mlsd(
            "type=file;size=1;modify=20251105134601; a",
            now(),
        ));
        assert_eq!(mlsd.precision, TimePrecision::Exact);
        let no_time = e(parse_mlsd("type=file;size=1; a", now()));
        assert_eq!(
            (no_time.modified, no_time.precision),
            (None, TimePrecision::Unknown)
        );
        let recent = e(parse_list(
            "-rw-r--r-- 1 u g 5 Nov  5 13:46 a",
            now(),
            Tz::UTC,
        ));
        assert_eq!(recent.precision, TimePrecision::Minute);
        let old = e(parse_list(
            "-rw-r--r-- 1 u g 5 Nov  5  2024 a",
            now(),
            Tz::UTC,
        ));
        assert_eq!(old.precision, TimePrecision::Day);
        let dos = e(parse_list("11-05-25  01:46PM  5 a", now(), Tz::UTC));
        assert_eq!(dos.precision, TimePrecision::Minute);
    }

    #[test]
    fn list_times_are_read_in_the_listing_zone() {
        // 13:46 in Kathmandu (+05:45) is 08:01 UTC.
        let line = "-rw-r--r-- 1 u g 5 Nov 05 13:46 a";
        let x = e(parse_list(line, now(), zone("Asia/Kathmandu")));
        assert_eq!(x.modified, Some(utc(2026, 11, 5, 8, 1)));
        // The year form is midnight of that local day: Berlin in summer is +02:00.
        let line = "-rw-r--r-- 1 u g 5 Jul 16  2024 a";
        let y = e(parse_list(line, now(), zone("Europe/Berlin")));
        assert_eq!(y.modified, Some(utc(2024, 7, 15, 22, 0)));
        // DOS lines too; New York in November is -05:00.
        let line = "11-05-25  01:46PM  5 a";
        let d = e(parse_list(line, now(), zone("America/New_York")));
        assert_eq!(d.modified, Some(utc(2025, 11, 5, 18, 46)));
    }

    #[test]
    fn a_listed_time_in_a_daylight_saving_change_is_the_earlier_instant() {
        let berlin = zone("Europe/Berlin");
        // Repeated hour (25 October 2026): 02:30 CEST, the first pass, is 00:30 UTC.
        let fold = e(parse_list(
            "-rw-r--r-- 1 u g 5 Oct 25 02:30 a",
            now(),
            berlin,
        ));
        assert_eq!(fold.modified, Some(utc(2026, 10, 25, 0, 30)));
        // Skipped hour (29 March 2026): read as CEST, 00:30 UTC.
        let gap = e(parse_list(
            "-rw-r--r-- 1 u g 5 Mar 29 02:30 a",
            now(),
            berlin,
        ));
        assert_eq!(gap.modified, Some(utc(2026, 3, 29, 0, 30)));
    }

    #[test]
    fn a_line_without_a_year_is_dated_by_the_servers_calendar() {
        // 23:30 UTC on 31 December is already 1 January 08:30 in Tokyo: a Tokyo server's
        // "Jan  1 08:00" is minutes old, not a year ahead.
        let now = utc(2026, 12, 31, 23, 30);
        let x = e(parse_list(
            "-rw-r--r-- 1 u g 5 Jan  1 08:00 a",
            now,
            zone("Asia/Tokyo"),
        ));
        assert_eq!(x.modified, Some(utc(2026, 12, 31, 23, 0)));
        // Feb 29 without a year, seen in a leap year's March, and in a common year's (then
        // it is the last leap year's, though ls would have printed a year by then).
        let leap = "-rw-r--r-- 1 u g 5 Feb 29 10:00 a";
        let x = e(parse_list(leap, utc(2028, 3, 1, 0, 0), Tz::UTC));
        assert_eq!(x.modified, Some(utc(2028, 2, 29, 10, 0)));
        let x = e(parse_list(leap, utc(2029, 1, 1, 0, 0), Tz::UTC));
        assert_eq!(x.modified, Some(utc(2028, 2, 29, 10, 0)));
    }

    #[test]
    fn absurd_times_are_unknown_not_shared_by_every_version() {
        for line in [
            "type=file;size=1;modify=99991231235959; a",
            "type=file;size=1;modify=00000101000000; a",
            "type=file;size=1;modify=19000101000000; a",
            "type=file;size=1;modify=20261304000000; a",
            "type=file;size=1;modify=garbage; a",
            "type=file;size=1;modify=2026120403101712; a",
        ] {
            let x = e(parse_mlsd(line, now()));
            assert_eq!(
                (x.modified, x.precision),
                (None, TimePrecision::Unknown),
                "{line}"
            );
        }
        for line in [
            "-rw-r--r-- 1 u g 5 Jan  1  9999 a",
            "-rw-r--r-- 1 u g 5 Jan  1     0 a",
            "-rw-r--r-- 1 u g 5 Jan  1  1900 a",
        ] {
            let x = e(parse_list(line, now(), zone("Pacific/Kiritimati")));
            assert_eq!(
                (x.modified, x.precision),
                (None, TimePrecision::Unknown),
                "{line}"
            );
        }
        // Beyond chrono's calendar: a line no parser understood (skipped and counted).
        for line in [
            "-rw-r--r-- 1 u g 5 Jan  1 262144 a",
            "-rw-r--r-- 1 u g 5 Jan  1 -262144 a",
        ] {
            assert_eq!(parse_list(line, now(), Tz::UTC), Parsed::Unknown, "{line}");
        }
    }
}
