//! Process plumbing shared by the `weir` and `weir-collector` binaries.

/// Resolves on the first SIGINT or SIGTERM: one function for both, so that
/// systemd's stop and a terminal's Ctrl-C take the same graceful path.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Bounds glibc's malloc arenas. glibc gives each thread that allocates
/// concurrently its own arena and rarely returns their free memory; with a
/// runtime's worker and blocking threads that multiplies peak RSS several
/// times over. Two arenas keep an agent inside a gateway's memory budget at
/// no measurable cost in throughput (see docs/benchmarks.md).
pub fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only adjusts allocator tuning; called before threads start.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        // Batch-sized buffers (a read's events, a sink's records, a batch
        // being compressed: up to a few MiB) come from the heap and are
        // reused there: served by mmap, every batch paid for a map, page
        // faults, zeroing and an unmap (a quarter of the agent's CPU). A
        // fixed threshold keeps glibc from moving it; the trim threshold
        // returns free memory at the top of the heap beyond 8 MiB.
        libc::mallopt(libc::M_MMAP_THRESHOLD, 8 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 8 << 20);
    }
}

/// The runtime of a Weir binary: allocator tuning ([`limit_malloc_arenas`])
/// and a multi-threaded tokio runtime whose blocking pool (spool I/O, fsync,
/// SQLite, encoding) is bounded to `max_blocking_threads`.
pub fn runtime(max_blocking_threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    limit_malloc_arenas();
    tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(max_blocking_threads)
        .enable_all()
        .build()
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable text; colour on a terminal.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Installs the global tracing subscriber, writing to stderr. The level comes
/// from `RUST_LOG` (default `info`).
pub fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
    };
}
