//! [`Flow`]: one transfer job between a local directory and a partner's directory, read
//! from the `flows:` map of `flows/*.yaml`.
//!
//! Everything a flow-run needs is compiled here once: file patterns into glob matchers,
//! the cron text into a [`croner::Cron`] in its time zone, relative local paths into
//! absolute ones (relative to the configuration directory).

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use globset::{Glob, GlobBuilder, GlobMatcher, GlobSet, GlobSetBuilder};

use super::after_transfer::{self, AfterTransfer, OnFailure};
use super::settings::Settings;
use super::yaml::{Cx, Field, Loc, Map};

/// A transfer job: which files go where, when, and how.
#[derive(Debug, Clone)]
pub struct Flow {
    /// The key in the `flows:` map: unique, `[A-Za-z0-9._-]`.
    pub id: String,
    /// Free text for operators.
    pub description: Option<String>,
    /// `enabled` (default true): a disabled flow is never scheduled nor run.
    pub enabled: bool,
    /// Upload (local to partner) or download (partner to local).
    pub direction: Direction,
    /// The partner's side: `target` of an upload, `source` of a download.
    pub remote: RemoteEndpoint,
    /// The local directory, absolute (`local.path`, relative to the configuration directory).
    pub local_path: PathBuf,
    /// Which files to transfer: a file is selected when any selector matches it.
    pub files: Vec<FileSelector>,
    /// How a file already delivered is recognised.
    pub idempotency_mode: IdempotencyMode,
    /// Delete the source file once transferred (`delete_after_upload` of an upload,
    /// `delete_after_download` of a download); default false. True exactly when
    /// `after_transfer` is [`AfterTransfer::Delete`].
    pub delete_after_transfer: bool,
    /// What happens to the source once the delivery is recorded (`after_upload`,
    /// `after_download`; see `after_transfer.rs`).
    pub after_transfer: AfterTransfer,
    /// What happens to a file that failed for good (`on_failure`, `error_path`).
    pub on_failure: OnFailure,
    /// Replace a file already under the same name at the destination (`overwrite`): the
    /// partner's file for uploads (default true), the local file for downloads (default
    /// false). Otherwise such a file fails with `target_exists` and nothing is replaced.
    pub overwrite: bool,
    /// Take symbolic links in the local folder that point to a regular file inside it
    /// (`follow_links`, default false; refused in hardened mode). Links that leave the folder
    /// are never followed.
    pub follow_links: bool,
    /// Keep each file's modification time at the destination (`preserve_mtime`, default
    /// false): `MFMT` on the partner for uploads (where the server offers it), the remote
    /// file's time on the local copy for downloads.
    pub preserve_mtime: bool,
    /// The partner's marker-file convention (`done_marker`, see `done_marker.rs`).
    pub done_marker: Option<super::DoneMarker>,
    /// When the scheduler starts this flow; `None` means manual or event-triggered only.
    pub schedule: Option<Schedule>,
    /// Attempts per file, the first included (default `retry.max_attempts`).
    pub max_attempts: u32,
    /// Skip files modified more recently than this (still being written); default 30s.
    pub min_file_age: Duration,
    /// The longest a flow-run may take (default 5m).
    pub run_timeout: Duration,
    /// `max_files_per_run` and `order` (see `flow_limits.rs`).
    pub limits: super::flow_limits::FlowLimits,
    /// `trigger:`, the event triggers (see `trigger.rs`).
    pub trigger: super::trigger::FlowTrigger,
    /// `notify:`, the webhooks told about its runs (see `notify.rs`).
    pub notify: super::notify::FlowNotify,
    /// The file it was read from, relative to the configuration directory.
    pub source_file: PathBuf,
}

impl Flow {
    /// Whether a file (its path relative to the flow's directory) is selected by any of
    /// the flow's selectors.
    pub fn selects(&self, relative_name: impl AsRef<Path>) -> bool {
        let name = relative_name.as_ref();
        self.files.iter().any(|selector| selector.matches(name))
    }
}

/// Which way files travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Local directory to the partner.
    Upload,
    /// The partner to the local directory.
    Download,
}

impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Direction::Upload => "upload",
            Direction::Download => "download",
        })
    }
}

/// A directory on a partner's server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteEndpoint {
    /// The partner's id (known to exist in [`super::Config::partners`]).
    pub partner: String,
    /// The remote directory, as written (`/incoming/claims`).
    pub path: String,
}

/// How a flow recognises a file it has already delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdempotencyMode {
    /// By the flow, the file's name and the SHA-256 of its content (default): a rerun of
    /// the same file is a duplicate, changed content is new, and so is a new name.
    Hash,
    /// By the flow and the SHA-256 of the content alone: a file whose bytes equal any file
    /// delivered within the retention is a duplicate, whatever its name. Beware: empty files
    /// and identical daily "no records" files are then never delivered under their own
    /// names (and deleted with `delete_after_upload`).
    Content,
    /// By the flow, the file name, its size and its modification time (no extra read).
    Name,
    /// No record: every run transfers every selected file.
    None,
}

impl std::fmt::Display for IdempotencyMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            IdempotencyMode::Hash => "hash",
            IdempotencyMode::Content => "content",
            IdempotencyMode::Name => "name",
            IdempotencyMode::None => "none",
        })
    }
}

/// One `files:` entry: a glob pattern and globs to exclude.
///
/// Globs match the path relative to the flow's directory; `*` does not cross `/`, `**`
/// does (`*.xml` selects `a.xml`, not `sub/a.xml`).
#[derive(Debug, Clone)]
pub struct FileSelector {
    /// The pattern as written (`*.xml`).
    pub pattern: String,
    /// The exclusions as written.
    pub exclude: Vec<String>,
    matcher: GlobMatcher,
    excluded: GlobSet,
}

impl FileSelector {
    /// Whether the file (path relative to the flow's directory) matches the pattern and
    /// none of the exclusions.
    pub fn matches(&self, relative_name: impl AsRef<Path>) -> bool {
        let name = relative_name.as_ref();
        self.matcher.is_match(name) && !self.excluded.is_match(name)
    }
}

/// A cron schedule in a time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// The six-field cron text as written (`0 0 8 * * 1-5`).
    pub cron_text: String,
    /// The compiled expression.
    pub cron: Cron,
    /// The zone the expression is read in (`schedule_timezone`, default UTC).
    pub timezone: Tz,
}

impl Schedule {
    /// The first fire time strictly after `after`, or `None` when there is none.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&self.timezone);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|next| next.with_timezone(&Utc))
    }
}

pub(super) const FLOW_KEYS: &[&str] = &[
    "direction",
    "enabled",
    "description",
    "target",
    "source",
    "local",
    "files",
    "idempotency_mode",
    "delete_after_upload",
    "delete_after_download",
    "overwrite",
    "follow_links",
    "preserve_mtime",
    "schedule_cron",
    "schedule_timezone",
    "max_attempts",
    "min_file_age",
    "run_timeout",
    // flow_limits::KEYS (checked by its test):
    "max_files_per_run",
    "order",
    // trigger::KEYS (checked by its test):
    "trigger",
];

/// What the flow reader needs from the rest of the configuration.
pub(crate) struct FlowContext<'a> {
    /// The configuration directory, absolute.
    pub(crate) dir: &'a Path,
    pub(crate) settings: &'a Settings,
    /// Every partner id defined in `partners/` (even by a partner with errors), with its file.
    pub(crate) partner_ids: &'a BTreeMap<String, PathBuf>,
    /// How secret-bearing flow fields (`notify`) are read.
    pub(crate) secret_rules: super::settings::SecretRules,
}

/// Reads the `flows:` map of one flow file. Returns each flow that is complete, and every
/// id with its location for the caller's duplicate check.
pub(crate) fn read_file(
    cx: &mut Cx<'_>,
    root: &super::yaml::Node,
    context: &FlowContext<'_>,
) -> (Vec<Flow>, Vec<(String, Loc)>) {
    let mut flows = Vec::new();
    let mut ids = Vec::new();
    let Some(top) = Map::root(cx, root, &["flows"]) else {
        return (flows, ids);
    };
    let Some(flows_map) = top.required(cx, "flows").and_then(|f| f.map(cx, &[])) else {
        return (flows, ids);
    };
    for (id, field) in flows_map.entries() {
        let id_ok = super::check_id(cx, field, id, "flow");
        if id_ok {
            ids.push((id.to_string(), field.loc));
        }
        let keys: Vec<&str> = FLOW_KEYS
            .iter()
            .chain(after_transfer::KEYS)
            .chain(super::done_marker::KEYS)
            .chain(super::notify::KEYS)
            .copied()
            .collect();
        let Some(map) = field.map(cx, &keys) else {
            continue;
        };
        if let Some(flow) = read_flow(cx, id, &map, context)
            && id_ok
        {
            flows.push(flow);
        }
    }
    (flows, ids)
}

fn read_flow(cx: &mut Cx<'_>, id: &str, map: &Map<'_>, context: &FlowContext<'_>) -> Option<Flow> {
    let direction = map.required(cx, "direction").and_then(|f| {
        f.choice(
            cx,
            &[
                ("upload", Direction::Upload),
                ("download", Direction::Download),
            ],
        )
    });
    let enabled = map.get("enabled").map_or(Some(true), |f| f.bool(cx));
    let description = map.get("description").and_then(|f| f.str(cx));
    let remote = read_remote(cx, map, direction, context);
    let local_path = map
        .required(cx, "local")
        .and_then(|f| f.map(cx, &["path"]))
        .and_then(|local| local.required(cx, "path").and_then(|f| f.non_empty_str(cx)))
        .map(|path| absolute_under(context.dir, Path::new(&path)));
    let files = map.required(cx, "files").and_then(|f| read_files(cx, f));
    let idempotency_mode = map
        .get("idempotency_mode")
        .map_or(Some(IdempotencyMode::Hash), |f| {
            f.choice(
                cx,
                &[
                    ("hash", IdempotencyMode::Hash),
                    ("content", IdempotencyMode::Content),
                    ("name", IdempotencyMode::Name),
                    ("none", IdempotencyMode::None),
                ],
            )
        });
    let after_transfer = direction.and_then(|d| {
        let files = files.as_deref();
        let remote = remote.as_ref().map(|r| r.path.as_str());
        after_transfer::read(
            cx,
            map,
            d,
            context.dir,
            local_path.as_deref(),
            files,
            remote,
        )
    });
    let on_failure = direction.and_then(|d| {
        let files = files.as_deref();
        let remote = remote.as_ref().map(|r| r.path.as_str());
        let local = local_path.as_deref();
        after_transfer::read_on_failure(cx, map, d, context.dir, local, files, remote)
    });
    // Uploads replace the partner's older file by default (what partners expect); downloads
    // never replace a local file by default (another flow may have delivered it).
    let overwrite_by_default = direction.is_none_or(|d| d == Direction::Upload);
    let overwrite = map
        .get("overwrite")
        .map_or(Some(overwrite_by_default), |f| f.bool(cx));
    let follow_links = map.get("follow_links").map_or(Some(false), |f| {
        let follow = f.bool(cx)?;
        if follow && context.settings.hardened_mode {
            f.error(
                cx,
                "hardened mode forbids follow_links: true; ferry never follows a symbolic link there",
            );
            return None;
        }
        Some(follow)
    });
    let preserve_mtime = map
        .get("preserve_mtime")
        .map_or(Some(false), |f| f.bool(cx));
    let done_marker = super::done_marker::read(cx, map);
    let schedule = read_schedule(cx, map);
    let max_attempts = map
        .get("max_attempts")
        .map_or(Some(context.settings.retry.max_attempts), |f| {
            f.int(cx, 1u32, 100)
        });
    let min_file_age = map
        .get("min_file_age")
        .map_or(Some(Duration::from_secs(30)), |f| f.duration(cx));
    let run_timeout = map
        .get("run_timeout")
        .map_or(Some(Duration::from_secs(300)), |f| f.positive_duration(cx));
    let limits = super::flow_limits::read(cx, map);
    let trigger = super::trigger::read(cx, map, direction);
    let notify = super::notify::read(cx, map, context.secret_rules);
    Some(Flow {
        id: id.to_string(),
        description,
        enabled: enabled?,
        direction: direction?,
        remote: remote?,
        local_path: local_path?,
        files: files?,
        idempotency_mode: idempotency_mode?,
        delete_after_transfer: after_transfer.as_ref()? == &AfterTransfer::Delete,
        after_transfer: after_transfer?,
        on_failure: on_failure?,
        overwrite: overwrite?,
        follow_links: follow_links?,
        preserve_mtime: preserve_mtime?,
        done_marker: done_marker?,
        schedule: schedule?,
        max_attempts: max_attempts?,
        min_file_age: min_file_age?,
        run_timeout: run_timeout?,
        limits: limits?,
        trigger: trigger?,
        notify: notify?,
        source_file: cx.file().to_path_buf(),
    })
}

/// `target` for an upload, `source` for a download: exactly the right one. Without a
/// valid direction, whichever is written is still checked.
fn read_remote(
    cx: &mut Cx<'_>,
    map: &Map<'_>,
    direction: Option<Direction>,
    context: &FlowContext<'_>,
) -> Option<RemoteEndpoint> {
    let Some(direction) = direction else {
        for key in ["target", "source"] {
            if let Some(field) = map.get(key) {
                read_endpoint(cx, field, context);
            }
        }
        return None;
    };
    let (wanted, other, a) = match direction {
        Direction::Upload => ("target", "source", "an"),
        Direction::Download => ("source", "target", "a"),
    };
    if let Some(f) = map.get(other) {
        f.error(
            cx,
            format!(
                "{a} {direction} flow has a `{wanted}`, not a `{other}`; the partner side of an upload is `target`, of a download `source`"
            ),
        );
    }
    let Some(field) = map.get(wanted) else {
        cx.error(
            map.loc(),
            &format!("{}.{wanted}", map.path()),
            format!("{a} {direction} flow needs `{wanted}: {{partner: ..., path: ...}}`"),
        );
        return None;
    };
    read_endpoint(cx, field, context)
}

/// `{partner, path}`; the partner must be defined in `partners/`.
fn read_endpoint(
    cx: &mut Cx<'_>,
    field: Field<'_>,
    context: &FlowContext<'_>,
) -> Option<RemoteEndpoint> {
    let endpoint = field.map(cx, &["partner", "path"])?;
    let partner = endpoint.required(cx, "partner").and_then(|f| {
        let id = f.str(cx)?;
        if !context.partner_ids.contains_key(&id) {
            f.error(cx, unknown_partner_message(&id, context.partner_ids));
            return None;
        }
        Some(id)
    });
    let path = endpoint
        .required(cx, "path")
        .and_then(|f| f.non_empty_str(cx));
    Some(RemoteEndpoint {
        partner: partner?,
        path: path?,
    })
}

fn unknown_partner_message(id: &str, partners: &BTreeMap<String, PathBuf>) -> String {
    let closest = partners
        .keys()
        .map(|k| (strsim::jaro_winkler(id, k), k))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match closest {
        Some((score, k)) if score >= 0.8 => {
            format!("no partner has the id `{id}`; did you mean `{k}`?")
        }
        _ if partners.is_empty() => {
            format!("no partner has the id `{id}` (partners/ defines none)")
        }
        _ => format!(
            "no partner has the id `{id}`; known partners: {}",
            partners.keys().cloned().collect::<Vec<_>>().join(", ")
        ),
    }
}

fn read_files(cx: &mut Cx<'_>, field: Field<'_>) -> Option<Vec<FileSelector>> {
    let items = field.seq(cx)?;
    if items.is_empty() {
        field.error(
            cx,
            "list at least one file pattern, such as `- pattern: \"*.xml\"`",
        );
        return None;
    }
    let mut selectors = Vec::new();
    let mut ok = true;
    for item in &items {
        match read_selector(cx, item.get()) {
            Some(selector) => selectors.push(selector),
            None => ok = false,
        }
    }
    ok.then_some(selectors)
}

fn read_selector(cx: &mut Cx<'_>, item: Field<'_>) -> Option<FileSelector> {
    let map = item.map(cx, &["pattern", "exclude"])?;
    let pattern = map.required(cx, "pattern").and_then(|f| {
        let text = f.non_empty_str(cx)?;
        let glob = compile_glob(cx, f, &text)?;
        Some((text, glob.compile_matcher()))
    });
    let exclude = match map.get("exclude") {
        None => Some((Vec::new(), GlobSet::empty())),
        Some(f) => f.seq(cx).and_then(|items| {
            let mut texts = Vec::new();
            let mut set = GlobSetBuilder::new();
            let mut ok = true;
            for item in &items {
                let item = item.get();
                match item
                    .non_empty_str(cx)
                    .and_then(|t| Some((compile_glob(cx, item, &t)?, t)))
                {
                    Some((glob, text)) => {
                        set.add(glob);
                        texts.push(text);
                    }
                    None => ok = false,
                }
            }
            let set = set.build().ok()?;
            ok.then_some((texts, set))
        }),
    };
    let (pattern, matcher) = pattern?;
    let (exclude, excluded) = exclude?;
    Some(FileSelector {
        pattern,
        exclude,
        matcher,
        excluded,
    })
}

fn compile_glob(cx: &mut Cx<'_>, field: Field<'_>, text: &str) -> Option<Glob> {
    match GlobBuilder::new(text).literal_separator(true).build() {
        Ok(glob) => Some(glob),
        Err(err) => {
            field.error(cx, format!("`{text}` is not a valid glob: {}", err.kind()));
            None
        }
    }
}

/// `schedule_cron` (six fields, seconds first) in `schedule_timezone` (default UTC).
/// `Some(None)`: no schedule; `None`: an error was recorded.
fn read_schedule(cx: &mut Cx<'_>, map: &Map<'_>) -> Option<Option<Schedule>> {
    let timezone = map
        .get("schedule_timezone")
        .map_or(Some(Tz::UTC), |f| f.timezone(cx));
    let Some(field) = map.get("schedule_cron") else {
        return timezone.map(|_| None);
    };
    let text = field.non_empty_str(cx)?;
    let cron = parse_cron(&text)
        .map_err(|message| field.error(cx, message))
        .ok();
    Some(Some(Schedule {
        cron_text: text,
        cron: cron?,
        timezone: timezone?,
    }))
}

/// Parses a six-field cron expression, seconds first; the error is an operator's sentence.
pub(crate) fn parse_cron(text: &str) -> Result<Cron, String> {
    let fields = text.split_whitespace().count();
    if !text.trim_start().starts_with('@') && fields != 6 {
        return Err(format!(
            "`{text}` has {fields} fields; a schedule has six, seconds first: second minute hour day-of-month month day-of-week, as in \"0 0 8 * * 1-5\" (08:00:00 Monday to Friday)"
        ));
    }
    CronParser::builder()
        .seconds(Seconds::Required)
        .year(Year::Disallowed)
        .build()
        .parse(text)
        .map_err(|err| format!("`{text}` is not a valid schedule: {err}"))
}

/// `path` made absolute against `dir` when relative, with `.` components dropped.
fn absolute_under(dir: &Path, path: &Path) -> PathBuf {
    dir.join(path)
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect()
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn cron_has_six_fields_seconds_first_and_weekdays_from_sunday_zero() {
        let cron = parse_cron("0 0 8 * * 1-5").unwrap();
        let schedule = Schedule {
            cron_text: "0 0 8 * * 1-5".into(),
            cron,
            timezone: "Europe/Paris".parse().unwrap(),
        };
        // Saturday 2026-11-28 12:00 UTC -> Monday 2026-11-30 08:00 Paris = 07:00 UTC.
        let saturday = Utc.with_ymd_and_hms(2026, 11, 28, 12, 0, 0).unwrap();
        let next = schedule.next_after(saturday).unwrap();
        assert_eq!(next, Utc.with_ymd_and_hms(2026, 11, 30, 7, 0, 0).unwrap());
        // Strictly after: at the fire time itself, the next is the following day.
        let after = schedule.next_after(next).unwrap();
        assert_eq!(after, Utc.with_ymd_and_hms(2026, 12, 1, 7, 0, 0).unwrap());
        // Seconds are honoured.
        let every_ten = parse_cron("*/10 * * * * *").unwrap();
        let t = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 1).unwrap();
        assert_eq!(
            every_ten.find_next_occurrence(&t, false).unwrap(),
            Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 10).unwrap()
        );
    }

    #[test]
    fn five_field_cron_is_refused_with_a_hint() {
        let message = parse_cron("0 8 * * 1-5").unwrap_err();
        assert!(message.contains("has 5 fields"), "{message}");
        assert!(message.contains("seconds first"), "{message}");
        assert!(parse_cron("0 0 8 * * 1-5 2027").is_err());
        assert!(parse_cron("0 0 25 * * *").is_err());
    }

    #[test]
    fn globs_do_not_cross_directories() {
        let glob = GlobBuilder::new("*.xml")
            .literal_separator(true)
            .build()
            .unwrap();
        let selector = FileSelector {
            pattern: "*.xml".into(),
            exclude: vec!["tmp-*".into()],
            matcher: glob.compile_matcher(),
            excluded: GlobSetBuilder::new()
                .add(Glob::new("tmp-*").unwrap())
                .build()
                .unwrap(),
        };
        assert!(selector.matches("a.xml"));
        assert!(!selector.matches("sub/a.xml"));
        assert!(!selector.matches("tmp-a.xml"));
        assert!(!selector.matches("a.csv"));
    }

    #[test]
    fn relative_local_paths_resolve_against_the_config_dir() {
        assert_eq!(
            absolute_under(Path::new("/etc/ferry"), Path::new("./storage/out")),
            PathBuf::from("/etc/ferry/storage/out")
        );
        assert_eq!(
            absolute_under(Path::new("/etc/ferry"), Path::new("/data/out")),
            PathBuf::from("/data/out")
        );
    }
}
