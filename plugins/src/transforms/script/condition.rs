//! Conditions: rhai expressions over `event` that decide (`route`, and the
//! checks of `weir test`). They run in the same sandbox, with the same
//! functions, as scripts; they cannot `emit`.

use std::sync::Arc;

use rhai::{Dynamic, Engine, Scope, AST};
use weir_core::event::Event;

use super::convert::fields_to_map_ref;
use super::functions::{self, Host, Run};
use super::sandbox::{self, CompileError, Limits};
use super::variables;
use crate::component::TransformError;

/// A list of compiled conditions.
pub struct Conditions {
    engine: Engine,
    host: Arc<Host>,
    limits: Limits,
    exprs: Vec<AST>,
    scope: Scope<'static>,
}

impl Conditions {
    /// Compiles every expression; `Err` lists each that does not compile, by index.
    pub fn compile(
        component: &str,
        exprs: &[&str],
        limits: &Limits,
    ) -> Result<Conditions, Vec<(usize, CompileError)>> {
        let host = Arc::new(Host::new(component, None, 10));
        let mut engine = sandbox::engine(limits);
        functions::register(&mut engine, &host);
        let vars = variables(false);
        let mut asts = Vec::with_capacity(exprs.len());
        let mut errors = Vec::new();
        for (i, e) in exprs.iter().enumerate() {
            match engine.compile_expression_with_scope(&vars, e) {
                Ok(ast) => asts.push(ast),
                Err(err) => errors.push((i, CompileError::from(err))),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Conditions {
            engine,
            host,
            limits: limits.clone(),
            exprs: asts,
            scope: Scope::new(),
        })
    }

    /// How many conditions there are.
    pub fn len(&self) -> usize {
        self.exprs.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.exprs.is_empty()
    }

    /// Makes `event` (at time `now`) the one the next evaluations see.
    pub fn set_event(&mut self, event: &Event, now: i64) {
        *self.host.run() = Run {
            now,
            timestamp: event.timestamp,
            meta: event.meta.clone(),
            emitted: Vec::new(),
        };
        self.scope.clear();
        self.scope
            .push_dynamic("event", Dynamic::from_map(fields_to_map_ref(&event.fields)));
    }

    /// Evaluates condition `i` on the current event.
    pub fn eval(&mut self, i: usize) -> Result<bool, TransformError> {
        let Some(ast) = self.exprs.get(i) else {
            return Ok(false);
        };
        // The scope is rewound so a condition cannot leave variables behind.
        let base = self.scope.len();
        let v = self
            .engine
            .eval_ast_with_scope::<Dynamic>(&mut self.scope, ast)
            .map_err(|e| sandbox::run_error(&e, &self.limits));
        self.scope.rewind(base);
        let v = v?;
        v.as_bool().map_err(|_| TransformError::Script {
            message: format!(
                "the condition must be true or false; it gave a {}",
                v.type_name()
            ),
            line: None,
            column: None,
        })
    }
}
