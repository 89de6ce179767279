//! A sink's view of its channel, and the interval fsync of disk channels.

use std::time::Duration;

use std::sync::Arc;
use tokio::sync::watch;
use tracing::warn;

use weir_plugins::{AckError, BlockingInput, BoxFuture, ReadError, Record, SinkInput};

use super::health::Health;
use crate::channel::Channel;

/// A sink's view of its channel.
pub struct ChannelInput {
    pub channel: Channel,
    pub shutdown: watch::Receiver<bool>,
    /// Where the sink's delivery failures are reported, for `/ready`.
    pub health: Health,
}

impl Drop for ChannelInput {
    fn drop(&mut self) {
        // A stopped sink no longer holds the agent back from ready.
        self.health.forget(self.channel.name());
    }
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

    fn backlog(&self) -> (u64, u64) {
        self.channel.backlog()
    }

    fn blocking(&self) -> Option<Arc<dyn BlockingInput>> {
        self.channel
            .is_durable()
            .then(|| Arc::new(SpoolInput(self.channel.clone())) as Arc<dyn BlockingInput>)
    }

    fn delivery_failing(&self, cause: Option<&str>) {
        self.health.sink_failing(self.channel.name(), cause);
    }
}

/// The blocking side of a disk channel, for a sink's own blocking calls.
struct SpoolInput(Channel);

impl BlockingInput for SpoolInput {
    fn read(&self, max_events: usize, max_bytes: usize) -> Result<Vec<Record>, ReadError> {
        self.0
            .read_records_now(max_events, max_bytes)
            .map_err(|e| ReadError::Io(e.to_string()))
    }

    fn commit(&self, end_id: u64, note: &[u8]) -> Result<(), AckError> {
        self.0.commit_now(end_id, note).map_err(|e| {
            warn!(sink = %self.0.name(), error = %e, "Could not persist the acknowledgement and journal; will retry.");
            AckError::Persist(e.to_string())
        })
    }

    fn note(&self) -> Option<Vec<u8>> {
        self.0.note()
    }
}

/// Fsyncs a disk channel every `every` (its `fsync: interval` policy) until `stop`.
pub fn spawn_interval_sync(ch: Channel, every: Duration, mut stop: watch::Receiver<bool>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every.max(Duration::from_millis(1)));
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
