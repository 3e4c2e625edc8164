//! Stopping a daemon cleanly on SIGINT or SIGTERM.

/// Installs SIGINT and SIGTERM handlers now and returns a future that
/// resolves on the first of them. Install it *before* announcing the node, so
/// a signal sent as soon as the banner appears is never lost to the default
/// action (which would kill the process without flushing the store).
pub fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => tracing::info!("SIGINT received, stopping"),
            _ = term.recv() => tracing::info!("SIGTERM received, stopping"),
        }
    })
}
