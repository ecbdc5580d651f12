//! Directory listings: parsing `MLSD` facts and `LIST` lines (Unix `ls -l` and DOS/IIS
//! formats) into [`RemoteEntry`]s, and the name checks that keep a listing from steering
//! ferry outside the directory it listed.
//!
//! A listing is input from the partner, so it is untrusted: a name with `/`, `\`, NUL, CR/LF
//! or equal to `.`/`..` could make a download write outside its folder or a later command
//! touch another path; such entries are dropped (and counted in a warning) rather than
//! returned. Lines are bounded in length by the reader in the session.

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};

/// One file or directory of a remote listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteEntry {
    /// The name inside the listed directory (checked by [`check_name`]).
    pub name: String,
    /// Size in bytes, when the server says.
    pub size: Option<u64>,
    /// Last modification (UTC), when the server says.
    pub modified: Option<DateTime<Utc>>,
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

fn entry(name: &str, size: Option<u64>, modified: Option<DateTime<Utc>>, is_file: bool) -> Parsed {
    if name == "." || name == ".." {
        return Parsed::Skip;
    }
    match check_name(name) {
        Ok(()) => Parsed::Entry(RemoteEntry {
            name: name.to_string(),
            size,
            modified,
            is_file,
        }),
        Err(_) => Parsed::Unsafe(name.to_string()),
    }
}

/// Parses one `MLSD` line: `fact=value;fact=value; name` (RFC 3659 §7).
pub(crate) fn parse_mlsd(line: &str) -> Parsed {
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
            "modify" => modified = parse_mlsd_time(value),
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

/// `YYYYMMDDHHMMSS[.sss]` in UTC.
fn parse_mlsd_time(value: &str) -> Option<DateTime<Utc>> {
    let main = value.split('.').next()?;
    NaiveDateTime::parse_from_str(main, "%Y%m%d%H%M%S")
        .ok()
        .map(|t| Utc.from_utc_datetime(&t))
}

/// Parses one `LIST` line in Unix or DOS/IIS format; `now` dates Unix lines without a year.
pub(crate) fn parse_list(line: &str, now: DateTime<Utc>) -> Parsed {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.trim().is_empty() || line.starts_with("total ") {
        return Parsed::Skip;
    }
    if let Some(p) = parse_unix(line, now) {
        return p;
    }
    if let Some(p) = parse_dos(line) {
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
fn parse_unix(line: &str, now: DateTime<Utc>) -> Option<Parsed> {
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
        let Some(modified) = parse_unix_time(f[n - 3], f[n - 2], f[n - 1], now) else {
            continue;
        };
        if name.is_empty() {
            return Some(Parsed::Unknown);
        }
        let name = if type_char == 'l' {
            name.split(" -> ").next().unwrap_or(name)
        } else {
            name
        };
        return Some(entry(name, Some(size), Some(modified), type_char == '-'));
    }
    Some(Parsed::Unknown)
}

fn parse_unix_time(
    month: &str,
    day: &str,
    time_or_year: &str,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let m = MONTHS.iter().position(|x| month.eq_ignore_ascii_case(x))? as u32 + 1;
    let d: u32 = day.parse().ok()?;
    if let Some((h, min)) = time_or_year.split_once(':') {
        let (h, min): (u32, u32) = (h.parse().ok()?, min.parse().ok()?);
        // No year: the most recent such date not more than a day in the future (as ls does).
        let this_year = NaiveDate::from_ymd_opt(now.date_naive().year_ce().1 as i32, m, d)?
            .and_hms_opt(h, min, 0)?;
        let candidate = Utc.from_utc_datetime(&this_year);
        if candidate > now + chrono::Duration::days(1) {
            let last = NaiveDate::from_ymd_opt(this_year.date().year_ce().1 as i32 - 1, m, d)?
                .and_hms_opt(h, min, 0)?;
            return Some(Utc.from_utc_datetime(&last));
        }
        Some(candidate)
    } else {
        let y: i32 = time_or_year.parse().ok()?;
        Some(Utc.from_utc_datetime(&NaiveDate::from_ymd_opt(y, m, d)?.and_hms_opt(0, 0, 0)?))
    }
}

use chrono::Datelike;

/// `11-05-25  01:46PM       <DIR>          name` or `... 1,234 name` (IIS, FileZilla DOS style).
fn parse_dos(line: &str) -> Option<Parsed> {
    let (f, name) = fields(line, 3)?;
    let date = NaiveDate::parse_from_str(f[0], "%m-%d-%y")
        .or_else(|_| NaiveDate::parse_from_str(f[0], "%m-%d-%Y"))
        .ok()?;
    let time = chrono::NaiveTime::parse_from_str(f[1], "%I:%M%p")
        .or_else(|_| chrono::NaiveTime::parse_from_str(f[1], "%H:%M"))
        .ok()?;
    let modified = Some(Utc.from_utc_datetime(&date.and_time(time)));
    if f[2].eq_ignore_ascii_case("<DIR>") {
        return Some(entry(name, None, modified, false));
    }
    let size: u64 = f[2].replace(',', "").parse().ok()?;
    Some(entry(name, Some(size), modified, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap()
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
        ));
        assert_eq!(x.name, "report 2025 é.xml");
        assert_eq!(x.size, Some(1234));
        assert!(x.is_file);
        assert_eq!(
            x.modified,
            Some(Utc.with_ymd_and_hms(2025, 11, 5, 13, 46, 1).unwrap())
        );
        let d = e(parse_mlsd("Type=dir;Modify=20250101000000; sub"));
        assert!(!d.is_file);
        assert_eq!(parse_mlsd("type=cdir; ."), Parsed::Skip);
        assert_eq!(parse_mlsd("type=pdir; .."), Parsed::Skip);
        assert_eq!(
            parse_mlsd("type=file;size=1; ../../etc/passwd"),
            Parsed::Unsafe("../../etc/passwd".into())
        );
        assert_eq!(parse_mlsd("type=file;size=1; .."), Parsed::Skip);
        assert_eq!(parse_mlsd("garbage"), Parsed::Unknown);
    }

    #[test]
    fn unix_lines() {
        let x = e(parse_list(
            "-rw-r--r--    1 ftp      ftp          1234 Nov 05 13:46 a b.txt",
            now(),
        ));
        assert_eq!(x.name, "a b.txt");
        assert_eq!(x.size, Some(1234));
        assert!(x.is_file);
        assert_eq!(
            x.modified,
            Some(Utc.with_ymd_and_hms(2026, 11, 5, 13, 46, 0).unwrap())
        );
        // A date later than now belongs to last year.
        let y = e(parse_list("-rw-r--r-- 1 u g 5 Dec 30 10:00 old", now()));
        assert_eq!(
            y.modified,
            Some(Utc.with_ymd_and_hms(2025, 12, 30, 10, 0, 0).unwrap())
        );
        let d = e(parse_list("drwxr-xr-x 2 u g 4096 Jan  1  2024 dir", now()));
        assert!(!d.is_file);
        assert_eq!(
            d.modified,
            Some(Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap())
        );
        let l = e(parse_list(
            "lrwxrwxrwx 1 u g 4 Jan  1  2024 link -> target",
            now(),
        ));
        assert_eq!(l.name, "link");
        assert!(!l.is_file);
        // No group column (some servers).
        let n = e(parse_list(
            "-rw-r--r-- 1 owner 77 Mar  3 09:15 nogroup.csv",
            now(),
        ));
        assert_eq!(n.size, Some(77));
        assert_eq!(n.name, "nogroup.csv");
        assert_eq!(parse_list("total 12", now()), Parsed::Skip);
        assert_eq!(
            parse_list("drwxr-xr-x 2 u g 4096 Jan  1  2024 ..", now()),
            Parsed::Skip
        );
        assert_eq!(
            parse_list("-rw-r--r-- 1 u g 1 Jan  1  2024 a/../../b", now()),
            Parsed::Unsafe("a/../../b".into())
        );
    }

    #[test]
    fn dos_lines() {
        let x = e(parse_list(
            "11-05-25  01:46PM              1,234 Report Q3.xml",
            now(),
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
        ));
        assert!(!d.is_file);
        assert_eq!(d.size, None);
        assert_eq!(
            parse_list("something else entirely", now()),
            Parsed::Unknown
        );
    }
}
