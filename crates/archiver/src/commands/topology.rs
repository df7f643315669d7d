//! `archiver topology`: declares the queues and exchanges (CONTRACT.md section 4), prints
//! what it declared as one JSON object, then exits.

use serde_json::json;

use crate::broker::{self, bounded, connect, DeadLetterQueue, RESULTS_EXCHANGE};
use crate::cli::Settings;
use crate::config::Problems;
use crate::exit::{CommandError, Outcome};

pub async fn run(settings: &Settings) -> Result<Outcome, CommandError> {
    let mut problems = Problems::default();
    let topology = crate::worker::config::topology(settings, &mut problems);
    let tls = crate::config::broker_tls(settings, &mut problems);
    problems.finish()?;
    crate::logging::init(&settings.log_format)?;

    let declare = async {
        let connection = connect(&settings.amqp_url, &tls, "topology").await?;
        let found = topology.declare(&connection).await?;
        let _ = bounded("close the connection", connection.close(200, "declared".into())).await;
        Ok::<_, broker::BrokerError>(found)
    };
    let found = declare.await.map_err(|err| CommandError::Failed(err.into()))?;
    // What keeps the dead-letter queue from dropping what it holds (docs/operations.md):
    // `unlimited` (RabbitMQ 4), `parking` (3.x or an unknown version), or `kept` (it
    // existed with other arguments; the log names the operator step).
    let dead_letter_queue_shape = match found {
        DeadLetterQueue::Declared(shape) => shape.as_str(),
        DeadLetterQueue::KeptAsItWas => "kept",
    };
    let declared = json!({
        "broker_version": broker::BrokerVersion::last_seen().map(|version| version.to_string()),
        "dead_letter_queue_shape": dead_letter_queue_shape,
        "queue": topology.queue,
        "delivery_limit": topology.delivery_limit,
        "dead_letter_exchange": topology.dead_letter_exchange(),
        "dead_letter_queue": topology.dead_letter_queue(),
        "results_exchange": RESULTS_EXCHANGE,
    });
    println!("{declared}");
    Ok(Outcome::Done)
}
