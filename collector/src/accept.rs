//! The accept step both listeners (HTTP and Kafka) share: a connection is
//! taken only once a slot of the shared connection bound is free, so a flood
//! of connections waits in the kernel's backlog instead of costing memory.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::warn;

/// Counts accept failures across calls, so a persistent one is logged at
/// powers of two rather than once per retry.
#[derive(Default)]
pub(crate) struct AcceptErrors(u64);

/// Waits for a free slot, then for a connection. `None` once `shutdown`
/// resolves (or the slots are closed). An accept error — out of file
/// descriptors, mostly — backs off for 100 ms instead of spinning.
pub(crate) async fn admit(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
    shutdown: &mut (impl Future<Output = ()> + Unpin),
    errors: &mut AcceptErrors,
    what: &'static str,
) -> Option<(OwnedSemaphorePermit, TcpStream, SocketAddr)> {
    let permit = tokio::select! {
        p = slots.clone().acquire_owned() => p.ok()?,
        _ = &mut *shutdown => return None,
    };
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, peer)) => return Some((permit, stream, peer)),
                Err(e) => {
                    errors.0 += 1;
                    if errors.0.is_power_of_two() {
                        warn!(error = %e, count = errors.0, listener = what, "Accepting a connection failed; backing off.");
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = &mut *shutdown => return None,
        }
    }
}
