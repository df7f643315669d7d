//! The webhook benchmark's driver (bench/webhook.sh), not part of the product: sends signed
//! decided webhooks, as the vendor does, to a running `archiver webhook`, CONCURRENCY at a
//! time, and measures each from send to its answer (200 only after the broker's confirm).
//! Prints one JSON object.
//!
//! Usage: bench_webhook --url http://127.0.0.1:PORT/webhooks/TENANT --secret SECRET
//!        --requests N [--concurrency C] [--media https://media.example]

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use hmac::{Hmac, Mac as _};
use serde_json::json;
use sha2::Sha256;

fn arg<T: std::str::FromStr>(name: &str, default: Option<T>) -> T {
    let args: Vec<String> = std::env::args().collect();
    let value = args
        .iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok());
    value.or(default).unwrap_or_else(|| {
        eprintln!("bench_webhook: {name} is required");
        std::process::exit(2)
    })
}

#[tokio::main]
async fn main() {
    let url: String = arg("--url", None);
    let secret: String = arg("--secret", None);
    let requests: usize = arg("--requests", None);
    let concurrency: usize = arg("--concurrency", Some(16));
    let media: String = arg("--media", Some("https://media.vendor.example".to_string()));
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(concurrency)
        .build()
        .expect("an HTTP client");
    let run = format!("{:08x}", std::process::id());
    let started = Instant::now();
    let answers: Vec<(u16, Duration)> = futures::stream::iter(0..requests)
        .map(|n| {
            let (client, url, secret, media) = (&client, &url, &secret, &media);
            let session = format!("{}-{}-4000-8000-{n:012x}", &run[..8], "0000");
            async move {
                let body = serde_json::to_vec(&json!({
                    "session_id": session, "status": "Approved", "webhook_type": "status.updated",
                    "decision": {"face": {
                        "status": "Approved", "face_match_status": "Approved", "liveness_status": "Approved",
                        "face_match_similarity": 97.1, "liveness_confidence": 98.4,
                        "source_image": format!("{media}/source.jpg?X-Amz-Signature=bench"),
                        "target_image": format!("{media}/target.jpg?X-Amz-Signature=bench"),
                        "video_url": format!("{media}/video.mp4?X-Amz-Signature=bench")
                    }}
                }))
                .expect("a body");
                let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
                mac.update(&body);
                let signature: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
                let timestamp = time::OffsetDateTime::now_utc().unix_timestamp().to_string();
                let sent = Instant::now();
                let status = client
                    .post(url.as_str())
                    .header("content-type", "application/json")
                    .header("x-timestamp", timestamp)
                    .header("x-signature", signature)
                    .body(body)
                    .send()
                    .await
                    .map(|answer| answer.status().as_u16())
                    .unwrap_or(0);
                (status, sent.elapsed())
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let seconds = started.elapsed().as_secs_f64();
    let queued = answers.iter().filter(|(status, _)| *status == 200).count();
    let mut latencies: Vec<f64> = answers.iter().map(|(_, took)| took.as_secs_f64() * 1000.0).collect();
    latencies.sort_by(f64::total_cmp);
    let percentile = |p: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(0.0)
    };
    println!(
        "{}",
        json!({
            "requests": requests, "queued": queued, "concurrency": concurrency,
            "seconds": (seconds * 100.0).round() / 100.0,
            "webhooks_per_sec": ((queued as f64 / seconds) * 10.0).round() / 10.0,
            "p50_ms": (percentile(0.5) * 10.0).round() / 10.0, "p99_ms": (percentile(0.99) * 10.0).round() / 10.0,
        })
    );
    if queued != requests {
        eprintln!("bench_webhook: {} of {requests} answered 200", queued);
        std::process::exit(1);
    }
}
