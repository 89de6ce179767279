//! The `serial` source: reads a serial port — text lines through a parser,
//! or Weir device frames — and survives the port being unplugged.
//!
//! - **No replay**: a serial line cannot send anything again, so events are
//!   unmarked (`SourceBatch::unmarked`) and sent as soon as a batch is full
//!   (`batch.max_events`) or its first event has waited `batch.linger`.
//!   What was read but not yet appended to the channels — at most one batch
//!   — is lost if the agent crashes (`docs/architecture.md`).
//! - **Back-pressure**: while `send` waits (a full channel under `block`),
//!   the port is not read; bytes queue in the driver and then the UART or
//!   the device. Without flow control they are eventually dropped there;
//!   where the driver counts that (`TIOCGICOUNT`) it shows up in
//!   `weir_serial_driver_errors_total`, and for frames in the devices'
//!   sequence gaps (`weir_serial_lost_frames_total`).
//! - **Unplug and replug**: a read error, an end of file, or the path
//!   vanishing or naming another device ends the port; the source logs that
//!   once (WARN, with the cause), retries with capped, jittered backoff, and
//!   logs once more (INFO, with the outage's length) when the port is back.
//! - **Poll mode**: see [`poll`].

pub mod config;
pub mod parse;
pub mod poll;

mod batch;
mod frames;
mod icount;
mod lines;
mod metrics;
mod sequence;

#[cfg(test)]
mod tests;

use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::{sleep, sleep_until, Instant};
use tokio_serial::SerialStream;
use tracing::{debug, info, warn};
use weir_core::event::Value;
use weir_core::Metadata;

pub use config::SerialSourceConfig;

use crate::backoff::Backoff;
use crate::component::{
    BuildError, ComponentError, SendError, SourceBatch, SourceConfig, SourceContext, Task,
    ERRORS_OUTPUT,
};
use crate::rate_limit::RateLimit;
use crate::sources::serial_port;
use batch::{Emit, Pending};
use config::Framing;
use frames::FrameDecoder;
use icount::DriverCounts;
use lines::LineDecoder;
use metrics::SerialMetrics;
use parse::LineParser;
use poll::PollConfig;

/// Bytes asked of the port per read.
const READ_BYTES: usize = 4096;
/// How often the path is checked (still there, still the same device) and
/// the driver's error counters read.
const PATH_CHECK: Duration = Duration::from_secs(1);
/// At most one warning per this for per-record problems.
const WARN_EVERY: Duration = Duration::from_secs(10);

impl SourceConfig for SerialSourceConfig {
    fn problems(&self) -> Vec<String> {
        self.value_problems()
    }

    fn build(&self, ctx: SourceContext) -> Result<Task, BuildError> {
        let problems = self.value_problems();
        if !problems.is_empty() {
            return Err(BuildError::Config(problems));
        }
        Ok(Box::pin(SerialSource::new(self.clone(), ctx).run()))
    }
}

enum Decoder {
    Lines(LineDecoder),
    Frames(FrameDecoder),
}

/// Why reading a port stopped.
enum PortEnd {
    Shutdown,
    Lost(String),
}

struct SerialSource {
    cfg: SerialSourceConfig,
    ctx: SourceContext,
    metrics: SerialMetrics,
    decoder: Decoder,
    meta: Metadata,
    port_field: Option<(String, Value)>,
    pending: Pending,
    dead_log: RateLimit,
    timeout_log: RateLimit,
}

impl SerialSource {
    fn new(cfg: SerialSourceConfig, ctx: SourceContext) -> SerialSource {
        let metrics = SerialMetrics::new(&ctx.metrics, &ctx.id);
        let decoder = match cfg.framing {
            Framing::Lines => Decoder::Lines(LineDecoder::new(
                LineParser::from_config(&cfg),
                cfg.max_line_bytes.bytes() as usize,
            )),
            Framing::Frame => Decoder::Frames(FrameDecoder::new(cfg.channels.clone())),
        };
        let meta = Metadata {
            source: ctx.id.as_str().into(),
            host: ctx.host.clone(),
            topic: None,
            key: None,
        };
        let port_field = cfg
            .port_field
            .clone()
            .map(|f| (f, Value::String(cfg.path.clone())));
        SerialSource {
            cfg,
            ctx,
            metrics,
            decoder,
            meta,
            port_field,
            pending: Pending::default(),
            dead_log: RateLimit::new(WARN_EVERY),
            timeout_log: RateLimit::new(WARN_EVERY),
        }
    }

    /// Opens the port, reads it until it goes away, and reopens it, until shutdown.
    async fn run(mut self) -> Result<(), ComponentError> {
        let mut shutdown = self.ctx.shutdown.clone();
        let mut backoff = Backoff::new(self.cfg.initial_backoff, self.cfg.max_backoff);
        // Set while the port is away; the outage has been logged once.
        let mut down_since: Option<Instant> = None;
        let path = self.cfg.path.clone();
        let id = self.ctx.id.clone();
        loop {
            if *shutdown.borrow() {
                break;
            }
            match serial_port::open(&path, &self.cfg.settings()) {
                Ok(port) => {
                    match down_since.take() {
                        Some(t) => {
                            info!(source = %id, path = %path, outage = %humantime_secs(t.elapsed()), "Serial port is back; reading again.")
                        }
                        None => {
                            info!(source = %id, path = %path, baud = self.cfg.baud, "Serial port opened.")
                        }
                    }
                    self.metrics.connected.set(1);
                    let opened = Instant::now();
                    let end = self.read_port(port, &mut shutdown).await;
                    self.metrics.connected.set(0);
                    self.drop_partial_record();
                    match end {
                        PortEnd::Shutdown => break,
                        PortEnd::Lost(cause) => {
                            self.metrics.disconnects.inc();
                            warn!(source = %id, path = %path, cause = %cause, "Serial port lost (unplugged?); reopening it when it comes back.");
                            down_since = Some(Instant::now());
                            // A port that stayed up a while starts the
                            // backoff afresh; one that flaps keeps backing off.
                            if opened.elapsed() >= self.cfg.max_backoff {
                                backoff.reset();
                            }
                        }
                    }
                }
                Err(e) => {
                    if down_since.is_none() {
                        warn!(source = %id, path = %path, error = %e, "Cannot open serial port; retrying until it appears.");
                        down_since = Some(Instant::now());
                    } else {
                        debug!(source = %id, path = %path, error = %e, "Serial port still unavailable.");
                    }
                }
            }
            tokio::select! {
                _ = sleep(backoff.next_delay()) => {}
                () = stopped(&mut shutdown) => break,
            }
        }
        info!(source = %id, "Serial source stopped.");
        Ok(())
    }

    /// Reads `port` until shutdown or until it is lost; sends what it read.
    async fn read_port(
        &mut self,
        mut port: SerialStream,
        shutdown: &mut watch::Receiver<bool>,
    ) -> PortEnd {
        let fd = port.as_raw_fd();
        let rdev = fd_rdev(fd);
        let mut driver = icount::read(fd);
        let mut poller = self.cfg.poll.clone().map(Poller::new);
        let mut buf = vec![0u8; READ_BYTES];
        let mut next_check = Instant::now() + PATH_CHECK;
        let linger = self.cfg.batch.linger;
        let far = || Instant::now() + Duration::from_secs(3600);
        loop {
            let flush_at = self.pending.first_at.map(|t| t + linger);
            let reply_due = poller.as_ref().and_then(|p| p.awaiting);
            let poll_at = poller.as_ref().map(|p| p.next);
            let end = tokio::select! {
                biased;
                () = stopped(shutdown) => Some(PortEnd::Shutdown),
                _ = sleep_until(flush_at.unwrap_or_else(far)), if flush_at.is_some() => None,
                _ = sleep_until(reply_due.unwrap_or_else(far)), if reply_due.is_some() => {
                    self.poll_timed_out(&mut poller);
                    continue;
                }
                _ = sleep_until(poll_at.unwrap_or_else(far)), if poll_at.is_some() => {
                    match self.send_request(&mut port, &mut poller).await {
                        Ok(()) => continue,
                        Err(cause) => Some(PortEnd::Lost(cause)),
                    }
                }
                _ = sleep_until(next_check) => {
                    next_check = Instant::now() + PATH_CHECK;
                    self.report_driver_errors(fd, &mut driver);
                    match self.path_changed(rdev) {
                        Some(cause) => Some(PortEnd::Lost(cause)),
                        None => continue,
                    }
                }
                r = port.read(&mut buf) => match r {
                    Ok(0) => Some(PortEnd::Lost("end of file: the other end hung up".to_owned())),
                    Ok(n) => {
                        if self.decode(&buf[..n]) > 0 {
                            if let Some(p) = &mut poller {
                                p.awaiting = None;
                            }
                        }
                        if self.pending.len() < self.cfg.batch.max_events {
                            continue;
                        }
                        None
                    }
                    Err(e) => Some(PortEnd::Lost(e.to_string())),
                },
            };
            // Here: a batch is due (full or lingered long enough), or the
            // port is done. Either way what is pending goes out now.
            if self.flush().await.is_err() {
                return PortEnd::Shutdown;
            }
            if let Some(end) = end {
                return end;
            }
        }
    }

    /// Decodes bytes just read; returns how many complete records they finished.
    fn decode(&mut self, bytes: &[u8]) -> u64 {
        self.metrics.bytes.add(bytes.len() as u64);
        let mut emit = Emit {
            id: &self.ctx.id,
            meta: &self.meta,
            port: self.port_field.as_ref(),
            now: weir_core::event::now_nanos(),
            out: &mut self.pending,
            metrics: &mut self.metrics,
            records: 0,
        };
        match &mut self.decoder {
            Decoder::Lines(d) => d.feed(bytes, &mut emit),
            Decoder::Frames(d) => d.feed(bytes, &mut emit),
        }
        emit.records
    }

    /// Forgets the half-read record of a port that is gone: the rest of it
    /// will never come.
    fn drop_partial_record(&mut self) {
        let mut emit = Emit {
            id: &self.ctx.id,
            meta: &self.meta,
            port: self.port_field.as_ref(),
            now: 0,
            out: &mut self.pending,
            metrics: &mut self.metrics,
            records: 0,
        };
        match &mut self.decoder {
            Decoder::Lines(d) => {
                let n = d.reset();
                if n > 0 {
                    debug!(source = %self.ctx.id, bytes = n, "Dropped a partial line of a port that went away.");
                }
            }
            Decoder::Frames(d) => d.reset(&mut emit),
        }
    }

    /// Sends what is pending: dead letters to `<id>.errors`, events to the
    /// default output. `Err` only at shutdown.
    async fn flush(&mut self) -> Result<(), SendError> {
        let Pending { events, dead, .. } = std::mem::take(&mut self.pending);
        if !dead.is_empty() {
            if let Some(suppressed) = self.dead_log.check() {
                let error = match dead[0].fields.get("error") {
                    Some(Value::String(e)) => e.as_str(),
                    _ => "",
                };
                warn!(source = %self.ctx.id, records = dead.len(), error, earlier = suppressed, "Records could not be decoded; sent to the errors output.");
            }
            match self
                .ctx
                .output
                .send_to(ERRORS_OUTPUT, SourceBatch::unmarked(dead))
                .await
            {
                Err(SendError::Shutdown) => return Err(SendError::Shutdown),
                Err(SendError::UnknownOutput(_)) | Ok(()) => {}
            }
        }
        if !events.is_empty() {
            let n = events.len() as u64;
            self.ctx.output.send(SourceBatch::unmarked(events)).await?;
            self.metrics.events.add(n);
        }
        Ok(())
    }

    /// Writes the poll request. `Err` with the cause when the port failed.
    async fn send_request(
        &mut self,
        port: &mut SerialStream,
        poller: &mut Option<Poller>,
    ) -> Result<(), String> {
        let Some(p) = poller else { return Ok(()) };
        p.schedule_next();
        let write = tokio::time::timeout(p.cfg.timeout, async {
            port.write_all(&p.cfg.request.bytes).await?;
            port.flush().await
        });
        match write.await {
            Ok(Ok(())) => {
                self.metrics.poll_requests.inc();
                p.awaiting = Some(Instant::now() + p.cfg.timeout);
                Ok(())
            }
            Ok(Err(e)) => Err(format!("writing the poll request: {e}")),
            Err(_elapsed) => {
                // Flow control held the write back: as good as no reply.
                self.metrics.poll_timeouts.inc();
                if let Some(n) = self.timeout_log.check() {
                    warn!(source = %self.ctx.id, earlier = n, "Poll request could not be written within poll.timeout (flow control?).");
                }
                Ok(())
            }
        }
    }

    fn poll_timed_out(&mut self, poller: &mut Option<Poller>) {
        if let Some(p) = poller {
            p.awaiting = None;
            self.metrics.poll_timeouts.inc();
            if let Some(n) = self.timeout_log.check() {
                warn!(source = %self.ctx.id, path = %self.cfg.path, timeout = ?p.cfg.timeout, earlier = n, "No reply to the poll request in time.");
            }
        }
    }

    fn report_driver_errors(&mut self, fd: RawFd, last: &mut Option<DriverCounts>) {
        let Some(before) = *last else { return };
        let Some(now) = icount::read(fd) else { return };
        for (kind, n) in now.since(&before) {
            self.metrics.driver_errors(kind, n);
            if n > 0 && (kind == "overrun" || kind == "buffer_overrun") {
                warn!(source = %self.ctx.id, kind, bytes = n, "The serial driver dropped received bytes: the agent did not read in time.");
            }
        }
        *last = Some(now);
    }

    /// Whether the path is gone or names another device than the one open.
    fn path_changed(&self, open_rdev: Option<u64>) -> Option<String> {
        use std::os::unix::fs::MetadataExt;
        match std::fs::metadata(&self.cfg.path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Some("the path no longer exists".to_owned())
            }
            Ok(m) if open_rdev.is_some_and(|r| r != m.rdev()) => {
                Some("the path now names another device".to_owned())
            }
            _ => None,
        }
    }
}

/// Resolves once shutdown is signalled (without holding the watch's lock
/// across the caller's awaits).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// The device number of an open descriptor.
fn fd_rdev(fd: RawFd) -> Option<u64> {
    // SAFETY: fstat fills a plain struct for an open descriptor.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is open for the duration of the call; `st` is writable.
    (unsafe { libc::fstat(fd, &mut st) } == 0).then_some(st.st_rdev as u64)
}

fn humantime_secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// Poll-mode timing: when the next request is due and when the reply to
/// the last one must arrive.
struct Poller {
    cfg: PollConfig,
    next: Instant,
    awaiting: Option<Instant>,
}

impl Poller {
    /// The first request goes out as soon as the port is open.
    fn new(cfg: PollConfig) -> Poller {
        Poller {
            cfg,
            next: Instant::now(),
            awaiting: None,
        }
    }

    /// Keeps a steady rhythm; after a stall, starts again from now rather
    /// than sending a burst of missed requests.
    fn schedule_next(&mut self) {
        self.next += self.cfg.interval;
        let now = Instant::now();
        if self.next <= now {
            self.next = now + self.cfg.interval;
        }
    }
}
