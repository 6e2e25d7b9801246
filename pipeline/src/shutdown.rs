//! Graceful shutdown: one token, cancelled on SIGINT/SIGTERM, that every loop watches.

pub use tokio_util::sync::CancellationToken as Shutdown;

/// Returns a token cancelled when the process receives SIGINT or SIGTERM.
pub fn on_signals() -> Shutdown {
    let token = Shutdown::new();
    let t = token.clone();
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutdown requested");
        t.cancel();
    });
    token
}
