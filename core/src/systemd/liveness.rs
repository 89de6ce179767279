//! Liveness of the tasks a binary runs, for the systemd watchdog.
//!
//! Every long-lived task (a component, a listener) runs inside
//! [`Liveness::watch`], which records when each poll of the task begins and
//! ends. A task waiting for data is not being polled and is healthy; a task
//! that has been *inside* one poll for longer than the stall limit is wedged:
//! it blocks its executor thread (a blocking call on the async path, a loop
//! that never yields), and the watchdog stops pinging so that systemd
//! restarts the process. A fully blocked executor is caught without any
//! bookkeeping: the watchdog's own task no longer runs, so no ping is sent.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Live tasks to be watched; cheap to clone.
#[derive(Clone)]
pub struct Liveness {
    epoch: Instant,
    beats: Arc<Mutex<Vec<Weak<Beat>>>>,
}

/// One watched task.
struct Beat {
    name: String,
    /// Milliseconds since the epoch, plus one, at which the current poll
    /// began; 0 while the task is not being polled.
    polling_since: AtomicU64,
}

/// A task found inside one poll for longer than the stall limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stall {
    /// The task's name (`source app_logs`, `http server`).
    pub task: String,
    /// How long its current poll has lasted.
    pub for_: Duration,
}

impl Default for Liveness {
    fn default() -> Self {
        Self::new()
    }
}

impl Liveness {
    /// No tasks watched yet.
    pub fn new() -> Liveness {
        Liveness {
            epoch: Instant::now(),
            beats: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Wraps `fut` so that its polls are timed under `name`.
    pub fn watch<F: Future>(&self, name: impl Into<String>, fut: F) -> Watched<F> {
        let beat = Arc::new(Beat {
            name: name.into(),
            polling_since: AtomicU64::new(0),
        });
        let mut beats = self.beats.lock().unwrap_or_else(|e| e.into_inner());
        // Finished tasks leave dead entries; drop them as new ones arrive.
        beats.retain(|b| b.strong_count() > 0);
        beats.push(Arc::downgrade(&beat));
        Watched {
            fut,
            beat,
            epoch: self.epoch,
        }
    }

    /// The task that has been inside a single poll the longest, if that is
    /// longer than `limit`.
    pub fn stalled(&self, limit: Duration) -> Option<Stall> {
        self.stalled_at(Instant::now(), limit)
    }

    fn stalled_at(&self, now: Instant, limit: Duration) -> Option<Stall> {
        let now_ms = millis(now.saturating_duration_since(self.epoch)) + 1;
        let beats = self.beats.lock().unwrap_or_else(|e| e.into_inner());
        beats
            .iter()
            .filter_map(Weak::upgrade)
            .filter_map(|b| {
                let since = b.polling_since.load(Ordering::Acquire);
                (since != 0).then(|| (b.name.clone(), now_ms.saturating_sub(since)))
            })
            .max_by_key(|(_, ms)| *ms)
            .map(|(task, ms)| Stall {
                task,
                for_: Duration::from_millis(ms),
            })
            .filter(|s| s.for_ > limit)
    }

    /// How many watched tasks are still running.
    pub fn tasks(&self) -> usize {
        let beats = self.beats.lock().unwrap_or_else(|e| e.into_inner());
        beats.iter().filter(|b| b.strong_count() > 0).count()
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX - 1)
}

/// A future whose polls are timed; see [`Liveness::watch`].
pub struct Watched<F> {
    fut: F,
    beat: Arc<Beat>,
    epoch: Instant,
}

impl<F: Future> Future for Watched<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: `fut` is structurally pinned: it is never moved out of
        // `self`, and `Watched` has no Drop impl that could move it.
        let this = unsafe { self.get_unchecked_mut() };
        let start = millis(this.epoch.elapsed()) + 1;
        this.beat.polling_since.store(start, Ordering::Release);
        // SAFETY: see above; `this.fut` stays where it is.
        let out = unsafe { Pin::new_unchecked(&mut this.fut) }.poll(cx);
        this.beat.polling_since.store(0, Ordering::Release);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_task_is_not_stalled() {
        let l = Liveness::new();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (_tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = rt.spawn(l.watch("source idle", rx));
        rt.block_on(async { tokio::time::sleep(Duration::from_millis(30)).await });
        assert_eq!(l.tasks(), 1);
        assert_eq!(l.stalled(Duration::from_millis(10)), None);
        task.abort();
    }

    #[test]
    fn a_task_blocked_inside_its_poll_is_reported_with_its_name() {
        let l = Liveness::new();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        rt.spawn(l.watch("sink wedged", async move {
            // A blocking call on the async path: the thread is held.
            let _ = release_rx.recv_timeout(Duration::from_secs(10));
        }));
        let found = (0..200).find_map(|_| {
            std::thread::sleep(Duration::from_millis(10));
            l.stalled(Duration::from_millis(100))
        });
        let stall = found.expect("the wedged task was never reported");
        assert_eq!(stall.task, "sink wedged");
        assert!(stall.for_ > Duration::from_millis(100));
        release_tx.send(()).unwrap();
        let cleared = (0..200).any(|_| {
            std::thread::sleep(Duration::from_millis(10));
            l.stalled(Duration::from_millis(100)).is_none()
        });
        assert!(
            cleared,
            "the stall was still reported after the task finished"
        );
    }

    #[test]
    fn finished_tasks_are_forgotten() {
        let l = Liveness::new();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(l.watch("one-shot", async {}));
        assert_eq!(l.tasks(), 0);
    }
}
