//! The hash cache: an upload flow that keeps its files (`after_upload: keep`, the steady
//! state of a folder re-checked every few minutes) must not read every file again on every
//! run only to find it already delivered. The engine remembers each local file's SHA-256
//! with the file's identity and change stamps, and reuses it while they are unchanged.
//!
//! **When a cached hash is trusted.** The stamp is the file's device, inode, size,
//! modification time and status-change time (`ctime`), read with `fstat` on the opened
//! file (never through a symbolic link, like every read of a flow's file). `ctime` is the
//! guard a user cannot forge: writing the file, or setting its modification time back
//! with `touch -d`, sets it to now. A file rewritten in place with its old size and
//! modification time restored therefore has a new stamp and is hashed again.
//!
//! **Only on local file systems.** `ctime` is only as good as the file system that keeps
//! it: vfat has none, and network or FUSE mounts (NFS, CIFS, sshfs) may not update it, or
//! keep it by another machine's clock. A file on any file system other than the local ones
//! listed in [`LOCAL_FILE_SYSTEMS`] (by `fstatfs` of the opened file) is hashed every run.
//!
//! **Racy writes.** A write in the same clock tick as the stamp would leave it unchanged
//! (file systems keep times at a granularity down to seconds). A hash is only cached when
//! the file's times are at least [`SETTLED`] older than the moment hashing started, and
//! the stamp read after hashing equals the one read before: otherwise the next run hashes
//! the file again (git's "racily clean" rule).
//!
//! **Bounds.** The cache lives in the engine's memory (a long-running worker or standalone
//! node; a one-shot `ferry-worker run` starts empty), at most [`MAX_ENTRIES`] files in
//! all; when full it starts over. Nothing is written to disk or to the store.

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

/// How much older than the start of hashing a file's times must be for its hash to be
/// cached (coarser than any file system's time granularity that matters here).
pub(crate) const SETTLED: Duration = Duration::from_secs(2);

/// The most files remembered (about 150 bytes each).
pub(crate) const MAX_ENTRIES: usize = 200_000;

/// The file systems (`statfs` `f_type`) whose `ctime` the cache trusts: Linux's local
/// ones that keep it to the nanosecond, by this machine's clock.
pub(crate) const LOCAL_FILE_SYSTEMS: &[(i64, &str)] = &[
    (0xEF53, "ext2/ext3/ext4"),
    (0x5846_5342, "xfs"),
    (0x9123_683E, "btrfs"),
    (0x0102_1994, "tmpfs"),
    (0x794C_7630, "overlayfs"),
    (0x2FC1_2FC1, "zfs"),
    (0xF2F5_2010, "f2fs"),
];

/// Whether the opened file lives on one of [`LOCAL_FILE_SYSTEMS`].
fn on_local_file_system(file: &std::fs::File) -> bool {
    use std::os::fd::AsRawFd;
    let mut stats = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: `fstatfs` fills the buffer for a descriptor that `file` keeps open during the
    // call; the buffer is read only when the call succeeded.
    let stats = unsafe {
        if libc::fstatfs(file.as_raw_fd(), stats.as_mut_ptr()) != 0 {
            return false;
        }
        stats.assume_init()
    };
    // `f_type`'s integer type differs between targets.
    #[allow(clippy::unnecessary_cast)]
    let kind = stats.f_type as i64;
    LOCAL_FILE_SYSTEMS.iter().any(|(magic, _)| *magic == kind)
}

/// A file's identity and change stamps, as `fstat` gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(metadata: &std::fs::Metadata) -> Stamp {
        Stamp {
            dev: metadata.dev(),
            ino: metadata.ino(),
            size: metadata.size(),
            mtime: (metadata.mtime(), metadata.mtime_nsec()),
            ctime: (metadata.ctime(), metadata.ctime_nsec()),
        }
    }

    /// Whether both times are at least `margin` before `started`.
    fn settled_before(&self, started: SystemTime, margin: Duration) -> bool {
        let Ok(since_epoch) = started.duration_since(SystemTime::UNIX_EPOCH) else {
            return false;
        };
        let limit = since_epoch.saturating_sub(margin);
        let before = |(secs, nanos): (i64, i64)| {
            u64::try_from(secs)
                .is_ok_and(|secs| Duration::new(secs, u32::try_from(nanos).unwrap_or(0)) <= limit)
        };
        before(self.mtime) && before(self.ctime)
    }
}

/// A remembered hash.
#[derive(Debug, Clone, Copy)]
struct Known {
    stamp: Stamp,
    sha256: [u8; 32],
}

/// Where a file's hash came from (for the log line and the tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HashSource {
    /// Read from the file now.
    Read,
    /// Reused: the file's stamp is unchanged since it was read.
    Cached,
}

/// The engine's hash cache, shared by its runs (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct HashCache {
    known: Mutex<HashMap<PathBuf, Known>>,
}

impl HashCache {
    /// The SHA-256 and size of the file at `path`, reused from an earlier run when the
    /// file is unchanged, read otherwise. The file is opened without following a link.
    pub(crate) async fn hash(&self, path: &Path) -> io::Result<([u8; 32], u64, HashSource)> {
        self.hash_settled_after(path, SETTLED).await
    }

    /// [`HashCache::hash`] with the settling margin as a parameter (the tests' zero).
    async fn hash_settled_after(
        &self,
        path: &Path,
        margin: Duration,
    ) -> io::Result<([u8; 32], u64, HashSource)> {
        let owned = path.to_path_buf();
        let (file, stamp, local) = tokio::task::spawn_blocking(move || {
            let file = crate::ftps::open_no_follow(&owned)?;
            let stamp = Stamp::of(&file.metadata()?);
            let local = on_local_file_system(&file);
            io::Result::Ok((file, stamp, local))
        })
        .await
        .map_err(io::Error::other)??;
        if local
            && let Some(known) = self.lookup(path)
            && known.stamp == stamp
        {
            return Ok((known.sha256, stamp.size, HashSource::Cached));
        }
        let started = SystemTime::now();
        let (sha256, size, after) = tokio::task::spawn_blocking(move || hash_open(file))
            .await
            .map_err(io::Error::other)??;
        if local && after == stamp && size == stamp.size && stamp.settled_before(started, margin) {
            self.remember(path, Known { stamp, sha256 });
        }
        Ok((sha256, size, HashSource::Read))
    }

    fn lookup(&self, path: &Path) -> Option<Known> {
        let known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        known.get(path).copied()
    }

    fn remember(&self, path: &Path, entry: Known) {
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        if known.len() >= MAX_ENTRIES && !known.contains_key(path) {
            known.clear();
        }
        known.insert(path.to_path_buf(), entry);
    }
}

/// Reads an opened file to its end for its SHA-256 and size; then its stamp again.
fn hash_open(mut file: std::fs::File) -> io::Result<([u8; 32], u64, Stamp)> {
    let mut hasher = Sha256::new();
    let size = crate::ftps::hash_to_end(&mut file, &mut hasher)?;
    let after = Stamp::of(&file.metadata()?);
    Ok((hasher.finalize().into(), size, after))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sets both of a file's times back an hour (ctime follows: it becomes now, so the
    /// test waits for it to settle by moving the clock of the check instead).
    fn age(path: &Path) {
        let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
        let file = std::fs::File::options().write(true).open(path).unwrap();
        file.set_modified(an_hour_ago).unwrap();
    }

    #[test]
    fn only_times_older_than_the_settling_margin_count_as_settled() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"x").unwrap();
        age(&path);
        let stamp = Stamp::of(&std::fs::metadata(&path).unwrap());
        // The ctime is now: not settled now, settled a few seconds from now.
        assert!(!stamp.settled_before(SystemTime::now(), SETTLED));
        let later = SystemTime::now() + SETTLED + Duration::from_secs(1);
        assert!(stamp.settled_before(later, SETTLED));
    }

    #[tokio::test]
    async fn a_fresh_file_is_read_every_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"fresh").unwrap();
        let cache = HashCache::default();
        let (first, size, source) = cache.hash(&path).await.unwrap();
        assert_eq!((size, source), (5, HashSource::Read));
        assert_eq!(first, <[u8; 32]>::from(Sha256::digest(b"fresh")));
        // Its ctime is within the margin: not cached, read again.
        let (_, _, source) = cache.hash(&path).await.unwrap();
        assert_eq!(source, HashSource::Read);
    }

    #[tokio::test]
    async fn a_settled_file_is_reused_until_any_stamp_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"settled").unwrap();
        let cache = HashCache::default();
        let sha256 = <[u8; 32]>::from(Sha256::digest(b"settled"));
        // Settled with no margin: the first hash reads and remembers, the second reuses.
        assert_eq!(
            cache
                .hash_settled_after(&path, Duration::ZERO)
                .await
                .unwrap(),
            (sha256, 7, HashSource::Read)
        );
        assert_eq!(
            cache.hash(&path).await.unwrap(),
            (sha256, 7, HashSource::Cached)
        );

        // Rewritten in place with the same size and its modification time restored: the
        // ctime moved, so it is read again and the new content's hash comes back.
        let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&path, b"SETTLED").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(modified)
            .unwrap();
        let (again, size, source) = cache.hash(&path).await.unwrap();
        assert_eq!((size, source), (7, HashSource::Read));
        assert_eq!(again, <[u8; 32]>::from(Sha256::digest(b"SETTLED")));
    }

    #[tokio::test]
    async fn a_link_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, b"secret").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(HashCache::default().hash(&link).await.is_err());
    }

    #[test]
    fn a_full_cache_starts_over() {
        let cache = HashCache::default();
        let stamp = Stamp {
            dev: 1,
            ino: 1,
            size: 0,
            mtime: (0, 0),
            ctime: (0, 0),
        };
        for i in 0..MAX_ENTRIES {
            cache.remember(
                Path::new(&format!("/f{i}")),
                Known {
                    stamp,
                    sha256: [0; 32],
                },
            );
        }
        cache.remember(
            Path::new("/one-more"),
            Known {
                stamp,
                sha256: [0; 32],
            },
        );
        let known = cache.known.lock().unwrap();
        assert_eq!(known.len(), 1);
    }
}
