//! The serial source's metrics, all labelled with the component id.

use std::collections::HashMap;

use weir_core::metrics::{Counter, Gauge, Registry};

/// Counters and gauges of one serial source.
pub struct SerialMetrics {
    registry: Registry,
    id: String,
    pub events: Counter,
    pub bytes: Counter,
    pub truncated_lines: Counter,
    pub garbage_bytes: Counter,
    pub lost_frames: Counter,
    pub duplicate_frames: Counter,
    pub device_restarts: Counter,
    pub untracked_frames: Counter,
    pub poll_requests: Counter,
    pub poll_timeouts: Counter,
    pub disconnects: Counter,
    pub connected: Gauge,
    parse_errors: HashMap<&'static str, Counter>,
    frame_errors: HashMap<&'static str, Counter>,
    driver_errors: HashMap<&'static str, Counter>,
}

impl SerialMetrics {
    /// Registers the metrics of source `id`.
    pub fn new(r: &Registry, id: &str) -> SerialMetrics {
        let l = [("component", id)];
        SerialMetrics {
            registry: r.clone(),
            id: id.to_owned(),
            events: r.counter("weir_source_events_total", "Events produced by a source.", &l),
            bytes: r.counter("weir_source_bytes_total", "Bytes read by a source.", &l),
            truncated_lines: r.counter(
                "weir_serial_truncated_lines_total",
                "Lines longer than max_line_bytes whose rest was dropped.",
                &l,
            ),
            garbage_bytes: r.counter(
                "weir_serial_garbage_bytes_total",
                "Bytes between or inside frames that failed the link checks (noise, bad CRC), skipped.",
                &l,
            ),
            lost_frames: r.counter(
                "weir_serial_lost_frames_total",
                "Frames missing from a device's sequence numbers (never received).",
                &l,
            ),
            duplicate_frames: r.counter(
                "weir_serial_duplicate_frames_total",
                "Frames received again with the same sequence number and body; dropped.",
                &l,
            ),
            device_restarts: r.counter(
                "weir_serial_device_restarts_total",
                "Jumps back in a device's sequence numbers: the device restarted.",
                &l,
            ),
            untracked_frames: r.counter(
                "weir_serial_untracked_frames_total",
                "Frames of devices beyond the tracked maximum (no gap accounting).",
                &l,
            ),
            poll_requests: r.counter(
                "weir_serial_poll_requests_total",
                "Poll requests written to the port.",
                &l,
            ),
            poll_timeouts: r.counter(
                "weir_serial_poll_timeouts_total",
                "Poll requests that got no reply within poll.timeout.",
                &l,
            ),
            disconnects: r.counter(
                "weir_serial_disconnects_total",
                "Times the open port failed or vanished (unplugged).",
                &l,
            ),
            connected: r.gauge(
                "weir_serial_connected",
                "1 while the port is open, else 0.",
                &l,
            ),
            parse_errors: HashMap::new(),
            frame_errors: HashMap::new(),
            driver_errors: HashMap::new(),
        }
    }

    fn labelled(
        &self,
        name: &'static str,
        help: &'static str,
        label: &'static str,
        value: &'static str,
    ) -> Counter {
        self.registry
            .counter(name, help, &[("component", &self.id), (label, value)])
    }

    /// Counts a line that failed to parse.
    pub fn parse_error(&mut self, reason: &'static str) {
        if !self.parse_errors.contains_key(reason) {
            let c = self.labelled(
                "weir_serial_parse_errors_total",
                "Lines that failed to parse, by reason; each went to <id>.errors.",
                "reason",
                reason,
            );
            self.parse_errors.insert(reason, c);
        }
        if let Some(c) = self.parse_errors.get(reason) {
            c.inc();
        }
    }

    /// Counts a frame dropped at the link layer or refused by the decoder.
    pub fn frame_error(&mut self, reason: &'static str) {
        if !self.frame_errors.contains_key(reason) {
            let c = self.labelled(
                "weir_serial_frame_errors_total",
                "Frames dropped, by reason: link damage (bad_crc, bad_cobs, too_long, truncated) or a body the decoder refused (sent to <id>.errors).",
                "reason",
                reason,
            );
            self.frame_errors.insert(reason, c);
        }
        if let Some(c) = self.frame_errors.get(reason) {
            c.inc();
        }
    }

    /// Adds errors the UART driver reported (`TIOCGICOUNT`).
    pub fn driver_errors(&mut self, kind: &'static str, n: u64) {
        if n == 0 {
            return;
        }
        if !self.driver_errors.contains_key(kind) {
            let c = self.labelled(
                "weir_serial_driver_errors_total",
                "Errors counted by the UART driver: overrun and buffer_overrun mean received bytes were lost (the agent did not read in time), framing and parity mean line noise or wrong settings.",
                "kind",
                kind,
            );
            self.driver_errors.insert(kind, c);
        }
        if let Some(c) = self.driver_errors.get(kind) {
            c.add(n);
        }
    }
}
