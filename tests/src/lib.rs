//! ferry's test bed: real servers on free loopback ports, started by the tests themselves.
//!
//! Every server a test needs (FTPS servers, OpenBao, moto) is started here as a child
//! process on free ports of 127.0.0.1, with its own temporary directory, and stopped when
//! its handle is dropped, so tests run in parallel and leave nothing behind. The binaries
//! come from `scripts/setup-test-env`; when one is missing the error says so.

pub mod audit_trail;
pub mod bed;
pub mod embedded;
pub mod fleet;
pub mod fleet_process;
pub mod ftp;
pub mod ftps_client;
pub mod http_client;
pub mod keyspace;
pub mod log_lines;
pub mod moto;
pub mod otlp_collector;
pub mod otlp_metrics;
pub mod pki;
pub mod ports;
pub mod process;
pub mod prometheus;
pub mod prometheus_server;
pub mod rabbitmq;
pub mod redis;
pub mod redis_cluster;
pub mod span_index;
pub mod standalone;
pub mod store_target;
pub mod tools;
pub mod traced_fleet;
pub mod vault;
pub mod webhook_receiver;
