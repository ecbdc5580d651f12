//! What a flow does with a file's source once its delivery is recorded: `after_upload:
//! keep | delete | archive` (with `archive_path`, `archive_date_folders`) and
//! `after_download: keep | delete | move` (with `move_path` on the partner). The short
//! forms `delete_after_upload` / `delete_after_download` stay; writing both forms is an
//! error (which one would win is not obvious to the reader of the file).
//!
//! The one danger of an archive folder is a file picked up again: an archive inside the
//! flow's local folder is refused when the flow's selection could reach it (a pattern
//! with `**` or `/` without an exclusion of the archive folder), and so is the local folder
//! itself. `*` never crosses `/`, so `archive` under the local folder with `*.xml` is safe.
//! The same holds on the partner: `move_path` must not be the folder the flow lists.
//!
//! `on_failure: keep | move` with `error_path` is the dead-letter folder of failed files:
//! the local folder of an upload's source (checked like the archive), a folder on the
//! partner for a download's.

use std::path::{Path, PathBuf};

use super::flow::{Direction, FileSelector};
use super::yaml::{Cx, Map};

/// The flow keys read here (added to the flow's known keys).
pub(crate) const KEYS: &[&str] = &[
    "after_upload",
    "after_download",
    "archive_path",
    "archive_date_folders",
    "move_path",
    "on_failure",
    "error_path",
];

/// What happens to the source of a delivered file (also of a duplicate: a file already
/// delivered is tidied the same way).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AfterTransfer {
    /// Leave it where it is (default).
    #[default]
    Keep,
    /// Delete it (the local file of an upload, the partner's file of a download).
    Delete,
    /// Uploads: move the local file into an archive folder.
    Archive(Archive),
    /// Downloads: rename the partner's file into this folder on the partner (RNFR/RNTO).
    Move {
        /// The processed folder on the partner, as written (`/outgoing/processed`).
        path: String,
    },
}

impl AfterTransfer {
    /// Whether the source leaves its folder (deleted, archived or moved): a download then
    /// fetches a recorded file again and compares before touching it.
    pub fn removes_source(&self) -> bool {
        !matches!(self, AfterTransfer::Keep)
    }
}

/// Where uploaded local files are archived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archive {
    /// The archive folder, absolute (relative to the configuration directory when written so).
    pub path: PathBuf,
    /// `archive_date_folders` (default false): archive under `YYYY/MM/DD/` of the UTC day.
    pub date_folders: bool,
}

/// Reads `after_upload` / `after_download` and their folders, or the short form. `None`:
/// an error was recorded.
pub(crate) fn read(
    cx: &mut Cx<'_>,
    map: &Map<'_>,
    direction: Direction,
    dir: &Path,
    local_path: Option<&Path>,
    files: Option<&[FileSelector]>,
    remote_path: Option<&str>,
) -> Option<AfterTransfer> {
    let (key, other, short, other_short) = match direction {
        Direction::Upload => (
            "after_upload",
            "after_download",
            "delete_after_upload",
            "delete_after_download",
        ),
        Direction::Download => (
            "after_download",
            "after_upload",
            "delete_after_download",
            "delete_after_upload",
        ),
    };
    let mut ok = true;
    for wrong in [other, other_short] {
        if let Some(f) = map.get(wrong) {
            let right = if wrong == other { key } else { short };
            f.error(
                cx,
                format!("`{wrong}` does not apply to a {direction} flow; use `{right}`"),
            );
            ok = false;
        }
    }
    let (wrong_folder, folder) = match direction {
        Direction::Upload => ("move_path", "archive_path"),
        Direction::Download => ("archive_path", "move_path"),
    };
    for wrong in [wrong_folder, "archive_date_folders"] {
        if wrong == "archive_date_folders" && direction == Direction::Upload {
            continue;
        }
        if let Some(f) = map.get(wrong) {
            f.error(
                cx,
                format!("`{wrong}` does not apply to a {direction} flow"),
            );
            ok = false;
        }
    }
    let after = match (map.get(key), map.get(short)) {
        (Some(_), Some(f)) => {
            f.error(
                cx,
                format!("write either `{key}` or its short form `{short}`, not both"),
            );
            return None;
        }
        (None, Some(f)) => f
            .bool(cx)
            .map(|delete| if delete { Kind::Delete } else { Kind::Keep }),
        (None, None) => Some(Kind::Keep),
        (Some(f), None) => match direction {
            Direction::Upload => f.choice(
                cx,
                &[
                    ("keep", Kind::Keep),
                    ("delete", Kind::Delete),
                    ("archive", Kind::Relocate),
                ],
            ),
            Direction::Download => f.choice(
                cx,
                &[
                    ("keep", Kind::Keep),
                    ("delete", Kind::Delete),
                    ("move", Kind::Relocate),
                ],
            ),
        },
    }?;
    let folder_field = map.get(folder);
    if after != Kind::Relocate {
        if let Some(f) = folder_field {
            f.error(
                cx,
                format!(
                    "`{folder}` is only read with `{key}: {}`",
                    relocate_word(direction)
                ),
            );
            return None;
        }
        if direction == Direction::Upload
            && let Some(f) = map.get("archive_date_folders")
        {
            f.error(
                cx,
                "`archive_date_folders` is only read with `after_upload: archive`",
            );
            return None;
        }
    }
    let after = match after {
        Kind::Keep => AfterTransfer::Keep,
        Kind::Delete => AfterTransfer::Delete,
        Kind::Relocate => {
            let Some(field) = folder_field else {
                cx.error(
                    map.loc(),
                    &super::yaml::join(map.path(), folder),
                    format!(
                        "`{key}: {}` needs `{folder}`, the folder the files go to",
                        relocate_word(direction)
                    ),
                );
                return None;
            };
            let text = field.non_empty_str(cx)?;
            match direction {
                Direction::Upload => {
                    let date_folders = map
                        .get("archive_date_folders")
                        .map_or(Some(false), |f| f.bool(cx))?;
                    let path = absolute(dir, Path::new(&text));
                    if let (Some(local), Some(files)) = (local_path, files)
                        && let Some(problem) = archive_reachable(&path, local, files)
                    {
                        field.error(cx, problem);
                        return None;
                    }
                    AfterTransfer::Archive(Archive { path, date_folders })
                }
                Direction::Download => {
                    let same = remote_path
                        .is_some_and(|r| r.trim_end_matches('/') == text.trim_end_matches('/'));
                    if same {
                        field.error(
                            cx,
                            "`move_path` is the folder the flow downloads from: moved files would be fetched again",
                        );
                        return None;
                    }
                    AfterTransfer::Move { path: text }
                }
            }
        }
    };
    ok.then_some(after)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Keep,
    Delete,
    Relocate,
}

fn relocate_word(direction: Direction) -> &'static str {
    match direction {
        Direction::Upload => "archive",
        Direction::Download => "move",
    }
}

/// Why the archive folder would feed the flow again, if it would: it is the local folder,
/// or inside it where a pattern with `**` or `/` reaches (unless an exclusion names the
/// archive).
fn archive_reachable(archive: &Path, local: &Path, files: &[FileSelector]) -> Option<String> {
    if archive == local {
        return Some(
            "`archive_path` is the flow's local folder: its files would be sent again".into(),
        );
    }
    let relative = archive.strip_prefix(local).ok()?;
    let relative_text = relative.to_string_lossy();
    let recursive = files.iter().any(|s| {
        // `**` reaches any depth, a pattern with `/` (`*/*.xml`) into subfolders: either
        // may select archived files unless the archive is excluded.
        (s.pattern.contains("**") || s.pattern.contains('/'))
            && !s
                .exclude
                .iter()
                .any(|e| e.trim_end_matches("/**") == relative_text)
    });
    recursive.then(|| {
        format!(
            "`archive_path` is inside the local folder where a pattern with `**` or `/` reaches: exclude it (`exclude: [\"{}/**\"]`) or archive elsewhere",
            relative.display()
        )
    })
}

/// `path` made absolute against the configuration directory when relative.
fn absolute(dir: &Path, path: &Path) -> PathBuf {
    dir.join(path)
        .components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect()
}

/// What happens to a file that failed its last attempt in the flow-run's last attempt.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum OnFailure {
    /// It stays where it is, and the next run tries it again (default).
    #[default]
    Keep,
    /// It moves into the error folder, with a reason file `<name>.error.json` beside it.
    Move(ErrorFolder),
}

/// The error folder: local for uploads, on the partner for downloads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorFolder {
    /// A local folder, absolute.
    Local(PathBuf),
    /// A folder on the partner's server, as written.
    Remote(String),
}

/// Reads `on_failure` and `error_path`. `None`: an error was recorded.
pub(crate) fn read_on_failure(
    cx: &mut Cx<'_>,
    map: &Map<'_>,
    direction: Direction,
    dir: &Path,
    local_path: Option<&Path>,
    files: Option<&[FileSelector]>,
    remote_path: Option<&str>,
) -> Option<OnFailure> {
    let moves = map.get("on_failure").map_or(Some(false), |f| {
        f.choice(cx, &[("keep", false), ("move", true)])
    })?;
    let field = map.get("error_path");
    let Some(field) = field.filter(|_| moves) else {
        if let Some(f) = field {
            f.error(cx, "`error_path` is only read with `on_failure: move`");
            return None;
        }
        if moves {
            cx.error(
                map.loc(),
                &super::yaml::join(map.path(), "error_path"),
                "`on_failure: move` needs `error_path`, the folder failed files go to",
            );
            return None;
        }
        return Some(OnFailure::Keep);
    };
    let text = field.non_empty_str(cx)?;
    let folder = match direction {
        Direction::Upload => {
            let path = absolute(dir, Path::new(&text));
            if let (Some(local), Some(files)) = (local_path, files)
                && let Some(problem) = archive_reachable(&path, local, files)
            {
                field.error(cx, problem.replace("archive_path", "error_path"));
                return None;
            }
            ErrorFolder::Local(path)
        }
        Direction::Download => {
            if remote_path.is_some_and(|r| r.trim_end_matches('/') == text.trim_end_matches('/')) {
                field.error(
                    cx,
                    "`error_path` is the folder the flow downloads from: failed files would be fetched again",
                );
                return None;
            }
            ErrorFolder::Remote(text)
        }
    };
    Some(OnFailure::Move(folder))
}
