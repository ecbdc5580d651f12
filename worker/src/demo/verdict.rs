//! The demo's last line, the one a script checks: `demo: ok: ...` (exit 0) when every
//! sample arrived intact and the second run skipped every one as a duplicate, `demo:
//! FAILED: ...` (exit 1) otherwise. The same for the one-process demo and the fleet's.

use std::process::ExitCode;

/// The first words of the verdict when every check passed.
const OK: &str = "demo: ok:";
/// The first words of the verdict otherwise.
const FAILED: &str = "demo: FAILED:";

/// What a demo counted.
pub struct Counted {
    /// Files found intact at their destination after the first run.
    pub delivered: usize,
    /// Files the second run reported as duplicates.
    pub duplicates: usize,
    /// Sample files in all.
    pub expected: usize,
}

/// Prints the verdict line for `counted` (or the error that stopped the demo) and
/// returns the exit code.
pub fn print(counted: anyhow::Result<Counted>) -> ExitCode {
    match counted {
        Ok(Counted {
            delivered,
            duplicates,
            expected,
        }) => {
            let ok = delivered == expected && duplicates == expected;
            println!(
                "{} {delivered}/{expected} files delivered, {duplicates}/{expected} duplicates skipped on the second run",
                if ok { OK } else { FAILED }
            );
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(error) => {
            println!("{FAILED} {error:#}");
            ExitCode::FAILURE
        }
    }
}
