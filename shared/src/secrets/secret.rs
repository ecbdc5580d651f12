//! [`Secret`]: a resolved secret value that never shows itself by accident.

use std::fmt;
use std::sync::Arc;

/// A resolved secret value (password, private key, token...).
///
/// It exists so that a secret can travel through the program without any chance of
/// reaching a log line, a trace attribute or an error message: `Debug` and `Display`
/// print `[redacted]`, and the only way to read the value is the explicit
/// [`Secret::expose`]. Cloning is cheap (the value is shared).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    /// Wraps a value that must be kept out of logs.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(Arc::from(value.into()))
    }

    /// The value itself. Call it only where the value is handed to the party it is
    /// meant for (a server's login, a TLS library).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(format!("{s}"), "[redacted]");
        assert_eq!(s.expose(), "hunter2");
    }
}
