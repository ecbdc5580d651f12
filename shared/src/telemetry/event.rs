//! The lifecycle events of the two processes, as a closed set.
//!
//! A log line's message is for people and may be reworded; what a program looks for (an
//! operator's alert on logs, a supervisor waiting for a worker to consume, a test) is the
//! line's `event` field, one of the words below, which stays. Each log site that marks one of
//! these moments writes `event = LogEvent::X.as_str()` next to its message.

/// A moment in a process's life that something outside it may wait for or alert on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogEvent {
    /// A worker's consumer is subscribed to the work queue (at start and after each
    /// reconnect).
    Consuming,
    /// A worker finished its shutdown.
    WorkerStopped,
    /// The scheduler's tick loop started.
    SchedulerStarted,
    /// A flow-run message was published and confirmed by RabbitMQ (a tick or a trigger).
    FlowRunPublished,
    /// A tick's flow-run could not be published; the tick stays pending.
    FlowRunNotPublished,
    /// A replica took over a tick another replica claimed but never published.
    TickTakenOver,
    /// A publish got no confirm in time and is being sent again.
    PublishRetried,
    /// A flow-run message was settled by the worker (acked, retried or dead-lettered).
    FlowRunSettled,
    /// A flow-run was sent to a delay queue for another attempt.
    FlowRunRetryScheduled,
    /// A flow-run message was moved to the dead-letter queue.
    FlowRunDeadLettered,
    /// The arrival trigger watches a flow's local folder (inotify, plus the rescan).
    ArrivalWatching,
    /// The arrival trigger could not watch a flow's folder (missing, inotify limit); it
    /// falls back to the periodic rescan and tries the watch again at each rescan.
    ArrivalWatchFailed,
    /// New, stable files in a flow's folder made the arrival trigger request a run.
    ArrivalRunRequested,
    /// The arrival trigger's request of a run could not be queued; it is tried again.
    ArrivalRunNotRequested,
    /// A flow webhook answered a notification with 2xx.
    WebhookDelivered,
    /// A flow webhook notification was given up (attempts spent, refused, unusable URL) or
    /// dropped.
    WebhookFailed,
}

impl LogEvent {
    /// The `event` field's value.
    pub const fn as_str(self) -> &'static str {
        match self {
            LogEvent::Consuming => "consuming",
            LogEvent::WorkerStopped => "worker_stopped",
            LogEvent::SchedulerStarted => "scheduler_started",
            LogEvent::FlowRunPublished => "flow_run_published",
            LogEvent::FlowRunNotPublished => "flow_run_not_published",
            LogEvent::TickTakenOver => "tick_taken_over",
            LogEvent::PublishRetried => "publish_retried",
            LogEvent::FlowRunSettled => "flow_run_settled",
            LogEvent::FlowRunRetryScheduled => "flow_run_retry_scheduled",
            LogEvent::FlowRunDeadLettered => "flow_run_dead_lettered",
            LogEvent::ArrivalWatching => "arrival_watching",
            LogEvent::ArrivalWatchFailed => "arrival_watch_failed",
            LogEvent::ArrivalRunRequested => "arrival_run_requested",
            LogEvent::ArrivalRunNotRequested => "arrival_run_not_requested",
            LogEvent::WebhookDelivered => "webhook_delivered",
            LogEvent::WebhookFailed => "webhook_failed",
        }
    }
}

impl std::fmt::Display for LogEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
