//! The shutdown signal: SIGTERM or SIGINT cancels one token that every part of the worker
//! watches (the shape of tokio's mini-redis, with tokio-util's `CancellationToken` as the
//! broadcast).

use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

/// Returns a token cancelled on the first SIGTERM or SIGINT.
pub fn on_signal() -> std::io::Result<CancellationToken> {
    let token = CancellationToken::new();
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let cancel = token.clone();
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        };
        tracing::info!(
            signal = name,
            "shutting down: no new events are taken; events in flight get the drain period"
        );
        cancel.cancel();
    });
    Ok(token)
}
