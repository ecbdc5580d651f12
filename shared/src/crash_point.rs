//! Crash points: named places in the transfer path where ferry's kill drills make the
//! process die as `kill -9` would, to prove that a crash at each of them loses nothing and
//! sends nothing twice.
//!
//! `FERRY_CRASH_AT=<point>` (or `<point>#<n>`: the n-th time the point is reached, from 1)
//! makes the process send itself `SIGKILL` there: no destructor, no flush, no reply, just
//! as an operator's `kill -9` or the kernel's OOM killer would stop it. Unset (always, in
//! production), a crash point costs one load of an initialised static. The points are the
//! [`CrashPoint`] variants; a drill names them by [`CrashPoint::as_str`].

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// Where a transfer can be made to crash. The order is the order of a transfer's steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// The file is claimed; nothing is sent yet.
    Claimed,
    /// The first buffer of the file went out on the data connection (upload) or was
    /// written to the part file (download).
    MidStream,
    /// The server confirmed the upload (`226`); size and hash not checked yet.
    AfterTransferReply,
    /// The data is complete and checked under its temporary name; no intent yet.
    Staged,
    /// The commit intent is written; the rename has not happened.
    IntentWritten,
    /// The file has its final name; the delivery is not recorded.
    Renamed,
    /// The delivery is recorded; the source is not deleted yet.
    Recorded,
    /// The source is deleted (when the flow says so); the file is done.
    SourceDeleted,
}

impl CrashPoint {
    /// Every point, in order.
    pub const ALL: [CrashPoint; 8] = [
        CrashPoint::Claimed,
        CrashPoint::MidStream,
        CrashPoint::AfterTransferReply,
        CrashPoint::Staged,
        CrashPoint::IntentWritten,
        CrashPoint::Renamed,
        CrashPoint::Recorded,
        CrashPoint::SourceDeleted,
    ];

    /// The name `FERRY_CRASH_AT` uses.
    pub fn as_str(self) -> &'static str {
        match self {
            CrashPoint::Claimed => "claimed",
            CrashPoint::MidStream => "mid-stream",
            CrashPoint::AfterTransferReply => "after-transfer-reply",
            CrashPoint::Staged => "staged",
            CrashPoint::IntentWritten => "intent-written",
            CrashPoint::Renamed => "renamed",
            CrashPoint::Recorded => "recorded",
            CrashPoint::SourceDeleted => "source-deleted",
        }
    }
}

/// The point and the count from `FERRY_CRASH_AT`, read once.
static ARMED: LazyLock<Option<(String, u32)>> = LazyLock::new(|| {
    let spec = std::env::var("FERRY_CRASH_AT").ok()?;
    let (point, nth) = match spec.split_once('#') {
        Some((point, nth)) => (point.to_owned(), nth.parse().ok()?),
        None => (spec, 1),
    };
    Some((point, nth))
});

static REACHED: AtomicU32 = AtomicU32::new(0);

/// Dies here (`SIGKILL`) when `FERRY_CRASH_AT` names `point` and this is its n-th time.
pub fn reached(point: CrashPoint) {
    let Some((armed, nth)) = ARMED.as_ref() else {
        return;
    };
    if armed != point.as_str() {
        return;
    }
    if REACHED.fetch_add(1, Ordering::SeqCst) + 1 == *nth {
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
        // SIGKILL cannot be caught; this only runs if the signal could not be sent.
        std::process::abort();
    }
}
