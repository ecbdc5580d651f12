//! The simple commands: `DELE`, `SIZE`, and asking whether a file exists and how large it
//! is (`SIZE`, or `MLST`).
//!
//! Paths are checked before they travel (no NUL, CR or LF: one path is one command line).

use super::classify::{ReplyTo, from_response};
use super::connection::{Connection, Operation};
use super::control::check_line;
use super::error::FtpsError;

/// `DELE path`.
pub(crate) struct Delete<'a> {
    pub(crate) path: &'a str,
}

impl Operation for Delete<'_> {
    type Output = ();

    async fn run(&mut self, conn: &mut Connection) -> Result<(), FtpsError> {
        let step = format!("delete of {}", self.path);
        check_line(&step, self.path)?;
        conn.accepted(&step, &format!("DELE {}", self.path), ReplyTo::ExistingPath)
            .await?;
        Ok(())
    }
}

/// `SIZE path`: `Ok(None)` when the server has no `SIZE` (not in `FEAT`, or refused as a
/// command); a `550` (no such file) is an error.
pub(crate) async fn size(
    conn: &mut Connection,
    step: &str,
    path: &str,
) -> Result<Option<u64>, FtpsError> {
    if !conn.features().size {
        return Ok(None);
    }
    let reply = conn.command(step, &format!("SIZE {path}")).await?;
    match reply.code {
        213 => Ok(reply.first_text().trim().parse().ok()),
        550 => Err(from_response(step, &reply, ReplyTo::ExistingPath)),
        _ => Ok(None),
    }
}

/// Whether `path` exists as the server shows it: `Some(true)`/`Some(false)` from `SIZE` or
/// `MLST`, `None` when the server offers neither (nobody can tell).
pub(crate) async fn exists(
    conn: &mut Connection,
    step: &str,
    path: &str,
) -> Result<Option<bool>, FtpsError> {
    let features = conn.features();
    let line = if features.size {
        format!("SIZE {path}")
    } else if features.mlsd {
        format!("MLST {path}")
    } else {
        return Ok(None);
    };
    let reply = conn.command(step, &line).await?;
    Ok(match reply.code {
        213 | 250 => Some(true),
        550 => Some(false),
        _ => None,
    })
}

/// What the server shows of one path ([`Session::stat`](super::Session::stat)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteFile {
    /// The file is there; its size where the server tells it (`SIZE`).
    Present {
        /// Its size in bytes, when the server offers `SIZE`.
        size: Option<u64>,
    },
    /// The server says there is no such file.
    Absent,
    /// The server offers neither `SIZE` nor `MLST`: nobody can tell.
    Unknown,
}

/// Asks whether `path` exists and how large it is: `SIZE`, else `MLST`.
pub(crate) struct Stat<'a> {
    pub(crate) path: &'a str,
}

impl Operation for Stat<'_> {
    type Output = RemoteFile;

    async fn run(&mut self, conn: &mut Connection) -> Result<RemoteFile, FtpsError> {
        let step = format!("looking up {}", self.path);
        check_line(&step, self.path)?;
        if conn.features().size {
            let reply = conn.command(&step, &format!("SIZE {}", self.path)).await?;
            return Ok(match reply.code {
                213 => RemoteFile::Present {
                    size: reply.first_text().trim().parse().ok(),
                },
                550 => RemoteFile::Absent,
                _ => RemoteFile::Unknown,
            });
        }
        Ok(match exists(conn, &step, self.path).await? {
            Some(true) => RemoteFile::Present { size: None },
            Some(false) => RemoteFile::Absent,
            None => RemoteFile::Unknown,
        })
    }
}
