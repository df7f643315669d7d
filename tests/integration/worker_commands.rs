//! `archiver topology` and the worker's start and stop around the broker: idempotent
//! declarations, configuration errors (exit 2), an unreachable or inconsistent broker.

use std::time::Duration;

use crate::support::{archiver, run, stdout_json, unique_name, Running};
use crate::worker_harness::{assert_exit_0, stop, WorkerTest};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topology_is_idempotent_and_refuses_a_changed_delivery_limit_with_the_fix() {
    let test = WorkerTest::new("topology").await;
    // `WorkerTest::new` declared it once already (delivery limit 3); again is a no-op.
    let output = tokio::task::spawn_blocking({
        let command = test.command("topology");
        move || run(command, None)
    })
    .await
    .unwrap();
    assert_exit_0(&output);
    let declared = stdout_json(&output);
    assert_eq!(declared["queue"], test.queue.as_str());
    assert_eq!(declared["dead_letter_exchange"], format!("{}.dlx", test.queue));
    assert_eq!(declared["dead_letter_queue"], format!("{}.dlq", test.queue));
    assert_eq!(declared["results_exchange"], "archiver.results");
    assert_eq!(declared["delivery_limit"], 3);

    let mut changed = test.command("topology");
    changed.env("ARCHIVER_DELIVERY_LIMIT", "7");
    let output = tokio::task::spawn_blocking(move || run(changed, None)).await.unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("x-delivery-limit") && stderr.contains(&test.queue),
        "{stderr}"
    );
    assert!(stderr.contains("already exists with other arguments"), "{stderr}");

    // The worker gives up at once too: waiting would not change the queue.
    let mut worker = test.command("worker");
    worker.env("ARCHIVER_DELIVERY_LIMIT", "7");
    let output =
        tokio::task::spawn_blocking(move || crate::support::run_with_timeout(worker, None, Duration::from_secs(30)))
            .await
            .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("already exists with other arguments"));
    test.clean_up().await;
}

#[test]
fn bad_worker_settings_are_all_reported_at_once_with_exit_2() {
    let mut command = archiver();
    command
        .arg("worker")
        .env("ARCHIVER_QUEUE", "")
        .env("ARCHIVER_CONCURRENCY", "0")
        .env("ARCHIVER_DELIVERY_LIMIT", "many")
        .env("ARCHIVER_DRAIN_SECS", "-1")
        .env("ARCHIVER_METRICS_ADDR", "nowhere")
        // More than S3's 10,000 parts of 5 MiB.
        .env("ARCHIVER_MAX_MEDIA_BYTES", "52428800001");
    let output = run(command, None);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    for variable in [
        "ARCHIVER_QUEUE",
        "ARCHIVER_CONCURRENCY",
        "ARCHIVER_DELIVERY_LIMIT",
        "ARCHIVER_DRAIN_SECS",
        "ARCHIVER_METRICS_ADDR",
        "ARCHIVER_MAX_MEDIA_BYTES",
    ] {
        assert!(stderr.contains(variable), "{variable} not named in: {stderr}");
    }
}

#[test]
fn an_unreachable_broker_fails_topology_with_exit_1_and_a_waiting_worker_still_stops_on_sigterm() {
    // Nothing listens on port 1 of loopback.
    let unreachable = "amqp://guest:guest@127.0.0.1:1/%2f";
    let queue = unique_name("unreachable");
    let mut topology = archiver();
    topology
        .arg("topology")
        .env("ARCHIVER_QUEUE", &queue)
        .env("ARCHIVER_AMQP_URL", unreachable);
    let output = run(topology, None);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("connect to the broker"), "{stderr}");
    assert!(
        !stderr.contains("guest:guest"),
        "the broker password is never printed: {stderr}"
    );

    let mut worker = archiver();
    worker
        .arg("worker")
        .env("ARCHIVER_QUEUE", &queue)
        .env("ARCHIVER_AMQP_URL", unreachable)
        .env("ARCHIVER_METRICS_ADDR", "127.0.0.1:0")
        .env("ARCHIVER_LOG_FORMAT", "json");
    let mut running = Running::spawn(worker, None);
    // It keeps retrying (with backoff) rather than exiting.
    assert!(
        running.wait_timeout(Duration::from_secs(2)).is_none(),
        "the worker waits for the broker"
    );
    let output = stop(running, Duration::from_secs(10));
    assert_exit_0(&output);
    assert!(String::from_utf8_lossy(&output.stderr).contains("broker unavailable"));
}
