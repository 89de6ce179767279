//! The collector as a systemd `Type=notify` service: `READY=1` once it
//! listens, a one-line `STATUS=` (address, topics, partitions), `WATCHDOG=1`
//! while the listener is not wedged (see [`weir_core::systemd::Liveness`]),
//! and `STOPPING=1` when asked to stop. Nothing happens outside systemd.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;
use weir_core::systemd::{spawn_watchdog, watchdog_timeout_from_env, Liveness, Notifier};

use crate::log::Store;

/// The collector's link to its service manager.
pub(crate) struct Service {
    notifier: Option<Arc<Notifier>>,
    /// Times the listener's polls for the watchdog.
    pub(crate) liveness: Liveness,
}

impl Service {
    /// Reads `NOTIFY_SOCKET`; does nothing else yet.
    pub(crate) fn from_env() -> Service {
        Service {
            notifier: Notifier::from_env().map(Arc::new),
            liveness: Liveness::new(),
        }
    }

    /// Reports readiness and starts the watchdog until `stop`.
    pub(crate) fn ready(&self, addr: SocketAddr, store: Arc<Store>, stop: watch::Receiver<bool>) {
        let Some(n) = &self.notifier else {
            return;
        };
        let status = move || summary(addr, &store);
        n.ready(&status());
        spawn_watchdog(
            n.clone(),
            self.liveness.clone(),
            watchdog_timeout_from_env(),
            status,
            stop,
        );
    }

    /// `shutdown`, followed by `STOPPING=1` as soon as it resolves.
    pub(crate) fn stopping_after(
        &self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> impl Future<Output = ()> + Send + 'static {
        let n = self.notifier.clone();
        async move {
            shutdown.await;
            if let Some(n) = n {
                n.stopping("stopping: draining connections");
            }
        }
    }
}

/// `listening on 127.0.0.1:7400, 3 topics, 5 partitions`.
fn summary(addr: SocketAddr, store: &Store) -> String {
    let topics = store.topics();
    let partitions: usize = topics.iter().map(|t| t.partitions.len()).sum();
    format!(
        "listening on {addr}, {} topics, {partitions} partitions",
        topics.len()
    )
}
