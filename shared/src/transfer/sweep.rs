//! Stale upload parts: the hidden temporary files (`.NAME.TAG.ferry-part`) that an upload
//! killed mid-stream leaves on the partner, removed at the start of a later run.
//!
//! With claims (`hash`, `content`, `name` mode) a part's TAG comes from the file's delivery
//! key, so the next attempt at the same file writes over the same part, and a commit intent
//! may point at it: those parts are never swept. In `none` mode the TAG is random and there
//! are no intents: each crash would leave one more part behind. So a `none`-mode upload run
//! first lists the folders it is about to write to (hidden entries included) and deletes
//! the parts older than [`stale_age`]: no upload of this flow can still be writing one that
//! old, because every run stops at its `run_timeout`.
//!
//! Only names of ferry's own upload parts are touched (`ftps::is_upload_part`), only with a
//! listed time, and the sweep is best effort: a listing or a delete that fails is logged and
//! the run goes on (the part is tried again next time). Another flow that writes to the same
//! folder in `none` mode sweeps old parts there too: a part that old is dead for either.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::Utc;
use tracing::{info, warn};

use super::context::RunContext;
use crate::ftps::{is_upload_part, printable};

/// How old a part must be to be taken for a dead attempt's: twice the run's time limit, and
/// at least an hour (listings may give times to the minute only).
pub(crate) fn stale_age(run_timeout: Duration) -> Duration {
    (run_timeout * 2).max(Duration::from_secs(3600))
}

/// Deletes the stale upload parts in `dirs` (see the module docs); returns how many.
pub(crate) async fn sweep_stale_parts(ctx: &RunContext<'_>, dirs: &BTreeSet<String>) -> usize {
    let Ok(max_age) = chrono::Duration::from_std(stale_age(ctx.plan.run_timeout)) else {
        return 0;
    };
    let cutoff = Utc::now() - max_age;
    let mut removed = 0;
    for dir in dirs {
        let mut session = match ctx.pool.get().await {
            Ok(session) => session,
            Err(err) => {
                warn!(error = %err, "stale parts not swept: no session");
                return removed;
            }
        };
        let listed = session.list_hidden(dir).await;
        let entries = match listed {
            Ok(entries) => entries,
            Err(err) => {
                warn!(dir = %printable(dir), error = %err, "stale parts not swept: the listing failed");
                continue;
            }
        };
        let stale = entries.into_iter().filter(|e| {
            e.is_file && is_upload_part(&e.name) && e.modified.is_some_and(|m| m < cutoff)
        });
        let mut healthy = true;
        for entry in stale {
            let path = format!("{}/{}", dir.trim_end_matches('/'), entry.name);
            match session.delete(&path).await {
                Ok(()) => {
                    removed += 1;
                    info!(part = %printable(&path), modified = ?entry.modified, "removed a stale upload part");
                }
                Err(err) => {
                    warn!(part = %printable(&path), error = %err, "a stale upload part could not be removed");
                    healthy = false;
                    break;
                }
            }
        }
        if healthy {
            session.done();
        }
    }
    removed
}
