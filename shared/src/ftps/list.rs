//! Reading a directory listing: `MLSD` where `FEAT` offers it, `LIST` otherwise, parsed line
//! by line as it arrives (`listing.rs` parses one line), so memory holds entries, not the
//! listing's text.
//!
//! A listing is input from the partner, bounded on every axis:
//! - bytes read and entries kept ([`ListingLimits`], per partner): over either, the listing
//!   stops with [`FtpsErrorKind::ListingTooLarge`];
//! - one line (16 KiB), and the pause between two reads (the data-idle timeout); a listing
//!   that trickles slower than the run allows is cut by the run's deadline (the flow engine
//!   bounds the whole call);
//! - names that are not valid UTF-8 are skipped with a warning rather than turned into a
//!   lossy string that would name another file (unless the partner's `listing_encoding`
//!   says Latin-1: `name_encoding.rs`); names that would escape the directory are dropped
//!   (`listing.rs`).
//!
//! A server that offers `MLST` in `FEAT` but refuses `MLSD` (`500`/`501`/`502`/`504`, per
//! user or per directory on some servers) gets `LIST` instead, for the rest of the session,
//! said once at info level.
//!
//! `LIST` times are the server's wall-clock, read in the partner's `listing_timezone`.

use chrono_tz::Tz;
use tokio::time::timeout;
use tracing::{debug, info, warn};

use super::classify::{ReplyTo, from_net_io};
use super::config::ListingLimits;
use super::connection::{Connection, Operation};
use super::control::check_line;
use super::error::{FtpsError, FtpsErrorKind};
use super::listing::{self, Parsed, RemoteEntry};
use super::name_encoding::NameEncoding;
use super::printable::printable;

/// Longest listing line accepted.
const MAX_LINE: usize = 16 * 1024;

/// One listing of `dir`.
pub(crate) struct List<'a> {
    pub(crate) dir: &'a str,
    pub(crate) limits: ListingLimits,
    /// The zone of `LIST` times (`MLSD` times are UTC).
    pub(crate) zone: Tz,
    /// Ask for hidden entries too (`LIST -a`; `MLSD` always lists them).
    pub(crate) hidden: bool,
}

impl Operation for List<'_> {
    type Output = Vec<RemoteEntry>;

    async fn run(&mut self, conn: &mut Connection) -> Result<Vec<RemoteEntry>, FtpsError> {
        let step = format!("listing of {}", self.dir);
        check_line(&step, self.dir)?;
        if !conn.features().mlsd {
            return list(
                conn,
                &step,
                self.dir,
                Format::List(self.zone, self.hidden),
                self.limits,
            )
            .await;
        }
        match list(conn, &step, self.dir, Format::Mlsd, self.limits).await {
            Err(e)
                if e.reply()
                    .is_some_and(|r| matches!(r.code, 500 | 501 | 502 | 504)) =>
            {
                info!(reply = ?e.reply(), "the server offers MLST in FEAT but refused MLSD; listing with LIST for this session");
                conn.stop_using_mlsd();
                list(
                    conn,
                    &step,
                    self.dir,
                    Format::List(self.zone, self.hidden),
                    self.limits,
                )
                .await
            }
            r => r,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Mlsd,
    /// `LIST`, its times in this zone; with hidden entries (`LIST -a`) when set.
    List(Tz, bool),
}

/// What a listing's lines came to.
#[derive(Debug, Default)]
struct Tally {
    entries: Vec<RemoteEntry>,
    bytes: u64,
    unsafe_names: usize,
    not_utf8: usize,
    unknown: usize,
}

async fn list(
    conn: &mut Connection,
    step: &str,
    dir: &str,
    format: Format,
    limits: ListingLimits,
) -> Result<Vec<RemoteEntry>, FtpsError> {
    let line = match format {
        Format::Mlsd => format!("MLSD {dir}"),
        Format::List(_, false) => format!("LIST {dir}"),
        Format::List(_, true) => format!("LIST -a {dir}"),
    };
    let encoding = conn.name_encoding();
    let mut data = conn.open_data(step, &line, ReplyTo::ExistingPath).await?;
    let idle = conn.data_idle();
    let now = chrono::Utc::now();
    let mut tally = Tally::default();
    let mut pending: Vec<u8> = Vec::with_capacity(MAX_LINE);
    let mut chunk = vec![0u8; 64 * 1024];
    let read: Result<(), FtpsError> = async {
        loop {
            let n = match timeout(idle, data.read(&mut chunk)).await {
                Ok(r) => r.map_err(|e| from_net_io(step, e))?,
                Err(_) => return Err(FtpsError::timeout(step, "listing data", idle)),
            };
            if n == 0 {
                if !pending.is_empty() {
                    take_line(&pending, format, encoding, now, &mut tally);
                }
                return Ok(());
            }
            tally.bytes += n as u64;
            if tally.bytes > limits.max_bytes {
                return Err(too_large(
                    step,
                    format!("more than {} bytes", limits.max_bytes),
                ));
            }
            let mut rest = &chunk[..n];
            while let Some(end) = rest.iter().position(|b| *b == b'\n') {
                pending.extend_from_slice(&rest[..end]);
                rest = &rest[end + 1..];
                check_line_length(step, &pending)?;
                take_line(&pending, format, encoding, now, &mut tally);
                pending.clear();
                if tally.entries.len() > limits.max_entries {
                    return Err(too_large(
                        step,
                        format!("more than {} entries", limits.max_entries),
                    ));
                }
            }
            pending.extend_from_slice(rest);
            check_line_length(step, &pending)?;
        }
    }
    .await;
    match read {
        Ok(()) => {
            data.finish_read(conn.control(), step, ReplyTo::ExistingPath)
                .await?
        }
        Err(e) => {
            data.abandon(conn.control(), step).await;
            return Err(e);
        }
    }
    if tally.unknown > 0 {
        warn!(
            unknown = tally.unknown,
            "listing lines not understood were skipped"
        );
    }
    if tally.not_utf8 > 0 {
        warn!(
            skipped = tally.not_utf8,
            "listing entries whose names are not valid UTF-8 were skipped (ferry would ask for another name)"
        );
    }
    debug!(
        entries = tally.entries.len(),
        bytes = tally.bytes,
        unsafe_names = tally.unsafe_names,
        "listing read"
    );
    Ok(tally.entries)
}

fn check_line_length(step: &str, line: &[u8]) -> Result<(), FtpsError> {
    if line.len() > MAX_LINE {
        return Err(FtpsError::new(
            FtpsErrorKind::Protocol,
            step,
            format!("a listing line is longer than {MAX_LINE} bytes"),
        )
        .transient(false));
    }
    Ok(())
}

fn too_large(step: &str, what: String) -> FtpsError {
    FtpsError::new(
        FtpsErrorKind::ListingTooLarge,
        step,
        format!(
            "the listing has {what}, over the partner's limit (connection.max_listing_bytes / \
             max_listing_entries); narrow the directory or raise the limit"
        ),
    )
    .transient(false)
}

fn take_line(
    raw: &[u8],
    format: Format,
    encoding: NameEncoding,
    now: chrono::DateTime<chrono::Utc>,
    tally: &mut Tally,
) {
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
    let Some(line) = encoding.decode(raw) else {
        tally.not_utf8 += 1;
        let shown = String::from_utf8_lossy(raw);
        warn!(line = %printable(&shown), "listing entry skipped: its name is not valid UTF-8 (a server that sends Latin-1 names needs the partner's listing_encoding: latin1)");
        return;
    };
    let line = line.as_ref();
    let parsed = match format {
        Format::Mlsd => listing::parse_mlsd(line, now),
        Format::List(zone, _) => listing::parse_list(line, now, zone),
    };
    match parsed {
        Parsed::Entry(e) => tally.entries.push(e),
        Parsed::Skip => {}
        Parsed::Unsafe(name) => {
            tally.unsafe_names += 1;
            warn!(name = %printable(&name), "listing entry dropped: its name would escape the directory");
        }
        Parsed::Unknown => tally.unknown += 1,
    }
}
