//! The `script` transform: a rhai script runs on every event.
//!
//! The script sees the event's fields as the object map `event`, changes
//! it, and its value is what the transform emits: the map (one event), an
//! array of maps (several), or `()` (nothing: the event is dropped).
//! `emit("name", ev)` sends to a declared named output as well. With
//! `state: true` a `state` map lives across events and is checkpointed.
//!
//! The script is compiled once, when the transform is built, inside a
//! sandbox (`sandbox.rs`) that bounds each run; a run that throws or
//! exceeds a bound sends its input, unchanged, to the dead-letter output
//! with the error and the script line, and emits nothing else for it.

mod condition;
mod config;
mod convert;
mod fast;
pub mod functions;
mod sandbox;
mod state;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use rhai::{Dynamic, Engine, Map, Scope, AST};
use tracing::{info, warn};
use weir_core::event::Event;
use weir_core::metrics::Counter;

pub use condition::Conditions;
pub use config::{output_name_problem, ScriptConfig};
pub use convert::Timestamp;
pub use sandbox::{CompileError, Limits};

use crate::component::{
    BuildError, Emitter, TextProblem, Transform, TransformConfig, TransformContext, TransformError,
};
use functions::{Host, Run};

/// A script compiled in its sandbox, with the functions' shared host.
pub(crate) struct Compiled {
    engine: Engine,
    ast: AST,
    host: Arc<Host>,
}

impl Compiled {
    /// Compiles `text` for the transform `component` configured by `cfg`.
    pub fn new(cfg: &ScriptConfig, component: &str, text: &str) -> Result<Compiled, CompileError> {
        let host = Arc::new(Host::new(
            component,
            Some(cfg.outputs.clone()),
            cfg.log_rate,
        ));
        let mut engine = sandbox::engine(&cfg.limits);
        functions::register(&mut engine, &host);
        let ast = engine.compile_with_scope(&variables(cfg.state), text)?;
        Ok(Compiled { engine, ast, host })
    }
}

/// The variables a script starts with (for strict-variable compilation).
fn variables(state: bool) -> Scope<'static> {
    let mut scope = Scope::new();
    scope.push_dynamic("event", Dynamic::from_map(Map::new()));
    if state {
        scope.push_dynamic("state", Dynamic::from_map(Map::new()));
    }
    scope
}

impl TransformConfig for ScriptConfig {
    fn problems(&self) -> Vec<String> {
        self.value_problems()
    }

    fn text_problems(&self, id: &str) -> Vec<TextProblem> {
        self.compile_problems(id)
    }

    fn outputs(&self) -> Vec<String> {
        self.outputs.clone()
    }

    fn stateful(&self) -> bool {
        self.state
    }

    fn build(&self, ctx: TransformContext) -> Result<Box<dyn Transform>, BuildError> {
        let problems = self.value_problems();
        if !problems.is_empty() {
            return Err(BuildError::Config(problems));
        }
        Ok(Box::new(self.script(ctx, true)?))
    }
}

impl ScriptConfig {
    /// The running transform; `native`: with the fast path (`fast.rs`)
    /// where the script qualifies (tests compare it with rhai alone).
    fn script(&self, ctx: TransformContext, native: bool) -> Result<Script, BuildError> {
        let text = self.text().map_err(BuildError::Setup)?;
        let compiled = Compiled::new(self, &ctx.id, &text.text)
            .map_err(|e| BuildError::Setup(format!("the script does not compile: {e}")))?;
        let fast = (native && !self.state)
            .then(|| fast::Plan::new(&compiled.ast, &self.limits))
            .flatten();
        // Says which path the script takes: users tuning a hot script want
        // to know whether it runs natively (docs/configuration.md, Speed).
        info!(
            component = %ctx.id,
            native = fast.is_some(),
            "Script compiled; {}.",
            if fast.is_some() {
                "it runs on the native fast path"
            } else {
                "it runs on rhai (it uses something outside the fast path's subset)"
            }
        );
        Ok(Script {
            compiled,
            fast,
            limits: self.limits.clone(),
            scope: Scope::new(),
            state: self.state.then(Map::new),
            dropped: super::dropped_counter(&ctx, "script"),
        })
    }
}

/// A script's result that cannot become an event (a value no event field
/// can hold): the script ran, so no line or column applies.
fn unconvertible(message: String) -> TransformError {
    TransformError::Script {
        message,
        line: None,
        column: None,
    }
}

/// The running transform.
struct Script {
    compiled: Compiled,
    /// The script as native steps, when it has the common shape.
    fast: Option<fast::Plan>,
    limits: Limits,
    /// Reused between runs (cleared each time).
    scope: Scope<'static>,
    /// The `state` map, when enabled.
    state: Option<Map>,
    dropped: Counter,
}

impl Script {
    /// Runs the script on `map`; the state map is put back afterwards.
    fn run(&mut self, map: Map) -> Result<Dynamic, TransformError> {
        self.scope.clear();
        self.scope.push_dynamic("event", Dynamic::from_map(map));
        if let Some(state) = &mut self.state {
            let s = std::mem::take(state);
            self.scope.push_dynamic("state", Dynamic::from_map(s));
        }
        let c = &self.compiled;
        let result = c
            .engine
            .eval_ast_with_scope::<Dynamic>(&mut self.scope, &c.ast)
            .map_err(|e| sandbox::run_error(&e, &self.limits));
        let mut kept = true;
        if let Some(state) = &mut self.state {
            let value = self.scope.get_mut("state").map(std::mem::take);
            match value.and_then(|v| v.try_cast::<Map>()) {
                Some(m) => *state = m,
                None => kept = false,
            }
        }
        self.scope.clear();
        if !kept {
            return Err(TransformError::Script {
                message: "`state` must stay an object map; it was reset to an empty one".to_owned(),
                line: None,
                column: None,
            });
        }
        result
    }
}

/// The maps a script's value stands for.
fn returned(v: Dynamic) -> Result<Vec<Map>, String> {
    if v.is_unit() {
        return Ok(Vec::new());
    }
    if v.is_map() {
        return Ok(vec![v.cast::<Map>()]);
    }
    if v.is_array() {
        let items = v.into_array().map_err(str::to_owned)?;
        return items
            .into_iter()
            .enumerate()
            .map(|(i, x)| {
                let t = x.type_name();
                x.try_cast::<Map>().ok_or_else(|| {
                    format!(
                        "the script returned an array whose item {i} is a {t}, not an object map"
                    )
                })
            })
            .collect();
    }
    Err(format!(
        "the script must end with the event (an object map), an array of them, or () to drop it; it gave a {}",
        v.type_name()
    ))
}

impl Transform for Script {
    fn process(&mut self, event: Event, out: &mut Emitter) {
        if let Some(plan) = &self.fast {
            // On `GiveUp` rhai runs the untouched input and decides.
            match plan.run(&event.fields, &self.compiled.host, &self.limits) {
                Ok(Some(fields)) => {
                    return out.emit(Event {
                        timestamp: event.timestamp,
                        fields,
                        meta: event.meta,
                    })
                }
                Ok(None) => return self.dropped.inc(),
                Err(fast::GiveUp) => {}
            }
        }
        *self.compiled.host.run() = Run {
            now: out.now(),
            timestamp: event.timestamp,
            meta: event.meta.clone(),
            emitted: Vec::new(),
        };
        // Copied: the original stays intact for the dead-letter output.
        let result = self.run(convert::fields_to_map_ref(&event.fields));
        let Run {
            timestamp,
            meta,
            emitted,
            ..
        } = std::mem::take(&mut *self.compiled.host.run());
        let value = match result {
            Ok(v) => v,
            Err(e) => return out.fail(event, e),
        };
        // The common cases without the general path's buffers: the event
        // returned (one event out) or `()` (dropped), nothing emitted.
        if emitted.is_empty() {
            if value.is_unit() {
                return self.dropped.inc();
            }
            if value.is_map() {
                return match convert::map_to_fields(value.cast::<Map>()) {
                    Ok(fields) => out.emit(Event {
                        timestamp,
                        fields,
                        meta,
                    }),
                    Err(message) => out.fail(event, unconvertible(message)),
                };
            }
        }
        let make = |m: Map| -> Result<Event, String> {
            Ok(Event {
                timestamp,
                fields: convert::map_to_fields(m)?,
                meta: meta.clone(),
            })
        };
        // Everything is converted before anything is emitted: an input
        // either yields all its events or goes to the dead letters alone.
        let built: Result<Vec<(Option<String>, Event)>, String> = (|| {
            let mut built = Vec::with_capacity(emitted.len() + 1);
            for (o, m) in emitted {
                built.push((o, make(m)?));
            }
            for m in returned(value)? {
                built.push((None, make(m)?));
            }
            Ok(built)
        })();
        match built {
            Err(message) => out.fail(event, unconvertible(message)),
            Ok(built) if built.is_empty() => self.dropped.inc(),
            Ok(built) => {
                for (output, e) in built {
                    match output {
                        None => out.emit(e),
                        Some(o) => {
                            out.emit_to(&o, e);
                        }
                    }
                }
            }
        }
    }

    fn snapshot(&self) -> Result<Vec<u8>, TransformError> {
        let Some(s) = &self.state else {
            return Ok(Vec::new());
        };
        let (bytes, lost) = state::encode(s);
        if lost > 0 {
            warn!(transform = %self.compiled.host.component, values = lost,
                "The script's state holds values that are not data (function pointers); they are checkpointed as ().");
        }
        Ok(bytes)
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), TransformError> {
        if let Some(s) = &mut self.state {
            *s = state::decode(bytes).map_err(TransformError::State)?;
        }
        Ok(())
    }
}
