//! The pipeline's transforms wired in-process for `weir test`: no sources,
//! sinks, channels or input logs. Events injected at a component flow
//! through the transforms that read it, one event at a time, depth first;
//! every component output (and every sink's input) records what it carried.
//! Time is a hand-driven clock: `advance` fires each timer at its due time,
//! in time order across transforms, so windows and throttles are tested
//! exactly. Stateful transforms run the same way (their `process` and
//! `on_timer`, time from the clock); `restart` snapshots, rebuilds and
//! restores every transform.

use std::collections::HashMap;

use weir_core::Event;
use weir_plugins::{Emitted, Emitter, Transform, TransformContext};

use crate::config::{split_input, Pipeline};

/// A component output: the component and the output (`None`: the default).
pub type Port = (String, Option<String>);

/// Why a test could not run.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    #[error("building transform {id}: {source}")]
    Build {
        id: String,
        source: weir_plugins::BuildError,
    },
    #[error("transform {id}: {message}")]
    State { id: String, message: String },
    #[error("timers keep firing at one time; stopped after {0} rounds")]
    Timers(usize),
}

struct Node {
    id: String,
    declared: Vec<String>,
    transform: Box<dyn Transform>,
}

/// The running graph of one test.
pub struct Graph<'p> {
    pipeline: &'p Pipeline,
    /// In the order they run (every transform after those it reads).
    nodes: Vec<Node>,
    /// Readers (node indices) of each component output.
    readers: HashMap<Port, Vec<usize>>,
    /// Sinks reading each component output.
    sinks_of: HashMap<Port, Vec<String>>,
    now: i64,
    /// What each component output, and each sink, received.
    pub recorded: HashMap<String, Vec<Event>>,
}

/// Most timer rounds one `advance` may take.
const MAX_TIMER_ROUNDS: usize = 100_000;

/// The name outputs are recorded under: `id` or `id.output`.
pub fn port_name(port: &Port) -> String {
    match &port.1 {
        Some(o) => format!("{}.{o}", port.0),
        None => port.0.clone(),
    }
}

fn parse_port(s: &str) -> Port {
    let (id, out) = split_input(s);
    (id.to_owned(), out.map(str::to_owned))
}

impl<'p> Graph<'p> {
    /// Builds every transform of `pipeline`, with the clock at `now`.
    pub fn new(pipeline: &'p Pipeline, now: i64) -> Result<Graph<'p>, GraphError> {
        let mut g = Graph {
            pipeline,
            nodes: Vec::new(),
            readers: HashMap::new(),
            sinks_of: HashMap::new(),
            now,
            recorded: HashMap::new(),
        };
        for id in pipeline.transform_order() {
            let i = g.nodes.len();
            let node = g.build(&id)?;
            g.nodes.push(node);
            if let Some(t) = pipeline.transforms.iter().find(|t| t.id == id) {
                for input in &t.inputs {
                    g.readers.entry(parse_port(input)).or_default().push(i);
                }
            }
        }
        for s in &pipeline.sinks {
            for input in &s.inputs {
                g.sinks_of
                    .entry(parse_port(input))
                    .or_default()
                    .push(s.id.clone());
            }
        }
        Ok(g)
    }

    fn build(&self, id: &str) -> Result<Node, GraphError> {
        let spec = self
            .pipeline
            .transforms
            .iter()
            .find(|t| t.id == id)
            .ok_or_else(|| GraphError::State {
                id: id.to_owned(),
                message: "not in the pipeline".to_owned(),
            })?;
        let ctx = TransformContext {
            id: id.to_owned(),
            metrics: Default::default(),
        };
        let transform = spec.config.build(ctx).map_err(|source| GraphError::Build {
            id: id.to_owned(),
            source,
        })?;
        Ok(Node {
            id: id.to_owned(),
            declared: spec.config.outputs(),
            transform,
        })
    }

    /// The clock's time.
    pub fn now(&self) -> i64 {
        self.now
    }

    /// Injects `events` as the output `port` of a source (or a transform).
    pub fn emit_from(&mut self, port: Port, events: Vec<Event>) {
        self.carry(&port, events);
        self.fire_due();
    }

    /// Injects `events` into the input of transform `id`.
    pub fn input_to(&mut self, id: &str, events: Vec<Event>) {
        if let Some(i) = self.nodes.iter().position(|n| n.id == id) {
            for e in events {
                self.process(i, e);
            }
        }
        self.fire_due();
    }

    /// Records what `port` carried and hands it to its readers.
    fn carry(&mut self, port: &Port, events: Vec<Event>) {
        if events.is_empty() {
            return;
        }
        self.recorded
            .entry(port_name(port))
            .or_default()
            .extend(events.iter().cloned());
        for sink in self.sinks_of.get(port).cloned().unwrap_or_default() {
            self.recorded
                .entry(sink)
                .or_default()
                .extend(events.iter().cloned());
        }
        let readers = self.readers.get(port).cloned().unwrap_or_default();
        for e in events {
            for &r in &readers {
                self.process(r, e.clone());
            }
        }
    }

    fn process(&mut self, i: usize, event: Event) {
        let node = &mut self.nodes[i];
        let mut out = Emitter::new(&node.id, &node.declared, self.now);
        node.transform.process(event, &mut out);
        let id = node.id.clone();
        self.deliver(&id, out.take().0);
    }

    fn deliver(&mut self, id: &str, emitted: Vec<Emitted>) {
        for e in emitted {
            self.carry(&(id.to_owned(), e.output), e.events);
        }
    }

    /// Fires every timer due at the current time, upstream first.
    fn fire_due(&mut self) {
        for i in 0..self.nodes.len() {
            let node = &mut self.nodes[i];
            let mut out = Emitter::new(&node.id, &node.declared, self.now);
            // Bounded: a transform asking again and again for a past timer.
            for _ in 0..1024 {
                match node.transform.next_timer() {
                    Some(t) if t <= self.now => node.transform.on_timer(&mut out),
                    _ => break,
                }
            }
            let id = node.id.clone();
            self.deliver(&id, out.take().0);
        }
    }

    /// Moves the clock forward by `ns`, stopping at each timer on the way
    /// (in time order across transforms) to fire it at its due time.
    pub fn advance(&mut self, ns: i64) -> Result<(), GraphError> {
        let target = self.now.saturating_add(ns);
        for _ in 0..MAX_TIMER_ROUNDS {
            let next = self
                .nodes
                .iter()
                .filter_map(|n| n.transform.next_timer())
                .min();
            match next {
                Some(t) if t <= target => {
                    self.now = self.now.max(t);
                    self.fire_due();
                }
                _ => {
                    self.now = target;
                    return Ok(());
                }
            }
        }
        Err(GraphError::Timers(MAX_TIMER_ROUNDS))
    }

    /// Snapshots every transform, builds it anew and restores the snapshot.
    pub fn restart(&mut self) -> Result<(), GraphError> {
        for i in 0..self.nodes.len() {
            let id = self.nodes[i].id.clone();
            let snap = self.nodes[i]
                .transform
                .snapshot()
                .map_err(|e| GraphError::State {
                    id: id.clone(),
                    message: format!("snapshot: {e}"),
                })?;
            let mut node = self.build(&id)?;
            node.transform
                .restore(&snap)
                .map_err(|e| GraphError::State {
                    id: id.clone(),
                    message: format!("restore: {e}"),
                })?;
            self.nodes[i] = node;
        }
        Ok(())
    }
}
