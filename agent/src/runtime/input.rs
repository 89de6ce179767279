//! A sink's view of its channel, and the interval fsync of disk channels.

use std::time::Duration;

use tokio::sync::watch;
use tracing::warn;
use weir_plugins::{AckError, BoxFuture, Record, SinkInput};

use crate::channel::Channel;

/// A sink's view of its channel.
pub struct ChannelInput {
    pub channel: Channel,
    pub shutdown: watch::Receiver<bool>,
}

impl SinkInput for ChannelInput {
    fn next_batch(
        &self,
        max_events: usize,
        max_bytes: usize,
        wait: Option<Duration>,
    ) -> BoxFuture<'_, Option<Vec<Record>>> {
        Box::pin(async move {
            let mut shutdown = self.shutdown.clone();
            self.channel
                .next_records(max_events, max_bytes, wait, &mut shutdown)
                .await
        })
    }

    fn ack(&self, end_id: u64) -> BoxFuture<'_, Result<(), AckError>> {
        Box::pin(async move {
            self.channel.ack(end_id).await.map_err(|e| {
                warn!(sink = %self.channel.name(), error = %e, "Could not persist the acknowledgement; will retry.");
                AckError::Persist(e.to_string())
            })
        })
    }

    fn rewind(&self) {
        self.channel.rewind();
    }
}

/// Fsyncs a disk channel every `every` (its `fsync: interval` policy) until `stop`.
pub fn spawn_interval_sync(ch: Channel, every: Duration, mut stop: watch::Receiver<bool>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            let stopping = tokio::select! {
                _ = tick.tick() => false,
                _ = stop.wait_for(|s| *s) => true,
            };
            ch.sync().await;
            if stopping {
                break;
            }
        }
    });
}
