//! The pipeline YAML: loading, and validation that reports every problem with
//! file, line, column and key path.
//!
//! ```yaml
//! data_dir: /var/lib/weir        # optional; `weir run --data-dir` overrides
//! host: gw-17                    # optional; the machine's host name by default
//! health: { sink_failing_after: 2m }  # optional; when /ready turns 503
//! sources:
//!   <id>: { type: <source type>, ...source keys }
//! sinks:
//!   <id>: { type: <sink type>, inputs: [<source id>...], channel: {...}, ...sink keys }
//! ```

pub mod env;
/// Key positions in YAML, shared with the collector's validation.
pub use weir_core::locate;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde_yaml::{Mapping, Value};
use weir_core::problems::plain_words;
use weir_plugins::registry::{self, Kind};
use weir_plugins::{SinkConfig, SourceConfig, TextProblem, TransformConfig, ERRORS_OUTPUT};

use crate::admin::AdminConfig;
use crate::channel::ChannelConfig;

pub use weir_core::problems::{Problem, Problems};

/// A source of the pipeline.
#[derive(Debug)]
pub struct SourceSpec {
    pub id: String,
    pub type_name: String,
    pub config: Box<dyn SourceConfig>,
    /// The component's YAML as written (after `${VAR}` substitution): what
    /// a reload compares to tell a changed component from an unchanged one.
    pub raw: Value,
}

/// A sink of the pipeline with its wiring and channel.
#[derive(Debug)]
pub struct SinkSpec {
    pub id: String,
    pub type_name: String,
    pub inputs: Vec<String>,
    pub channel: ChannelConfig,
    pub config: Box<dyn SinkConfig>,
    /// The component's YAML as written (see [`SourceSpec::raw`]).
    pub raw: Value,
}

/// A validated pipeline.
#[derive(Debug)]
pub struct Pipeline {
    pub data_dir: Option<PathBuf>,
    pub host: Option<String>,
    /// The admin socket (`weir reload`, `weir tap`, `weir top`).
    pub admin: AdminConfig,
    /// When `/ready` reports the agent not ready.
    pub health: crate::runtime::health::HealthConfig,
    pub sources: Vec<SourceSpec>,
    pub transforms: Vec<TransformSpec>,
    pub sinks: Vec<SinkSpec>,
}

/// A transform of the pipeline with its wiring.
#[derive(Debug)]
pub struct TransformSpec {
    pub id: String,
    pub type_name: String,
    pub inputs: Vec<String>,
    pub config: Box<dyn TransformConfig>,
    /// The component's YAML as written (see [`SourceSpec::raw`]).
    pub raw: Value,
}

impl Pipeline {
    /// The pipeline with no component: what a starting agent runs before its first.
    pub fn empty() -> Pipeline {
        Pipeline {
            data_dir: None,
            host: None,
            admin: AdminConfig::default(),
            health: Default::default(),
            sources: Vec::new(),
            transforms: Vec::new(),
            sinks: Vec::new(),
        }
    }

    /// Transform ids, every transform after the transforms it reads from.
    pub fn transform_order(&self) -> Vec<String> {
        let mut done: Vec<String> = Vec::new();
        // The graph is acyclic (validated), so each pass places at least one
        // transform; the bound only guards against a bug.
        for _ in 0..=self.transforms.len() {
            for t in &self.transforms {
                if done.contains(&t.id) {
                    continue;
                }
                let ready = t.inputs.iter().all(|i| {
                    let node = split_input(i).0;
                    !self.transforms.iter().any(|u| u.id == node) || done.iter().any(|d| d == node)
                });
                if ready {
                    done.push(t.id.clone());
                }
            }
        }
        done
    }
}

const TOP_KEYS: [&str; 7] = [
    "data_dir",
    "host",
    "admin",
    "health",
    "sources",
    "transforms",
    "sinks",
];

/// Reads and validates the pipeline in `file`.
pub fn load(file: &Path) -> Result<Pipeline, Problems> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        Problems(vec![Problem {
            file: file.to_path_buf(),
            pos: None,
            path: String::new(),
            message: format!("cannot read: {e}"),
        }])
    })?;
    parse(file, &text)
}

struct Checker<'a> {
    file: &'a Path,
    text: &'a str,
    index: HashMap<String, locate::Pos>,
    /// Scalar values by path, built on the first problem inside one.
    scalars: Option<HashMap<String, locate::Scalar>>,
    problems: Vec<Problem>,
}

impl Checker<'_> {
    /// Adds a component's value problem, located at its key when the
    /// message starts with one (`poll_interval: too short`).
    fn add_problem(&mut self, at: &str, problem: &str) {
        match problem.split_once(": ") {
            Some((key, rest))
                if !key.is_empty()
                    && key.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.[]".contains(&b)
                    }) =>
            {
                self.add(&format!("{at}.{key}"), rest)
            }
            _ => self.add(at, problem),
        }
    }

    fn add(&mut self, path: &str, message: impl Into<String>) {
        let pos = locate::find(&self.index, path);
        self.problems.push(Problem {
            file: self.file.to_path_buf(),
            pos,
            path: path.to_owned(),
            message: message.into(),
        });
    }

    /// A problem inside the text value `key` of component `at` (a script):
    /// at its own file's line and column when it came from a file, else at
    /// the pipeline file's position of that line and column.
    fn add_text(&mut self, at: &str, p: TextProblem) {
        let path = format!("{at}.{}", p.key);
        if let Some(file) = p.file {
            self.problems.push(Problem {
                file,
                pos: Some((p.line, p.column)),
                path,
                message: p.message,
            });
            return;
        }
        let text = self.text;
        let scalars = self.scalars.get_or_insert_with(|| locate::scalars(text));
        let pos = scalars
            .get(&path)
            .and_then(|v| locate::inside(text, v, p.line, p.column))
            .or_else(|| locate::find(&self.index, &path));
        self.problems.push(Problem {
            file: self.file.to_path_buf(),
            pos,
            path,
            message: p.message,
        });
    }
}

/// Validates pipeline text (`file` names it in problems), after replacing
/// `${VAR}` and `${VAR:-default}` from the environment.
pub fn parse(file: &Path, text: &str) -> Result<Pipeline, Problems> {
    let text = env::interpolate(text, |n| std::env::var(n).ok()).map_err(|missing| {
        Problems(
            missing
                .into_iter()
                .map(|(line, name)| Problem { file: file.to_path_buf(), pos: Some((line, 1)), path: String::new(), message: format!("environment variable {name} is not set and has no default (${{{name}:-default}})") })
                .collect(),
        )
    })?;
    let text = text.as_str();
    let doc: Value = match serde_yaml::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            let pos = e.location().map(|l| (l.line(), l.column()));
            return Err(Problems(vec![Problem {
                file: file.to_path_buf(),
                pos,
                path: String::new(),
                message: format!("invalid YAML: {}", plain_words(&e.to_string())),
            }]));
        }
    };
    let mut c = Checker {
        file,
        text,
        index: locate::index(text),
        scalars: None,
        problems: Vec::new(),
    };
    let Value::Mapping(top) = doc else {
        c.add(
            "",
            "the pipeline must be a mapping with `sources` and `sinks`",
        );
        return Err(Problems(c.problems));
    };
    for k in top.keys() {
        let name = k.as_str().unwrap_or("?");
        if !TOP_KEYS.contains(&name) {
            c.add(
                name,
                format!(
                    "unknown key `{name}`; expected one of: {}",
                    TOP_KEYS.join(", ")
                ),
            );
        }
    }
    let data_dir = string_at(&mut c, &top, "data_dir").map(PathBuf::from);
    let host = string_at(&mut c, &top, "host");
    let admin = admin_at(&mut c, &top);
    let health = health_at(&mut c, &top);
    let sources_map = components(&mut c, &top, "sources");
    let transforms_map = components(&mut c, &top, "transforms");
    let sinks_map = components(&mut c, &top, "sinks");
    if sources_map.is_empty() {
        c.add("sources", "at least one source is required");
    }
    if sinks_map.is_empty() {
        c.add("sinks", "at least one sink is required");
    }

    let source_kinds = registry::sources();
    let sink_kinds = registry::sinks();
    let mut ids: HashMap<String, &'static str> = HashMap::new();
    let mut sources = Vec::new();
    for (id, body) in &sources_map {
        check_id(&mut c, &mut ids, "sources", id);
        if let Some((type_name, config)) =
            component(&mut c, &format!("sources.{id}"), body, &source_kinds, &[])
        {
            for p in config.problems() {
                c.add_problem(&format!("sources.{id}"), &p);
            }
            sources.push(SourceSpec {
                id: id.clone(),
                type_name,
                config,
                raw: Value::Mapping(body.clone()),
            });
        }
    }
    let transform_kinds = registry::transforms();
    let mut transforms = Vec::new();
    for (id, body) in &transforms_map {
        let at = format!("transforms.{id}");
        check_id(&mut c, &mut ids, "transforms", id);
        let inputs = inputs_at(&mut c, &at, body);
        if let Some((type_name, config)) =
            component(&mut c, &at, body, &transform_kinds, &["inputs"])
        {
            for p in config.problems() {
                c.add_problem(&at, &p);
            }
            for p in config.text_problems(id) {
                c.add_text(&at, p);
            }
            transforms.push(TransformSpec {
                id: id.clone(),
                type_name,
                inputs,
                config,
                raw: Value::Mapping(body.clone()),
            });
        }
    }
    let mut sinks = Vec::new();
    for (id, body) in &sinks_map {
        let at = format!("sinks.{id}");
        check_id(&mut c, &mut ids, "sinks", id);
        let inputs = inputs_at(&mut c, &at, body);
        let channel = match body.get("channel") {
            None => Some(ChannelConfig::default()),
            Some(v) => match serde_path_to_error::deserialize::<_, ChannelConfig>(v.clone()) {
                Ok(ch) => {
                    for p in ch.problems() {
                        c.add_problem(&format!("{at}.channel"), &p);
                    }
                    Some(ch)
                }
                Err(e) => {
                    let sub = e.path().to_string();
                    let path = if sub == "." {
                        format!("{at}.channel")
                    } else {
                        format!("{at}.channel.{sub}")
                    };
                    c.add(&path, plain_words(&e.into_inner().to_string()));
                    None
                }
            },
        };
        if let Some((type_name, config)) =
            component(&mut c, &at, body, &sink_kinds, &["inputs", "channel"])
        {
            for p in config.problems() {
                c.add_problem(&at, &p);
            }
            if let Some(channel) = channel {
                sinks.push(SinkSpec {
                    id: id.clone(),
                    type_name,
                    inputs,
                    channel,
                    config,
                    raw: Value::Mapping(body.clone()),
                });
            }
        }
    }
    // Wiring: every input names a source or transform, and one of its outputs.
    let outputs = declared_outputs(&sources, &transforms);
    let no_default: HashSet<&str> = transforms
        .iter()
        .filter(|t| !t.config.default_output())
        .map(|t| t.id.as_str())
        .collect();
    for (kind_of, map) in [("sinks", &sinks_map), ("transforms", &transforms_map)] {
        for (id, body) in map {
            if let Some(Value::Sequence(items)) = body.get("inputs") {
                for (i, item) in items.iter().enumerate() {
                    let name = item.as_str().unwrap_or("");
                    let at = format!("{kind_of}.{id}.inputs[{i}]");
                    let (node, output) = split_input(name);
                    match ids.get(node) {
                        Some(&"transforms") if output.is_none() && no_default.contains(node) => {
                            let known = outputs.get(node).map(|o| o.join(", ")).unwrap_or_default();
                            c.add(&at, format!("`{node}` has no default output; name one of its outputs as `{node}.<output>`: {known}"));
                        }
                        Some(&"sources") | Some(&"transforms") => {
                            if let (Some(o), Some(known)) = (output, outputs.get(node)) {
                                if !known.iter().any(|k| k == o) {
                                    c.add(&at, format!("`{node}` has no output `{o}`; its outputs are: {}", known.join(", ")));
                                }
                            }
                        }
                        Some(kind) => c.add(&at, format!("`{node}` is one of the {kind}; inputs must be sources or transforms")),
                        None => c.add(&at, format!("no source or transform named `{node}`")),
                    }
                }
            }
        }
    }
    check_cycles(&mut c, &transforms_map);
    if c.problems.is_empty() {
        Ok(Pipeline {
            data_dir,
            host,
            admin,
            health,
            sources,
            transforms,
            sinks,
        })
    } else {
        c.problems.sort_by_key(|p| p.pos.unwrap_or((usize::MAX, 0)));
        Err(Problems(c.problems))
    }
}

fn health_at(c: &mut Checker, m: &Mapping) -> crate::runtime::health::HealthConfig {
    let Some(v) = m.get("health") else {
        return Default::default();
    };
    match serde_path_to_error::deserialize::<_, crate::runtime::health::HealthConfig>(v.clone()) {
        Ok(h) => {
            for p in h.problems() {
                c.add_problem("health", &p);
            }
            h
        }
        Err(e) => {
            let path = e.path().to_string();
            let at = if path == "." {
                "health".to_owned()
            } else {
                format!("health.{path}")
            };
            c.add(&at, plain_words(&e.into_inner().to_string()));
            Default::default()
        }
    }
}

fn string_at(c: &mut Checker, m: &Mapping, key: &str) -> Option<String> {
    match m.get(key)? {
        Value::String(s) => Some(s.clone()),
        _ => {
            c.add(key, "must be a string");
            None
        }
    }
}

fn admin_at(c: &mut Checker, top: &Mapping) -> AdminConfig {
    let Some(v) = top.get("admin") else {
        return AdminConfig::default();
    };
    match serde_path_to_error::deserialize::<_, AdminConfig>(v.clone()) {
        Ok(admin) => {
            for p in admin.problems() {
                c.add_problem("admin", &p);
            }
            admin
        }
        Err(e) => {
            let sub = e.path().to_string();
            let path = if sub == "." {
                "admin".to_owned()
            } else {
                format!("admin.{sub}")
            };
            c.add(&path, plain_words(&e.into_inner().to_string()));
            AdminConfig::default()
        }
    }
}

fn components(c: &mut Checker, top: &Mapping, key: &str) -> BTreeMap<String, Mapping> {
    let mut out = BTreeMap::new();
    match top.get(key) {
        None | Some(Value::Null) => {}
        Some(Value::Mapping(m)) => {
            for (k, v) in m {
                let id = k.as_str().unwrap_or("?").to_owned();
                match v {
                    Value::Mapping(body) => {
                        out.insert(id, body.clone());
                    }
                    _ => c.add(&format!("{key}.{id}"), "must be a mapping with a `type`"),
                }
            }
        }
        Some(_) => c.add(key, "must be a mapping of component ids to components"),
    }
    out
}

fn check_id(
    c: &mut Checker,
    ids: &mut HashMap<String, &'static str>,
    kind: &'static str,
    id: &str,
) {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !ok {
        c.add(
            &format!("{kind}.{id}"),
            "component ids are 1-64 letters, digits, '_' or '-'",
        );
    }
    if let Some(prev) = ids.insert(id.to_owned(), kind) {
        c.add(
            &format!("{kind}.{id}"),
            format!("id `{id}` is also used in {prev}; ids must be unique"),
        );
    }
}

fn inputs_at(c: &mut Checker, at: &str, body: &Mapping) -> Vec<String> {
    match body.get("inputs") {
        None => {
            c.add(
                at,
                "`inputs` is required: the sources or transforms (`id` or `id.output`) this reads",
            );
            Vec::new()
        }
        Some(Value::Sequence(items)) if !items.is_empty() => {
            let mut out = Vec::new();
            for (i, v) in items.iter().enumerate() {
                match v.as_str() {
                    Some(s) => out.push(s.to_owned()),
                    None => c.add(&format!("{at}.inputs[{i}]"), "must be a component id"),
                }
            }
            out
        }
        Some(_) => {
            c.add(
                &format!("{at}.inputs"),
                "must be a non-empty list of component ids",
            );
            Vec::new()
        }
    }
}

/// Looks up the `type`, strips wiring keys and parses the rest with the component's config.
/// Value problems of any kind of component config.
trait ValueProblems {
    fn problems_of(&self) -> Vec<String>;
}

impl ValueProblems for dyn SourceConfig {
    fn problems_of(&self) -> Vec<String> {
        self.problems()
    }
}

impl ValueProblems for dyn SinkConfig {
    fn problems_of(&self) -> Vec<String> {
        self.problems()
    }
}

impl ValueProblems for dyn TransformConfig {
    fn problems_of(&self) -> Vec<String> {
        self.problems()
    }
}

fn component<T: ?Sized + ValueProblems>(
    c: &mut Checker,
    at: &str,
    body: &Mapping,
    kinds: &[Kind<T>],
    wiring: &[&str],
) -> Option<(String, Box<T>)> {
    let names: Vec<&str> = kinds.iter().map(|k| k.name).collect();
    let type_name = match body.get("type") {
        Some(Value::String(t)) => t.clone(),
        Some(_) => {
            c.add(&format!("{at}.type"), "must be a string");
            return None;
        }
        None => {
            c.add(
                at,
                format!("`type` is required; one of: {}", names.join(", ")),
            );
            return None;
        }
    };
    let Some(kind) = kinds.iter().find(|k| k.name == type_name) else {
        c.add(
            &format!("{at}.type"),
            format!(
                "unknown type `{type_name}`; available: {}",
                names.join(", ")
            ),
        );
        return None;
    };
    let mut rest = body.clone();
    rest.remove("type");
    for w in wiring {
        rest.remove(*w);
    }
    let parsed = (kind.parse)(Value::Mapping(rest));
    for e in &parsed.errors {
        let path = if e.path.is_empty() {
            at.to_owned()
        } else {
            format!("{at}.{}", e.path)
        };
        c.add(&path, e.message.clone());
    }
    match parsed.config {
        Some(cfg) if parsed.errors.is_empty() => Some((type_name, cfg)),
        Some(cfg) => {
            // The keys that parsed may have problems of their own: report
            // them in the same round.
            for p in cfg.problems_of() {
                c.add_problem(at, &p);
            }
            None
        }
        None => None,
    }
}

/// Splits an input reference `component[.output]`.
pub fn split_input(s: &str) -> (&str, Option<&str>) {
    match s.split_once('.') {
        Some((node, output)) => (node, Some(output)),
        None => (s, None),
    }
}

/// Every source's and transform's named outputs (the dead-letter output included).
fn declared_outputs(
    sources: &[SourceSpec],
    transforms: &[TransformSpec],
) -> HashMap<String, Vec<String>> {
    let with_errors = |mut v: Vec<String>| {
        if !v.iter().any(|o| o == ERRORS_OUTPUT) {
            v.push(ERRORS_OUTPUT.to_owned());
        }
        v
    };
    sources
        .iter()
        .map(|s| (s.id.clone(), with_errors(s.config.outputs())))
        .chain(
            transforms
                .iter()
                .map(|t| (t.id.clone(), with_errors(t.config.outputs()))),
        )
        .collect()
}

fn check_cycles(c: &mut Checker, transforms: &BTreeMap<String, Mapping>) {
    let edges: HashMap<&str, Vec<String>> = transforms
        .iter()
        .map(|(id, body)| {
            let ins = match body.get("inputs") {
                Some(Value::Sequence(s)) => s
                    .iter()
                    .filter_map(|v| v.as_str().map(|i| split_input(i).0.to_owned()))
                    .collect(),
                _ => Vec::new(),
            };
            (id.as_str(), ins)
        })
        .collect();
    let mut reported = HashSet::new();
    for start in edges.keys() {
        // Depth-first walk bounded by the number of transforms.
        let mut stack: Vec<(&str, Vec<&str>)> = vec![(start, vec![start])];
        let mut steps = 0;
        while let Some((node, path)) = stack.pop() {
            steps += 1;
            if steps > 10_000 {
                break;
            }
            for next in edges.get(node).into_iter().flatten() {
                if next == start && reported.insert(*start) {
                    let mut cycle: Vec<&str> = path.clone();
                    cycle.push(start);
                    c.add(
                        &format!("transforms.{start}.inputs"),
                        format!("cycle: {}", cycle.join(" -> ")),
                    );
                } else if edges.contains_key(next.as_str()) && !path.contains(&next.as_str()) {
                    let mut p = path.clone();
                    p.push(next);
                    stack.push((next, p));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
