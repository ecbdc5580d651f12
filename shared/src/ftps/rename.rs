//! The rename protocol: how an upload's temporary file gets its final name on the partner,
//! and why a refused rename never deletes anything it should not.
//!
//! `RNFR` and `RNTO` are two steps, and their refusals mean different things:
//! - `RNFR` refused (`550`): the *temporary* file is not there. A partner-side process may
//!   have moved it away, or another sender renamed it. Nothing is deleted; the error is
//!   [`FtpsErrorKind::TemporaryFileVanished`] and the file is not reported delivered.
//! - `RNTO` refused: on servers that will not rename over an existing file this may mean
//!   "the target exists" — or "permission denied", or anything else. Only when the server
//!   *shows* that the target exists (`SIZE`/`MLST`), the refusal is not about permission, and
//!   the flow allows replacing files, is the old target replaced, and even then the old file
//!   is first renamed aside and deleted only once the new one is in place (put back if that
//!   fails). Otherwise the refusal is the error, and the partner's file stays as it was.
//! - With [`RenamePolicy::replace_existing`] off, an existing target is checked for *before*
//!   the rename (servers with Unix semantics replace silently) and the error is
//!   [`FtpsErrorKind::TargetExists`].

use tracing::{debug, info, warn};

use super::classify::{ReplyTo, from_response};
use super::commands::exists;
use super::connection::{Connection, Operation};
use super::control::check_line;
use super::error::{FtpsError, FtpsErrorKind};
use super::paths::aside_path;

/// What a rename may do to an existing file under the final name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenamePolicy {
    /// Replace an existing target (the flow's `overwrite`).
    pub replace_existing: bool,
}

/// `RNFR from`, `RNTO to`, under a [`RenamePolicy`].
pub(crate) struct Rename<'a> {
    pub(crate) from: &'a str,
    pub(crate) to: &'a str,
    pub(crate) policy: RenamePolicy,
}

impl Operation for Rename<'_> {
    type Output = ();

    async fn run(&mut self, conn: &mut Connection) -> Result<(), FtpsError> {
        let step = format!("rename of {} to {}", self.from, self.to);
        rename(conn, &step, self.from, self.to, self.policy).await
    }
}

/// The protocol of the module docs; `step` names the enclosing operation in errors.
pub(crate) async fn rename(
    conn: &mut Connection,
    step: &str,
    from: &str,
    to: &str,
    policy: RenamePolicy,
) -> Result<(), FtpsError> {
    check_line(step, from)?;
    check_line(step, to)?;
    if !policy.replace_existing && exists(conn, step, to).await? == Some(true) {
        return Err(target_exists(step, to));
    }
    match rename_once(conn, step, from, to).await? {
        Renamed::Done => Ok(()),
        Renamed::ToRefused(refusal) => {
            let permission = refusal.kind() == FtpsErrorKind::PermissionDenied
                && refusal.reply().is_some_and(|r| says_permission(&r.text));
            if permission || exists(conn, step, to).await? != Some(true) {
                return Err(refusal);
            }
            if !policy.replace_existing {
                return Err(target_exists(step, to));
            }
            info!(target = to, reply = ?refusal.reply(), "the server will not rename over an existing file; moving the old one aside first");
            replace_through_aside(conn, step, from, to, refusal).await
        }
    }
}

/// Replaces an existing `to` on a server that will not rename over a file: the old file is
/// renamed aside, the new one renamed into place, and only then is the old one deleted; if
/// the new one cannot be put in place, the old one is put back. The partner never loses its
/// file to a failed replacement.
async fn replace_through_aside(
    conn: &mut Connection,
    step: &str,
    from: &str,
    to: &str,
    refusal: FtpsError,
) -> Result<(), FtpsError> {
    let aside = aside_path(to);
    if !matches!(rename_once(conn, step, to, &aside).await, Ok(Renamed::Done)) {
        return Err(refusal.context("; the existing file could not be moved aside either"));
    }
    match rename_once(conn, step, from, to).await {
        Ok(Renamed::Done) => {
            let deleted = conn.command(step, &format!("DELE {aside}")).await;
            if !deleted.as_ref().is_ok_and(|r| r.is_positive()) {
                warn!(old = %aside, "the replaced file could not be deleted; it stays under its hidden name");
            }
            Ok(())
        }
        Ok(Renamed::ToRefused(e)) | Err(e) => {
            if !matches!(rename_once(conn, step, &aside, to).await, Ok(Renamed::Done)) {
                warn!(old = %aside, target = to, "the existing file could not be put back; it stays under its hidden name");
            }
            Err(e)
        }
    }
}

enum Renamed {
    Done,
    /// `RNTO` was refused; the error carries the reply.
    ToRefused(FtpsError),
}

async fn rename_once(
    conn: &mut Connection,
    step: &str,
    from: &str,
    to: &str,
) -> Result<Renamed, FtpsError> {
    let rnfr = conn.command(step, &format!("RNFR {from}")).await?;
    if rnfr.code != 350 {
        let err = from_response(step, &rnfr, ReplyTo::ExistingPath);
        if matches!(rnfr.code, 450 | 550) && err.kind() != FtpsErrorKind::PermissionDenied {
            debug!(temp = from, reply = %rnfr.to_reply(), "RNFR refused: the temporary file is gone");
            return Err(FtpsError::new(
                FtpsErrorKind::TemporaryFileVanished,
                step,
                format!(
                    "the temporary file {from} is no longer on the server (RNFR refused); a \
                     process at the partner may have taken it; nothing was deleted"
                ),
            )
            .with_reply(rnfr.to_reply())
            .transient(false));
        }
        return Err(err);
    }
    let rnto = conn.command(step, &format!("RNTO {to}")).await?;
    if rnto.is_positive() {
        return Ok(Renamed::Done);
    }
    Ok(Renamed::ToRefused(from_response(
        step,
        &rnto,
        ReplyTo::NewPath,
    )))
}

fn says_permission(text: &str) -> bool {
    let text = text.to_ascii_lowercase();
    ["permission", "denied", "not allowed", "forbidden"]
        .iter()
        .any(|w| text.contains(w))
}

fn target_exists(step: &str, to: &str) -> FtpsError {
    FtpsError::new(
        FtpsErrorKind::TargetExists,
        step,
        format!("{to} already exists on the partner and the flow does not replace files (overwrite: false)"),
    )
    .transient(false)
}
