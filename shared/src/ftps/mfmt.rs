//! Keeping a file's modification time on the partner: `MFMT` (draft-somers-ftp-mfxx), sent
//! for an upload's temporary file before its rename when the flow says `preserve_mtime`.
//!
//! Only servers that list `MFMT` in `FEAT` are asked (ProFTPD, pyftpdlib; vsftpd has none).
//! The time is the local file's, in UTC to the second (`YYYYMMDDHHMMSS`). A refusal is not
//! a failure of the file: the bytes are the delivery; the time is a courtesy, and the log
//! says it was not kept.

use std::time::SystemTime;

use chrono::{DateTime, Utc};

use super::connection::Connection;
use super::control::check_line;
use super::error::FtpsError;

/// What became of a request to keep a file's modification time.
#[must_use = "say in the log when the partner did not keep the time"]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MtimeKept {
    /// The server set the time.
    Kept,
    /// The server does not list `MFMT`: nothing was asked.
    Unsupported,
    /// The server listed `MFMT` but refused it (its reply code).
    Refused(u32),
}

/// Sets the modification time of `path` on the server to `modified` with `MFMT`.
pub(crate) async fn set_modified(
    conn: &mut Connection,
    step: &str,
    path: &str,
    modified: SystemTime,
) -> Result<MtimeKept, FtpsError> {
    if !conn.features().mfmt {
        return Ok(MtimeKept::Unsupported);
    }
    check_line(step, path)?;
    let line = format!("MFMT {} {path}", mfmt_time(modified));
    let reply = conn.command(step, &line).await?;
    Ok(if reply.code == 213 {
        MtimeKept::Kept
    } else {
        MtimeKept::Refused(reply.code)
    })
}

/// `YYYYMMDDHHMMSS` in UTC, as `MFMT` takes it.
fn mfmt_time(modified: SystemTime) -> String {
    DateTime::<Utc>::from(modified)
        .format("%Y%m%d%H%M%S")
        .to_string()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn the_time_is_utc_to_the_second() {
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_999);
        assert_eq!(mfmt_time(t), "20231114221320");
    }
}
