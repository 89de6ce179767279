//! The runtime's transform paths against real disk channels: marks stay
//! exact through an inline transform that emits several events or none, and
//! a stateful transform emits every output exactly once through a crash.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use weir_core::metrics::Registry;
use weir_core::{Event, Metadata, Value};
use weir_plugins::state::StateStore;
use weir_plugins::{
    Clock, Emitter, ManualClock, Mark, SourceBatch, Stream, Transform, TransformError,
};

use super::inline::{Inline, TransformMetrics};
use super::logged::Logged;
use super::ports::Ports;
use super::route::{deliver, LogInput, Outputs, Target};
use crate::channel::disk::PayloadForm;
use crate::channel::{Channel, ChannelConfig};

fn channel(dir: &Path, name: &str) -> Channel {
    let form = if name == "log" {
        PayloadForm::Events
    } else {
        PayloadForm::Records
    };
    Channel::open_with(
        name,
        &ChannelConfig::default(),
        &dir.join(name),
        &Registry::new(),
        form,
    )
    .unwrap()
}

fn ev(i: u64) -> Event {
    let mut e = Event::from_message(format!("{i}"), Metadata::default());
    e.fields.insert("n", Value::Int(i as i64));
    e
}

fn n_of(e: &Event) -> i64 {
    match e.fields.get("n") {
        Some(Value::Int(n)) => *n,
        _ => panic!("no n in {e:?}"),
    }
}

/// Emits two events for even inputs, none for multiples of 3, one otherwise.
struct Split;

impl Transform for Split {
    fn process(&mut self, event: Event, out: &mut Emitter) {
        let n = n_of(&event);
        if n % 3 == 0 {
            return;
        }
        if n % 2 == 0 {
            let mut twin = event.clone();
            twin.fields.insert("twin", Value::Bool(true));
            out.emit(event);
            out.emit(twin);
        } else {
            out.emit(event);
        }
    }
}

fn expected_split(to: u64) -> Vec<(i64, bool)> {
    let mut want = Vec::new();
    for n in 1..=to as i64 {
        if n % 3 == 0 {
            continue;
        }
        want.push((n, false));
        if n % 2 == 0 {
            want.push((n, true));
        }
    }
    want
}

async fn drain(ch: &Channel) -> Vec<Event> {
    let (_tx, mut rx) = watch::channel(false);
    ch.rewind();
    let mut out = Vec::new();
    while let Some(b) = ch
        .next_batch(
            10_000,
            usize::MAX,
            Some(Duration::from_millis(200)),
            &mut rx,
        )
        .await
    {
        if b.is_empty() {
            break;
        }
        out.extend(b.into_iter().map(|(_, e)| e));
    }
    out
}

fn batch(from: u64, to: u64) -> SourceBatch {
    let events: Vec<Event> = (from..=to).map(ev).collect();
    let ends: Vec<u64> = (from..=to).collect();
    SourceBatch::ordered("file-1", events, &ends)
}

fn start_inline(
    ch: &Channel,
    clock: Arc<dyn Clock>,
) -> (
    mpsc::Sender<super::route::InlineRequest>,
    watch::Sender<bool>,
) {
    let mut outputs = Outputs::default();
    outputs.0.insert(None, vec![Target::Channel(ch.clone())]);
    let (tx, rx) = mpsc::channel(2);
    let (stop_tx, stop) = watch::channel(false);
    let t = Inline::new(
        "split".into(),
        Box::new(Split),
        Vec::new(),
        Ports::new("split", outputs),
        clock,
        TransformMetrics::new(&Registry::new(), "split"),
    );
    tokio::spawn(t.run(rx, stop.clone(), stop));
    (tx, stop_tx)
}

#[tokio::test]
async fn an_inline_transform_s_outputs_are_held_once_when_its_source_resends() {
    let dir = tempfile::tempdir().unwrap();
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(0));
    let ch = channel(dir.path(), "sink");
    let (tx, stop) = start_inline(&ch, clock.clone());
    let (_s, mut shutdown) = watch::channel(false);
    let target = [Target::Inline(tx)];
    deliver(&target, batch(1, 10), &mut shutdown).await.unwrap();
    // A source re-reading after a crash sends an overlapping range again.
    deliver(&target, batch(5, 20), &mut shutdown).await.unwrap();
    let _ = stop.send(true);
    drop(ch);
    // And after a restart, from the very beginning.
    let ch = channel(dir.path(), "sink");
    let (tx, _stop) = start_inline(&ch, clock);
    deliver(&[Target::Inline(tx)], batch(1, 25), &mut shutdown)
        .await
        .unwrap();
    let got: Vec<(i64, bool)> = drain(&ch)
        .await
        .iter()
        .map(|e| (n_of(e), e.fields.get("twin").is_some()))
        .collect();
    assert_eq!(got, expected_split(25));
}

#[tokio::test]
async fn a_channel_fed_by_a_source_and_its_transform_keeps_both() {
    let dir = tempfile::tempdir().unwrap();
    let ch = channel(dir.path(), "sink");
    let (tx, _stop) = start_inline(&ch, Arc::new(ManualClock::new(0)));
    let (_s, mut shutdown) = watch::channel(false);
    let targets = [Target::Channel(ch.clone()), Target::Inline(tx)];
    deliver(&targets, batch(1, 4), &mut shutdown).await.unwrap();
    // 4 source events and 4 derived ones (1, 2, 2-twin, 4, 4-twin minus 3 → 5).
    assert_eq!(drain(&ch).await.len(), 4 + 5);
}

/// Sums `n` over every three inputs and emits the sum; emits the pending
/// partial sum on a timer 10 ns after the last input.
#[derive(Default)]
struct Sum3 {
    sum: i64,
    count: u32,
    last_at: Option<i64>,
}

impl Transform for Sum3 {
    fn process(&mut self, event: Event, out: &mut Emitter) {
        let n = n_of(&event);
        if n < 0 {
            out.fail(
                event,
                TransformError::Field {
                    field: "n".into(),
                    message: "negative".into(),
                },
            );
            return;
        }
        self.sum += n;
        self.count += 1;
        self.last_at = Some(out.now());
        if self.count == 3 {
            self.flush(out);
        }
    }

    fn next_timer(&self) -> Option<i64> {
        self.last_at.map(|t| t + 10)
    }

    fn on_timer(&mut self, out: &mut Emitter) {
        self.flush(out);
    }

    fn snapshot(&self) -> Result<Vec<u8>, TransformError> {
        let mut b = self.sum.to_le_bytes().to_vec();
        b.extend_from_slice(&self.count.to_le_bytes());
        b.extend_from_slice(&self.last_at.unwrap_or(i64::MIN).to_le_bytes());
        Ok(b)
    }

    fn restore(&mut self, s: &[u8]) -> Result<(), TransformError> {
        if s.is_empty() {
            return Ok(());
        }
        let bad = || TransformError::State("bad snapshot".into());
        self.sum = i64::from_le_bytes(s.get(0..8).ok_or_else(bad)?.try_into().map_err(|_| bad())?);
        self.count = u32::from_le_bytes(
            s.get(8..12)
                .ok_or_else(bad)?
                .try_into()
                .map_err(|_| bad())?,
        );
        let at = i64::from_le_bytes(
            s.get(12..20)
                .ok_or_else(bad)?
                .try_into()
                .map_err(|_| bad())?,
        );
        self.last_at = (at != i64::MIN).then_some(at);
        Ok(())
    }
}

impl Sum3 {
    fn flush(&mut self, out: &mut Emitter) {
        if self.count > 0 {
            let mut e = Event::from_message("sum", Metadata::default());
            e.fields.insert("sum", Value::Int(self.sum));
            e.fields.insert("count", Value::Int(i64::from(self.count)));
            out.emit(e);
        }
        self.sum = 0;
        self.count = 0;
        self.last_at = None;
    }
}

struct Stateful {
    log: Arc<LogInput>,
    sink: Channel,
    task: tokio::task::JoinHandle<()>,
    stop: watch::Sender<bool>,
}

fn start_logged(
    dir: &Path,
    state: &StateStore,
    clock: Arc<ManualClock>,
    checkpoint: Duration,
) -> Stateful {
    let log = Arc::new(LogInput::new(channel(dir, "log"), clock, 5));
    let sink = channel(dir, "sink");
    let mut outputs = Outputs::default();
    outputs.0.insert(None, vec![Target::Channel(sink.clone())]);
    let (stop_tx, stop) = watch::channel(false);
    let t = Logged {
        id: "sum".into(),
        transform: Box::new(Sum3::default()),
        declared: Vec::new(),
        input: log.clone(),
        outputs: Ports::new("sum", outputs),
        state: state.clone(),
        checkpoint_interval: checkpoint,
        metrics: TransformMetrics::new(&Registry::new(), "sum"),
    };
    let task = tokio::spawn(t.run(stop.clone(), stop));
    Stateful {
        log,
        sink,
        task,
        stop: stop_tx,
    }
}

fn sums(events: &[Event]) -> Vec<(i64, i64)> {
    events
        .iter()
        .map(|e| match (e.fields.get("sum"), e.fields.get("count")) {
            (Some(Value::Int(s)), Some(Value::Int(c))) => (*s, *c),
            _ => panic!("{e:?}"),
        })
        .collect()
}

async fn wait_outputs(ch: &Channel, n: usize) -> Vec<Event> {
    for _ in 0..200 {
        let got = drain(ch).await;
        if got.len() >= n {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drain(ch).await
}

#[tokio::test]
async fn a_stateful_transform_emits_each_output_once_across_crashes() {
    let dir = tempfile::tempdir().unwrap();
    let state = StateStore::open(&dir.path().join("state.db")).unwrap();
    let clock = Arc::new(ManualClock::new(1_000));
    let (_s, mut shutdown) = watch::channel(false);
    // Run 1: checkpoints rarely, so the crash loses state that the replay must rebuild.
    let run = start_logged(dir.path(), &state, clock.clone(), Duration::from_secs(3600));
    for k in 0..4u64 {
        let b = batch(k * 5 + 1, k * 5 + 5);
        deliver(&[Target::Log(run.log.clone())], b, &mut shutdown)
            .await
            .unwrap();
    }
    // 20 inputs: six sums of three, two inputs pending.
    let first = wait_outputs(&run.sink, 6).await;
    assert_eq!(sums(&first).len(), 6);
    run.task.abort(); // kill -9: no checkpoint since the start
    let _ = run.task.await;
    drop(run.log);
    drop(run.sink);

    // Run 2: replays the log from the start; checkpoints after every batch.
    let run = start_logged(dir.path(), &state, clock.clone(), Duration::ZERO);
    let b = batch(21, 25);
    deliver(&[Target::Log(run.log.clone())], b, &mut shutdown)
        .await
        .unwrap();
    let _ = wait_outputs(&run.sink, 8).await;
    let _ = run.stop.send(true);
    let _ = run.task.await;
    drop(run.log);
    drop(run.sink);

    // Run 3: the time moves past the timer of the pending partial sum.
    clock.advance(1_000);
    let run = start_logged(dir.path(), &state, clock.clone(), Duration::ZERO);
    let got = wait_outputs(&run.sink, 9).await;
    let _ = run.stop.send(true);
    let _ = run.task.await;
    let want: Vec<(i64, i64)> = vec![
        (6, 3),
        (15, 3),
        (24, 3),
        (33, 3),
        (42, 3),
        (51, 3),
        (60, 3), // 19 + 20 + 21: two inputs from before the crash, one after
        (69, 3),
        (25, 1), // the partial sum, closed by the timer
    ];
    assert_eq!(sums(&got), want);
}

#[tokio::test]
async fn a_stateful_transform_s_failures_reach_its_errors_output_once() {
    let dir = tempfile::tempdir().unwrap();
    let state = StateStore::open(&dir.path().join("state.db")).unwrap();
    let clock = Arc::new(ManualClock::new(0));
    let log = Arc::new(LogInput::new(channel(dir.path(), "log"), clock.clone(), 5));
    let sink = channel(dir.path(), "sink");
    let dead = channel(dir.path(), "dead");
    let mut outputs = Outputs::default();
    outputs.0.insert(None, vec![Target::Channel(sink.clone())]);
    outputs
        .0
        .insert(Some("errors".into()), vec![Target::Channel(dead.clone())]);
    let (stop_tx, stop) = watch::channel(false);
    let t = Logged {
        id: "sum".into(),
        transform: Box::new(Sum3::default()),
        declared: Vec::new(),
        input: log.clone(),
        outputs: Ports::new("sum", outputs),
        state: state.clone(),
        checkpoint_interval: Duration::ZERO,
        metrics: TransformMetrics::new(&Registry::new(), "sum"),
    };
    let task = tokio::spawn(t.run(stop.clone(), stop));
    let (_s, mut shutdown) = watch::channel(false);
    let mut e = ev(0);
    e.fields.insert("n", Value::Int(-1));
    let b = SourceBatch {
        stream: Some(Stream::ordered("s")),
        events: vec![e],
        marks: vec![Mark::at(1)],
        ..SourceBatch::default()
    };
    deliver(&[Target::Log(log.clone())], b, &mut shutdown)
        .await
        .unwrap();
    let got = wait_outputs(&dead, 1).await;
    let _ = stop_tx.send(true);
    let _ = task.await;
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].fields.get("reason"),
        Some(&Value::String("field".into()))
    );
}
