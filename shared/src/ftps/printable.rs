//! Text from a partner made safe to print: server replies and remote names end up in logs,
//! report rows and dead-letter reasons, where a control character could forge a log line
//! and a bidirectional override could make `exe.xml` read as `lmx.exe`.
//!
//! [`printable`] drops C0/C1 control characters (CR, LF, ESC, ...) and the Unicode bidi
//! controls; everything else, including non-ASCII letters, is kept.

use std::borrow::Cow;

/// Unicode's bidirectional formatting characters (embeddings, overrides, isolates, marks).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

fn is_unprintable(c: char) -> bool {
    c.is_control() || is_bidi_control(c)
}

/// `text` without control and bidi-control characters (borrowed when there are none).
pub fn printable(text: &str) -> Cow<'_, str> {
    if text.chars().any(is_unprintable) {
        Cow::Owned(text.chars().filter(|c| !is_unprintable(*c)).collect())
    } else {
        Cow::Borrowed(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_and_bidi_characters_are_dropped() {
        assert_eq!(printable("a.xml"), "a.xml");
        assert!(matches!(printable("Rapport é 東京"), Cow::Borrowed(_)));
        assert_eq!(
            printable("550 x\r\n2026 forged line"),
            "550 x2026 forged line"
        );
        assert_eq!(printable("\u{1b}[31mred"), "[31mred");
        assert_eq!(printable("invoice\u{202E}lmx.exe"), "invoicelmx.exe");
        assert_eq!(printable("a\u{2066}b\u{2069}"), "ab");
    }
}
