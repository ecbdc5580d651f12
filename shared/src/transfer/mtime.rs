//! `preserve_mtime` on a download: the local copy gets the partner file's modification time.
//!
//! The time comes from the listing when it is exact (`MLSD`), else from `MDTM`; a listing
//! time to the minute or the day is used only when the server has no `MDTM` (a time a little
//! off is closer to the truth than the download's own time). The file is opened without
//! following links (it is the file this run just renamed into place) and its time set with
//! `futimens`; a failure is logged, never a failure of the file: the bytes are the delivery.
//! Uploads keep their time on the partner with `MFMT` (`ftps/mfmt.rs`).

use std::path::Path;

use chrono::{DateTime, Utc};
use tracing::warn;

use super::context::RunContext;
use crate::ftps::{RemoteEntry, TimePrecision, open_no_follow, printable};

/// Sets `local`'s modification time to `entry`'s on the partner at `remote_path`, when the
/// flow asks for it.
pub(crate) async fn keep_remote_time(
    ctx: &RunContext<'_>,
    entry: &RemoteEntry,
    remote_path: &str,
    local: &Path,
) {
    if !ctx.plan.preserve_mtime {
        return;
    }
    let listed = entry.modified;
    let time = match (listed, entry.precision) {
        (Some(time), TimePrecision::Exact) => Some(time),
        _ => match super::download::exact_time(ctx, remote_path).await {
            Ok(Some(time)) => Some(time),
            Ok(None) | Err(_) => listed,
        },
    };
    let Some(time) = time else {
        warn!(local_path = %printable(&local.display().to_string()), "the partner gives no modification time to keep");
        return;
    };
    let path = local.to_owned();
    let set = tokio::task::spawn_blocking(move || set_modified(&path, time)).await;
    if let Ok(Err(error)) | Err(error) = set.map_err(std::io::Error::other) {
        warn!(local_path = %printable(&local.display().to_string()), %error, "the modification time could not be kept");
    }
}

fn set_modified(path: &Path, time: DateTime<Utc>) -> std::io::Result<()> {
    open_no_follow(path)?.set_modified(time.into())
}
