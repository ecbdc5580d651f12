//! `ferry-scheduler trigger`: publish a flow-run now, as an operator or an upstream system
//! would, and print its id.

use ferry_shared::broker::PublisherOptions;
use ferry_shared::config::Config;
use ferry_shared::message::{FlowRunMessage, Trigger};
use ferry_shared::telemetry::{self, LogEvent};
use tracing::Instrument;

use ferry_shared::startup;

/// Publishes a run of `flow_id` (manual, or event-triggered when `event_id` is given),
/// limited to `files` when not empty, and prints the flow-run id.
pub async fn run(
    config: &Config,
    flow_id: &str,
    files: Vec<String>,
    event_id: Option<String>,
) -> anyhow::Result<()> {
    if !config.flows.contains_key(flow_id) {
        anyhow::bail!("unknown flow `{flow_id}`; `ferry-scheduler validate` lists the flows");
    }
    let trigger = match event_id {
        Some(upstream_id) => Trigger::Event { upstream_id },
        None => Trigger::Manual,
    };
    let files = (!files.is_empty()).then_some(files);
    let message = FlowRunMessage::new(flow_id, trigger, files);
    let span =
        tracing::info_span!("scheduler.trigger", flow_id, flow_run_id = %message.flow_run_id);
    async {
        let broker = startup::broker(config).await?;
        let publisher = broker.publisher(PublisherOptions::default());
        publisher
            .publish(&message, &telemetry::inject_current_context())
            .await?;
        tracing::info!(
            event = LogEvent::FlowRunPublished.as_str(),
            "flow-run published"
        );
        println!("{}", message.flow_run_id);
        Ok(())
    }
    .instrument(span)
    .await
}
