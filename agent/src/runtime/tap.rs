//! Live taps on a component's outputs (`weir tap`).
//!
//! A tap must never slow the pipeline and must cost nothing while nobody
//! taps: the hot path reads one atomic flag per delivered batch and does
//! nothing else unless a tap is attached. An attached tap samples events
//! with a token bucket (at most `rate` per second), renders them as JSON
//! lines and hands them over with `try_send` into a small bounded buffer; a
//! full buffer (a tapper that reads slowly or not at all) drops the line and
//! counts it, and the tapper is told how many it missed.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio::time::Instant;
use weir_core::event::format_rfc3339_nanos;
use weir_core::Event;

/// Lines buffered per tap between the pipeline and the tapper's socket.
pub const TAP_BUFFER: usize = 64;
/// Most taps attached to one component at a time.
pub const MAX_TAPS: usize = 8;

/// The taps attached to one component's outputs.
#[derive(Default)]
pub struct Taps {
    active: AtomicBool,
    slots: Mutex<Vec<Slot>>,
    next_id: AtomicU64,
}

struct Slot {
    id: u64,
    /// `None`: the default output.
    output: Option<String>,
    tx: mpsc::Sender<String>,
    bucket: Bucket,
    dropped: Arc<AtomicU64>,
}

/// One tapper's end: sampled events as JSON lines, and how many did not fit.
pub struct TapFeed {
    pub lines: mpsc::Receiver<String>,
    pub dropped: Arc<AtomicU64>,
    pub id: u64,
}

/// Why a tap could not be attached.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    #[error("{0} taps are already attached to this component")]
    TooMany(usize),
}

impl Taps {
    /// Whether any tap is attached: the only cost on the hot path.
    #[inline]
    pub fn active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    /// Attaches a tap on `output` sampling at most `rate` events per second.
    pub fn attach(&self, output: Option<String>, rate: u32) -> Result<TapFeed, TapError> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if slots.len() >= MAX_TAPS {
            return Err(TapError::TooMany(MAX_TAPS));
        }
        let (tx, rx) = mpsc::channel(TAP_BUFFER);
        let dropped = Arc::new(AtomicU64::new(0));
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        slots.push(Slot {
            id,
            output,
            tx,
            bucket: Bucket::new(rate.max(1)),
            dropped: dropped.clone(),
        });
        self.active.store(true, Ordering::Relaxed);
        Ok(TapFeed {
            lines: rx,
            dropped,
            id,
        })
    }

    /// Detaches tap `id` (its tapper left).
    pub fn detach(&self, id: u64) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.retain(|s| s.id != id);
        self.active.store(!slots.is_empty(), Ordering::Relaxed);
    }

    /// Offers the events of one batch delivered on `output` of `component`.
    pub fn offer(&self, component: &str, output: Option<&str>, events: &[Event]) {
        self.offer_at(component, output, events, Instant::now());
    }

    fn offer_at(&self, component: &str, output: Option<&str>, events: &[Event], now: Instant) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.retain_mut(|slot| {
            if slot.output.as_deref() != output {
                return true;
            }
            for e in events {
                if !slot.bucket.take(now) {
                    break;
                }
                match slot.tx.try_send(render(component, output, e)) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        slot.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                    // The tapper is gone: detach here rather than wait for it.
                    Err(mpsc::error::TrySendError::Closed(_)) => return false,
                }
            }
            true
        });
        self.active.store(!slots.is_empty(), Ordering::Relaxed);
    }
}

/// A token bucket refilled at `rate` per second, holding at most `rate`.
struct Bucket {
    rate: u32,
    tokens: f64,
    at: Option<Instant>,
}

impl Bucket {
    fn new(rate: u32) -> Bucket {
        Bucket {
            rate,
            tokens: f64::from(rate),
            at: None,
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        if let Some(at) = self.at {
            let refill = now.saturating_duration_since(at).as_secs_f64() * f64::from(self.rate);
            self.tokens = (self.tokens + refill).min(f64::from(self.rate));
        }
        self.at = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// One tapped event as a JSON line (without the newline).
pub fn render(component: &str, output: Option<&str>, e: &Event) -> String {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(b"{\"component\":");
    weir_core::json::write_str(&mut out, component);
    out.extend_from_slice(b",\"output\":");
    weir_core::json::write_str(&mut out, output.unwrap_or("default"));
    out.extend_from_slice(b",\"timestamp\":");
    weir_core::json::write_str(&mut out, &format_rfc3339_nanos(e.timestamp));
    out.extend_from_slice(b",\"source\":");
    weir_core::json::write_str(&mut out, &e.meta.source);
    out.extend_from_slice(b",\"fields\":");
    e.write_fields_json(&mut out);
    out.push(b'}');
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_core::Metadata;

    fn events(n: usize) -> Vec<Event> {
        (0..n)
            .map(|i| Event::from_message(format!("m{i}"), Metadata::default()))
            .collect()
    }

    #[test]
    fn an_untapped_component_reports_no_tap() {
        let taps = Taps::default();
        assert!(!taps.active());
        let feed = taps.attach(None, 10).unwrap();
        assert!(taps.active());
        taps.detach(feed.id);
        assert!(!taps.active());
    }

    #[test]
    fn taps_sample_at_most_the_rate_per_second() {
        let taps = Taps::default();
        let mut feed = taps.attach(None, 5).unwrap();
        let t0 = Instant::now();
        taps.offer_at("c", None, &events(50), t0);
        let mut got = 0;
        while feed.lines.try_recv().is_ok() {
            got += 1;
        }
        assert_eq!(got, 5, "a burst is cut at the rate");
        let t1 = t0 + std::time::Duration::from_secs(1);
        taps.offer_at("c", None, &events(50), t1);
        let mut again = 0;
        while feed.lines.try_recv().is_ok() {
            again += 1;
        }
        assert_eq!(again, 5, "a second later the bucket is full again");
    }

    #[test]
    fn a_tapper_that_does_not_read_loses_lines_and_is_told_how_many() {
        let taps = Taps::default();
        let feed = taps.attach(None, 10_000).unwrap();
        for _ in 0..10 {
            taps.offer("c", None, &events(100));
        }
        assert_eq!(feed.lines.len(), TAP_BUFFER);
        assert!(feed.dropped.load(Ordering::Relaxed) > 0);
    }

    #[test]
    fn taps_see_only_their_output_and_render_json() {
        let taps = Taps::default();
        let mut feed = taps.attach(Some("hot".into()), 10).unwrap();
        taps.offer("route", None, &events(3));
        assert!(feed.lines.try_recv().is_err());
        taps.offer("route", Some("hot"), &events(1));
        let line = feed.lines.try_recv().unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["component"], "route");
        assert_eq!(v["output"], "hot");
        assert_eq!(v["fields"]["message"], "m0");
    }

    #[test]
    fn a_gone_tapper_is_detached_on_the_next_batch() {
        let taps = Taps::default();
        let feed = taps.attach(None, 10).unwrap();
        drop(feed);
        taps.offer("c", None, &events(1));
        assert!(!taps.active());
    }
}
