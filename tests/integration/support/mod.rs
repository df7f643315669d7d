//! Helpers shared by every integration test: the local stack's settings and clients
//! (`stack`, `amqp`), HTTPS media servers the tests script (`media_server`, `tls`), and
//! running the `archiver` binary with a deadline (`cli`).
//!
//! The stack must be running (scripts/stack/up.sh; scripts/test.sh starts it).

// Each test module uses a different part of the harness.
#![allow(dead_code, unused_imports)]

pub mod amqp;
pub mod archive_kit;
pub mod cli;
pub mod media_server;
pub mod s3_proxy;
pub mod stack;
pub mod tls;

pub use amqp::Amqp;
pub use cli::{archiver, run, run_with_timeout, stdout_json, ArchiverEnv, Running};
pub use media_server::{Behaviour, MediaServer, RecordedRequest, SECRET_QUERY_MARKER, SECRET_SIGNATURE};
pub use s3_proxy::{Rule, S3Fault, S3Proxy, S3Request};
pub use stack::{repo_root, unique_name, Stack, S3};
pub use tls::TestCa;

use std::time::{Duration, Instant};

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout`.
/// The way to wait for something in these tests (never a bare sleep).
pub fn wait_until<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The async twin of [`wait_until`]: polls `check` until it holds, or panics with `what` after `timeout`.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
