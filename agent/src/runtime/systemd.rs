//! The agent as a systemd `Type=notify` service: `READY=1` once every
//! component runs (and the metrics listener is bound), a one-line `STATUS=`
//! with the pipeline's shape and backlog, `WATCHDOG=1` while no component is
//! wedged (see [`weir_core::systemd::Liveness`]), and `STOPPING=1` on the
//! way out. Nothing happens when the agent does not run under systemd.

use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use weir_core::systemd::{spawn_watchdog, watchdog_timeout_from_env, Liveness, Notifier};

use crate::channel::Channel;
use crate::config::Pipeline;

/// The agent's link to its service manager.
pub(super) struct Service {
    notifier: Option<Arc<Notifier>>,
    status: Status,
}

impl Service {
    /// Reports readiness and starts the watchdog (until `stop`), when
    /// `NOTIFY_SOCKET` is set.
    pub(super) fn start(
        status: Status,
        liveness: Liveness,
        stop: watch::Receiver<bool>,
    ) -> Service {
        let Some(notifier) = Notifier::from_env().map(Arc::new) else {
            return Service {
                notifier: None,
                status,
            };
        };
        let kept = status.clone();
        let line = move || kept.line();
        notifier.ready(&line());
        spawn_watchdog(
            notifier.clone(),
            liveness,
            watchdog_timeout_from_env(),
            line,
            stop,
        );
        Service {
            notifier: Some(notifier),
            status,
        }
    }

    /// Tells the manager a reload started (`systemctl reload` waits for
    /// [`Service::reloaded`]).
    pub(super) fn reloading(&self) {
        if let Some(n) = &self.notifier {
            n.reloading();
        }
    }

    /// Tells the manager the reload ended (applied or refused: the agent runs either way).
    pub(super) fn reloaded(&self) {
        if let Some(n) = &self.notifier {
            n.ready(&self.status.line());
        }
    }

    /// Tells the manager the agent is stopping.
    pub(super) fn stopping(&self) {
        if let Some(n) = &self.notifier {
            n.stopping("stopping: sources, then transforms, then sinks");
        }
    }
}

/// The pipeline's shape and its sinks' channels, for `STATUS=`; the
/// topology updates it on every reload.
#[derive(Clone, Default)]
pub struct Status(Arc<Mutex<(String, Vec<Channel>)>>);

impl Status {
    /// Records what runs now.
    pub fn set(&self, p: &Pipeline, channels: Vec<Channel>) {
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *s = (shape(p), channels);
    }

    fn line(&self) -> String {
        let s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        summary(&s.0, &s.1)
    }
}

fn shape(p: &Pipeline) -> String {
    let n = |count: usize, one: &str| format!("{count} {one}{}", if count == 1 { "" } else { "s" });
    let mut parts = vec![n(p.sources.len(), "source")];
    if !p.transforms.is_empty() {
        parts.push(n(p.transforms.len(), "transform"));
    }
    parts.push(n(p.sinks.len(), "sink"));
    parts.join(", ")
}

/// `3 sources, 2 sinks, backlog 1.2k events`.
fn summary(shape: &str, channels: &[Channel]) -> String {
    let backlog: u64 = channels.iter().map(|c| c.backlog().0).sum();
    format!("{shape}, backlog {} events", short(backlog))
}

/// 950, 1.2k, 3.4M: short enough for `systemctl status`.
fn short(n: u64) -> String {
    match n {
        0..=999 => n.to_string(),
        1_000..=999_999 => format!("{:.1}k", n as f64 / 1e3),
        1_000_000..=999_999_999 => format!("{:.1}M", n as f64 / 1e6),
        _ => format!("{:.1}G", n as f64 / 1e9),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backlog_counts_read_in_thousands_and_millions() {
        assert_eq!(short(0), "0");
        assert_eq!(short(999), "999");
        assert_eq!(short(1_234), "1.2k");
        assert_eq!(short(3_400_000), "3.4M");
    }

    #[test]
    fn summary_names_the_pipeline_shape_and_backlog() {
        let yaml = "sources:\n  a: { type: file, include: [/tmp/a.log] }\n  b: { type: file, include: [/tmp/b.log] }\nsinks:\n  out: { type: stdout, inputs: [a, b] }\n";
        let p = crate::config::parse(std::path::Path::new("p.yaml"), yaml).unwrap();
        let status = Status::default();
        status.set(&p, Vec::new());
        assert_eq!(status.line(), "2 sources, 1 sink, backlog 0 events");
    }
}
