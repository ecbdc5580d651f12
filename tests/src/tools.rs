//! Where the test bed finds the servers' binaries that `scripts/setup-test-env` installed.

use std::path::PathBuf;

use anyhow::{Context, bail};

/// The folder where `scripts/setup-test-env` puts what is not a Debian package
/// (`$FERRY_TESTBED_HOME`, default `~/.cache/ferry-testbed`).
pub fn testbed_home() -> PathBuf {
    if let Some(dir) = std::env::var_os("FERRY_TESTBED_HOME") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cache/ferry-testbed")
}

/// Finds an executable: first in the given folders under the test bed's home (for example
/// `venv/bin`), then on `PATH`, then in `/usr/sbin` and `/sbin`. The error tells the
/// reader how to install it.
pub fn find_tool(name: &str, testbed_subdirs: &[&str]) -> anyhow::Result<PathBuf> {
    let home = testbed_home();
    let mut candidates: Vec<PathBuf> = testbed_subdirs
        .iter()
        .map(|d| home.join(d).join(name))
        .collect();
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join(name)));
    }
    candidates.push(PathBuf::from("/usr/sbin").join(name));
    candidates.push(PathBuf::from("/sbin").join(name));
    for candidate in candidates {
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "`{name}` is not installed: run scripts/setup-test-env (it installs every test dependency)"
    )
}

/// The folder of the workspace's binaries (`target/<profile>`), built by the same `cargo
/// build`/`cargo nextest run` as the running test or example: the parent of the `deps` or
/// `examples` folder that holds its executable.
pub fn workspace_binary_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the test executable")?;
    let mut dir = exe
        .parent()
        .map(PathBuf::from)
        .context("test executable has no parent")?;
    if dir.ends_with("deps") || dir.ends_with("examples") {
        dir.pop();
    }
    Ok(dir)
}

/// The path of one of the workspace's binaries (`ferry-worker`, `ferry-scheduler`) in
/// [`workspace_binary_dir`]; an error when it is not built.
pub fn workspace_binary(name: &str) -> anyhow::Result<PathBuf> {
    let path = workspace_binary_dir()?.join(name);
    if !path.is_file() {
        bail!(
            "{} is not built: run `cargo build --workspace` first",
            path.display()
        );
    }
    Ok(path)
}
