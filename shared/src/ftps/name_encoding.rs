//! How a partner's server writes file names on the wire (the partner's `listing_encoding`).
//!
//! FTP sends names as bytes. RFC 2640 says UTF-8, and ferry assumes it: a listed name that
//! is not UTF-8 is skipped rather than turned into a lossy string that would name another
//! file (`list.rs`). Old servers on old disks send their names' bytes as they are, often
//! Latin-1 (ISO 8859-1): `café.csv` arrives as `caf\xE9.csv`. With `latin1`, such a name is
//! read as Latin-1 (every byte is a character, so nothing is ever skipped or guessed) and
//! every command that names a file sends the same bytes back, so that `RETR`, `DELE` and
//! `RNFR` find the file the listing showed. A name with a character Latin-1 has not (`€`,
//! `ł`) cannot be written to such a server: the command fails with
//! [`FtpsErrorKind::InvalidPath`](super::FtpsErrorKind::InvalidPath) naming the character,
//! rather than sending bytes that name another file.

use std::borrow::Cow;

/// The encoding of names on a partner's control and listing channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NameEncoding {
    /// UTF-8 (RFC 2640; the default): names that are not UTF-8 are skipped.
    #[default]
    Utf8,
    /// ISO 8859-1: each byte is the character of the same number.
    Latin1,
}

impl NameEncoding {
    /// The configuration's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            NameEncoding::Utf8 => "utf8",
            NameEncoding::Latin1 => "latin1",
        }
    }

    /// A line of a listing (or a reply) as text; `None` when the bytes are not in this
    /// encoding (only possible with UTF-8).
    pub fn decode(self, raw: &[u8]) -> Option<Cow<'_, str>> {
        match self {
            NameEncoding::Utf8 => std::str::from_utf8(raw).ok().map(Cow::Borrowed),
            NameEncoding::Latin1 if raw.is_ascii() => {
                // ASCII is the same in both: no copy.
                std::str::from_utf8(raw).ok().map(Cow::Borrowed)
            }
            NameEncoding::Latin1 => Some(Cow::Owned(raw.iter().map(|&b| char::from(b)).collect())),
        }
    }

    /// A command line as the bytes to send; `Err` with the first character this encoding
    /// cannot write.
    pub fn encode(self, line: &str) -> Result<Cow<'_, [u8]>, char> {
        match self {
            NameEncoding::Utf8 => Ok(Cow::Borrowed(line.as_bytes())),
            NameEncoding::Latin1 if line.is_ascii() => Ok(Cow::Borrowed(line.as_bytes())),
            NameEncoding::Latin1 => line
                .chars()
                .map(|c| u8::try_from(u32::from(c)).map_err(|_| c))
                .collect::<Result<Vec<u8>, char>>()
                .map(Cow::Owned),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_refuses_latin1_bytes_and_latin1_reads_every_byte() {
        let raw = b"caf\xe9.csv";
        assert_eq!(NameEncoding::Utf8.decode(raw), None);
        assert_eq!(
            NameEncoding::Latin1.decode(raw).as_deref(),
            Some("café.csv")
        );
        assert_eq!(
            NameEncoding::Utf8.decode("café.csv".as_bytes()).as_deref(),
            Some("café.csv")
        );
    }

    #[test]
    fn latin1_writes_back_the_bytes_it_read() {
        let raw: Vec<u8> = (0u8..=255).filter(|b| !b"\r\n\0".contains(b)).collect();
        let text = NameEncoding::Latin1.decode(&raw).unwrap();
        assert_eq!(
            NameEncoding::Latin1.encode(&text).unwrap().as_ref(),
            &raw[..]
        );
    }

    #[test]
    fn a_character_latin1_has_not_is_refused_by_name() {
        assert_eq!(NameEncoding::Latin1.encode("RETR 5€.csv"), Err('€'));
        assert_eq!(
            NameEncoding::Utf8.encode("RETR 5€.csv").unwrap().as_ref(),
            "RETR 5€.csv".as_bytes()
        );
    }
}
