//! `MDTM`: one file's modification time to the second (RFC 3659 §3), for servers whose
//! listing gives only the minute or the day (`LIST`; see `server_time.rs`).
//!
//! Cost: one command round trip per file, no data connection. So it is asked only where it
//! adds something: [`RefineModified`] skips directories and entries whose time is already
//! exact (`MLSD`), and a server whose `FEAT` does not list `MDTM` is not asked at all.
//!
//! The reply is untrusted input. Only `213 YYYYMMDDHHMMSS[.sss]` is a time; a `213` with
//! anything else (garbage, a Y2K-bug `19100...`, year 0, a time more than a year ahead of
//! ferry's clock) is a [`FtpsErrorKind::Protocol`] error: a value that is no evidence of when
//! the file changed is never used, and nothing in the reply can make ferry panic. A 5xx
//! (the server refuses `MDTM` for this file: a directory, a vanished file, not implemented)
//! is `None`, as if the server had no `MDTM`.
//!
//! By the RFC the time is UTC; vsftpd with `use_localtime=YES` answers its local time, so it
//! is read in the partner's `mdtm_timezone` (default UTC).
//!
//! Safety: vsftpd reads `MDTM 20260101000000 name` (digits, a space, a name that does not
//! exist) as "set the time of `name`". A path that starts with a digit and has a space is
//! therefore never sent (`None`): asking the time must not change a partner's file.

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use tracing::{debug, warn};

use super::classify::{ReplyTo, from_response};
use super::connection::{Connection, Operation};
use super::control::check_line;
use super::error::{FtpsError, FtpsErrorKind};
use super::listing::RemoteEntry;
use super::paths::remote_file;
use super::printable::printable;
use super::reply::Response;
use super::server_time::{TimePrecision, parse_time_val, plausible, to_utc};

/// `MDTM path`, read in `zone`.
pub(crate) struct ModifiedTime<'a> {
    pub(crate) path: &'a str,
    pub(crate) zone: Tz,
}

impl Operation for ModifiedTime<'_> {
    type Output = Option<DateTime<Utc>>;

    async fn run(&mut self, conn: &mut Connection) -> Result<Self::Output, FtpsError> {
        let step = format!("modification time of {}", self.path);
        check_line(&step, self.path)?;
        modified_time(conn, &step, self.path, self.zone).await
    }
}

/// Makes a listed entry's time exact with `MDTM`, when it is a file whose time is not.
pub(crate) struct RefineModified<'a> {
    pub(crate) dir: &'a str,
    pub(crate) entry: &'a mut RemoteEntry,
    pub(crate) zone: Tz,
}

impl Operation for RefineModified<'_> {
    type Output = ();

    async fn run(&mut self, conn: &mut Connection) -> Result<(), FtpsError> {
        let entry = &mut *self.entry;
        if entry.precision.is_exact() || !entry.is_file {
            return Ok(());
        }
        let (path, step) = remote_file("modification time", self.dir, &entry.name)?;
        let Some(exact) = modified_time(conn, &step, &path, self.zone).await? else {
            return Ok(());
        };
        if let (Some(listed), Some(span)) = (entry.modified, entry.precision.span())
            && !(listed <= exact && exact < listed + span)
        {
            warn!(
                name = %printable(&entry.name),
                listed = %listed,
                precision = %entry.precision,
                mdtm = %exact,
                "MDTM and the listing disagree about a file's time: it changed since the \
                 listing, or ftps.connection.listing_timezone / mdtm_timezone is not the \
                 server's (when every file disagrees)"
            );
        }
        entry.modified = Some(exact);
        entry.precision = TimePrecision::Exact;
        Ok(())
    }
}

/// `MDTM path`: `Ok(None)` without `MDTM` in `FEAT`, for a refused one (5xx), and for a path
/// vsftpd could take for a request to set a time (module docs).
async fn modified_time(
    conn: &mut Connection,
    step: &str,
    path: &str,
    zone: Tz,
) -> Result<Option<DateTime<Utc>>, FtpsError> {
    if !conn.features().mdtm {
        return Ok(None);
    }
    if path.starts_with(|c: char| c.is_ascii_digit()) && path.contains(' ') {
        debug!(path = %printable(path), "MDTM not sent: the server could read it as a request to set a time");
        return Ok(None);
    }
    let reply = conn.command(step, &format!("MDTM {path}")).await?;
    match reply.code {
        213 => read_reply(step, &reply, zone, Utc::now()).map(Some),
        500..=599 => {
            debug!(reply = %reply.to_reply(), "MDTM refused for this file");
            Ok(None)
        }
        _ => Err(from_response(step, &reply, ReplyTo::ExistingPath)),
    }
}

/// The time of a `213` reply, or a protocol error naming what was wrong with it.
fn read_reply(
    step: &str,
    reply: &Response,
    zone: Tz,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, FtpsError> {
    let text = reply.first_text().trim();
    let wall = parse_time_val(text).ok_or_else(|| {
        hostile(
            step,
            reply,
            "the MDTM reply is not a time (YYYYMMDDHHMMSS[.sss])",
        )
    })?;
    let at = if zone == Tz::UTC {
        Some(Utc.from_utc_datetime(&wall))
    } else {
        to_utc(wall, zone)
    };
    at.filter(|t| plausible(*t, now)).ok_or_else(|| {
        hostile(
            step,
            reply,
            "the MDTM reply is before 1970 or more than a year ahead: not a file's time",
        )
    })
}

fn hostile(step: &str, reply: &Response, message: &str) -> FtpsError {
    FtpsError::new(FtpsErrorKind::Protocol, step, message)
        .with_reply(reply.to_reply())
        .transient(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(line: &str) -> Response {
        Response {
            code: 213,
            lines: vec![line.to_string()],
        }
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 4, 12, 0, 0).unwrap()
    }

    #[test]
    fn a_213_is_read_in_the_zone() {
        let t = read_reply("s", &reply("213 20261204031017"), Tz::UTC, now()).unwrap();
        assert_eq!(t, Utc.with_ymd_and_hms(2026, 12, 4, 3, 10, 17).unwrap());
        let t = read_reply("s", &reply("213 20261204031017.123"), Tz::UTC, now()).unwrap();
        assert_eq!(t, Utc.with_ymd_and_hms(2026, 12, 4, 3, 10, 17).unwrap());
        // vsftpd with use_localtime=YES in Kathmandu (+05:45).
        let kathmandu: Tz = "Asia/Kathmandu".parse().unwrap();
        let t = read_reply("s", &reply("213 20261204085517"), kathmandu, now()).unwrap();
        assert_eq!(t, Utc.with_ymd_and_hms(2026, 12, 4, 3, 10, 17).unwrap());
    }

    #[test]
    fn hostile_replies_are_protocol_errors() {
        for text in [
            "213 ",
            "213 garbage",
            "213 99991231235959",
            "213 00000101000000",
            "213 00000000000000",
            "213 19691230000000",
            "213 191261204031017",
            "213 20261204031017 extra",
            "213 20261304031017",
            "213 2026120403101",
            "213 20261204031017.",
            "213 \u{202e}20261204031017",
            "213 20261204031017\u{0}",
        ] {
            let e =
                read_reply("modification time of a", &reply(text), Tz::UTC, now()).expect_err(text);
            assert_eq!(e.kind(), FtpsErrorKind::Protocol, "{text}: {e}");
            assert!(!e.is_transient(), "{text}: {e}");
            assert!(e.reply().is_some(), "{text}: {e}");
        }
    }
}
