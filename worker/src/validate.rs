//! `ferry-worker validate`: load the configuration directory and print its summary, or
//! every error with its file, line and field.

use std::path::Path;
use std::process::ExitCode;

use ferry_shared::config::{Config, render_summary};

/// Prints the summary (exit 0) or every configuration error (exit 2).
pub fn run(dir: &Path) -> ExitCode {
    match Config::load(dir) {
        Ok(config) => {
            print!("{}", render_summary(&config, chrono::Utc::now()));
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!(
                "{errors}\n{} configuration error(s) in {}",
                errors.len(),
                dir.display()
            );
            ExitCode::from(super::EXIT_CONFIG)
        }
    }
}
