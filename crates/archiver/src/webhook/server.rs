//! The HTTP listener: connections bounded by a semaphore, each served by hyper's HTTP/1
//! with a header deadline, and a graceful drain on shutdown (stop accepting, let the
//! requests in flight finish, close idle connections, give up after the drain period).
//!
//! hyper directly rather than axum: one route, a body that must be read by hand within a
//! cap and a deadline before anything else looks at it, and hyper is already here for
//! `/metrics` (axum would add tower and a router for a single `match`).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{handle, Webhook};

/// Connections served at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 512;
/// How long a client may take to send the request line and headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves until `shutdown`, then drains for at most `drain`.
pub async fn serve(listener: TcpListener, webhook: Arc<Webhook>, shutdown: CancellationToken, drain: Duration) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut connections = JoinSet::new();
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    // Out of file descriptors, most likely: give the others time to close.
                    tracing::warn!(error = %err, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        while connections.try_join_next().is_some() {}
        let webhook = webhook.clone();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            serve_connection(stream, webhook, shutdown).await;
            drop(permit);
        });
    }
    drop(listener);
    tracing::info!(
        connections = connections.len(),
        "webhook: no new connections; finishing requests in flight"
    );
    let drained = tokio::time::timeout(drain, async { while connections.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(
            left = connections.len(),
            "webhook: drain period over; closing what is left"
        );
        connections.abort_all();
    }
}

async fn serve_connection(stream: tokio::net::TcpStream, webhook: Arc<Webhook>, shutdown: CancellationToken) {
    let service = hyper::service::service_fn(move |request| {
        let webhook = webhook.clone();
        async move { Ok::<_, Infallible>(handle::handle(&webhook, request).await) }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        _ = shutdown.cancelled() => {
            // Finishes the request in flight, if any, then closes; an idle connection closes now.
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}
