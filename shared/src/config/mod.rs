//! ferry's configuration: one directory, loaded and validated once into typed values.
//!
//! ```text
//! DIR/ferry.yaml         fleet-wide settings (optional: absent means all defaults)
//! DIR/partners/*.yaml    one partner each (FTPS server, login, TLS trust)
//! DIR/flows/*.yaml       each with a top-level `flows:` map of flow id -> flow
//! ```
//!
//! [`Config::load`] reads it all and reports every problem at once ([`ConfigErrors`]), each
//! with its file, line, column and field path, in sentences an operator can act on.
//! Relative `local.path`s of flows resolve against DIR. Environment variables named in
//! [`Settings`] (`FERRY_BROKER_URL`, `VAULT_ADDR`, ...) are read only for fields absent
//! from `ferry.yaml`. Nothing downstream reads YAML or the environment again.
//! `.yml` files are read too; files starting with `.` are ignored.

mod after_transfer;
mod done_marker;
mod error;
mod flow;
mod flow_limits;
mod notify;
mod partner;
mod settings;
mod summary;
mod trigger;
mod yaml;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use after_transfer::{AfterTransfer, Archive, ErrorFolder, OnFailure};
pub use done_marker::DoneMarker;
pub use error::{ConfigError, ConfigErrors};
pub use flow::{Direction, FileSelector, Flow, IdempotencyMode, RemoteEndpoint, Schedule};
pub use flow_limits::{FileOrder, FlowLimits};
pub use notify::{
    DEFAULT_WEBHOOK_ATTEMPTS, DEFAULT_WEBHOOK_TIMEOUT, FlowNotify, NotifyEvent, Webhook,
    WebhookUrlError, check_url,
};
pub use partner::{
    ClientIdentity, FtpsAuth, FtpsConnection, FtpsPartner, FtpsTls, ListingEncoding, Partner,
    TlsVersion, TrustMode,
};
pub use settings::{
    AuditSettings, BrokerSettings, CatchUp, DEFAULT_BROKER_URL, DEFAULT_REDIS_URL,
    HttpTriggerSettings, RedisSettings, RedisTopology, RetrySettings, SchedulerSettings, Settings,
    StoreKind, StoreSettings, TelemetrySettings, WorkerSettings, redact_url,
};
pub use summary::render_summary;
pub use trigger::{DEFAULT_RESCAN_EVERY, DEFAULT_SETTLE, FlowTrigger};

use yaml::{Cx, Field, Loc, Node};

/// A loaded, validated configuration directory.
#[derive(Debug, Clone)]
pub struct Config {
    /// The configuration directory, absolute.
    pub dir: PathBuf,
    /// `ferry.yaml`, defaults applied.
    pub settings: Settings,
    /// Partners by id.
    pub partners: BTreeMap<String, Partner>,
    /// Flows by id; each flow's partner is in `partners`.
    pub flows: BTreeMap<String, Flow>,
}

impl Config {
    /// Loads and validates the directory `dir`, with the process environment for the
    /// fallbacks of `ferry.yaml`.
    pub fn load(dir: &Path) -> Result<Config, ConfigErrors> {
        Config::load_with_env(dir, &|name| std::env::var(name).ok())
    }

    /// Like [`Config::load`], with `env` in place of the process environment (for tests
    /// and tools that must not depend on the caller's environment).
    pub fn load_with_env(
        dir: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigErrors> {
        let mut errors = Vec::new();
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        if !dir.is_dir() {
            errors.push(ConfigError {
                file: dir.clone(),
                line: None,
                column: None,
                field: String::new(),
                message: "the configuration directory does not exist or is not a directory"
                    .to_string(),
            });
            return Err(ConfigErrors::new(errors));
        }

        let settings_file = PathBuf::from("ferry.yaml");
        let (settings, secret_rules) = {
            let mut cx = Cx::new(&settings_file, &mut errors);
            let root = match std::fs::read_to_string(dir.join(&settings_file)) {
                Ok(text) => yaml::parse(&mut cx, &text),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
                Err(err) => {
                    cx.error(Loc::default(), "", format!("cannot read the file: {err}"));
                    None
                }
            };
            let (mut settings, rules) = settings::read(&mut cx, root.as_ref(), env);
            settings.store.resolve_against(&dir);
            (settings, rules)
        };

        let mut partners = BTreeMap::new();
        let mut partner_files: BTreeMap<String, PathBuf> = BTreeMap::new();
        for file in yaml_files(&dir, "partners", &mut errors) {
            let mut cx = Cx::new(&file, &mut errors);
            let Some(root) = read_yaml(&mut cx, &dir) else {
                continue;
            };
            let (partner, id) = partner::read(&mut cx, &root, secret_rules);
            if let Some((id, loc)) = id
                && !claim_id(&mut cx, &mut partner_files, &id, loc, "partner")
            {
                continue;
            }
            if let Some(partner) = partner {
                partners.insert(partner.id.clone(), partner);
            }
        }

        let mut flows = BTreeMap::new();
        let mut flow_files: BTreeMap<String, PathBuf> = BTreeMap::new();
        let context = flow::FlowContext {
            dir: &dir,
            settings: &settings,
            partner_ids: &partner_files,
            secret_rules,
        };
        for file in yaml_files(&dir, "flows", &mut errors) {
            let mut cx = Cx::new(&file, &mut errors);
            let Some(root) = read_yaml(&mut cx, &dir) else {
                continue;
            };
            let (file_flows, ids) = flow::read_file(&mut cx, &root, &context);
            let mut duplicates = Vec::new();
            for (id, loc) in ids {
                if !claim_id(&mut cx, &mut flow_files, &id, loc, "flow") {
                    duplicates.push(id);
                }
            }
            for flow in file_flows {
                if !duplicates.contains(&flow.id) {
                    flows.insert(flow.id.clone(), flow);
                }
            }
        }

        if !errors.is_empty() {
            return Err(ConfigErrors::new(errors));
        }
        Ok(Config {
            dir,
            settings,
            partners,
            flows,
        })
    }

    /// The partner a flow transfers with (always present in a loaded configuration).
    pub fn partner_of(&self, flow: &Flow) -> Option<&Partner> {
        self.partners.get(&flow.remote.partner)
    }
}

/// The `.yaml`/`.yml` files of `DIR/sub`, sorted, relative to DIR; none when `sub` is absent.
fn yaml_files(dir: &Path, sub: &str, errors: &mut Vec<ConfigError>) -> Vec<PathBuf> {
    let entries = match std::fs::read_dir(dir.join(sub)) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(err) => {
            errors.push(ConfigError {
                file: PathBuf::from(sub),
                line: None,
                column: None,
                field: String::new(),
                message: format!("cannot read the directory: {err}"),
            });
            return Vec::new();
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            let hidden = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_none_or(|n| n.starts_with('.'));
            let yaml = path
                .extension()
                .is_some_and(|ext| ext == "yaml" || ext == "yml");
            !hidden && yaml && path.is_file()
        })
        .filter_map(|path| path.file_name().map(|name| Path::new(sub).join(name)))
        .collect();
    files.sort();
    files
}

/// Reads and parses the file of `cx`; `None` (with the error recorded) when unreadable,
/// invalid or empty.
fn read_yaml(cx: &mut Cx<'_>, dir: &Path) -> Option<Node> {
    match std::fs::read_to_string(dir.join(cx.file())) {
        Ok(text) => {
            let errors_before = cx.error_count();
            let root = yaml::parse(cx, &text);
            if root.is_none() && cx.error_count() == errors_before {
                cx.error(Loc::START, "", "the file is empty (or holds only comments)");
            }
            root
        }
        Err(err) => {
            cx.error(Loc::default(), "", format!("cannot read the file: {err}"));
            None
        }
    }
}

/// Records `id` as defined by the file of `cx`; a duplicate is an error naming both files.
fn claim_id(
    cx: &mut Cx<'_>,
    seen: &mut BTreeMap<String, PathBuf>,
    id: &str,
    loc: Loc,
    kind: &str,
) -> bool {
    if let Some(first) = seen.get(id) {
        let field = if kind == "flow" {
            format!("flows.{id}")
        } else {
            "id".to_string()
        };
        cx.error(
            loc,
            &field,
            format!(
                "duplicate {kind} id `{id}`: {} already defines it; ids must be unique",
                first.display()
            ),
        );
        return false;
    }
    seen.insert(id.to_string(), cx.file().to_path_buf());
    true
}

/// Whether `text` is a valid id: the routing-key rule of flow-run messages
/// ([`crate::message::is_valid_flow_id`]), for partners as for flows.
fn is_valid_id(text: &str) -> bool {
    crate::message::is_valid_flow_id(text)
}

/// Checks an id written in `field`, recording why it is refused.
fn check_id(cx: &mut Cx<'_>, field: Field<'_>, id: &str, kind: &str) -> bool {
    let ok = is_valid_id(id);
    if !ok {
        field.error(
            cx,
            format!(
                "the {kind} id `{id}` must start with a letter or digit and use only letters, digits, `.`, `_` and `-`, at most 128 characters (it is a routing key and part of Redis key names)"
            ),
        );
    }
    ok
}

/// Reads an id field (text, then [`check_id`]).
fn read_id(cx: &mut Cx<'_>, field: Field<'_>, kind: &str) -> Option<String> {
    let id = field.str(cx)?;
    check_id(cx, field, &id, kind).then_some(id)
}
