//! Schedules: the tick loop ([`Ticker`]) that requests one flow-run per scheduled flow and
//! cron tick, once across replicas, through any [`RunRequests`](crate::run_requests::RunRequests):
//! RabbitMQ for `ferry-scheduler`, the local run queue for `ferry-worker standalone`.

mod ticker;

pub use ticker::Ticker;
