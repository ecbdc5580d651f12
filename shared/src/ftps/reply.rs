//! Server replies: [`Response`], one complete reply as read from the control connection, and
//! [`Reply`], the bounded, printable form kept in errors.
//!
//! A reply is `ddd text` on one line or, multi-line (RFC 959 §4.2), `ddd-text` ... up to a
//! line that starts with the same `ddd ` (lines in between may carry anything). The parser
//! works on whatever bytes have arrived and says when it needs more, so reading a reply can
//! be cancelled at any point without losing a byte (see `control.rs`).

use std::fmt;

use super::printable::printable;

/// Longest line of a reply ferry accepts (FEAT lines and server banners are far shorter).
const MAX_LINE: usize = 8 * 1024;
/// Most bytes one reply may take (a hostile server cannot make ferry buffer more).
const MAX_REPLY: usize = 64 * 1024;

/// One complete reply: its code and its lines (with CR/LF removed, otherwise as sent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Response {
    /// The three-digit code.
    pub(crate) code: u32,
    /// Every line of the reply, the code prefix of the first and last still on.
    pub(crate) lines: Vec<String>,
}

impl Response {
    /// 1xx: the server started the command (a transfer) and will answer again.
    pub(crate) fn is_preliminary(&self) -> bool {
        (100..200).contains(&self.code)
    }

    /// 2xx or 3xx: accepted (3xx: send the next command of the sequence).
    pub(crate) fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }

    /// The text of the first line after the code.
    pub(crate) fn first_text(&self) -> &str {
        self.lines
            .first()
            .map(|l| l.get(4..).unwrap_or(""))
            .unwrap_or("")
    }

    /// The bounded, printable form for errors and logs.
    pub(crate) fn to_reply(&self) -> Reply {
        Reply::from_lines(self.code, &self.lines)
    }
}

/// What [`parse`] found in the bytes received so far.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Parse {
    /// A complete reply, and how many bytes of the input it took.
    Complete(Response, usize),
    /// Not complete yet: read more.
    NeedMore,
    /// Not an FTP reply, or longer than ferry accepts.
    Invalid(&'static str),
}

/// Parses one reply from the start of `buf`.
pub(crate) fn parse(buf: &[u8]) -> Parse {
    let mut lines = Vec::new();
    let mut at = 0;
    let mut code: Option<(u32, bool)> = None; // (code, multi-line)
    loop {
        let Some(end) = buf[at..].iter().position(|b| *b == b'\n') else {
            if buf.len() - at > MAX_LINE {
                return Parse::Invalid("a reply line is too long");
            }
            if buf.len() > MAX_REPLY {
                return Parse::Invalid("the reply is too long");
            }
            return Parse::NeedMore;
        };
        let raw = &buf[at..at + end];
        at += end + 1;
        if raw.len() > MAX_LINE || at > MAX_REPLY {
            return Parse::Invalid("the reply is too long");
        }
        let line = String::from_utf8_lossy(raw.strip_suffix(b"\r").unwrap_or(raw)).into_owned();
        let prefix = line.as_bytes();
        let digits = prefix.len() >= 3 && prefix[..3].iter().all(u8::is_ascii_digit);
        let sep = prefix.get(3).copied();
        match code {
            None => {
                if !digits || !matches!(sep, None | Some(b' ') | Some(b'-')) {
                    return Parse::Invalid("the server sent a line that is not an FTP reply");
                }
                let c: u32 = line[..3].parse().unwrap_or(0);
                if !(100..600).contains(&c) {
                    return Parse::Invalid("the server sent a reply code out of range");
                }
                let multi = sep == Some(b'-');
                lines.push(line);
                if !multi {
                    return Parse::Complete(Response { code: c, lines }, at);
                }
                code = Some((c, true));
            }
            Some((c, _)) => {
                let last = digits && sep != Some(b'-') && line[..3].parse() == Ok(c);
                lines.push(line);
                if last {
                    return Parse::Complete(Response { code: c, lines }, at);
                }
            }
        }
    }
}

/// A server reply kept in an error: the code and its text, printable and bounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit reply code.
    pub code: u32,
    /// The reply text (code stripped, lines joined with ` / `, control and bidi characters
    /// removed, cut to a bounded length).
    pub text: String,
}

impl Reply {
    /// Longest reply text kept in an error.
    const MAX_TEXT: usize = 300;

    fn from_lines(code: u32, lines: &[String]) -> Reply {
        let mut text = String::new();
        for line in lines {
            let line = line.trim();
            // Strip the "550 " / "550-" prefix that each reply line may carry.
            let line = match line.get(..4) {
                Some(p) if p.as_bytes()[..3].iter().all(u8::is_ascii_digit) => line[4..].trim(),
                _ => line,
            };
            if line.is_empty() {
                continue;
            }
            if !text.is_empty() {
                text.push_str(" / ");
            }
            text.push_str(&printable(line));
        }
        if text.len() > Self::MAX_TEXT {
            let mut cut = Self::MAX_TEXT;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push_str("...");
        }
        Reply { code, text }
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(input: &str) -> (Response, usize) {
        match parse(input.as_bytes()) {
            Parse::Complete(r, n) => (r, n),
            other => panic!("{input:?}: {other:?}"),
        }
    }

    #[test]
    fn single_and_multi_line_replies() {
        let (r, n) = complete("220 ready\r\nrest");
        assert_eq!((r.code, n), (220, 11));
        assert_eq!(r.first_text(), "ready");
        let (r, _) = complete("211-Features:\r\n MLST size*;\r\n211 End\r\n");
        assert_eq!(r.code, 211);
        assert_eq!(r.lines.len(), 3);
        // A line inside a multi-line reply may start with another code.
        let (r, _) = complete("250-a\r\n123 inner\r\n250-b\r\n250 end\r\n");
        assert_eq!(r.lines.len(), 4);
        assert_eq!(parse(b"250-a\r\n250-b\r\n"), Parse::NeedMore);
        assert_eq!(parse(b"22"), Parse::NeedMore);
    }

    #[test]
    fn garbage_and_floods_are_refused() {
        assert!(matches!(parse(b"hello\r\n"), Parse::Invalid(_)));
        assert!(matches!(parse(b"999 x\r\n"), Parse::Invalid(_)));
        let flood = vec![b'x'; MAX_LINE + 10];
        assert!(matches!(parse(&flood), Parse::Invalid(_)));
        let mut many = b"250-start\r\n".to_vec();
        while many.len() <= MAX_REPLY {
            many.extend_from_slice(b"250-more\r\n");
        }
        assert!(matches!(parse(&many), Parse::Invalid(_)));
    }

    #[test]
    fn reply_text_strips_codes_joins_lines_and_drops_control_characters() {
        let (r, _) = complete("550-First line\r\n550 Second \u{1b}[2Jline\u{202E}\r\n");
        let reply = r.to_reply();
        assert_eq!(reply.code, 550);
        assert_eq!(reply.text, "First line / Second [2Jline");
    }
}
