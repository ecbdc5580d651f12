//! [`FolderWatch`]: the operating system's notifications of changes in one flow's folder
//! (inotify on Linux, through the `notify` crate), as [`Signal`]s on a channel.
//!
//! A signal only says "look again"; the decision always comes from a fresh listing of the
//! folder by the worker's own selection (`transfer/selection.rs`), so nothing here opens or
//! trusts a path an event names. Still, the watch stays inside the folder: symbolic links
//! are never followed (a linked directory is not watched), and it descends into
//! subdirectories only when one of the flow's patterns says `**`.
//!
//! Events that cannot mean a new file are dropped here: reads (the worker opening the files
//! it uploads), and changes to names no pattern of the flow selects (a temporary name, a
//! log file written beside the data). A failure of the watch itself (the folder is gone, the
//! inotify limit is reached) is a [`Signal::Failed`]; the caller falls back to its rescan.

use std::path::{Path, PathBuf};

use notify::event::{AccessKind, AccessMode, CreateKind, RemoveKind};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// What the watch tells the flow's loop.
#[derive(Debug)]
pub enum Signal {
    /// Something that may be a new or changed file happened in the folder.
    Changed,
    /// The watch stopped working (events may be lost from now on).
    Failed(WatchError),
}

/// Why a folder cannot be watched (or no longer is).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot watch {folder}: {kind}: {detail}")]
pub struct WatchError {
    /// What went wrong, as a closed set.
    pub kind: WatchErrorKind,
    /// The folder.
    pub folder: PathBuf,
    /// The system's words.
    pub detail: String,
}

/// The kinds of [`WatchError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchErrorKind {
    /// The folder does not exist (yet, or any more).
    FolderMissing,
    /// The inotify watch limit (`fs.inotify.max_user_watches`) or instance limit is reached.
    LimitReached,
    /// Anything else (permissions, a file system without notifications).
    Other,
}

impl WatchErrorKind {
    /// The `kind` field of the `arrival_watch_failed` log line.
    pub fn as_str(self) -> &'static str {
        match self {
            WatchErrorKind::FolderMissing => "folder_missing",
            WatchErrorKind::LimitReached => "limit_reached",
            WatchErrorKind::Other => "other",
        }
    }
}

impl std::fmt::Display for WatchErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A live watch; dropping it stops the notifications.
pub struct FolderWatch {
    _watcher: RecommendedWatcher,
}

impl std::fmt::Debug for FolderWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FolderWatch")
    }
}

impl FolderWatch {
    /// Watches `folder` (and its subdirectories when `recursive`), sending a signal for
    /// each change to a name `selects` accepts (relative, `/`-separated), each directory
    /// created or removed (when `recursive`), and each failure.
    pub fn start(
        folder: &Path,
        recursive: bool,
        selects: impl Fn(&str) -> bool + Send + 'static,
        signals: mpsc::Sender<Signal>,
    ) -> Result<FolderWatch, WatchError> {
        if !folder.is_dir() {
            return Err(WatchError {
                kind: WatchErrorKind::FolderMissing,
                folder: folder.to_path_buf(),
                detail: "not a directory".into(),
            });
        }
        let root = folder.to_path_buf();
        let error_folder = root.clone();
        let handler = move |result: notify::Result<Event>| {
            let signal = match result {
                Ok(event) if is_relevant(&event, &root, recursive, &selects) => Signal::Changed,
                Ok(_) => return,
                Err(error) => Signal::Failed(watch_error(&error_folder, &error)),
            };
            // A full channel already holds a signal the loop has yet to see: dropping this
            // one loses nothing (the loop lists the whole folder anyway).
            let _ = signals.try_send(signal);
        };
        let config = notify::Config::default().with_follow_symlinks(false);
        let mut watcher =
            RecommendedWatcher::new(handler, config).map_err(|e| watch_error(folder, &e))?;
        let mode = if recursive {
            RecursiveMode::Recursive
        } else {
            RecursiveMode::NonRecursive
        };
        watcher
            .watch(folder, mode)
            .map_err(|e| watch_error(folder, &e))?;
        Ok(FolderWatch { _watcher: watcher })
    }
}

/// Whether `event` may mean a new or changed file the flow selects.
fn is_relevant(
    event: &Event,
    root: &Path,
    recursive: bool,
    selects: &dyn Fn(&str) -> bool,
) -> bool {
    match event.kind {
        // A file written and closed is the clearest sign of all.
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => {}
        EventKind::Access(_) => return false,
        EventKind::Create(CreateKind::Folder) | EventKind::Remove(RemoveKind::Folder)
            if recursive =>
        {
            return true;
        }
        _ => {}
    }
    if event.need_rescan() || event.paths.is_empty() {
        return true;
    }
    event.paths.iter().any(|path| {
        path.strip_prefix(root)
            .ok()
            .and_then(Path::to_str)
            .is_some_and(|name| !name.is_empty() && selects(name))
    })
}

/// A `notify` error as a [`WatchError`].
fn watch_error(folder: &Path, error: &notify::Error) -> WatchError {
    let kind = match &error.kind {
        notify::ErrorKind::PathNotFound => WatchErrorKind::FolderMissing,
        notify::ErrorKind::Io(io) if io.kind() == std::io::ErrorKind::NotFound => {
            WatchErrorKind::FolderMissing
        }
        notify::ErrorKind::MaxFilesWatch => WatchErrorKind::LimitReached,
        // inotify_init fails with EMFILE when the per-user instance limit is reached.
        notify::ErrorKind::Io(io) if io.raw_os_error() == Some(libc::EMFILE) => {
            WatchErrorKind::LimitReached
        }
        _ => WatchErrorKind::Other,
    };
    WatchError {
        kind,
        folder: folder.to_path_buf(),
        detail: error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    async fn next(rx: &mut mpsc::Receiver<Signal>) -> Option<Signal> {
        tokio::time::timeout(Duration::from_millis(500), rx.recv())
            .await
            .ok()
            .flatten()
    }

    #[tokio::test]
    async fn signals_selected_names_only_and_never_follows_links() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outside = tempfile::tempdir().expect("tempdir");
        std::os::unix::fs::symlink(outside.path(), dir.path().join("linked")).expect("symlink");
        let (tx, mut rx) = mpsc::channel(16);
        let _watch =
            FolderWatch::start(dir.path(), true, |n| n.ends_with(".xml"), tx).expect("watch");

        std::fs::write(dir.path().join("notes.txt"), "x").expect("write");
        std::fs::write(outside.path().join("leak.xml"), "x").expect("write");
        assert!(next(&mut rx).await.is_none(), "no signal for those");

        std::fs::write(dir.path().join("a.xml"), "x").expect("write");
        assert!(matches!(next(&mut rx).await, Some(Signal::Changed)));
    }

    #[test]
    fn a_missing_folder_is_a_typed_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (tx, _rx) = mpsc::channel(1);
        let error = FolderWatch::start(&dir.path().join("absent"), false, |_| true, tx)
            .expect_err("no folder");
        assert_eq!(error.kind, WatchErrorKind::FolderMissing);
    }
}
