//! What a reload changes: the components of two pipelines compared one by one.
//!
//! A component is **unchanged** when its YAML (type, keys, `inputs`, and a
//! sink's `channel`) is equal in both: it keeps running untouched. One whose
//! YAML differs only in `inputs` is **rewired**: it keeps running too, and
//! its new upstreams feed it (nothing in a running component depends on
//! who feeds it). Upstream changes do not make a downstream component
//! "changed" either: every component is fed through an endpoint that
//! outlives its upstreams (a sink's channel, a stateful transform's input
//! log, an inline transform's queue), so a changed or removed upstream only
//! rewires what feeds that endpoint. The one cross-component rule is the
//! agent's `host`, which every source stamps on its events and sinks
//! report: a new host restarts every source and sink.

use std::collections::HashMap;

use serde_yaml::Value;

use crate::config::Pipeline;

/// How the components of one kind change.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// In the new pipeline only: started.
    pub added: Vec<String>,
    /// In both, with a different configuration: drained, stopped and started again.
    pub changed: Vec<String>,
    /// In the old pipeline only: drained and stopped.
    pub removed: Vec<String>,
    /// In both, equal or differing only in `inputs`: left running.
    pub kept: Vec<String>,
    /// Those of `kept` whose `inputs` differ: fed from their new inputs.
    pub rewired: Vec<String>,
}

impl Changes {
    fn between<'a>(
        old: impl Iterator<Item = (&'a str, &'a Value)>,
        new: impl Iterator<Item = (&'a str, &'a Value)>,
        force_changed: bool,
    ) -> Changes {
        let old: HashMap<&str, &Value> = old.collect();
        let mut c = Changes::default();
        let mut seen = Vec::new();
        for (id, raw) in new {
            seen.push(id);
            match old.get(id) {
                None => c.added.push(id.to_owned()),
                Some(_) if force_changed => c.changed.push(id.to_owned()),
                Some(was) if *was == raw => c.kept.push(id.to_owned()),
                Some(was) if without_inputs(was) == without_inputs(raw) => {
                    c.kept.push(id.to_owned());
                    c.rewired.push(id.to_owned());
                }
                Some(_) => c.changed.push(id.to_owned()),
            }
        }
        let mut removed: Vec<String> = old
            .keys()
            .filter(|id| !seen.contains(id))
            .map(|id| id.to_string())
            .collect();
        removed.sort();
        c.removed = removed;
        c
    }

    /// Whether `id` stops (changed or removed).
    pub fn goes(&self, id: &str) -> bool {
        self.changed.iter().chain(&self.removed).any(|c| c == id)
    }

    /// Whether `id` starts (added or changed).
    pub fn starts(&self, id: &str) -> bool {
        self.changed.iter().chain(&self.added).any(|c| c == id)
    }

    /// Treats kept component `id` as changed (its task ended and must start again).
    pub fn restart(&mut self, id: &str) {
        if let Some(i) = self.kept.iter().position(|k| k == id) {
            self.changed.push(self.kept.remove(i));
            self.rewired.retain(|r| r != id);
        }
    }

    /// Whether nothing changes.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.changed.is_empty()
            && self.removed.is_empty()
            && self.rewired.is_empty()
    }
}

fn without_inputs(v: &Value) -> Value {
    let mut v = v.clone();
    if let Value::Mapping(m) = &mut v {
        m.remove("inputs");
    }
    v
}

/// The changes between a running pipeline and a new one.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Diff {
    pub sources: Changes,
    pub transforms: Changes,
    pub sinks: Changes,
}

impl Diff {
    /// Compares `old` with `new`, component by component.
    pub fn between(old: &Pipeline, new: &Pipeline) -> Diff {
        Diff {
            sources: Changes::between(
                old.sources.iter().map(|s| (s.id.as_str(), &s.raw)),
                new.sources.iter().map(|s| (s.id.as_str(), &s.raw)),
                old.host != new.host,
            ),
            transforms: Changes::between(
                old.transforms.iter().map(|t| (t.id.as_str(), &t.raw)),
                new.transforms.iter().map(|t| (t.id.as_str(), &t.raw)),
                false,
            ),
            sinks: Changes::between(
                old.sinks.iter().map(|s| (s.id.as_str(), &s.raw)),
                new.sinks.iter().map(|s| (s.id.as_str(), &s.raw)),
                old.host != new.host,
            ),
        }
    }

    /// Whether nothing changes.
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty() && self.transforms.is_empty() && self.sinks.is_empty()
    }

    /// One line for the log and `weir reload`: `sources +a ~b -c; ...`.
    pub fn summary(&self) -> String {
        if self.is_empty() {
            return "no component changed".to_owned();
        }
        let part = |kind: &str, c: &Changes| {
            let mut words = Vec::new();
            words.extend(c.added.iter().map(|i| format!("+{i}")));
            words.extend(c.changed.iter().map(|i| format!("~{i}")));
            words.extend(c.removed.iter().map(|i| format!("-{i}")));
            words.extend(c.rewired.iter().map(|i| format!("{i}(rewired)")));
            (!words.is_empty()).then(|| format!("{kind} {}", words.join(" ")))
        };
        [
            part("sources", &self.sources),
            part("transforms", &self.transforms),
            part("sinks", &self.sinks),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn pipeline(text: &str) -> Pipeline {
        crate::config::parse(Path::new("p.yaml"), text).unwrap()
    }

    const BASE: &str = r#"
sources:
  a: { type: file, include: ["/tmp/a/*.log"] }
  b: { type: file, include: ["/tmp/b/*.log"] }
transforms:
  t: { type: add_fields, inputs: [a], fields: { x: "1" } }
sinks:
  out: { type: file, inputs: [t, b], path: /tmp/out }
"#;

    #[test]
    fn an_identical_pipeline_changes_nothing() {
        let d = Diff::between(&pipeline(BASE), &pipeline(BASE));
        assert!(d.is_empty());
        assert_eq!(d.sources.kept, ["a", "b"]);
        assert_eq!(d.summary(), "no component changed");
    }

    #[test]
    fn a_changed_transform_leaves_its_source_and_sink_running() {
        let new = BASE.replace("x: \"1\"", "x: \"2\"");
        let d = Diff::between(&pipeline(BASE), &pipeline(&new));
        assert_eq!(d.transforms.changed, ["t"]);
        assert!(d.sources.is_empty() && d.sinks.is_empty());
        assert_eq!(d.summary(), "transforms ~t");
    }

    #[test]
    fn new_inputs_change_a_sink_and_a_new_sink_is_added() {
        let new = BASE.replace("inputs: [t, b]", "inputs: [t]")
            + "  more: { type: file, inputs: [b], path: /tmp/more }\n";
        let d = Diff::between(&pipeline(BASE), &pipeline(&new));
        assert!(
            d.sinks.changed.is_empty(),
            "new inputs alone do not restart a sink"
        );
        assert_eq!(d.sinks.kept, ["out"]);
        assert_eq!(d.sinks.rewired, ["out"]);
        assert_eq!(d.sinks.added, ["more"]);
        assert_eq!(d.summary(), "sinks +more out(rewired)");
        let moved = new.replace("path: /tmp/out", "path: /tmp/elsewhere");
        let d = Diff::between(&pipeline(BASE), &pipeline(&moved));
        assert_eq!(d.sinks.changed, ["out"], "its own keys do");
    }

    #[test]
    fn a_removed_source_is_removed_and_reformatting_is_no_change() {
        let new = r#"
sources:
  a:
    include: ["/tmp/a/*.log"]
    type: file
transforms:
  t: { type: add_fields, inputs: [a], fields: { x: "1" } }
sinks:
  out: { type: file, inputs: [t], path: /tmp/out }
"#;
        let d = Diff::between(&pipeline(BASE), &pipeline(new));
        assert_eq!(d.sources.removed, ["b"]);
        assert_eq!(
            d.sources.kept,
            ["a"],
            "key order and flow style do not matter"
        );
        assert_eq!(d.sinks.rewired, ["out"]);
    }

    #[test]
    fn a_new_host_restarts_every_source_and_sink() {
        let new = format!("host: gw-2\n{BASE}");
        let d = Diff::between(&pipeline(BASE), &pipeline(&new));
        assert_eq!(d.sources.changed, ["a", "b"]);
        assert_eq!(d.sinks.changed, ["out"]);
        assert!(d.transforms.is_empty());
    }
}
