//! Throughput and memory benchmark driver (bench/run.sh runs it): archives N events whose
//! media come from a local HTTPS server, CONCURRENCY at a time, through the real pipeline,
//! and prints one JSON line with the bytes moved and the wall time.
//!
//! Settings come from the same `ARCHIVER_*` variables as the binary (only those the
//! benchmark needs): it is an example, so it reads the environment itself.

use std::sync::Arc;
use std::time::{Duration, Instant};

use archive::{
    AllowedHost, ArchiveConfig, Archiver, Disposition, FetchConfig, MediaEntry, Received, Sse, SseCustomerKey,
    StoreConfig,
};
use futures::stream::{self, StreamExt};

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

fn required(name: &str) -> String {
    env(name).unwrap_or_else(|| panic!("{name} must be set (source .stack/env)"))
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [base_url, events, concurrency, label, video] = args.as_slice() else {
        eprintln!("usage: bench BASE_URL EVENTS CONCURRENCY LABEL VIDEO_PATH   (e.g. https://localhost:18444 100 8 run1 /video-2mb.mp4)");
        std::process::exit(2);
    };
    let events: usize = events.parse().expect("EVENTS is a number");
    let concurrency: usize = concurrency.parse().expect("CONCURRENCY is a number");
    let read_pem =
        |name: &str| env(name).map(|path| std::fs::read(&path).unwrap_or_else(|err| panic!("{name}: {err}")));
    let allowed: Vec<AllowedHost> = required("ARCHIVER_ALLOWED_HOSTS")
        .split(',')
        .map(|host| host.parse().expect("ARCHIVER_ALLOWED_HOSTS"))
        .collect();
    let mut fetch = FetchConfig::new(allowed, Duration::from_secs(3600), 104_857_600);
    fetch.extra_ca_pem = read_pem("ARCHIVER_SOURCE_CA_FILE").into_iter().collect();
    let config = ArchiveConfig {
        store: StoreConfig {
            bucket: required("ARCHIVER_S3_BUCKET"),
            prefix: format!("bench/{label}/"),
            endpoint: env("ARCHIVER_S3_ENDPOINT"),
            region: env("ARCHIVER_S3_REGION"),
            path_style: env("ARCHIVER_S3_PATH_STYLE").as_deref() == Some("true"),
            extra_ca_pem: read_pem("ARCHIVER_S3_CA_FILE").into_iter().collect(),
            sse: Sse::CustomerKey(
                SseCustomerKey::from_base64(&required("ARCHIVER_SSE_C_KEY")).expect("ARCHIVER_SSE_C_KEY"),
            ),
            key_id: "k1".into(),
            previous_keys: Vec::new(),
            part_size: env("BENCH_PART_SIZE").map_or(5 * 1024 * 1024, |size| size.parse().expect("BENCH_PART_SIZE")),
            operation_timeout: Duration::from_secs(120),
            object_lock: None,
        },
        fetch,
        limits: media::Limits::default(),
    };
    let archiver = Arc::new(Archiver::new(config).await.expect("set up the archiver"));
    let started = Instant::now();
    let results: Vec<(u64, bool)> = stream::iter(0..events)
        .map(|index| {
            let archiver = archiver.clone();
            let body = serde_json::json!({
                "session_id": format!("00000000-0000-4000-8000-{index:012}"),
                "tenant": "bench",
                "face": {
                    "status": "Approved", "face_match_status": "Approved", "liveness_status": "Approved",
                    "face_match_similarity": 99.0, "liveness_confidence": 99.0,
                    "source_image": format!("{base_url}/source.jpg?event={index}"),
                    "target_image": format!("{base_url}/target.jpg?event={index}"),
                    "video_url": format!("{base_url}{video}?event={index}"),
                }
            });
            async move {
                let event = archive::parse_event(body.to_string().as_bytes()).expect("a valid event");
                let archived = archiver
                    .archive(&event, &Received::now(), &archive::CancellationToken::new())
                    .await;
                let bytes = archived.manifest.as_ref().map_or(0, |manifest| {
                    manifest
                        .media
                        .entries()
                        .iter()
                        .map(|(_, entry)| {
                            if let MediaEntry::Stored(stored) = entry {
                                stored.bytes
                            } else {
                                0
                            }
                        })
                        .sum()
                });
                if archived.disposition != Disposition::Done {
                    eprintln!("event {index}: {:?}", archived.disposition);
                }
                (bytes, archived.disposition == Disposition::Done)
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let secs = started.elapsed().as_secs_f64();
    let bytes: u64 = results.iter().map(|(bytes, _)| bytes).sum();
    let done = results.iter().filter(|(_, done)| *done).count();
    println!(
        "{}",
        serde_json::json!({
            "tool": "archiver", "label": label, "events": events, "done": done, "concurrency": concurrency,
            "bytes": bytes, "secs": secs, "mb_per_s": bytes as f64 / 1e6 / secs,
        })
    );
}
