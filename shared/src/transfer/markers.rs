//! A flow's `done_marker` at work (the rule is in `config/done_marker.rs`): downloads wait
//! for a file's marker and delete it with the file; uploads write it after the rename.

use std::collections::HashSet;

use tracing::{debug, warn};

use super::context::{RunContext, partner_failure};
use super::report::FileError;
use crate::config::DoneMarker;
use crate::ftps::{RemoteEntry, printable};

/// Splits a listing into the entries whose marker is listed beside them and the names of
/// those still waiting for theirs; the markers themselves are dropped. Without a marker
/// rule, every entry is ready.
pub(crate) fn ready_by_marker(
    marker: Option<&DoneMarker>,
    listing: Vec<RemoteEntry>,
) -> (Vec<RemoteEntry>, Vec<String>) {
    let Some(marker) = marker else {
        return (listing, Vec::new());
    };
    let markers: HashSet<String> = listing
        .iter()
        .filter(|e| e.is_file && marker.is_marker(&e.name))
        .map(|e| e.name.clone())
        .collect();
    let mut waiting = Vec::new();
    let mut ready = Vec::new();
    for entry in listing {
        if markers.contains(&entry.name) {
            continue;
        }
        if !entry.is_file || markers.contains(&marker.marker_for(&entry.name)) {
            ready.push(entry);
        } else {
            waiting.push(entry.name);
        }
    }
    (ready, waiting)
}

/// The partner path of the marker of the file at `file_path`.
fn marker_path(marker: &DoneMarker, file_path: &str) -> String {
    match file_path.rsplit_once('/') {
        Some((dir, name)) => format!("{dir}/{}", marker.marker_for(name)),
        None => marker.marker_for(file_path),
    }
}

/// After an upload's rename: writes the empty marker of the file at `file_path` (with the
/// run's retries). A failure fails the file before its delivery is recorded, so the next
/// attempt finds it in place and writes the marker then.
pub(crate) async fn write_marker(ctx: &RunContext<'_>, file_path: &str) -> Result<(), FileError> {
    let Some(marker) = &ctx.plan.done_marker else {
        return Ok(());
    };
    let path = marker_path(marker, file_path);
    let mut attempts = 0;
    ctx.with_retries(&mut attempts, || async {
        let mut session = ctx.pool.get().await?;
        let written = session.write_empty(&path).await;
        session.keep_if_ok(written)
    })
    .await
    .map_err(|err| {
        let mut error = partner_failure(&err);
        error.message = format!(
            "renamed into place, but its marker {} could not be written: {}",
            printable(&path),
            error.message
        );
        error
    })?;
    debug!(marker = %printable(&path), "marker written");
    Ok(())
}

/// After a download flow removed the partner's file at `file_path`: deletes its marker, best
/// effort (a marker left behind names a file that is gone, and is never fetched).
pub(crate) async fn delete_marker(ctx: &RunContext<'_>, file_path: &str) {
    let Some(marker) = &ctx.plan.done_marker else {
        return;
    };
    let path = marker_path(marker, file_path);
    let deleted = async {
        let mut session = ctx.pool.get().await?;
        let deleted = session.delete(&path).await;
        session.keep_if_ok(deleted)
    }
    .await;
    if let Err(error) = deleted {
        warn!(marker = %printable(&path), %error, "the marker could not be deleted");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ftps::TimePrecision;

    fn file(name: &str) -> RemoteEntry {
        RemoteEntry {
            name: name.to_owned(),
            size: Some(1),
            modified: None,
            precision: TimePrecision::Unknown,
            is_file: true,
        }
    }

    #[test]
    fn only_files_with_their_marker_are_ready_and_markers_are_never_taken() {
        let marker = DoneMarker::parse("{name}.done").unwrap();
        let listing = vec![file("a.xml"), file("a.xml.done"), file("b.xml")];
        let (ready, waiting) = ready_by_marker(Some(&marker), listing);
        let ready: Vec<_> = ready.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(ready, ["a.xml"]);
        assert_eq!(waiting, ["b.xml"]);
        assert_eq!(marker_path(&marker, "/in/x/a.xml"), "/in/x/a.xml.done");
    }
}
