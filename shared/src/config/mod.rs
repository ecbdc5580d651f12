//! Loading and validating ferry's configuration directory (under construction).

mod error;
mod yaml;

pub use error::{ConfigError, ConfigErrors};
