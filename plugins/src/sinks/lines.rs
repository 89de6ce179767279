//! The loop shared by sinks that write events as lines (`stdout`, `file`):
//! read a batch, write it, make it durable, acknowledge.

use std::io::Write;

use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::warn;
use weir_core::event::format_rfc3339_nanos;

use crate::component::{ComponentError, Record, SinkContext};

/// How an event becomes a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LineEncoding {
    /// `{"timestamp", "source", "host", "fields": {...}}`
    #[default]
    Json,
    /// The `message` field alone (events without one are written as JSON).
    Text,
}

/// Appends one line for `r`.
pub fn encode(r: &Record, enc: LineEncoding, out: &mut Vec<u8>) {
    if enc == LineEncoding::Text {
        #[derive(serde::Deserialize)]
        struct Message<'a> {
            #[serde(borrow)]
            message: Option<std::borrow::Cow<'a, str>>,
        }
        if let Ok(Message { message: Some(m) }) = serde_json::from_slice::<Message>(&r.value) {
            out.extend_from_slice(m.as_bytes());
            out.push(b'\n');
            return;
        }
    }
    // The value is already the fields' JSON object: splice it in as is.
    let head = json!({
        "timestamp": format_rfc3339_nanos(r.timestamp),
        "source": &*r.meta.source,
        "host": &*r.meta.host,
    });
    let _ = serde_json::to_writer(&mut *out, &head);
    out.pop(); // the closing brace
    out.extend_from_slice(b",\"fields\":");
    out.extend_from_slice(&r.value);
    out.extend_from_slice(b"}\n");
}

/// Runs until shutdown: each batch is written with `write` (which must make it
/// durable before returning) and then acknowledged. Write errors are retried
/// with backoff; nothing is acknowledged that was not written.
pub async fn run(
    ctx: SinkContext,
    enc: LineEncoding,
    mut write: impl FnMut(&[u8]) -> std::io::Result<()> + Send,
) -> Result<(), ComponentError> {
    let delivery = crate::sinks::delivery::Delivery::new(&ctx);
    let mut buf = Vec::new();
    loop {
        let Some(batch) = ctx.input.next_batch(4096, 4 << 20, None).await else {
            return Ok(());
        };
        let Some(end) = batch.last().map(|r| r.id + 1) else {
            continue;
        };
        buf.clear();
        for r in &batch {
            encode(r, enc, &mut buf);
        }
        let mut backoff = std::time::Duration::from_millis(100);
        loop {
            delivery.sent_events.add(batch.len() as u64);
            delivery.sent_bytes.add(buf.len() as u64);
            let Err(e) = write(&buf) else { break };
            delivery.failed(
                weir_core::errors::reason(&e),
                &weir_core::errors::chain(&e),
                backoff,
            );
            if *ctx.shutdown.borrow() {
                return Ok(());
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(std::time::Duration::from_secs(5));
        }
        delivery.delivered();
        if let Err(e) = ctx.input.ack(end).await {
            // Retried by the next acknowledgement; at worst this batch is
            // written again after a crash (at least once).
            warn!(sink = %ctx.id, error = %e, "Acknowledgement not persisted; will retry.");
        }
        delivery.acked_events.add(batch.len() as u64);
        delivery.acked_bytes.add(buf.len() as u64);
    }
}

/// Writes to stdout and flushes.
pub fn stdout_writer() -> impl FnMut(&[u8]) -> std::io::Result<()> {
    |b| {
        let mut out = std::io::stdout().lock();
        out.write_all(b)?;
        out.flush()
    }
}
