//! Tidying a delivered file's source, the last step of both directions and only after the
//! delivery is recorded (so a crash before it leaves the source where it was, and the next
//! run finds it recorded: exactly once holds whatever the tidy-up does).
//!
//! - **Upload, `archive`**: the local file moves into the archive folder (under
//!   `YYYY/MM/DD/` with `archive_date_folders`). An archived file is never overwritten: the
//!   move is a hard link, which fails when the name exists (no check-then-act race with a
//!   second worker), and the next free name `name-1.ext`, `name-2.ext`, ... is tried. A
//!   folder on another file system (no hard link across) gets a streamed copy created with
//!   `create_new`, `fsync`ed before the source is removed.
//! - **Download, `move`**: the partner's file is renamed (RNFR/RNTO) into the processed
//!   folder; a name already there gets the same suffixes (looked at with `SIZE`/listing first:
//!   FTP has no rename that refuses to replace on every server).
//! - **`delete`**: as before; **`keep`**: nothing.

use std::io;
use std::path::{Path, PathBuf};

use super::context::{RunContext, partner_failure};
use super::local::remove_file;
use super::report::{FileError, FileErrorKind};
use super::selection::LocalFile;
use crate::config::{AfterTransfer, Archive};
use crate::ftps::{FtpsError, RemoteFile, Session, printable};

/// How many suffixed names are tried before giving up on an archive name.
const MAX_SUFFIX: u32 = 10_000;

/// What the tidy-up did with the source.
#[must_use]
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tidied {
    /// The source stays (`keep`).
    Kept,
    /// The source was deleted.
    Deleted,
    /// The source now lives at this path (archive folder, or the partner's processed folder).
    Moved(String),
}

impl Tidied {
    /// Whether the source was deleted.
    pub(crate) fn deleted(&self) -> bool {
        *self == Tidied::Deleted
    }

    /// Where the source was moved, if it was.
    pub(crate) fn moved_to(self) -> Option<String> {
        match self {
            Tidied::Moved(to) => Some(to),
            Tidied::Kept | Tidied::Deleted => None,
        }
    }
}

/// Upload: keeps, deletes or archives the local file, by the flow's `after_upload`.
pub(crate) async fn tidy_local(
    ctx: &RunContext<'_>,
    file: &LocalFile,
) -> Result<Tidied, FileError> {
    match &ctx.plan.after_transfer {
        AfterTransfer::Keep | AfterTransfer::Move { .. } => Ok(Tidied::Kept),
        AfterTransfer::Delete => remove_file(&file.path)
            .await
            .map(|()| Tidied::Deleted)
            .map_err(|err| {
                FileError::permanent(
                    FileErrorKind::DeleteSourceFailed,
                    format!(
                        "delivered, but the local file {} could not be deleted: {err}",
                        file.path.display()
                    ),
                )
            }),
        AfterTransfer::Archive(archive) => {
            let folder = archive_folder(archive, &file.name, chrono::Utc::now());
            let source = file.path.clone();
            let base = file_name(&file.name).to_owned();
            let moved =
                tokio::task::spawn_blocking(move || archive_file(&source, &folder, &base)).await;
            match moved {
                Ok(Ok(path)) => Ok(Tidied::Moved(path.display().to_string())),
                Ok(Err(err)) => Err(archive_failed(file, &err.to_string())),
                Err(join) => Err(archive_failed(file, &join.to_string())),
            }
        }
    }
}

fn archive_failed(file: &LocalFile, reason: &str) -> FileError {
    FileError::permanent(
        FileErrorKind::DeleteSourceFailed,
        format!(
            "delivered, but the local file {} could not be archived: {reason}",
            file.path.display()
        ),
    )
}

/// Download: keeps, deletes or moves the partner's file, by the flow's `after_download`.
pub(crate) async fn tidy_remote(ctx: &RunContext<'_>, path: &str) -> Result<Tidied, FileError> {
    let target_dir = match &ctx.plan.after_transfer {
        AfterTransfer::Keep | AfterTransfer::Archive(_) => return Ok(Tidied::Kept),
        AfterTransfer::Delete => None,
        AfterTransfer::Move { path } => Some(path.trim_end_matches('/').to_owned()),
    };
    let mut attempts = 0;
    let done = ctx
        .with_retries(&mut attempts, || async {
            let mut session = ctx.pool.get().await?;
            let done = async {
                let Some(dir) = &target_dir else {
                    session.delete(path).await?;
                    return Ok(Tidied::Deleted);
                };
                let to = rename_into(&mut session, path, dir).await?;
                Ok(Tidied::Moved(to))
            }
            .await;
            session.keep_if_ok(done)
        })
        .await;
    if done.is_ok() {
        // The file left the partner's pickup folder: its marker goes too (`markers.rs`).
        super::markers::delete_marker(ctx, path).await;
    }
    done.map_err(|err| {
        let mut error = partner_failure(&err);
        error.kind = FileErrorKind::DeleteSourceFailed;
        let verb = if target_dir.is_some() {
            "moved"
        } else {
            "deleted"
        };
        error.message = format!(
            "fetched, but the remote file {} could not be {verb}: {}",
            printable(path),
            error.message
        );
        error
    })
}

/// Renames the partner's file `path` into `dir` under its name or the first free suffixed
/// one (a server that cannot tell whether a name exists gets the plain name); returns the
/// new path.
pub(crate) async fn rename_into(
    session: &mut Session,
    path: &str,
    dir: &str,
) -> Result<String, FtpsError> {
    let dir = dir.trim_end_matches('/');
    let name = file_name(path);
    let mut suffix = 0;
    let to = loop {
        let candidate = format!("{dir}/{}", suffixed(name, suffix));
        match session.stat(&candidate).await? {
            RemoteFile::Present { .. } if suffix < MAX_SUFFIX => suffix += 1,
            _ => break candidate,
        }
    };
    session.rename(path, &to).await?;
    Ok(to)
}

/// The folder a file is archived in: the archive, the UTC day with `archive_date_folders`,
/// then the file's own subfolders (from `**` patterns).
fn archive_folder(
    archive: &Archive,
    relative_name: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> PathBuf {
    let mut folder = archive.path.clone();
    if archive.date_folders {
        folder.push(now.format("%Y/%m/%d").to_string());
    }
    if let Some((subdirs, _)) = relative_name.rsplit_once('/') {
        folder.push(subdirs);
    }
    folder
}

/// The last component of a `/`-separated name.
pub(crate) fn file_name(relative_name: &str) -> &str {
    relative_name
        .rsplit_once('/')
        .map_or(relative_name, |(_, n)| n)
}

/// `a.xml`, then `a-1.xml`, `a-2.xml`, ... (the suffix before the last extension).
fn suffixed(name: &str, suffix: u32) -> String {
    if suffix == 0 {
        return name.to_owned();
    }
    match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => format!("{stem}-{suffix}.{ext}"),
        _ => format!("{name}-{suffix}"),
    }
}

/// Moves `source` into `folder` under `name` or its first free suffixed name, never
/// replacing a file; returns where it went.
pub(crate) fn archive_file(source: &Path, folder: &Path, name: &str) -> io::Result<PathBuf> {
    std::fs::create_dir_all(folder)?;
    for suffix in 0..=MAX_SUFFIX {
        let target = folder.join(suffixed(name, suffix));
        match std::fs::hard_link(source, &target) {
            Ok(()) => {
                std::fs::remove_file(source)?;
                return Ok(target);
            }
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(_) => match copy_new(source, &target) {
                Ok(()) => {
                    std::fs::remove_file(source)?;
                    return Ok(target);
                }
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(err) => return Err(err),
            },
        }
    }
    Err(io::Error::other(format!(
        "{MAX_SUFFIX} archived files already carry the name {name}"
    )))
}

/// Streams `source` into a new file `target` (failing if it exists), synced to disk.
fn copy_new(source: &Path, target: &Path) -> io::Result<()> {
    let mut from = crate::ftps::open_no_follow(source)?;
    let mut to = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(target)?;
    let copied = io::copy(&mut from, &mut to).and_then(|_| to.sync_all());
    if copied.is_err() {
        let _ = std::fs::remove_file(target);
    }
    copied
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_go_before_the_extension() {
        assert_eq!(suffixed("a.xml", 0), "a.xml");
        assert_eq!(suffixed("a.xml", 2), "a-2.xml");
        assert_eq!(suffixed("a.tar.gz", 1), "a.tar-1.gz");
        assert_eq!(suffixed(".hidden", 1), ".hidden-1");
        assert_eq!(suffixed("README", 3), "README-3");
    }

    #[test]
    fn an_archived_name_is_never_overwritten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let archive = dir.path().join("archive");
        for content in [b"first".as_slice(), b"second"] {
            let source = dir.path().join("a.xml");
            std::fs::write(&source, content).expect("write");
            archive_file(&source, &archive, "a.xml").expect("archive");
            assert!(!source.exists());
        }
        assert_eq!(std::fs::read(archive.join("a.xml")).expect("a"), b"first");
        assert_eq!(
            std::fs::read(archive.join("a-1.xml")).expect("a-1"),
            b"second"
        );
    }
}
