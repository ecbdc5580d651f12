//! Resuming an interrupted download: a transfer broken on the way keeps what it received as
//! a *kept part*, and the next attempt (a retry in the same run, or a later run) asks the
//! server for the rest only (`REST <offset>` then `RETR`), instead of the whole file again.
//!
//! **Which bytes may be kept.** Only a part this process kept on purpose, never one a
//! killed process left: a broken transfer `fsync`s its part, labels it with the remote
//! file's version (an extended attribute `user.ferry.remote`: the listed size and time), and
//! only then gives it the kept name (`…k.ferry-part`, beside the working part). A part
//! whose bytes may never have reached the disk (the process died) keeps the working name,
//! which every attempt removes first, as before.
//!
//! **Which file the bytes belong to.** A kept part is continued only when its label equals
//! the version the listing shows now (same size, same listed time) and it is shorter than
//! the file: a file replaced on the partner since is fetched whole. Where the file system
//! keeps no extended attributes, nothing is kept.
//!
//! **Once.** A continued transfer that breaks again keeps nothing, and one that ends
//! without TLS `close_notify` is refused whatever its length (`download.rs`): a server that
//! answered `REST` but sent from the first byte would otherwise leave wrong bytes behind.
//!
//! **The whole file's hash.** The kept bytes are read and hashed again before the transfer
//! continues, so the SHA-256 recorded (and checked by a later duplicate check) is the whole
//! file's. The server must list `REST STREAM` in `FEAT` and answer `REST` with `350`; any
//! doubt (a refused `REST`, a part as long as the file) fetches the whole file, writing the
//! part over. The partner's `disable_resume` turns all of this off.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tracing::{debug, info};

/// The extended attribute that labels a kept part with the remote file's version.
const LABEL: &std::ffi::CStr = c"user.ferry.remote";

/// A kept part, opened to be continued.
pub(crate) struct KeptPart {
    /// Opened for writing, positioned at its end.
    pub(crate) file: File,
    /// Its bytes.
    pub(crate) len: u64,
    /// The hash of its bytes, to be continued with the rest.
    pub(crate) hasher: Sha256,
}

/// The kept part's name under `prefix` (see `paths.rs`).
pub(crate) fn kept_part_name(prefix: &str) -> String {
    format!("{prefix}k.ferry-part")
}

/// Takes the kept part under `prefix` in `dir` when it holds the first bytes of the remote
/// file `version` (of `len` bytes), moving it to `working` (the attempt's own part name, so
/// that a crash of this attempt never leaves it labelled as kept); removes a kept part that
/// cannot be continued. `None`: start from the first byte.
pub(crate) fn take_kept(
    dir: &Path,
    prefix: &str,
    working: &Path,
    version: &str,
    len: u64,
) -> io::Result<Option<KeptPart>> {
    use std::os::unix::fs::OpenOptionsExt;
    let kept = dir.join(kept_part_name(prefix));
    let mut file = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&kept)
    {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            let _ = std::fs::remove_file(&kept);
            return Err(e);
        }
    };
    let metadata = file.metadata()?;
    let usable = metadata.is_file()
        && metadata.len() > 0
        && metadata.len() < len
        && read_label(&file).as_deref() == Some(version);
    if !usable {
        debug!(part = %kept.display(), "a kept part of another version of the file, or of no use: removed");
        drop(file);
        std::fs::remove_file(&kept)?;
        return Ok(None);
    }
    let mut hasher = Sha256::new();
    let read = super::hash_to_end(&mut file, &mut hasher)?;
    std::fs::rename(&kept, working)?;
    info!(
        bytes = read,
        "continuing the download where its kept part ends"
    );
    Ok(Some(KeptPart {
        file,
        len: read,
        hasher,
    }))
}

/// Keeps the working part at `working` for a later attempt: `fsync`, label with `version`,
/// rename to the kept name, `fsync` the folder. `false` (and the part is left for its
/// guard to remove) when any step fails, extended attributes included.
pub(crate) fn keep(dir: &Path, prefix: &str, working: &Path, version: &str) -> bool {
    let kept: PathBuf = dir.join(kept_part_name(prefix));
    let done = (|| -> io::Result<()> {
        let file = crate::ftps::open_no_follow(working)?;
        if file.metadata()?.len() == 0 {
            return Err(io::Error::other("nothing received"));
        }
        file.sync_all()?;
        write_label(&file, version)?;
        std::fs::rename(working, &kept)?;
        File::open(dir)?.sync_all()
    })();
    match done {
        Ok(()) => {
            info!(part = %kept.display(), "the broken download's part is kept for the next attempt");
            true
        }
        Err(e) => {
            debug!(error = %e, "the broken download's part is not kept");
            false
        }
    }
}

fn write_label(file: &File, version: &str) -> io::Result<()> {
    // SAFETY: `fsetxattr` reads `version.len()` bytes from the string's buffer and the
    // NUL-terminated name, for a descriptor `file` keeps open during the call.
    let done = unsafe {
        libc::fsetxattr(
            file.as_raw_fd(),
            LABEL.as_ptr(),
            version.as_ptr().cast(),
            version.len(),
            0,
        )
    };
    if done == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn read_label(file: &File) -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: `fgetxattr` writes at most `buf.len()` bytes into `buf`, for a descriptor
    // `file` keeps open during the call; the length it returns is checked before use.
    let n = unsafe {
        libc::fgetxattr(
            file.as_raw_fd(),
            LABEL.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    let n = usize::try_from(n).ok()?;
    String::from_utf8(buf.get(..n)?.to_vec()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_part_continues_only_for_its_own_version_and_when_shorter() {
        let dir = tempfile::tempdir().unwrap();
        let working = dir.path().join(".a.xml.0000-p.ferry-part");
        let prefix = ".a.xml.0000-";
        std::fs::write(&working, b"first half").unwrap();
        assert!(keep(dir.path(), prefix, &working, "20:100"));
        assert!(!working.exists());

        // Another version of the remote file: removed, start over.
        assert!(
            take_kept(dir.path(), prefix, &working, "20:200", 20)
                .unwrap()
                .is_none()
        );
        assert!(!dir.path().join(kept_part_name(prefix)).exists());

        std::fs::write(&working, b"first half").unwrap();
        assert!(keep(dir.path(), prefix, &working, "20:100"));
        let kept = take_kept(dir.path(), prefix, &working, "20:100", 20)
            .unwrap()
            .expect("the same version continues");
        assert_eq!(kept.len, 10);
        assert_eq!(
            <[u8; 32]>::from(kept.hasher.finalize()),
            <[u8; 32]>::from(Sha256::digest(b"first half"))
        );
        assert!(working.exists(), "back under the attempt's own name");
    }

    #[test]
    fn an_unlabelled_part_a_dead_process_left_is_never_kept() {
        let dir = tempfile::tempdir().unwrap();
        let prefix = ".a.xml.0000-";
        let working = dir.path().join(".a.xml.0000-p.ferry-part");
        // Under the kept name but without the label (not written by `keep`).
        std::fs::write(dir.path().join(kept_part_name(prefix)), b"who knows").unwrap();
        assert!(
            take_kept(dir.path(), prefix, &working, "20:100", 20)
                .unwrap()
                .is_none()
        );
    }
}
