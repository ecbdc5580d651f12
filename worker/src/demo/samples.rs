//! The demo's sample files: a few CSV orders in the local outbox (for the upload flow)
//! and a few CSV statements on the partner's disk (for the download flow), of varied
//! sizes, one large enough to see progress; and the check that each arrived intact,
//! byte for byte, at the other end.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// One sample: its name and where it must arrive.
pub struct Sample {
    /// The file name (the same at both ends).
    pub name: String,
    /// Where it was written.
    pub from: PathBuf,
    /// Where the flow must deliver it.
    pub to: PathBuf,
}

/// Whether a sample arrived.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// At its destination, with the same bytes.
    Intact,
    /// Not at its destination.
    Missing,
    /// At its destination, with other bytes.
    Different,
}

impl Sample {
    /// Compares the destination with the source.
    pub fn arrival(&self) -> Arrival {
        match (std::fs::read(&self.from), std::fs::read(&self.to)) {
            (Ok(from), Ok(to)) if from == to => Arrival::Intact,
            (_, Ok(_)) => Arrival::Different,
            (_, Err(_)) => Arrival::Missing,
        }
    }
}

/// Writes each `(name, rows)` of `files` into `dir` as a CSV of `kind` records with that
/// many rows; each sample is to arrive under `dest`.
fn write(
    dir: &Path,
    dest: &Path,
    kind: &str,
    files: &[(&str, usize)],
) -> std::io::Result<Vec<Sample>> {
    let mut samples = Vec::new();
    for (name, rows) in files {
        let mut text = format!("{kind}_id,date,amount_eur,reference\n");
        for row in 0..*rows {
            let _ = writeln!(
                text,
                "{kind}-{row:07},2026-{:02}-{:02},{}.{:02},REF{:010}",
                row % 12 + 1,
                row % 28 + 1,
                (row * 7919) % 100_000,
                row % 100,
                row * 104_729
            );
        }
        let from = dir.join(name);
        std::fs::write(&from, text)?;
        samples.push(Sample {
            name: (*name).to_owned(),
            from,
            to: dest.join(name),
        });
    }
    Ok(samples)
}

/// The outbox's orders, to arrive in the partner's `/incoming`.
pub fn orders(outbox: &Path, partner_incoming: &Path) -> std::io::Result<Vec<Sample>> {
    write(
        outbox,
        partner_incoming,
        "order",
        &[
            ("orders-0001.csv", 40),
            ("orders-0002.csv", 2_000),
            ("orders-0003-large.csv", 120_000),
        ],
    )
}

/// The partner's statements, to arrive in the local inbox.
pub fn statements(partner_outgoing: &Path, inbox: &Path) -> std::io::Result<Vec<Sample>> {
    write(
        partner_outgoing,
        inbox,
        "statement",
        &[
            ("statement-2026-11.csv", 500),
            ("statement-2026-12.csv", 800),
            ("statement-2026-12-detail.csv", 60_000),
        ],
    )
}
