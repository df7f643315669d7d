//! Failures that are not the event's fault, and stalls: an S3 outage of more than a minute
//! (the S3 fault proxy answering 503) ends with every event archived and nothing
//! dead-lettered, however low the delivery limit; so does a broker that blocks publishes
//! (a resource alarm); a panicking handler releases its delivery instead of stalling the
//! others.

use std::time::{Duration, Instant};

use crate::support::s3_proxy::{Rule, S3Fault, S3Proxy};
use crate::support::Behaviour;
use crate::worker_harness::{assert_exit_0, eventually, session_id, stop, WorkerTest, VIDEO};
use crate::worker_resilience::PrivateBroker;

const WAIT: Duration = Duration::from_secs(60);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("free port")
}

/// The status `/readyz` answers at `addr`, if it answers.
async fn readyz(addr: &str) -> Option<u16> {
    let response = reqwest::get(format!("http://{addr}/readyz")).await.ok()?;
    Some(response.status().as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_outage_of_a_minute_dead_letters_nothing_and_every_event_is_archived() {
    let proxy = tokio::task::spawn_blocking(S3Proxy::start).await.unwrap();
    let test = WorkerTest::new("worker-outage").await;
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let env = proxy.env();
    let mut settings: Vec<(&str, &str)> = env.iter().map(|(name, value)| (*name, value.as_str())).collect();
    // The harness's queue allows 3 deliveries: an outage that spent them would show.
    settings.extend([
        ("ARCHIVER_METRICS_ADDR", metrics_addr.as_str()),
        ("ARCHIVER_CONCURRENCY", "4"),
    ]);
    let worker = test.start_worker(&settings);
    eventually("/readyz answers 200", WAIT, || async {
        readyz(&metrics_addr).await == Some(200)
    })
    .await;

    proxy.fail(S3Fault::SlowDown, Rule::every_request());
    let events = 10;
    for n in 0..events {
        test.publish(&test.good_event(&session_id(n))).await;
    }
    let outage = Instant::now();
    eventually("/readyz answers 503 during the outage", WAIT, || async {
        readyz(&metrics_addr).await == Some(503)
    })
    .await;
    // Watched for more than a minute: nothing is dead-lettered, nothing archived.
    while outage.elapsed() < Duration::from_secs(65) {
        assert_eq!(
            test.dead_letter_depth().await,
            0,
            "dead-lettered during the outage, after {:?}",
            outage.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        test.keys().await.is_empty(),
        "nothing could be stored during the outage"
    );

    proxy.pass_through();
    let sessions = test.archived_sessions(events, Duration::from_secs(90)).await;
    assert_eq!(sessions.len(), events);
    for n in 0..events {
        test.assert_media_stored(&session_id(n)).await;
    }
    eventually("an empty queue", WAIT, || async { test.queue_depth().await == 0 }).await;
    assert_eq!(test.dead_letter_depth().await, 0, "nothing dead-lettered");
    eventually("/readyz answers 200 again", WAIT, || async {
        readyz(&metrics_addr).await == Some(200)
    })
    .await;
    let output = stop(worker, Duration::from_secs(40));
    assert_exit_0(&output);
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(
        log.contains("holding the event until it answers"),
        "the worker held the events"
    );
    test.clean_up().await;
    drop(proxy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_releases_its_delivery_and_does_not_stall_the_others() {
    let test = WorkerTest::new("worker-panic").await;
    let poison = session_id(99);
    // One event at a time: a panic that kept its delivery would stall every other event
    // until the broker's consumer timeout (30 minutes).
    let worker = test.start_worker(&[
        ("ARCHIVER_CONCURRENCY", "1"),
        ("ARCHIVER_TEST_PANIC_SESSION_ID", poison.as_str()),
    ]);
    test.publish(&test.good_event(&poison)).await;
    let events = 3;
    for n in 0..events {
        test.publish(&test.good_event(&session_id(n))).await;
    }
    let sessions = test.archived_sessions(events, WAIT).await;
    assert!(!sessions.contains(&poison), "{sessions:?}");
    // Each panic returns the event with `reject`, which counts: the queue's delivery
    // limit ends it in the dead-letter queue.
    eventually("the panicking event in the dead-letter queue", WAIT, || async {
        test.dead_letter_depth().await == 1
    })
    .await;
    eventually("an empty queue", WAIT, || async { test.queue_depth().await == 0 }).await;
    let output = stop(worker, Duration::from_secs(30));
    assert_exit_0(&output);
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("the event's handler panicked"),
        "the panic is logged"
    );
    test.clean_up().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_blocks_publishes_dead_letters_nothing_and_every_result_arrives() {
    // A node of this test's own: a resource alarm blocks every publishing connection of it.
    let broker = tokio::task::spawn_blocking(PrivateBroker::start)
        .await
        .expect("private broker");
    let test = WorkerTest::on_broker("worker-blocked", &broker.url()).await;
    // Slow enough that the alarm lands while the events are in flight.
    test.media.route(
        "/video.mp4",
        Behaviour::Trickle {
            body: VIDEO.into(),
            bytes_per_sec: 15_000,
        },
    );
    let worker = test.start_worker(&[("ARCHIVER_CONCURRENCY", "4")]);
    let events = 4;
    for n in 0..events {
        test.publish(&test.good_event(&session_id(n))).await;
    }
    eventually("every event in flight", WAIT, || async {
        test.media.hits("/video.mp4") >= events
    })
    .await;

    // A memory alarm: the broker stops reading from connections that publish.
    let broker = tokio::task::spawn_blocking(move || {
        assert!(
            broker.ctl(&["set_vm_memory_high_watermark", "0.00001"]),
            "set the memory alarm"
        );
        broker
    })
    .await
    .unwrap();
    let manifests = || async {
        test.keys()
            .await
            .iter()
            .filter(|key| key.ends_with("/manifest.json"))
            .count()
    };
    eventually("every manifest written during the alarm", WAIT, || async {
        manifests().await == events
    })
    .await;
    // Held past the publish's own deadline (10 s): the results wait in the outbox, and
    // nothing is confirmed, dead-lettered or returned meanwhile.
    let results = format!("{}.results", test.queue);
    let blocked = Instant::now();
    while blocked.elapsed() < Duration::from_secs(12) {
        assert_eq!(
            test.amqp.message_count(&results).await,
            Some(0),
            "a result during the alarm"
        );
        assert_eq!(test.dead_letter_depth().await, 0, "dead-lettered during the alarm");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let broker = tokio::task::spawn_blocking(move || {
        assert!(
            broker.ctl(&["set_vm_memory_high_watermark", "0.4"]),
            "clear the memory alarm"
        );
        broker
    })
    .await
    .unwrap();
    // Each event once: its result came from the outbox, not from archiving it again.
    let sessions = test.archived_sessions(events, Duration::from_secs(90)).await;
    assert_eq!(sessions.len(), events);
    assert_eq!(test.media.hits("/video.mp4"), events, "no event was archived twice");
    eventually("an empty queue", WAIT, || async { test.queue_depth().await == 0 }).await;
    assert_eq!(test.dead_letter_depth().await, 0, "nothing dead-lettered");
    let output = stop(worker, Duration::from_secs(40));
    assert_exit_0(&output);
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("retried from the outbox"),
        "the results waited in the outbox"
    );
    test.clean_up().await;
    drop(broker);
}
