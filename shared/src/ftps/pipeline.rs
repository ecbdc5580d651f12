//! The disk side of a transfer, on its own blocking thread, so that reading or writing the
//! local file and hashing it (SHA-256, ~1.4 GB/s) run at the same time as TLS and the socket.
//!
//! A transfer is a loop of three costs: TLS (encrypt/decrypt), hashing and file I/O. Done one
//! after the other on one task, a 1 GiB download ran at 0.7x curl's speed; splitting the disk
//! and hash work onto a blocking thread overlaps them with the network. Buffers of
//! [`BUF_SIZE`] go back and forth on two bounded channels and are reused, so memory stays at
//! `(DEPTH + 1) * BUF_SIZE` whatever the file size, and no buffer is allocated per chunk.
//!
//! While writing, the disk thread asks the kernel every [`WRITEBACK_WINDOW`] bytes to start
//! writing them out ([`start_writeback`]), so the disk works during the transfer and the one
//! `fsync` at the end of the file (`download.rs`) has little left to do.
//!
//! The local file is opened with `O_NOFOLLOW` ([`open_no_follow`]): a file that was replaced by
//! a symbolic link after it was selected fails to open rather than sending the link's target.
//!
//! Each side notices when the other is gone (a closed channel): a network error or a
//! cancelled transfer ends the disk thread, and a disk error ends the network loop.

use std::fs::File;
use std::io::{self, Read, Write};

use sha2::{Digest, Sha256};
use tokio::sync::mpsc::{Receiver, Sender, channel};

/// Copy buffer size: large enough for full TLS records and few system calls, small enough
/// that memory stays flat whatever the file size.
pub const BUF_SIZE: usize = 256 * 1024;

/// The smallest copy buffer (one TLS record's worth of plaintext).
const MIN_BUF_SIZE: usize = 16 * 1024;

/// The buffer size for a file expected to hold `expected` more bytes: [`BUF_SIZE`] for a large
/// one, one byte more than the file for a small one (a single read then also sees the end).
///
/// A buffer of 256 KiB per small file cost more than the file: glibc hands large blocks out
/// and takes them back with `mmap`/`brk`, so each was paid for again in page faults and
/// zeroing. With 1000 files of 10 KiB, that was a quarter of ferry's CPU time. The size is a
/// hint only: a file that grew is read on in more buffers, never cut short.
fn buffer_size(expected: u64) -> usize {
    usize::try_from(expected.saturating_add(1))
        .unwrap_or(BUF_SIZE)
        .clamp(MIN_BUF_SIZE, BUF_SIZE)
}

/// Opens `path` for reading, refusing a symbolic link as the last component (`ELOOP`).
pub fn open_no_follow(path: &std::path::Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// Reads `file` from its position to its end into `hasher`, in chunks of up to 256 KiB (sized
/// to the file, see [`buffer_size`]); returns the bytes read. The one hashing loop of a local
/// file (a whole file, the hash cache's, a kept download part).
pub fn hash_to_end(file: &mut File, hasher: &mut Sha256) -> io::Result<u64> {
    use std::io::Seek;
    let left = file
        .metadata()?
        .len()
        .saturating_sub(file.stream_position()?);
    let mut buf = vec![0u8; buffer_size(left)];
    let mut read = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(read);
        }
        hasher.update(&buf[..n]);
        read += n as u64;
    }
}

/// Buffers in flight between the network and the disk thread.
const DEPTH: usize = 4;

/// What the disk thread reports when it is done: bytes, their SHA-256, and the file back.
pub(crate) type DiskResult = io::Result<(u64, [u8; 32], File)>;

/// Reads `file` on a blocking thread, hashing each buffer; the caller sends what it gets.
pub(crate) struct FileReader {
    full: Receiver<Vec<u8>>,
    empty: Sender<Vec<u8>>,
    thread: tokio::task::JoinHandle<DiskResult>,
}

impl FileReader {
    /// Starts reading `file` from its current position, handing out only what follows the
    /// first `skip` bytes; those are read and hashed all the same, so the hash and the byte
    /// count at the end are the whole file's (a resumed upload, `resume.rs`).
    ///
    /// Buffers are allocated as they are needed (a small file needs one), up to `DEPTH + 1`.
    pub(crate) fn start_after(mut file: File, skip: u64) -> FileReader {
        let (full_tx, full) = channel::<Vec<u8>>(DEPTH);
        let (empty, mut empty_rx) = channel::<Vec<u8>>(DEPTH + 1);
        let thread = tokio::task::spawn_blocking(move || {
            let size = buffer_size(file.metadata()?.len());
            let mut spare = DEPTH + 1;
            let mut hasher = Sha256::new();
            let mut total = 0u64;
            loop {
                let mut buf = match empty_rx.try_recv() {
                    Ok(buf) => buf,
                    Err(_) if spare > 0 => {
                        spare -= 1;
                        Vec::new()
                    }
                    Err(_) => match empty_rx.blocking_recv() {
                        Some(buf) => buf,
                        None => break, // the network side is gone
                    },
                };
                // Fill `buf` with the next bytes to send; bytes before `skip` (the server
                // has them) are hashed in the same buffer and not sent.
                let sendable = loop {
                    buf.resize(size, 0);
                    let n = fill(&mut file, &mut buf)?;
                    if n == 0 {
                        break 0;
                    }
                    buf.truncate(n);
                    hasher.update(&buf);
                    let before = total;
                    total += n as u64;
                    if total <= skip {
                        continue;
                    }
                    if before < skip {
                        buf.drain(..(skip - before) as usize);
                    }
                    break buf.len();
                };
                if sendable == 0 {
                    break;
                }
                if full_tx.blocking_send(buf).is_err() {
                    break; // the network side is gone (error or cancellation)
                }
            }
            Ok((total, hasher.finalize().into(), file))
        });
        FileReader {
            full,
            empty,
            thread,
        }
    }

    /// The next buffer of the file, `None` at the end (or when the disk thread stopped:
    /// [`FileReader::finish`] tells which).
    pub(crate) async fn next(&mut self) -> Option<Vec<u8>> {
        self.full.recv().await
    }

    /// Hands a sent buffer back for reuse.
    pub(crate) fn recycle(&self, buf: Vec<u8>) {
        let _ = self.empty.try_send(buf);
    }

    /// Waits for the disk thread: bytes read, their hash, the file.
    pub(crate) async fn finish(self) -> DiskResult {
        drop(self.full);
        drop(self.empty);
        self.thread
            .await
            .map_err(|e| io::Error::other(format!("file reader thread failed: {e}")))?
    }
}

/// Writes buffers to `file` on a blocking thread, hashing each; the caller fills them from
/// the network.
pub(crate) struct FileWriter {
    full: Sender<Vec<u8>>,
    empty: Receiver<Vec<u8>>,
    spare: usize,
    /// The size of each buffer.
    size: usize,
    thread: tokio::task::JoinHandle<DiskResult>,
}

impl FileWriter {
    /// Starts a writer that appends to `file`, which holds `written` bytes already, hashed
    /// into `hasher` (an empty file: `0` and a new hasher): the hash and the count it ends
    /// with are the whole file's.
    /// `expected` is the number of bytes still to come, if known: it sizes the buffers.
    pub(crate) fn continuing(
        mut file: File,
        hasher: Sha256,
        written: u64,
        expected: Option<u64>,
    ) -> FileWriter {
        let (full, mut full_rx) = channel::<Vec<u8>>(DEPTH);
        let (empty_tx, empty) = channel::<Vec<u8>>(DEPTH + 1);
        let thread = tokio::task::spawn_blocking(move || {
            let mut hasher = hasher;
            // Counts and write-back offsets are the whole file's (a kept part included).
            let mut total = written;
            let mut flushed = written;
            while let Some(buf) = full_rx.blocking_recv() {
                hasher.update(&buf);
                file.write_all(&buf)?;
                total += buf.len() as u64;
                let _ = empty_tx.try_send(buf);
                if total - flushed >= WRITEBACK_WINDOW {
                    start_writeback(&file, flushed, total - flushed);
                    flushed = total;
                }
            }
            file.flush()?;
            Ok((total, hasher.finalize().into(), file))
        });
        FileWriter {
            full,
            empty,
            spare: DEPTH + 1,
            size: expected.map_or(BUF_SIZE, buffer_size),
            thread,
        }
    }

    /// An empty buffer to fill (allocated up to `DEPTH + 1` times, then reused).
    /// `None` when the disk thread stopped ([`FileWriter::finish`] tells why).
    pub(crate) async fn buffer(&mut self) -> Option<Vec<u8>> {
        let mut buf = match self.empty.try_recv() {
            Ok(b) => b,
            Err(_) if self.spare > 0 => {
                self.spare -= 1;
                Vec::new()
            }
            Err(_) => self.empty.recv().await?,
        };
        buf.resize(self.size, 0);
        Some(buf)
    }

    /// Queues a filled buffer for the disk; `false` when the disk thread stopped.
    pub(crate) async fn write(&mut self, buf: Vec<u8>) -> bool {
        self.full.send(buf).await.is_ok()
    }

    /// Waits for the disk thread to write everything: bytes, their hash, the file.
    pub(crate) async fn finish(self) -> DiskResult {
        drop(self.full);
        self.thread
            .await
            .map_err(|e| io::Error::other(format!("file writer thread failed: {e}")))?
    }
}

/// Written bytes after which the disk thread asks the kernel to start writing them out.
const WRITEBACK_WINDOW: u64 = 8 * 1024 * 1024;

/// Starts the write-back of `len` bytes at `offset` of `file` without waiting for it
/// (`sync_file_range(SYNC_FILE_RANGE_WRITE)`): the disk works while the network still
/// receives, so the single `fsync` at the end of the file finds little left to write (on
/// this test bed, 1 GiB left dirty cost ~0.4 s of `fsync`). Not a durability step (that is
/// the `fsync`); best effort, a no-op where the call does not exist.
fn start_writeback(file: &File, offset: u64, len: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
            return;
        };
        // SAFETY: a plain system call on a file descriptor owned by `file`; no memory passed.
        unsafe {
            libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, len);
}

/// Reads until `buf` is full or the file ends; returns the bytes read.
fn fill(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reader_and_writer_round_trip_with_hash() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        let data: Vec<u8> = (0..(3 * BUF_SIZE + 123)).map(|i| (i % 251) as u8).collect();
        std::fs::write(&src, &data).unwrap();
        let expected: [u8; 32] = Sha256::digest(&data).into();

        let mut reader = FileReader::start_after(File::open(&src).unwrap(), 0);
        let dst = dir.path().join("dst");
        let mut writer =
            FileWriter::continuing(File::create(&dst).unwrap(), Sha256::new(), 0, None);
        while let Some(chunk) = reader.next().await {
            let mut buf = writer.buffer().await.unwrap();
            buf.truncate(chunk.len());
            buf.copy_from_slice(&chunk);
            reader.recycle(chunk);
            assert!(writer.write(buf).await);
        }
        let (n, sha, _) = reader.finish().await.unwrap();
        assert_eq!(n, data.len() as u64);
        assert_eq!(sha, expected);
        let (n, sha, _) = writer.finish().await.unwrap();
        assert_eq!(n, data.len() as u64);
        assert_eq!(sha, expected);
        assert_eq!(std::fs::read(&dst).unwrap(), data);
    }

    #[tokio::test]
    async fn a_small_file_takes_one_buffer_of_its_size_and_a_grown_one_is_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("small");
        let data = vec![7u8; 10 * 1024];
        std::fs::write(&src, &data).unwrap();
        let mut reader = FileReader::start_after(File::open(&src).unwrap(), 0);
        let chunk = reader.next().await.unwrap();
        assert_eq!(chunk.len(), data.len());
        assert!(chunk.capacity() <= MIN_BUF_SIZE, "{}", chunk.capacity());
        reader.recycle(chunk);
        assert!(reader.next().await.is_none());
        reader.finish().await.unwrap();

        // A writer told to expect 10 bytes and given 100 KiB writes them all.
        let dst = dir.path().join("dst");
        let mut writer =
            FileWriter::continuing(File::create(&dst).unwrap(), Sha256::new(), 0, Some(10));
        let big = vec![9u8; 100 * 1024];
        let mut sent = 0;
        while sent < big.len() {
            let mut buf = writer.buffer().await.unwrap();
            let n = buf.len().min(big.len() - sent);
            buf.truncate(n);
            buf.copy_from_slice(&big[sent..sent + n]);
            sent += n;
            assert!(writer.write(buf).await);
        }
        let (n, _, _) = writer.finish().await.unwrap();
        assert_eq!(n, big.len() as u64);
        assert_eq!(std::fs::read(&dst).unwrap(), big);
    }

    #[tokio::test]
    async fn empty_file() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("empty");
        std::fs::write(&src, b"").unwrap();
        let mut reader = FileReader::start_after(File::open(&src).unwrap(), 0);
        assert!(reader.next().await.is_none());
        let (n, sha, _) = reader.finish().await.unwrap();
        assert_eq!(n, 0);
        assert_eq!(sha, <[u8; 32]>::from(Sha256::digest(b"")));
    }

    #[tokio::test]
    async fn a_resumed_read_hands_out_only_the_rest_and_hashes_the_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        let data: Vec<u8> = (0..(3 * BUF_SIZE + 123)).map(|i| (i % 251) as u8).collect();
        std::fs::write(&src, &data).unwrap();
        let skip = BUF_SIZE + 7;
        let mut reader = FileReader::start_after(File::open(&src).unwrap(), skip as u64);
        let mut handed_out = Vec::new();
        while let Some(chunk) = reader.next().await {
            handed_out.extend_from_slice(&chunk);
            reader.recycle(chunk);
        }
        let (n, sha, _) = reader.finish().await.unwrap();
        assert_eq!(handed_out, data[skip..]);
        assert_eq!(n, data.len() as u64);
        assert_eq!(sha, <[u8; 32]>::from(Sha256::digest(&data)));
    }
}
