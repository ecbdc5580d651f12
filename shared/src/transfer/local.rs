//! The engine's few operations on local files: hashing a file before it is claimed, and
//! removing a source file after its delivery is recorded.
//!
//! Both stream or touch the disk only, on the blocking pool, and never hold a file in memory.

use std::io;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The SHA-256 and size of a file, read once from start to end in fixed-size chunks.
pub async fn hash_file(path: &Path) -> io::Result<([u8; 32], u64)> {
    let path: PathBuf = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut file = crate::ftps::open_no_follow(&path)?;
        let mut hasher = Sha256::new();
        let size = crate::ftps::hash_to_end(&mut file, &mut hasher)?;
        Ok((hasher.finalize().into(), size))
    })
    .await
    .map_err(io::Error::other)?
}

/// Removes a delivered source file. Fails loudly (the caller reports it) when the path is
/// no longer a removable file, e.g. a directory now sits under that name.
pub async fn remove_file(path: &Path) -> io::Result<()> {
    tokio::fs::remove_file(path).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_in_chunks_like_a_one_shot_digest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        let content: Vec<u8> = (0..(2 * 256 * 1024 + 17))
            .map(|i| (i % 251) as u8)
            .collect();
        std::fs::write(&path, &content).expect("write");
        let (digest, size) = hash_file(&path).await.expect("hash");
        assert_eq!(size, content.len() as u64);
        assert_eq!(digest, <[u8; 32]>::from(Sha256::digest(&content)));
    }
}
