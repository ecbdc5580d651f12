//! Which files a flow-run picks up: the flow's `files[]` patterns and excludes, and the
//! stability rule.
//!
//! Patterns are globs matched against the file's path relative to the flow's directory,
//! with `/` as separator; `*` never crosses a `/`, so the walk stays in the top directory
//! unless a pattern says `**`.
//!
//! **Stability rule.** A file modified less than `min_file_age` ago may still be being
//! written by the system that produces it; sending it now could send half a file. Such a
//! file is not selected, and the report lists it under `not_yet_stable`: the next run
//! takes it once it has been left alone long enough. The same rule applies to remote
//! files whose listing gives a modification time.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

/// A compiled set of include and exclude globs.
#[derive(Debug, Clone)]
pub struct FileFilter {
    include: GlobSet,
    exclude: GlobSet,
    recursive: bool,
}

impl FileFilter {
    /// Compiles the flow's patterns (a file must match one) and excludes (a file matching
    /// one is never taken).
    pub fn new<'a>(
        patterns: impl IntoIterator<Item = &'a str>,
        excludes: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, globset::Error> {
        let mut recursive = false;
        let mut include = GlobSetBuilder::new();
        for pattern in patterns {
            recursive |= pattern.contains("**");
            include.add(glob(pattern)?);
        }
        let mut exclude = GlobSetBuilder::new();
        for pattern in excludes {
            exclude.add(glob(pattern)?);
        }
        Ok(FileFilter {
            include: include.build()?,
            exclude: exclude.build()?,
            recursive,
        })
    }

    /// Whether a file, by its `/`-separated path relative to the flow's directory, is taken.
    pub fn matches(&self, relative_name: &str) -> bool {
        self.include.is_match(relative_name) && !self.exclude.is_match(relative_name)
    }

    /// Whether the walk must descend into subdirectories (a pattern contains `**`).
    pub fn is_recursive(&self) -> bool {
        self.recursive
    }
}

fn glob(pattern: &str) -> Result<Glob, globset::Error> {
    GlobBuilder::new(pattern).literal_separator(true).build()
}

/// A local file chosen for upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalFile {
    /// Path relative to the flow's directory, `/`-separated: the name on the partner side.
    pub name: String,
    /// Where it is on disk.
    pub path: PathBuf,
    /// Size when selected.
    pub size: u64,
    /// Last modification when selected.
    pub modified: DateTime<Utc>,
}

/// The files a run takes and those it leaves for later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection<T> {
    /// Files matching the patterns and old enough, in name order.
    pub ready: Vec<T>,
    /// Names of files that matched but were modified within `min_file_age`.
    pub not_yet_stable: Vec<String>,
}

/// Whether a file last modified at `modified` has been left alone for `min_age` at `now`.
/// A modification time in the future (clock skew) counts as "just modified".
pub fn is_stable(modified: SystemTime, min_age: Duration, now: SystemTime) -> bool {
    match now.duration_since(modified) {
        Ok(age) => age >= min_age,
        Err(_) => min_age.is_zero(),
    }
}

/// Lists the regular files under `dir` that the filter takes, splitting off those that are
/// not yet stable. Symbolic links are followed; anything else that is not a regular file is
/// ignored. Runs the directory walk on the blocking pool.
pub async fn select_local(
    dir: &Path,
    filter: &FileFilter,
    min_age: Duration,
    now: SystemTime,
) -> io::Result<Selection<LocalFile>> {
    let dir = dir.to_path_buf();
    let filter = filter.clone();
    tokio::task::spawn_blocking(move || select_local_blocking(&dir, &filter, min_age, now))
        .await
        .map_err(io::Error::other)?
}

fn select_local_blocking(
    dir: &Path,
    filter: &FileFilter,
    min_age: Duration,
    now: SystemTime,
) -> io::Result<Selection<LocalFile>> {
    let mut selection = Selection {
        ready: Vec::new(),
        not_yet_stable: Vec::new(),
    };
    let mut pending = vec![(dir.to_path_buf(), String::new())];
    while let Some((current, prefix)) = pending.pop() {
        for entry in std::fs::read_dir(&current)? {
            let entry = entry?;
            let Some(file_name) = entry.file_name().to_str().map(str::to_owned) else {
                tracing::warn!(path = %entry.path().display(), "skipping a file whose name is not UTF-8");
                continue;
            };
            let name = format!("{prefix}{file_name}");
            // A file may vanish between listing and stat (another worker's delete): skip it.
            let meta = match std::fs::metadata(entry.path()) {
                Ok(meta) => meta,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if meta.is_dir() {
                if filter.is_recursive() {
                    pending.push((entry.path(), format!("{name}/")));
                }
                continue;
            }
            if !meta.is_file() || !filter.matches(&name) {
                continue;
            }
            let modified = meta.modified()?;
            if is_stable(modified, min_age, now) {
                selection.ready.push(LocalFile {
                    name,
                    path: entry.path(),
                    size: meta.len(),
                    modified: modified.into(),
                });
            } else {
                selection.not_yet_stable.push(name);
            }
        }
    }
    selection.ready.sort_by(|a, b| a.name.cmp(&b.name));
    selection.not_yet_stable.sort();
    Ok(selection)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(patterns: &[&str], excludes: &[&str]) -> FileFilter {
        FileFilter::new(patterns.iter().copied(), excludes.iter().copied()).expect("valid globs")
    }

    #[test]
    fn star_does_not_cross_directories_and_excludes_win() {
        let f = filter(&["*.xml"], &["*.tmp.xml"]);
        assert!(f.matches("a.xml"));
        assert!(!f.matches("sub/a.xml"));
        assert!(!f.matches("a.tmp.xml"));
        assert!(!f.is_recursive());
        let deep = filter(&["**/*.xml"], &[]);
        assert!(deep.matches("sub/deeper/a.xml"));
        assert!(deep.is_recursive());
    }

    #[test]
    fn stability_uses_the_minimum_age() {
        let now = SystemTime::now();
        let min = Duration::from_secs(30);
        assert!(is_stable(now - Duration::from_secs(31), min, now));
        assert!(!is_stable(now - Duration::from_secs(5), min, now));
        assert!(!is_stable(now + Duration::from_secs(5), min, now));
        assert!(is_stable(now + Duration::from_secs(5), Duration::ZERO, now));
    }

    #[tokio::test]
    async fn selects_matching_stable_files_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        for name in ["a.xml", "b.xml", "c.txt", "skip.tmp.xml"] {
            std::fs::write(dir.path().join(name), name).expect("write");
        }
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
        std::fs::write(dir.path().join("sub/d.xml"), "d").expect("write");
        let f = filter(&["*.xml"], &["*.tmp.xml"]);

        let later = SystemTime::now() + Duration::from_secs(120);
        let sel = select_local(dir.path(), &f, Duration::from_secs(60), later)
            .await
            .expect("select");
        let names: Vec<_> = sel.ready.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["a.xml", "b.xml"]);
        assert_eq!(sel.ready[0].size, 5);

        let sel = select_local(dir.path(), &f, Duration::from_secs(60), SystemTime::now())
            .await
            .expect("select");
        assert!(sel.ready.is_empty());
        assert_eq!(sel.not_yet_stable, ["a.xml", "b.xml"]);

        let deep = filter(&["**/*.xml"], &[]);
        let sel = select_local(dir.path(), &deep, Duration::ZERO, SystemTime::now())
            .await
            .expect("select");
        let names: Vec<_> = sel.ready.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["a.xml", "b.xml", "skip.tmp.xml", "sub/d.xml"]);
    }
}
