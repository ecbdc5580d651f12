//! Creating the partner's folders an upload needs (`MKD`), level by level, safe against a
//! race with another worker.
//!
//! An upload pattern with `**` sends `x/y/z/a.xml` to `<remote>/x/y/z/a.xml`; the partner
//! may not have `x/y/z` yet. [`MakeDirs`] first asks whether the deepest folder is there
//! (one round trip in the common case); if not, it sends `MKD` for each level from the top.
//! A refused `MKD` is fine when the folder now exists: another worker (or the partner)
//! made it between our look and our `MKD`, and servers answer that with `550` ("File
//! exists") rather than a code of its own. Only a folder that is still missing after a
//! refused `MKD` is an error, and it carries the server's reply.
//!
//! Whether a path is a folder: `MLST` (`type=dir`) where the server offers it; otherwise
//! `CWD` into it and back to the folder `PWD` named, so the session's working directory is
//! the same afterwards (ferry's paths are absolute as configured, but a relative flow path
//! must keep meaning the same thing).
//!
//! Security: the levels come from names ferry listed in its own local folder (no `..`, no
//! empty part), and each path is checked for CR/LF/NUL before it travels (one path, one
//! command line), so a file name cannot smuggle a command or climb out of the flow's
//! remote folder.

use super::classify::{ReplyTo, from_response};
use super::connection::{Connection, Operation};
use super::control::check_line;
use super::error::{FtpsError, FtpsErrorKind};

/// `MKD` each missing level of `relative` under `base` (which must exist).
pub(crate) struct MakeDirs<'a> {
    /// The flow's remote folder.
    pub(crate) base: &'a str,
    /// The `/`-separated folders below it.
    pub(crate) relative: &'a str,
}

impl Operation for MakeDirs<'_> {
    /// How many folders this call created (0: all were there, or another worker made them).
    type Output = usize;

    async fn run(&mut self, conn: &mut Connection) -> Result<usize, FtpsError> {
        let levels = levels(self.base, self.relative);
        let Some(deepest) = levels.last() else {
            return Ok(0);
        };
        let step = format!("creating folder {deepest}");
        for level in &levels {
            check_line(&step, level)?;
        }
        if self
            .relative
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..")
        {
            return Err(FtpsError::new(
                FtpsErrorKind::InvalidPath,
                step,
                "a folder name is empty, `.` or `..`",
            ));
        }
        if is_dir(conn, &step, deepest).await? {
            return Ok(0);
        }
        let mut created = 0;
        for level in &levels {
            let reply = conn.command(&step, &format!("MKD {level}")).await?;
            if reply.is_positive() {
                created += 1;
            } else if !is_dir(conn, &step, level).await? {
                return Err(from_response(&step, &reply, ReplyTo::NewPath));
            }
        }
        Ok(created)
    }
}

/// `/in` + `x/y` -> `["/in/x", "/in/x/y"]`.
fn levels(base: &str, relative: &str) -> Vec<String> {
    let mut path = base.trim_end_matches('/').to_owned();
    relative
        .split('/')
        .map(|part| {
            path.push('/');
            path.push_str(part);
            path.clone()
        })
        .collect()
}

/// Whether `path` is a folder on the server (see the module docs).
async fn is_dir(conn: &mut Connection, step: &str, path: &str) -> Result<bool, FtpsError> {
    if conn.features().mlsd {
        let reply = conn.command(step, &format!("MLST {path}")).await?;
        match reply.code {
            250 => {
                return Ok(reply
                    .lines
                    .iter()
                    .any(|l| l.to_ascii_lowercase().contains("type=dir;")));
            }
            550 => return Ok(false),
            // MLST refused as a command: ask with CWD.
            _ => {}
        }
    }
    let pwd = conn.accepted(step, "PWD", ReplyTo::Other).await?;
    let Some(home) = quoted(pwd.first_text()) else {
        return Err(FtpsError::new(
            FtpsErrorKind::Protocol,
            step,
            "the server's PWD reply names no folder",
        ));
    };
    check_line(step, &home)?;
    let entered = conn.command(step, &format!("CWD {path}")).await?;
    if !entered.is_positive() {
        return Ok(false);
    }
    conn.accepted(step, &format!("CWD {home}"), ReplyTo::ExistingPath)
        .await?;
    Ok(true)
}

/// The folder in a `257 "<path>" ...` reply (`""` inside stands for one `"`).
fn quoted(text: &str) -> Option<String> {
    let mut chars = text.chars().skip_while(|&c| c != '"').skip(1).peekable();
    let mut path = String::new();
    while let Some(c) = chars.next() {
        if c == '"' {
            if chars.peek() == Some(&'"') {
                chars.next();
                path.push('"');
            } else {
                return Some(path);
            }
        } else {
            path.push(c);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_level_below_the_base() {
        assert_eq!(levels("/in/", "x/y/z"), ["/in/x", "/in/x/y", "/in/x/y/z"]);
        assert_eq!(levels("in", "x"), ["in/x"]);
    }

    #[test]
    fn pwd_reply_path_with_doubled_quotes() {
        assert_eq!(
            quoted("\"/home/a\"\"b\" is the current directory").as_deref(),
            Some("/home/a\"b")
        );
        assert_eq!(quoted("\"/\"").as_deref(), Some("/"));
        assert_eq!(quoted("no path"), None);
    }
}
