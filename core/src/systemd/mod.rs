//! Running as a systemd `Type=notify` service: readiness and status
//! ([`Notifier`]), and a watchdog that pings only while the process is
//! demonstrably alive ([`Liveness`], [`spawn_watchdog`]).

mod liveness;
mod notify;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{error, info};

pub use liveness::{Liveness, Stall, Watched};
pub use notify::{watchdog_timeout_from_env, Notifier};

/// How often the status line is refreshed when there is no watchdog.
const STATUS_EVERY: Duration = Duration::from_secs(5);

/// When to ping and when a task counts as wedged, for a watchdog `timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchdogTiming {
    /// Time between checks (and pings while healthy).
    pub period: Duration,
    /// A task inside one poll for longer than this stops the pings.
    pub stall_limit: Duration,
}

impl WatchdogTiming {
    /// A third of the timeout between pings, so one late tick is not fatal;
    /// half of it as the stall limit, so a wedged task is caught and systemd
    /// acts within about one timeout of the wedge.
    pub fn for_timeout(timeout: Duration) -> WatchdogTiming {
        WatchdogTiming {
            period: (timeout / 3).max(Duration::from_millis(10)),
            stall_limit: (timeout / 2).max(Duration::from_millis(10)),
        }
    }
}

/// Sends `WATCHDOG=1` every period while no task of `liveness` is stalled
/// (only when `timeout` is set), and `STATUS=` from `status` whenever it
/// changes, until `stop`. The pings come from a task on the same executor
/// as the watched tasks: if the executor stops running tasks, they stop too.
pub fn spawn_watchdog(
    notifier: Arc<Notifier>,
    liveness: Liveness,
    timeout: Option<Duration>,
    status: impl Fn() -> String + Send + 'static,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let timing = timeout.map(WatchdogTiming::for_timeout);
    let period = timing.map_or(STATUS_EVERY, |t| t.period.min(STATUS_EVERY));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_status = String::new();
        let mut stalled: Option<String> = None;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|s| *s) => break,
            }
            let mut line = status();
            if let Some(t) = timing {
                match liveness.stalled(t.stall_limit) {
                    None => {
                        if let Some(task) = stalled.take() {
                            info!(task = %task, "The stalled task is running again; resuming watchdog pings.");
                        }
                        notifier.watchdog();
                    }
                    Some(s) => {
                        if stalled.as_deref() != Some(&s.task) {
                            error!(task = %s.task, stalled_for = ?s.for_, "A task has been stuck in one step past the watchdog's limit; withholding watchdog pings so that systemd restarts the service.");
                        }
                        line = format!("{line}; STALLED: {} for {}s", s.task, s.for_.as_secs());
                        stalled = Some(s.task);
                    }
                }
            }
            if line != last_status {
                notifier.status(&line);
                last_status = line;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;
    use std::time::Instant;

    /// Every datagram that arrives within `window`.
    fn collect(sock: &UnixDatagram, window: Duration) -> Vec<String> {
        let end = Instant::now() + window;
        let mut got = Vec::new();
        let mut buf = [0u8; 512];
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            match sock.recv(&mut buf) {
                Ok(n) => got.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
                Err(_) => break,
            }
        }
        got
    }

    fn pings(msgs: &[String]) -> usize {
        msgs.iter().filter(|m| m.contains("WATCHDOG=1")).count()
    }

    #[test]
    fn timing_pings_three_times_per_timeout_and_stalls_at_half() {
        let t = WatchdogTiming::for_timeout(Duration::from_secs(30));
        assert_eq!(t.period, Duration::from_secs(10));
        assert_eq!(t.stall_limit, Duration::from_secs(15));
    }

    #[test]
    fn a_wedged_task_stops_the_pings_and_they_resume_when_it_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).unwrap();
        let notifier = Arc::new(Notifier::connect(path.to_str().unwrap()).unwrap());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let liveness = Liveness::new();
        let (stop_tx, stop) = watch::channel(false);
        // Timeout 300 ms: a check every 100 ms, a task stalled past 150 ms.
        let _guard = rt.enter();
        spawn_watchdog(
            notifier,
            liveness.clone(),
            Some(Duration::from_millis(300)),
            || "1 source, 1 sink".to_owned(),
            stop,
        );
        let healthy = collect(&server, Duration::from_millis(450));
        assert!(pings(&healthy) >= 3, "healthy: {healthy:?}");
        assert!(healthy.iter().any(|m| m == "STATUS=1 source, 1 sink"));

        let (release, wedge) = std::sync::mpsc::channel::<()>();
        rt.spawn(liveness.watch("sink wedged", async move {
            let _ = wedge.recv_timeout(Duration::from_secs(10));
        }));
        // Past the stall limit plus one tick, no ping may arrive.
        let before = collect(&server, Duration::from_millis(300));
        let wedged = collect(&server, Duration::from_millis(600));
        assert_eq!(pings(&wedged), 0, "pinged while wedged: {wedged:?}");
        // The status says why (sent once, when the stall was found).
        assert!(
            before
                .iter()
                .chain(&wedged)
                .any(|m| m.contains("STALLED: sink wedged")),
            "{before:?} {wedged:?}"
        );

        release.send(()).unwrap();
        let _ = collect(&server, Duration::from_millis(150));
        let recovered = collect(&server, Duration::from_millis(450));
        assert!(pings(&recovered) >= 2, "after recovery: {recovered:?}");
        let _ = stop_tx.send(true);
    }

    #[test]
    fn a_blocked_executor_sends_no_pings() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).unwrap();
        let notifier = Arc::new(Notifier::connect(path.to_str().unwrap()).unwrap());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (_stop_tx, stop) = watch::channel(false);
        rt.block_on(async {
            spawn_watchdog(
                notifier,
                Liveness::new(),
                Some(Duration::from_millis(90)),
                String::new,
                stop,
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert!(pings(&collect(&server, Duration::from_millis(10))) >= 1);
            // The only executor thread is held by an unwatched blocking call.
            std::thread::sleep(Duration::from_millis(400));
        });
        // Nothing was sent while the executor was blocked.
        let during = collect(&server, Duration::from_millis(10));
        assert_eq!(pings(&during), 0, "{during:?}");
    }
}
