//! [`ConfigError`] and [`ConfigErrors`]: what is wrong with a configuration, and where.
//!
//! Loading never stops at the first problem: every error of every file is collected, so an
//! operator fixes a configuration in one pass. Each error names the file (relative to the
//! configuration directory), the line and column when known, and the field path
//! (`ftps.connection.passive`, `flows.claims-upload.files[0].pattern`). Messages never
//! contain a secret value.

use std::fmt;
use std::path::PathBuf;

/// One problem in the configuration. Displays as
/// `partners/acme.yaml:7:5: ftps.connection.passive: passive mode is required; ...`.
///
/// (`thiserror` cannot derive a conditional layout for a struct, hence the written
/// `Display`.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, relative to the configuration directory (`partners/acme.yaml`); the
    /// directory itself when the problem is not in a file.
    pub file: PathBuf,
    /// The 1-based line, when known.
    pub line: Option<u32>,
    /// The 1-based column (in characters), when known.
    pub column: Option<u32>,
    /// The dotted field path (`ftps.connection.passive`); empty for a whole-file problem.
    pub field: String,
    /// What is wrong and how to fix it, in an operator's words.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found while loading a configuration, in file and line order; displays
/// one error per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors {
    errors: Vec<ConfigError>,
}

impl ConfigErrors {
    /// Sorts the errors by file, line and column (stable, so a file's order is kept).
    pub(crate) fn new(mut errors: Vec<ConfigError>) -> Self {
        errors.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
        ConfigErrors { errors }
    }

    /// The errors, in file and line order.
    pub fn errors(&self) -> &[ConfigError] {
        &self.errors
    }

    /// How many errors there are (at least one).
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// Always false: a `ConfigErrors` holds at least one error.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl IntoIterator for ConfigErrors {
    type Item = ConfigError;
    type IntoIter = std::vec::IntoIter<ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.errors.into_iter()
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.errors.iter()
    }
}
