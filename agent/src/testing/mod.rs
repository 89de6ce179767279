//! `weir test`: unit tests of a pipeline's transforms, declared in YAML
//! beside the pipeline (`spec.rs` has the format), run in-process on a
//! hand-driven clock (`graph.rs`), checked with a readable diff
//! (`check.rs`). Both files are validated first, every problem reported
//! with its file, line and column, as `weir validate` does.

pub mod check;
pub mod graph;
pub mod spec;

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use weir_core::{Event, Metadata};
use weir_plugins::transforms::script::{Conditions, Limits};

use crate::config::{self, locate, split_input, Pipeline, Problem, Problems};
use graph::{Graph, Port};
use spec::{Step, TestCase, TestFile};

/// The tests file of `pipeline` when none is given: `<name>.tests.yaml` beside it.
pub fn default_tests_path(pipeline: &Path) -> PathBuf {
    let stem = pipeline
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    pipeline.with_file_name(format!("{stem}.tests.yaml"))
}

/// How a run went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub passed: usize,
    pub failed: usize,
}

/// Runs the tests of `pipeline` (from `tests`, or the default file),
/// writing the report to `out`. `Err`: a file is invalid (every problem).
pub fn run(
    pipeline: &Path,
    tests: Option<&Path>,
    out: &mut dyn Write,
) -> Result<Outcome, Problems> {
    let p = config::load(pipeline)?;
    let tests_path = tests.map_or_else(|| default_tests_path(pipeline), Path::to_path_buf);
    let loaded = load(&tests_path, &p)?;
    let _ = writeln!(
        out,
        "weir test: {} ({} tests from {})",
        pipeline.display(),
        loaded.file.tests.len(),
        tests_path.display()
    );
    let mut outcome = Outcome {
        passed: 0,
        failed: 0,
    };
    for case in &loaded.file.tests {
        let failures = run_case(&p, case, loaded.start);
        if failures.is_empty() {
            outcome.passed += 1;
            let _ = writeln!(out, "ok   {}", case.name);
        } else {
            outcome.failed += 1;
            let _ = writeln!(out, "FAIL {}", case.name);
            for l in failures {
                let _ = writeln!(out, "  {l}");
            }
        }
    }
    let _ = writeln!(out, "{} passed, {} failed", outcome.passed, outcome.failed);
    Ok(outcome)
}

/// A validated tests file.
struct Loaded {
    file: TestFile,
    start: i64,
}

/// Nanoseconds since the epoch of an RFC 3339 time.
fn rfc3339_ns(s: &str) -> Option<i64> {
    let t = humantime::parse_rfc3339_weak(s).ok()?;
    i64::try_from(t.duration_since(UNIX_EPOCH).ok()?.as_nanos()).ok()
}

struct Checker<'a> {
    file: &'a Path,
    text: &'a str,
    index: std::collections::HashMap<String, locate::Pos>,
    problems: Vec<Problem>,
}

impl Checker<'_> {
    fn add(&mut self, path: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            file: self.file.to_path_buf(),
            pos: locate::find(&self.index, path),
            path: path.to_owned(),
            message: message.into(),
        });
    }

    fn add_at(&mut self, path: &str, line: usize, column: usize, message: String) {
        let scalars = locate::scalars(self.text);
        let pos = scalars
            .get(path)
            .and_then(|v| locate::inside(self.text, v, line, column))
            .or_else(|| locate::find(&self.index, path));
        self.problems.push(Problem {
            file: self.file.to_path_buf(),
            pos,
            path: path.to_owned(),
            message,
        });
    }
}

/// What can be named: component outputs (`id`, `id.output`) and sinks.
struct Names {
    sources: HashSet<String>,
    transforms: HashSet<String>,
    outputs: HashSet<String>,
    sinks: HashSet<String>,
}

impl Names {
    fn of(p: &Pipeline) -> Names {
        let mut outputs = HashSet::new();
        for s in &p.sources {
            outputs.insert(s.id.clone());
            for o in s.config.outputs().into_iter().chain(["errors".to_owned()]) {
                outputs.insert(format!("{}.{o}", s.id));
            }
        }
        for t in &p.transforms {
            if t.config.default_output() {
                outputs.insert(t.id.clone());
            }
            for o in t.config.outputs().into_iter().chain(["errors".to_owned()]) {
                outputs.insert(format!("{}.{o}", t.id));
            }
        }
        Names {
            sources: p.sources.iter().map(|s| s.id.clone()).collect(),
            transforms: p.transforms.iter().map(|t| t.id.clone()).collect(),
            outputs,
            sinks: p.sinks.iter().map(|s| s.id.clone()).collect(),
        }
    }

    fn listed(set: &HashSet<String>) -> String {
        let mut v: Vec<&String> = set.iter().collect();
        v.sort();
        v.into_iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn load(path: &Path, p: &Pipeline) -> Result<Loaded, Problems> {
    let problem = |pos, message: String| {
        Problems(vec![Problem {
            file: path.to_path_buf(),
            pos,
            path: String::new(),
            message,
        }])
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| problem(None, format!("cannot read the tests file: {e} (give one with --tests, or put it beside the pipeline as {})", path.display())))?;
    let value: serde_yaml::Value = serde_yaml::from_str(&text).map_err(|e| {
        problem(
            e.location().map(|l| (l.line(), l.column())),
            format!("invalid YAML: {e}"),
        )
    })?;
    let mut c = Checker {
        file: path,
        text: &text,
        index: locate::index(&text),
        problems: Vec::new(),
    };
    let file: TestFile = match serde_path_to_error::deserialize(value) {
        Ok(f) => f,
        Err(e) => {
            let at = e.path().to_string();
            c.add(if at == "." { "" } else { &at }, e.into_inner().to_string());
            return Err(Problems(c.problems));
        }
    };
    let start = match &file.start {
        Some(s) => rfc3339_ns(s).unwrap_or_else(|| {
            c.add(
                "start",
                "must be an RFC 3339 time such as 2024-05-01T12:00:00Z",
            );
            0
        }),
        None => rfc3339_ns(spec::DEFAULT_START).unwrap_or(0),
    };
    if file.tests.is_empty() {
        c.add("tests", "no tests");
    }
    let names = Names::of(p);
    for (i, case) in file.tests.iter().enumerate() {
        let at = format!("tests[{i}]");
        if case.expect.is_empty() {
            c.add(&at, "a test needs `expect`: what some output must carry");
        }
        for (j, step) in case.steps.iter().enumerate() {
            check_step(&mut c, &format!("{at}.steps[{j}]"), step, &names);
        }
        for (j, ex) in case.expect.iter().enumerate() {
            let at = format!("{at}.expect[{j}]");
            if !names.outputs.contains(&ex.output) && !names.sinks.contains(&ex.output) {
                c.add(
                    &format!("{at}.output"),
                    format!(
                        "no component output or sink named `{}`; outputs: {}; sinks: {}",
                        ex.output,
                        Names::listed(&names.outputs),
                        Names::listed(&names.sinks)
                    ),
                );
            }
            if ex.count.is_none() && ex.events.is_none() && ex.conditions.is_empty() {
                c.add(&at, "say what to expect: `count`, `events` or `conditions`");
            }
            let exprs: Vec<&str> = ex.conditions.iter().map(String::as_str).collect();
            if let Err(errors) = Conditions::compile("weir-test", &exprs, &Limits::default()) {
                for (k, e) in errors {
                    c.add_at(
                        &format!("{at}.conditions[{k}]"),
                        e.line,
                        e.column,
                        format!("the condition does not compile: {e}"),
                    );
                }
            }
        }
    }
    if c.problems.is_empty() {
        Ok(Loaded { file, start })
    } else {
        c.problems.sort_by_key(|p| p.pos.unwrap_or((usize::MAX, 0)));
        Err(Problems(c.problems))
    }
}

fn check_step(c: &mut Checker, at: &str, step: &Step, names: &Names) {
    let kinds = usize::from(step.input.is_some())
        + usize::from(step.advance.is_some())
        + usize::from(step.restart);
    if kinds != 1 {
        c.add(
            at,
            "a step is one of `input` (with `events`), `advance` or `restart: true`",
        );
    }
    if let Some(input) = &step.input {
        // A transform's input, or a source's or transform's output.
        if !names.transforms.contains(input) && !names.outputs.contains(input) {
            c.add(
                &format!("{at}.input"),
                format!(
                    "`{input}` is not a source output or transform; sources: {}; transforms: {}",
                    Names::listed(&names.sources),
                    Names::listed(&names.transforms)
                ),
            );
        }
        if step.events.is_empty() {
            c.add(&format!("{at}.events"), "an input step needs events");
        }
    } else if !step.events.is_empty() {
        c.add(&format!("{at}.events"), "events need an `input` to go to");
    }
    if let Some(t) = &step.timestamp {
        if rfc3339_ns(t).is_none() {
            c.add(
                &format!("{at}.timestamp"),
                "must be an RFC 3339 time such as 2024-05-01T12:00:00Z",
            );
        }
    }
}

/// Runs one test; its failures as report lines.
fn run_case(p: &Pipeline, case: &TestCase, start: i64) -> Vec<String> {
    let mut g = match Graph::new(p, start) {
        Ok(g) => g,
        Err(e) => return vec![e.to_string()],
    };
    let host: std::sync::Arc<str> = p
        .host
        .clone()
        .unwrap_or_else(|| "weir-test".to_owned())
        .into();
    for step in &case.steps {
        if let Some(d) = step.advance {
            if let Err(e) = g.advance(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)) {
                return vec![e.to_string()];
            }
        }
        if step.restart {
            if let Err(e) = g.restart() {
                return vec![e.to_string()];
            }
        }
        if let Some(input) = &step.input {
            let ts = step
                .timestamp
                .as_deref()
                .and_then(rfc3339_ns)
                .unwrap_or(g.now());
            let (node, port) = split_input(input);
            let meta = Metadata {
                source: node.into(),
                host: host.clone(),
                ..Metadata::default()
            };
            let events: Vec<Event> = step
                .events
                .iter()
                .map(|f| Event {
                    timestamp: ts,
                    fields: f
                        .iter()
                        .map(|(k, v)| (k.clone(), weir_core::Value::from(v.clone())))
                        .collect(),
                    meta: meta.clone(),
                })
                .collect();
            if port.is_none() && p.transforms.iter().any(|t| t.id == node) {
                g.input_to(node, events);
            } else {
                let port: Port = (node.to_owned(), port.map(str::to_owned));
                g.emit_from(port, events);
            }
        }
    }
    let mut lines = Vec::new();
    let empty = Vec::new();
    for ex in &case.expect {
        let got = g.recorded.get(&ex.output).unwrap_or(&empty);
        let exprs: Vec<&str> = ex.conditions.iter().map(String::as_str).collect();
        // Validated when the file was loaded.
        let mut conds = Conditions::compile("weir-test", &exprs, &Limits::default()).ok();
        lines.extend(check::check(ex, got, conds.as_mut(), g.now()));
    }
    lines
}

#[cfg(test)]
mod tests;
