//! Which files a flow-run picks up: the flow's `files[]` selectors, and the stability rule.
//!
//! The selectors (globs on the path relative to the flow's directory, `/`-separated,
//! compiled by [`crate::config`]) decide by name; this module walks the directory. `*`
//! never crosses a `/`, so the walk stays in the top directory unless a pattern says `**`.
//!
//! **Links.** A symbolic link in the flow's folder could make ferry send any file the
//! worker can read (`ln -s /etc/shadow outgoing/report.xml`) or walk a directory outside the
//! folder. So links are not followed: a matching link is listed in [`Selection::links`] with
//! the reason, and the report shows it `skipped`. With the flow's `follow_links: true`
//! (refused in hardened mode), a link to a regular file *inside* the folder is taken, under
//! its resolved path; a link that leaves the folder never is, and linked directories are
//! never entered. The upload opens the file it selected with `O_NOFOLLOW`, so a file
//! replaced by a link after the selection fails instead of being followed.
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
    /// Matching names that are symbolic links ferry did not follow, with the reason.
    pub links: Vec<(String, String)>,
}

/// Whether a file last modified at `modified` has been left alone for `min_age` at `now`.
/// A modification time in the future (clock skew) counts as "just modified".
pub fn is_stable(modified: SystemTime, min_age: Duration, now: SystemTime) -> bool {
    match now.duration_since(modified) {
        Ok(age) => age >= min_age,
        Err(_) => min_age.is_zero(),
    }
}

/// How [`select_local`] walks and chooses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Walk {
    /// Descend into subdirectories (a pattern contains `**`).
    pub recursive: bool,
    /// Files modified more recently than this are not yet stable.
    pub min_age: Duration,
    /// The time the ages are measured at.
    pub now: SystemTime,
    /// Take links to regular files inside the folder (the flow's `follow_links`).
    pub follow_links: bool,
}

/// Lists the regular files under `dir` whose relative name `selects` accepts, splitting off
/// those that are not yet stable and the links not followed (see the module docs); anything
/// else that is not a regular file is ignored. Runs the directory walk on the blocking pool.
pub async fn select_local(
    dir: &Path,
    walk: Walk,
    selects: impl Fn(&str) -> bool + Send + 'static,
) -> io::Result<Selection<LocalFile>> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || select_local_blocking(&dir, walk, &selects))
        .await
        .map_err(io::Error::other)?
}

fn select_local_blocking(
    dir: &Path,
    walk: Walk,
    selects: &dyn Fn(&str) -> bool,
) -> io::Result<Selection<LocalFile>> {
    let mut selection = Selection {
        ready: Vec::new(),
        not_yet_stable: Vec::new(),
        links: Vec::new(),
    };
    let root = std::fs::canonicalize(dir)?;
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
            let meta = match std::fs::symlink_metadata(entry.path()) {
                Ok(meta) => meta,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let (path, meta) = if meta.file_type().is_symlink() {
                if !selects(&name) {
                    continue;
                }
                match follow(&root, &entry.path(), walk.follow_links) {
                    Ok(followed) => followed,
                    Err(reason) => {
                        tracing::warn!(file = %name, %reason, "symbolic link not followed");
                        selection.links.push((name, reason));
                        continue;
                    }
                }
            } else {
                (entry.path(), meta)
            };
            if meta.is_dir() {
                if walk.recursive {
                    pending.push((path, format!("{name}/")));
                }
                continue;
            }
            if !meta.is_file() || !selects(&name) {
                continue;
            }
            let modified = meta.modified()?;
            if is_stable(modified, walk.min_age, walk.now) {
                selection.ready.push(LocalFile {
                    name,
                    path,
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

/// Where the link at `link` leads, if ferry may take it: a regular file inside `root`
/// (canonical), and only when the flow allows links. Otherwise, why not.
fn follow(root: &Path, link: &Path, allowed: bool) -> Result<(PathBuf, std::fs::Metadata), String> {
    if !allowed {
        return Err(
            "it is a symbolic link, and the flow does not follow links (follow_links: false)"
                .into(),
        );
    }
    let target = std::fs::canonicalize(link)
        .map_err(|e| format!("it is a symbolic link that cannot be resolved: {e}"))?;
    if !target.starts_with(root) {
        return Err("it is a symbolic link to a path outside the flow's folder".into());
    }
    let meta = std::fs::symlink_metadata(&target)
        .map_err(|e| format!("it is a symbolic link whose target cannot be read: {e}"))?;
    if !meta.is_file() {
        return Err("it is a symbolic link to something other than a regular file".into());
    }
    Ok((target, meta))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stability_uses_the_minimum_age() {
        let now = SystemTime::now();
        let min = Duration::from_secs(30);
        assert!(is_stable(now - Duration::from_secs(31), min, now));
        assert!(!is_stable(now - Duration::from_secs(5), min, now));
        assert!(!is_stable(now + Duration::from_secs(5), min, now));
        assert!(is_stable(now + Duration::from_secs(5), Duration::ZERO, now));
    }

    fn xml(name: &str) -> bool {
        name.ends_with(".xml") && !name.ends_with(".tmp.xml")
    }

    #[tokio::test]
    async fn selects_matching_stable_files_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        for name in ["a.xml", "b.xml", "c.txt", "skip.tmp.xml"] {
            std::fs::write(dir.path().join(name), name).expect("write");
        }
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
        std::fs::write(dir.path().join("sub/d.xml"), "d").expect("write");
        let walk = Walk {
            recursive: false,
            min_age: Duration::from_secs(60),
            now: SystemTime::now() + Duration::from_secs(120),
            follow_links: false,
        };

        let sel = select_local(dir.path(), walk, xml).await.expect("select");
        let names: Vec<_> = sel.ready.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["a.xml", "b.xml"]);
        assert_eq!(sel.ready[0].size, 5);

        let now = Walk {
            now: SystemTime::now(),
            ..walk
        };
        let sel = select_local(dir.path(), now, xml).await.expect("select");
        assert!(sel.ready.is_empty());
        assert_eq!(sel.not_yet_stable, ["a.xml", "b.xml"]);

        let deep = Walk {
            recursive: true,
            ..walk
        };
        let sel = select_local(dir.path(), deep, xml).await.expect("select");
        let names: Vec<_> = sel.ready.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["a.xml", "b.xml", "sub/d.xml"]);
    }

    #[tokio::test]
    async fn links_are_not_followed_unless_inside_and_allowed() {
        let outside = tempfile::tempdir().expect("tempdir");
        std::fs::write(outside.path().join("secret.xml"), "secret").expect("write");
        std::fs::create_dir(outside.path().join("elsewhere")).expect("mkdir");
        std::fs::write(outside.path().join("elsewhere/deep.xml"), "deep").expect("write");
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("real.xml"), "real").expect("write");
        let link = |target: &Path, name: &str| {
            std::os::unix::fs::symlink(target, dir.path().join(name)).expect("symlink")
        };
        link(&outside.path().join("secret.xml"), "leak.xml");
        link(&dir.path().join("real.xml"), "alias.xml");
        link(&outside.path().join("elsewhere"), "linked-dir");
        let walk = Walk {
            recursive: true,
            min_age: Duration::ZERO,
            now: SystemTime::now(),
            follow_links: false,
        };

        let sel = select_local(dir.path(), walk, xml).await.expect("select");
        let names: Vec<_> = sel.ready.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["real.xml"]);
        let mut links: Vec<_> = sel.links.iter().map(|(n, _)| n.as_str()).collect();
        links.sort();
        assert_eq!(links, ["alias.xml", "leak.xml"], "{:?}", sel.links);

        let allowed = Walk {
            follow_links: true,
            ..walk
        };
        let sel = select_local(dir.path(), allowed, xml)
            .await
            .expect("select");
        let names: Vec<_> = sel.ready.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["alias.xml", "real.xml"]);
        assert_eq!(
            sel.ready[0].path,
            std::fs::canonicalize(dir.path().join("real.xml")).unwrap()
        );
        assert_eq!(sel.links.len(), 1);
        assert!(
            sel.links[0].1.contains("outside the flow's folder"),
            "{:?}",
            sel.links
        );
    }
}
