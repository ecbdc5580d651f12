//! Checking an upload on the partner before it is renamed into place: the strongest check
//! the server offers, reported per file as [`Verified`].
//!
//! | server offers (`FEAT`)            | check                                   | report   |
//! |-----------------------------------|-----------------------------------------|----------|
//! | `HASH` listing `SHA-256`          | `HASH <temp>` (SHA-256 selected at login) | `sha256` |
//! | `XSHA256`                         | `XSHA256 <temp>`                         | `sha256` |
//! | a `226` that names the bytes      | that count equals the bytes sent         | `size`   |
//! | `SIZE`                            | `SIZE <temp>` equals the bytes sent      | `size`   |
//! | none of these                     | the `226` and the byte count only        | `none`   |
//!
//! Some servers (Serv-U, several Windows servers) say in the transfer's `226` how many bytes
//! they received (`226 Transfer complete. 10,240 bytes transferred.`): when that count is the
//! one number of bytes in the reply and equals the bytes sent, the server has said what
//! `SIZE` would, and the round trip is saved ([`bytes_in_reply`]). A count that differs, or
//! a reply ferry cannot read one number from, proves nothing either way: `SIZE` decides.
//!
//! The server reads the stored file back and hashes it, so `sha256` proves that the bytes on
//! the partner's disk are the bytes ferry hashed and recorded, not only that a data
//! connection ended well. A hash command the server lists but then refuses (a `5xx`: the
//! file is too large for its configured limit, the command is denied to this user) falls
//! back to `SIZE` rather than failing the file: the refusal says nothing about the data.
//! A hash or size that differs fails the file (transient: the next attempt sends it again)
//! and the caller removes the temporary file, so nothing lands under the final name.
//!
//! Not used: `XSHA1`, `XMD5` and `XCRC`. They would need a second hash of the stream in an
//! algorithm ferry does not otherwise compute, for a weaker proof than `SIZE` plus the
//! TLS record MACs already give against accidental damage.

use serde::Serialize;

use super::commands::size;
use super::connection::Connection;
use super::error::{FtpsError, FtpsErrorKind};
use super::reply::Response;

/// Which hash command the server offers for SHA-256, from `FEAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HashCommand {
    /// `HASH` (draft-bryan-ftpext-hash), with `SHA-256` among its algorithms.
    Hash,
    /// `XSHA256` (mod_digest, and several Windows servers).
    Xsha256,
}

impl HashCommand {
    /// The command a `FEAT` line announces, if it is one of these. `line` is the feature
    /// line without its leading space, e.g. `HASH SHA-1;SHA-256*;MD5` or `XSHA256`.
    pub(crate) fn from_feat_line(line: &str) -> Option<Self> {
        let mut words = line.split_whitespace();
        let name = words.next()?.to_ascii_uppercase();
        match name.as_str() {
            "HASH" => {
                let algorithms = words.next().unwrap_or("");
                algorithms
                    .split(';')
                    .any(|a| a.trim_end_matches('*').eq_ignore_ascii_case("SHA-256"))
                    .then_some(HashCommand::Hash)
            }
            "XSHA256" => Some(HashCommand::Xsha256),
            _ => None,
        }
    }
}

/// How an uploaded file was checked on the partner before its rename.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verified {
    /// The server's SHA-256 of the stored file equals the hash of the bytes sent.
    Sha256,
    /// The stored size equals the bytes sent (the server has no SHA-256 command).
    Size,
    /// The server offers neither: only its transfer reply and the byte count.
    None,
}

impl Verified {
    /// The name in reports and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Verified::Sha256 => "sha256",
            Verified::Size => "size",
            Verified::None => "none",
        }
    }
}

/// What ferry sent in an upload, and the server's reply to it.
pub(crate) struct Sent<'a> {
    /// The bytes sent.
    pub(crate) bytes: u64,
    /// Their SHA-256.
    pub(crate) sha256: &'a [u8; 32],
    /// The transfer's final (`226`) reply.
    pub(crate) transfer_reply: &'a Response,
}

/// Checks the file at `path` on the server against what ferry sent.
pub(crate) async fn verify_stored(
    conn: &mut Connection,
    step: &str,
    path: &str,
    sent: Sent<'_>,
) -> Result<Verified, FtpsError> {
    let Sent {
        bytes,
        sha256,
        transfer_reply,
    } = sent;
    if let Some(command) = conn.features().hash
        && let Some(stored) = server_sha256(conn, step, command, path).await?
    {
        if stored != *sha256 {
            return Err(FtpsError::new(
                FtpsErrorKind::Protocol,
                step,
                format!(
                    "the server's sha256 of the stored file is {}, ferry sent {}; not renamed",
                    hex::encode(stored),
                    hex::encode(sha256)
                ),
            )
            .transient(true));
        }
        return Ok(Verified::Sha256);
    }
    if bytes_in_reply(transfer_reply) == Some(bytes) {
        return Ok(Verified::Size);
    }
    match size(conn, step, path).await? {
        Some(stored) if stored != bytes => Err(FtpsError::new(
            FtpsErrorKind::Protocol,
            step,
            format!("the server stored {stored} bytes, ferry sent {bytes}"),
        )
        .transient(true)),
        Some(_) => Ok(Verified::Size),
        None => Ok(Verified::None),
    }
}

/// The number of bytes a transfer reply names (`10,240 bytes`, `10240 bytes`): `None` unless
/// exactly one number stands right before the word `bytes` in the whole reply, so that a
/// rate (`24.31 Mbytes per second`), a time or two counts never pass for it.
pub(crate) fn bytes_in_reply(reply: &Response) -> Option<u64> {
    let mut found = None;
    for line in &reply.lines {
        let text = line.get(4..).unwrap_or("");
        let words: Vec<&str> = text.split_whitespace().collect();
        for pair in words.windows(2) {
            let unit = pair[1].trim_end_matches(|c: char| c.is_ascii_punctuation());
            if !unit.eq_ignore_ascii_case("bytes") {
                continue;
            }
            let number = pair[0].trim_start_matches('(');
            let digits: String = number.chars().filter(|&c| c != ',').collect();
            let looks_like_count = !digits.is_empty()
                && digits.chars().all(|c| c.is_ascii_digit())
                && number.chars().all(|c| c.is_ascii_digit() || c == ',');
            if !looks_like_count || found.is_some() {
                return None;
            }
            found = Some(digits.parse().ok()?);
        }
    }
    found
}

/// The server's SHA-256 of `path`, or `None` when it refused to compute one (then `SIZE`
/// is the check). A positive reply without a hash in it is a protocol error: a server that
/// says it hashed and shows nothing is not to be trusted with the rename.
async fn server_sha256(
    conn: &mut Connection,
    step: &str,
    command: HashCommand,
    path: &str,
) -> Result<Option<[u8; 32]>, FtpsError> {
    // `HASH` answers in SHA-256: the session selected it at login (`connect.rs`).
    let line = match command {
        HashCommand::Hash => format!("HASH {path}"),
        HashCommand::Xsha256 => format!("XSHA256 {path}"),
    };
    let reply = conn.command(step, &line).await?;
    if !reply.is_positive() {
        return Ok(None);
    }
    let text = reply.lines.join(" ");
    match find_sha256(&text) {
        Some(hash) => Ok(Some(hash)),
        None => Err(FtpsError::new(
            FtpsErrorKind::Protocol,
            step,
            format!(
                "{} answered {} without a SHA-256",
                line.split(' ').next().unwrap_or(""),
                reply.code
            ),
        )),
    }
}

/// The first word of `text` that is 64 hex digits (`HASH` answers
/// `213 SHA-256 0-N <hex> <path>`, `XSHA256` answers `250 <hex>`).
fn find_sha256(text: &str) -> Option<[u8; 32]> {
    text.split_whitespace()
        .filter(|w| w.len() == 64)
        .find_map(|w| hex::decode(w).ok()?.try_into().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feat_lines_name_the_hash_command() {
        assert_eq!(
            HashCommand::from_feat_line("HASH SHA-1;SHA-256*;SHA-512;MD5;CRC32"),
            Some(HashCommand::Hash)
        );
        assert_eq!(
            HashCommand::from_feat_line("HASH SHA-1*;MD5"),
            None,
            "HASH without SHA-256 is no use"
        );
        assert_eq!(
            HashCommand::from_feat_line("xsha256"),
            Some(HashCommand::Xsha256)
        );
        assert_eq!(HashCommand::from_feat_line("XSHA1"), None);
        assert_eq!(HashCommand::from_feat_line("SIZE"), None);
    }

    #[test]
    fn the_hash_is_found_in_both_reply_forms() {
        let hex = "ab".repeat(32);
        let expected: [u8; 32] = [0xab; 32];
        assert_eq!(
            find_sha256(&format!("213 SHA-256 0-1024 {hex} /in/.part")),
            Some(expected)
        );
        assert_eq!(find_sha256(&format!("250 {hex}")), Some(expected));
        assert_eq!(find_sha256("250 OK"), None);
        assert_eq!(find_sha256(&format!("250 {}", "zz".repeat(32))), None);
    }

    fn reply(lines: &[&str]) -> Response {
        Response {
            code: 226,
            lines: lines.iter().map(|l| l.to_string()).collect(),
        }
    }

    #[test]
    fn a_transfer_reply_names_its_bytes_only_when_one_count_is_there() {
        let count = |lines: &[&str]| bytes_in_reply(&reply(lines));
        // Serv-U and the like.
        assert_eq!(
            count(&["226 Transfer complete. 10,240 bytes transferred. 9.77 KB/sec."]),
            Some(10_240)
        );
        assert_eq!(
            count(&["226 Transfer complete (10240 bytes)."]),
            Some(10_240)
        );
        assert_eq!(
            count(&["226-Upload done", "226 1048576 Bytes received"]),
            Some(1_048_576)
        );
        // vsftpd, ProFTPD, Pure-FTPd: no count.
        assert_eq!(count(&["226 Transfer complete."]), None);
        assert_eq!(
            count(&[
                "226-File successfully transferred",
                "226 0.000 seconds (measured here), 24.31 Mbytes per second"
            ]),
            None
        );
        // Two counts, a decimal or no number: nothing to go by.
        assert_eq!(count(&["226 10 bytes of 20 bytes stored"]), None);
        assert_eq!(count(&["226 1.5 bytes"]), None);
        assert_eq!(count(&["226 Total bytes: 10240"]), None);
    }
}
