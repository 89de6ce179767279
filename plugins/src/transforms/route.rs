//! The `route` transform: sends each event to the named outputs whose
//! condition (a rhai expression over `event`) holds — every one (`mode:
//! all`) or the first in the order written (`mode: first`) — and to
//! `_unmatched` when none does. Downstream components read
//! `<id>.<route>`; there is no default output. A condition that fails (or
//! is not true or false) sends the event to `<id>.errors` instead.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use weir_core::Event;

use crate::component::{
    BuildError, Emitter, TextProblem, Transform, TransformConfig, TransformContext,
};
use crate::transforms::script::{output_name_problem, Conditions, Limits};

/// The output of events no route matched.
pub const UNMATCHED: &str = "_unmatched";

/// Which routes an event takes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteMode {
    /// Every route whose condition holds.
    #[default]
    All,
    /// The first route (in the order written) whose condition holds.
    First,
}

/// Routes events to named outputs by conditions.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Output name → condition, a rhai expression over `event` that is true
    /// or false (`event.temp > 80.0`); checked in the order written.
    pub routes: IndexMap<String, String>,
    /// `all` (every matching route) or `first` (the first that matches).
    #[serde(default)]
    pub mode: RouteMode,
    /// Bounds on each condition's evaluation (as for `script`).
    #[serde(default)]
    pub limits: Limits,
}

impl RouteConfig {
    fn exprs(&self) -> Vec<&str> {
        self.routes.values().map(String::as_str).collect()
    }
}

impl TransformConfig for RouteConfig {
    fn problems(&self) -> Vec<String> {
        let mut p = self.limits.problems();
        if self.routes.is_empty() {
            p.push("routes: at least one route is required".to_owned());
        }
        for name in self.routes.keys() {
            if name == UNMATCHED {
                p.push(format!(
                    "routes.{name}: `{UNMATCHED}` is the output of events no route matched"
                ));
            } else if let Some(why) = output_name_problem(name) {
                p.push(format!("routes.{name}: {why}"));
            }
        }
        p
    }

    fn text_problems(&self, id: &str) -> Vec<TextProblem> {
        let names: Vec<&String> = self.routes.keys().collect();
        match Conditions::compile(id, &self.exprs(), &self.limits) {
            Ok(_) => Vec::new(),
            Err(errors) => errors
                .into_iter()
                .map(|(i, e)| TextProblem {
                    key: format!("routes.{}", names[i]),
                    file: None,
                    line: e.line,
                    column: e.column,
                    message: format!("the condition does not compile: {e}"),
                })
                .collect(),
        }
    }

    fn outputs(&self) -> Vec<String> {
        self.routes
            .keys()
            .cloned()
            .chain([UNMATCHED.to_owned()])
            .collect()
    }

    fn default_output(&self) -> bool {
        false
    }

    fn build(&self, ctx: TransformContext) -> Result<Box<dyn Transform>, BuildError> {
        let problems = self.problems();
        if !problems.is_empty() {
            return Err(BuildError::Config(problems));
        }
        let conditions =
            Conditions::compile(&ctx.id, &self.exprs(), &self.limits).map_err(|e| {
                BuildError::Config(
                    e.into_iter()
                        .map(|(i, e)| {
                            format!(
                                "routes.{}: {e}",
                                self.routes.keys().nth(i).map_or("?", |s| s.as_str())
                            )
                        })
                        .collect(),
                )
            })?;
        Ok(Box::new(Route {
            names: self.routes.keys().cloned().collect(),
            mode: self.mode,
            conditions,
            matched: Vec::new(),
        }))
    }
}

struct Route {
    names: Vec<String>,
    mode: RouteMode,
    conditions: Conditions,
    matched: Vec<usize>,
}

impl Transform for Route {
    fn process(&mut self, event: Event, out: &mut Emitter) {
        self.conditions.set_event(&event, out.now());
        self.matched.clear();
        for i in 0..self.names.len() {
            match self.conditions.eval(i) {
                Ok(true) => {
                    self.matched.push(i);
                    if self.mode == RouteMode::First {
                        break;
                    }
                }
                Ok(false) => {}
                Err(e) => {
                    let e = match e {
                        crate::TransformError::Script {
                            message,
                            line,
                            column,
                        } => crate::TransformError::Script {
                            message: format!("route `{}`: {message}", self.names[i]),
                            line,
                            column,
                        },
                        other => other,
                    };
                    return out.fail(event, e);
                }
            }
        }
        match self.matched.split_last() {
            None => {
                out.emit_to(UNMATCHED, event);
            }
            Some((&last, rest)) => {
                for &i in rest {
                    out.emit_to(&self.names[i], event.clone());
                }
                out.emit_to(&self.names[last], event);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::component::{Emitted, ERRORS_OUTPUT};
    use weir_core::{Metadata, Value};

    fn build(yaml: &str) -> (RouteConfig, Box<dyn Transform>) {
        let cfg: RouteConfig = serde_yaml::from_str(yaml).unwrap();
        let t = cfg
            .build(TransformContext {
                id: "alerts".into(),
                metrics: Default::default(),
            })
            .unwrap();
        (cfg, t)
    }

    fn reading(temp: Value) -> Event {
        let mut e = Event::from_message_at("r", Metadata::default(), 0);
        e.fields.insert("temp", temp);
        e
    }

    fn run(cfg: &RouteConfig, t: &mut Box<dyn Transform>, events: Vec<Event>) -> Vec<Emitted> {
        let mut out = Emitter::new("alerts", &cfg.outputs(), 0);
        for e in events {
            t.process(e, &mut out);
        }
        out.take().0
    }

    fn count(emitted: &[Emitted], output: &str) -> usize {
        emitted
            .iter()
            .find(|e| e.output.as_deref() == Some(output))
            .map_or(0, |e| e.events.len())
    }

    #[test]
    fn all_mode_sends_to_every_match_and_unmatched_takes_the_rest() {
        let (cfg, mut t) = build(
            "routes: { hot: \"event.temp > 80.0\", warm: \"event.temp > 30.0\", cold: \"event.temp < -20.0\" }",
        );
        let got = run(
            &cfg,
            &mut t,
            vec![
                reading(Value::Float(90.0)),
                reading(Value::Float(50.0)),
                reading(Value::Float(0.0)),
            ],
        );
        assert_eq!(count(&got, "hot"), 1);
        assert_eq!(count(&got, "warm"), 2);
        assert_eq!(count(&got, "cold"), 0);
        assert_eq!(count(&got, UNMATCHED), 1);
        assert!(
            got.iter().all(|e| e.output.is_some()),
            "nothing on the default output"
        );
    }

    #[test]
    fn first_mode_stops_at_the_first_match_in_written_order() {
        let (cfg, mut t) = build(
            "mode: first\nroutes: { hot: \"event.temp > 80.0\", warm: \"event.temp > 30.0\" }",
        );
        let got = run(&cfg, &mut t, vec![reading(Value::Float(90.0))]);
        assert_eq!(count(&got, "hot"), 1);
        assert_eq!(count(&got, "warm"), 0);
    }

    #[test]
    fn a_failing_condition_sends_the_event_to_dead_letters_and_the_next_goes_on() {
        let (cfg, mut t) = build("routes: { hot: \"event.temp > 80.0\", weird: \"event.temp\" }");
        let got = run(
            &cfg,
            &mut t,
            vec![
                reading(Value::from("very hot")),
                reading(Value::Float(85.0)),
            ],
        );
        let dead = got
            .iter()
            .find(|e| e.output.as_deref() == Some(ERRORS_OUTPUT))
            .unwrap();
        assert_eq!(
            dead.events.len(),
            2,
            "`weird` gives a string, then a float: neither is true or false"
        );
        let err = dead.events[1].fields.get("error").unwrap();
        assert!(format!("{err:?}").contains("route `weird`"), "{err:?}");
        assert_eq!(count(&got, "hot"), 0);
    }

    #[test]
    fn compile_errors_name_the_route_and_position() {
        let cfg: RouteConfig =
            serde_yaml::from_str("routes: { ok: \"event.a == 1\", bad: \"event.a >> \" }").unwrap();
        let p = cfg.text_problems("r");
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].key, "routes.bad");
        assert_eq!(p[0].line, 1);
        assert!(cfg.problems().is_empty());
        let bad: RouteConfig = serde_yaml::from_str("routes: { _unmatched: \"true\" }").unwrap();
        assert_eq!(bad.problems().len(), 1);
    }
}
