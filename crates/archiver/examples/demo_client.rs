//! The demo's producer and observer (scripts/demo.sh), not part of the product: publishes
//! sample report events to the worker's queue, waits (bounded) for each one's result
//! event on `archiver.results`, and prints each outcome with its S3 keys, and for a
//! dead-lettered event the dead-letter queue and the `x-archiver-reason` found there.
//!
//! Usage: demo_client --queue QUEUE --media https://localhost:PORT [--timeout SECS] FILE...
//! The broker is `ARCHIVER_AMQP_URL`. `@MEDIA@` in a file is replaced by the --media URL.
//! Exit 0 when every event was accounted for, 1 otherwise.

use std::collections::BTreeMap;
use std::future::Future;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};

const CALL_TIMEOUT: Duration = Duration::from_secs(10);

struct Args {
    queue: String,
    media: String,
    timeout: Duration,
    files: Vec<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let (mut queue, mut media, mut timeout, mut files) = (None, None, Duration::from_secs(120), Vec::new());
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--queue" => queue = args.next(),
            "--media" => media = args.next(),
            "--timeout" => {
                let secs = args
                    .next()
                    .and_then(|s| s.parse().ok())
                    .ok_or("--timeout needs a number of seconds")?;
                timeout = Duration::from_secs(secs);
            }
            _ => files.push(arg),
        }
    }
    Ok(Args {
        queue: queue.ok_or("--queue is required")?,
        media: media.ok_or("--media is required")?,
        timeout,
        files,
    })
}

async fn bounded<T>(what: &str, call: impl Future<Output = lapin::Result<T>>) -> Result<T, String> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(format!("{what}: {err}")),
        Err(_) => Err(format!("{what}: no answer within {CALL_TIMEOUT:?}")),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(err) => {
            eprintln!("demo_client: {err}");
            ExitCode::from(2)
        }
    }
}

async fn run() -> Result<bool, String> {
    let args = parse_args()?;
    let url = std::env::var("ARCHIVER_AMQP_URL").map_err(|_| "ARCHIVER_AMQP_URL is not set")?;
    let connection = bounded("connect", Connection::connect(&url, ConnectionProperties::default())).await?;
    let channel = bounded("open channel", connection.create_channel()).await?;
    bounded("confirm select", channel.confirm_select(Default::default())).await?;

    // A private queue bound to every result, read before anything is published.
    let tap = bounded(
        "declare the results tap",
        channel.queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        ),
    )
    .await?;
    bounded(
        "bind the results tap",
        channel.queue_bind(
            tap.name().clone(),
            "archiver.results".into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        ),
    )
    .await?;
    let mut results = bounded(
        "read results",
        channel.basic_consume(
            tap.name().clone(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        ),
    )
    .await?;

    // Message ids unique to this run, so earlier runs' results and dead letters are ignored.
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let mut pending = BTreeMap::new();
    for file in &args.files {
        let name = std::path::Path::new(file)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let body = std::fs::read_to_string(file).map_err(|err| format!("cannot read {file}: {err}"))?;
        let body = body.replace("@MEDIA@", &args.media);
        let message_id = format!("demo-{}-{name}", now.as_millis());
        let properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(2)
            .with_message_id(message_id.as_str().into())
            .with_timestamp(now.as_secs());
        let confirm = bounded(
            "publish",
            channel.basic_publish(
                "".into(),
                args.queue.as_str().into(),
                BasicPublishOptions::default(),
                body.as_bytes(),
                properties,
            ),
        )
        .await?;
        if !bounded("publisher confirm", confirm).await?.is_ack() {
            return Err(format!("the broker refused {name}"));
        }
        println!("published {name}");
        pending.insert(message_id, name);
    }

    println!("\nwaiting up to {}s for the worker...\n", args.timeout.as_secs());
    let mut outcomes = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + args.timeout;
    while outcomes.len() < pending.len() {
        let next = match tokio::time::timeout_at(deadline, results.next()).await {
            Ok(Some(Ok(delivery))) => delivery,
            Ok(Some(Err(err))) => return Err(format!("reading results: {err}")),
            Ok(None) | Err(_) => break,
        };
        let Some(correlation) = next.properties.correlation_id().as_ref().map(|id| id.to_string()) else {
            continue;
        };
        if let Some(name) = pending.get(&correlation) {
            let result: serde_json::Value = serde_json::from_slice(&next.data).unwrap_or_default();
            outcomes.insert(name.clone(), (correlation, result));
        }
    }

    let dlq = format!("{}.dlq", args.queue);
    let reasons = dead_letter_reasons(&connection, &dlq, &pending).await?;
    for name in pending.values() {
        match outcomes.get(name) {
            Some((message_id, result)) => print_outcome(name, result, &dlq, reasons.get(message_id)),
            None => println!(
                "{name:<26} NO RESULT within {}s (see the worker's log)",
                args.timeout.as_secs()
            ),
        }
    }
    let _ = connection.close(200, "done".into()).await;
    Ok(outcomes.len() == pending.len())
}

fn print_outcome(name: &str, result: &serde_json::Value, dlq: &str, dead_letter_reason: Option<&String>) {
    let text = |field: &str| result[field].as_str().unwrap_or("-").to_owned();
    println!(
        "{name:<26} {:<14} session {} tenant {}",
        text("outcome"),
        text("session_id"),
        text("tenant")
    );
    println!("    manifest      {}", text("manifest_key"));
    if let Some(media) = result["media"].as_object() {
        for (kind, entry) in media {
            let status = entry["status"].as_str().unwrap_or("-");
            let detail = entry["key"].as_str().or(entry["reason"].as_str()).unwrap_or("");
            println!("    {kind:<13} {status:<9} {detail}");
        }
    }
    if let Some(reason) = dead_letter_reason {
        println!("    dead-letter queue {dlq}");
        println!("    x-archiver-reason {reason}");
    }
    println!();
}

/// The `x-archiver-reason` of this run's messages in the dead-letter queue, by message id.
/// Messages are read without acknowledging them, then the channel is closed, which puts
/// them all back: the demo leaves the dead-letter queue as it found it.
async fn dead_letter_reasons(
    connection: &Connection,
    dlq: &str,
    pending: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, String> {
    let channel: Channel = bounded("open channel", connection.create_channel()).await?;
    let mut reasons = BTreeMap::new();
    while let Some(message) = bounded(
        "read the dead-letter queue",
        channel.basic_get(dlq.into(), BasicGetOptions::default()),
    )
    .await?
    {
        let properties = &message.delivery.properties;
        let Some(message_id) = properties.message_id().as_ref().map(|id| id.to_string()) else {
            continue;
        };
        if !pending.contains_key(&message_id) {
            continue;
        }
        let reason = properties
            .headers()
            .as_ref()
            .and_then(|headers| match headers.inner().get("x-archiver-reason") {
                Some(AMQPValue::LongString(text)) => Some(String::from_utf8_lossy(text.as_bytes()).into_owned()),
                _ => None,
            });
        reasons.insert(
            message_id,
            reason.unwrap_or_else(|| "(no x-archiver-reason header)".to_owned()),
        );
    }
    let _ = bounded("return the dead letters", channel.close(200, "done".into())).await;
    Ok(reasons)
}
