//! `ferry-shared`: everything ferry's two binaries share.
//!
//! One module per concern, each owning its own I/O and its own error type:
//!
//! | module        | concern                                                        |
//! |---------------|----------------------------------------------------------------|
//! | [`backoff`]   | exponential backoff with jitter for reconnects                 |
//! | [`config`]    | load and validate `ferry.yaml`, `partners/`, `flows/`          |
//! | [`secrets`]   | secret references and their resolution (env, file, Vault, AWS) |
//! | [`ftps`]      | the FTPS client: sessions, trust, streaming transfers          |
//! | [`http_trigger`] | `POST /v1/flows/{flow}/runs`: upstream systems request runs      |
//! | [`idempotency`] | the Redis store: claims, delivery records, flow locks        |
//! | [`message`]   | the versioned flow-run message                                 |
//! | [`notify`]    | flow webhooks: failure, dead letter and success notifications |
//! | [`broker`]    | RabbitMQ topology, publishing with confirms, consuming         |
//! | [`ops_http`]  | `/healthz`, `/readyz` and `/metrics` of both binaries           |
//! | [`run_requests`] | where a requested run goes: RabbitMQ, or the local run queue |
//! | [`run_queue`] | a single node's persisted run queue (retries, dead letters)   |
//! | [`schedule`]  | the tick loop: a run per scheduled flow and cron tick          |
//! | [`telemetry`] | tracing subscriber, OpenTelemetry export, propagation          |
//! | [`startup`]   | a binary's connections at start, built from the configuration  |
//! | [`transfer`]  | the flow-run engine that composes the modules above           |
//! | [`crash_point`] | named places where the kill drills crash the process         |

pub mod arrival;
pub mod audit;
pub mod backoff;
pub mod broker;
pub mod config;
pub mod crash_point;
pub mod ftps;
pub mod http_trigger;
pub mod idempotency;
pub mod message;
pub mod notify;
pub mod ops_http;
pub mod run_queue;
pub mod run_requests;
pub mod schedule;
pub mod secrets;
pub mod startup;
pub mod telemetry;
pub mod transfer;
