//! The worker benchmark's driver (bench/worker.sh), not part of the product: publishes
//! report events to a running `archiver worker`, at a given rate or all at once, and
//! measures from each publish to its result event on `archiver.results` (which the worker
//! publishes only after the manifest is written). Prints one JSON object.
//!
//! Usage: bench_worker --queue QUEUE --media https://localhost:PORT --events N
//!        [--rate EVENTS_PER_SEC] [--bytes-per-event BYTES] [--timeout SECS]
//!        [--video NAME] [--hostile-bytes BYTES]
//! The media server must serve /source.jpg, /target.jpg and /video.mp4 (or /NAME).
//! `--hostile-bytes` first publishes one JSON message of that size (bench/memory.sh: as
//! large as the broker accepts), which the worker must refuse without parsing it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use serde_json::json;

fn arg<T: std::str::FromStr>(name: &str, default: Option<T>) -> T {
    let args: Vec<String> = std::env::args().collect();
    let value = args
        .iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok());
    value.or(default).unwrap_or_else(|| {
        eprintln!("bench_worker: {name} is required");
        std::process::exit(2)
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let queue: String = arg("--queue", None);
    let media: String = arg("--media", None);
    let events: usize = arg("--events", None);
    let rate: f64 = arg("--rate", Some(0.0));
    let bytes_per_event: u64 = arg("--bytes-per-event", Some(0));
    let timeout = Duration::from_secs(arg("--timeout", Some(600)));
    let video: String = arg("--video", Some("video.mp4".to_string()));
    let hostile_bytes: usize = arg("--hostile-bytes", Some(0));
    let url = std::env::var("ARCHIVER_AMQP_URL")?;
    let call = Duration::from_secs(10);

    let connection = tokio::time::timeout(call, Connection::connect(&url, ConnectionProperties::default())).await??;
    let channel = connection.create_channel().await?;
    channel.confirm_select(Default::default()).await?;
    let tap = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_bind(
            tap.name().clone(),
            "archiver.results".into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let reader = connection.create_channel().await?;
    let mut results = reader
        .basic_consume(
            tap.name().clone(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;

    let run = format!("{:08x}", std::process::id());
    let started = Instant::now();
    let publisher = {
        let channel = channel.clone();
        let (queue, media, run) = (queue.clone(), media.clone(), run.clone());
        tokio::spawn(async move {
            let mut sent = HashMap::new();
            if hostile_bytes > 0 {
                // A JSON object padded to the size asked for; its result event is not counted.
                let pad = "x".repeat(hostile_bytes.saturating_sub(11));
                let body = format!(r#"{{"pad": "{pad}"}}"#).into_bytes();
                let properties = BasicProperties::default()
                    .with_content_type("application/json".into())
                    .with_delivery_mode(2)
                    .with_message_id(format!("hostile-{run}").as_str().into());
                let confirm = channel
                    .basic_publish(
                        "".into(),
                        queue.as_str().into(),
                        BasicPublishOptions::default(),
                        &body,
                        properties,
                    )
                    .await;
                match confirm {
                    Ok(confirm) => {
                        let _ = confirm.await;
                    }
                    Err(err) => eprintln!("bench_worker: the hostile message was not published: {err}"),
                }
            }
            for n in 0..events {
                if rate > 0.0 {
                    let due = started + Duration::from_secs_f64(n as f64 / rate);
                    tokio::time::sleep_until(due.into()).await;
                }
                let event = json!({
                    "session_id": format!("{run}-0000-4000-8000-{n:012x}"),
                    "tenant": "bench",
                    "face": {
                        "status": "Approved", "face_match_status": "Approved", "liveness_status": "Approved",
                        "face_match_similarity": 99.0, "liveness_confidence": 99.0,
                        "source_image": format!("{media}/source.jpg"),
                        "target_image": format!("{media}/target.jpg"),
                        "video_url": format!("{media}/{video}"),
                    }
                });
                let id = format!("bench-{run}-{n}");
                let properties = BasicProperties::default()
                    .with_content_type("application/json".into())
                    .with_delivery_mode(2)
                    .with_message_id(id.as_str().into());
                let body = serde_json::to_vec(&event).unwrap_or_default();
                sent.insert(id, Instant::now());
                let confirm = channel
                    .basic_publish(
                        "".into(),
                        queue.as_str().into(),
                        BasicPublishOptions::default(),
                        &body,
                        properties,
                    )
                    .await;
                if let Ok(confirm) = confirm {
                    let _ = confirm.await;
                }
            }
            sent
        })
    };

    let mut done: HashMap<String, (Instant, bool)> = HashMap::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while done.len() < events {
        let Ok(Some(Ok(delivery))) = tokio::time::timeout_at(deadline, results.next()).await else {
            break;
        };
        let Some(id) = delivery.properties.correlation_id().as_ref().map(|id| id.to_string()) else {
            continue;
        };
        if id.starts_with(&format!("bench-{run}-")) {
            let archived = delivery.routing_key.as_str() == "archived";
            done.entry(id).or_insert((Instant::now(), archived));
        }
    }
    let sent = publisher.await?;
    let wall = done
        .values()
        .map(|(at, _)| *at)
        .max()
        .map_or(Duration::ZERO, |last| last - started);
    let mut latencies: Vec<f64> = done
        .iter()
        .filter_map(|(id, (at, _))| sent.get(id).map(|published| (*at - *published).as_secs_f64()))
        .collect();
    latencies.sort_by(f64::total_cmp);
    let quantile = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q).ceil() as usize).saturating_sub(1))
            .copied()
    };
    let archived = done.values().filter(|(_, archived)| *archived).count();
    let secs = wall.as_secs_f64().max(f64::EPSILON);
    println!(
        "{}",
        json!({
            "events": events,
            "archived": archived,
            "not_archived": done.len() - archived,
            "missing": events - done.len(),
            "rate_asked": rate,
            "wall_secs": secs,
            "events_per_sec": archived as f64 / secs,
            "mb_per_sec": (archived as u64 * bytes_per_event) as f64 / secs / 1e6,
            "p50_secs": quantile(0.50),
            "p99_secs": quantile(0.99),
        })
    );
    let _ = connection.close(200, "done".into()).await;
    Ok(())
}
