//! Resuming an interrupted upload: `REST <offset>` then `STOR` onto ferry's own temporary
//! file, sending only the bytes the server does not have yet.
//!
//! The temporary name comes from the content (or the delivery key), so a retry of the same
//! file, in the same run or a later one, writes to the same part. Before it sends, an
//! upload that may resume asks the part's size (`SIZE`); a part shorter than the file is
//! continued from its end. The local file is read from the start all the same: the bytes the
//! server has are hashed again (not sent), so the SHA-256 checked before the rename is the
//! whole file's, and the server's own check of the stored file (`verify.rs`) covers the
//! part written by the earlier attempt.
//!
//! Only servers that list `REST STREAM` in `FEAT` and answer `REST` with `350` are asked;
//! a partner whose `REST` misbehaves turns it off (`ftps.connection.disable_resume`). Any
//! doubt (no `SIZE`, a part as large as the file or larger, a refused `REST`) sends the whole
//! file, writing the part over.

use super::commands::size;
use super::connection::Connection;
use super::error::FtpsError;

/// Where an upload of `len` bytes to `temp_path` may continue from: the size of the part
/// already there, after the server accepted `REST` at it; `0` to send everything.
pub(crate) async fn resume_offset(
    conn: &mut Connection,
    step: &str,
    temp_path: &str,
    len: u64,
) -> Result<u64, FtpsError> {
    if !conn.features().rest_stream || !conn.resume_allowed() {
        return Ok(0);
    }
    // No part (550) or no `SIZE`: nothing to continue. An error that left the control
    // connection out of step ends the attempt.
    let part = match size(conn, step, temp_path).await {
        Ok(Some(part)) => part,
        Err(e) if !conn.control().in_step() => return Err(e),
        Ok(None) | Err(_) => return Ok(0),
    };
    if part == 0 || part >= len {
        return Ok(0);
    }
    let reply = conn.command(step, &format!("REST {part}")).await?;
    Ok(if reply.code == 350 { part } else { 0 })
}
