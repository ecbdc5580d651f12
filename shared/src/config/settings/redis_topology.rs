//! [`RedisTopology`]: which kind of Redis deployment ferry talks to, from `ferry.yaml`'s
//! `redis.url` (one node), `redis.cluster_nodes` (a Redis Cluster) or `redis.sentinel`
//! (a master found through Redis Sentinel), exactly one of the three.
//!
//! Why exactly one: a fleet whose workers disagree on where the claims live has no claims
//! at all (two workers could each claim the same file in a different Redis). Writing two
//! of them is a mistake that is refused at load rather than resolved by a silent rule.
//! `FERRY_REDIS_URL` and the default URL stand for `redis.url` only when neither of the
//! other two is written.

use std::fmt;

use crate::config::yaml::{Cx, Field, Map};
use crate::secrets::redact_url;

/// Where the idempotency store lives.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum RedisTopology {
    /// One node (or a proxy in front of several): `redis.url`.
    #[default]
    Single,
    /// A Redis Cluster: `redis.cluster_nodes`, the URLs of some of its nodes (the rest are
    /// discovered). Every key of one flow hashes to one slot (`{flow:<id>}`), so the store's
    /// scripts run on a cluster unchanged.
    Cluster {
        /// Seed node URLs, all `redis://` or all `rediss://`.
        nodes: Vec<String>,
    },
    /// A master found through Redis Sentinel: `redis.sentinel.master_name` and
    /// `redis.sentinel.nodes` (the sentinels' URLs). After a failover ferry asks the
    /// sentinels again.
    Sentinel {
        /// The name the sentinels monitor the master under.
        master_name: String,
        /// Sentinel URLs (`redis://host:26379`).
        nodes: Vec<String>,
    },
}

impl fmt::Debug for RedisTopology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |nodes: &[String]| nodes.iter().map(|n| redact_url(n)).collect::<Vec<_>>();
        match self {
            RedisTopology::Single => f.write_str("Single"),
            RedisTopology::Cluster { nodes } => f
                .debug_struct("Cluster")
                .field("nodes", &redacted(nodes))
                .finish(),
            RedisTopology::Sentinel { master_name, nodes } => f
                .debug_struct("Sentinel")
                .field("master_name", master_name)
                .field("nodes", &redacted(nodes))
                .finish(),
        }
    }
}

impl RedisTopology {
    /// A description safe for logs and the configuration summary (passwords redacted):
    /// `url` is the single node's URL.
    pub fn describe(&self, url: &str) -> String {
        let list = |nodes: &[String]| {
            nodes
                .iter()
                .map(|n| redact_url(n))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self {
            RedisTopology::Single => redact_url(url),
            RedisTopology::Cluster { nodes } => format!("cluster [{}]", list(nodes)),
            RedisTopology::Sentinel { master_name, nodes } => {
                format!("sentinel master `{master_name}` via [{}]", list(nodes))
            }
        }
    }
}

/// The keys of the `redis` section this file reads.
pub(crate) const KEYS: &[&str] = &["cluster_nodes", "sentinel"];
/// The keys of `redis.sentinel`.
pub(crate) const SENTINEL_KEYS: &[&str] = &["master_name", "nodes"];

/// Reads `redis.cluster_nodes` and `redis.sentinel`; errors when more than one of them and
/// `redis.url` is written. `None` when what was written could not be read (errors recorded).
pub(crate) fn read(
    cx: &mut Cx<'_>,
    redis: Option<&Map<'_>>,
    hardened: bool,
) -> Option<RedisTopology> {
    let Some(redis) = redis else {
        return Some(RedisTopology::Single);
    };
    let written: Vec<&str> = ["url", "cluster_nodes", "sentinel"]
        .into_iter()
        .filter(|k| redis.get(k).is_some())
        .collect();
    if let [_, second, ..] = written[..]
        && let Some(field) = redis.get(second)
    {
        field.error(
            cx,
            format!(
                "write exactly one of redis.url (one node), redis.cluster_nodes (a Redis Cluster) \
                 and redis.sentinel (a master found through Sentinel); found {}",
                written.join(" and ")
            ),
        );
        return None;
    }
    if let Some(field) = redis.get("cluster_nodes") {
        let nodes = urls(cx, &field, hardened)?;
        let tls = nodes.iter().filter(|n| n.starts_with("rediss://")).count();
        if tls != 0 && tls != nodes.len() {
            field.error(
                cx,
                "mixes redis:// and rediss:// nodes; a cluster is reached with TLS on every node \
                 or on none",
            );
            return None;
        }
        return Some(RedisTopology::Cluster { nodes });
    }
    if let Some(field) = redis.get("sentinel") {
        let sentinel = field.map(cx, SENTINEL_KEYS)?;
        let master_name = sentinel
            .required(cx, "master_name")
            .and_then(|f| f.non_empty_str(cx));
        let nodes = sentinel
            .required(cx, "nodes")
            .and_then(|f| urls(cx, &f, hardened));
        return Some(RedisTopology::Sentinel {
            master_name: master_name?,
            nodes: nodes?,
        });
    }
    Some(RedisTopology::Single)
}

/// A non-empty list of `redis://` / `rediss://` URLs; each bad item reported at its line.
fn urls(cx: &mut Cx<'_>, field: &Field<'_>, hardened: bool) -> Option<Vec<String>> {
    let items = field.seq(cx)?;
    if items.is_empty() {
        field.error(
            cx,
            "give at least one node URL, such as `redis://10.0.0.1:6379`",
        );
        return None;
    }
    let mut nodes = Vec::new();
    for item in &items {
        let item = item.get();
        let Some(url) = item.non_empty_str(cx) else {
            continue;
        };
        if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
            item.error(
                cx,
                "must be a URL such as `redis://host:6379` (or rediss:// for TLS)",
            );
        } else if hardened && redact_url(&url) != url {
            item.error(
                cx,
                "hardened mode forbids a password written in the configuration; remove it from \
                 the URL and set redis.password to a secret reference instead",
            );
        } else {
            nodes.push(url);
        }
    }
    (nodes.len() == items.len()).then_some(nodes)
}
