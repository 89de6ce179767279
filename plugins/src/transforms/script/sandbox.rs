//! The sandbox a script runs in: an engine with no file, network, process
//! or clock access (rhai has none built in; modules, `eval` and `sleep` are
//! removed), and bounds on what one event's run may take. A run that hits a
//! bound ends with a [`TransformError::Limit`]; the event goes to the
//! dead-letter output and the next event starts afresh.

use rhai::{Engine, EvalAltResult, ParseError};
use serde::{Deserialize, Serialize};
use weir_core::units::ByteSize;

use crate::component::TransformError;

/// Bounds on one event's run of a script (and on each `route` condition).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Operations (expressions, statements, function calls) one run may
    /// take: what stops an endless loop. 100,000 is a millisecond or two.
    #[serde(default = "default_max_operations")]
    pub max_operations: u64,
    /// Bytes of text one value may hold, all the strings inside an array or
    /// map counted together (rhai's `max_string_size`): what stops a string
    /// doubling until memory runs out.
    #[serde(default = "default_max_string_bytes")]
    pub max_string_bytes: ByteSize,
    /// Elements one array may hold, nested arrays counted together (a blob's
    /// bytes count as elements).
    #[serde(default = "default_max_array_len")]
    pub max_array_len: usize,
    /// Entries one object map may hold, nested maps counted together.
    #[serde(default = "default_max_map_len")]
    pub max_map_len: usize,
    /// Depth of nested function calls: what stops endless recursion.
    #[serde(default = "default_max_call_depth")]
    pub max_call_depth: usize,
    /// Nesting depth of expressions, checked when the script is compiled.
    #[serde(default = "default_max_expr_depth")]
    pub max_expr_depth: usize,
}

fn default_max_operations() -> u64 {
    100_000
}
fn default_max_string_bytes() -> ByteSize {
    ByteSize(4 << 20)
}
fn default_max_array_len() -> usize {
    1 << 20
}
fn default_max_map_len() -> usize {
    1 << 16
}
fn default_max_call_depth() -> usize {
    32
}
fn default_max_expr_depth() -> usize {
    64
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_operations: default_max_operations(),
            max_string_bytes: default_max_string_bytes(),
            max_array_len: default_max_array_len(),
            max_map_len: default_max_map_len(),
            max_call_depth: default_max_call_depth(),
            max_expr_depth: default_max_expr_depth(),
        }
    }
}

/// Deepest call nesting allowed: each level costs native stack, and a
/// transform runs on a runtime worker thread with a 2 MiB stack.
const MAX_CALL_DEPTH: usize = 128;

impl Limits {
    /// Values out of range, as `limits.<key>: message`.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        let mut zero = |key: &str, v: u64| {
            if v == 0 {
                p.push(format!("limits.{key}: must be at least 1"));
            }
        };
        zero("max_operations", self.max_operations);
        zero("max_string_bytes", self.max_string_bytes.bytes());
        zero("max_array_len", self.max_array_len as u64);
        zero("max_map_len", self.max_map_len as u64);
        zero("max_call_depth", self.max_call_depth as u64);
        zero("max_expr_depth", self.max_expr_depth as u64);
        if self.max_call_depth > MAX_CALL_DEPTH {
            p.push(format!(
                "limits.max_call_depth: at most {MAX_CALL_DEPTH} (each level uses native stack)"
            ));
        }
        if self.max_expr_depth > 256 {
            p.push("limits.max_expr_depth: at most 256".to_owned());
        }
        p
    }

    /// Applies the bounds to `engine`.
    pub fn apply(&self, engine: &mut Engine) {
        let string = usize::try_from(self.max_string_bytes.bytes()).unwrap_or(usize::MAX);
        engine
            .set_max_operations(self.max_operations)
            .set_max_string_size(string)
            .set_max_array_size(self.max_array_len)
            .set_max_map_size(self.max_map_len)
            .set_max_call_levels(self.max_call_depth.min(MAX_CALL_DEPTH))
            .set_max_expr_depths(self.max_expr_depth, self.max_expr_depth);
    }
}

/// A bare engine: the standard rhai library without modules, `eval`,
/// `sleep` or printing to stdout, with `limits` applied.
pub fn engine(limits: &Limits) -> Engine {
    use rhai::packages::{Package, StandardPackage};
    let mut e = Engine::new_raw();
    e.register_global_module(StandardPackage::new().as_shared_module());
    // `eval` would compile text at run time, outside what validation saw.
    e.disable_symbol("eval");
    // A sleeping script would hold the pipeline; the built-in blocks the thread.
    e.register_fn("sleep", |_: i64| -> Result<(), Box<EvalAltResult>> {
        Err("sleep is not available in scripts".into())
    });
    e.register_fn("sleep", |_: f64| -> Result<(), Box<EvalAltResult>> {
        Err("sleep is not available in scripts".into())
    });
    // Undeclared variables are compile errors, so `weir validate` finds typos.
    e.set_strict_variables(true);
    limits.apply(&mut e);
    e
}

/// A compile error: the message and the 1-based line and column in the script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError {
    pub message: String,
    pub line: usize,
    pub column: usize,
}

impl std::fmt::Display for CompileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (script line {}, column {})",
            self.message, self.line, self.column
        )
    }
}

impl From<ParseError> for CompileError {
    fn from(e: ParseError) -> CompileError {
        CompileError {
            message: e.err_type().to_string(),
            line: e.position().line().unwrap_or(1),
            column: e.position().position().unwrap_or(1),
        }
    }
}

/// A run's error as a transform error: limits as `Limit` (naming the
/// config key), everything else as `Script`, each with the script line
/// where it happened (inside a script function: the line there).
pub fn run_error(err: &EvalAltResult, limits: &Limits) -> TransformError {
    let mut inner = err;
    let mut pos = err.position();
    let mut functions = Vec::new();
    while let EvalAltResult::ErrorInFunctionCall(name, _, e, _) = inner {
        functions.push(name.clone());
        inner = e;
        if !e.position().is_none() {
            pos = e.position();
        }
    }
    let line = pos.line();
    let limit = |what: String| TransformError::Limit { what, line };
    match inner {
        EvalAltResult::ErrorTooManyOperations(_) => {
            limit(format!("max_operations ({})", limits.max_operations))
        }
        EvalAltResult::ErrorStackOverflow(_) => {
            limit(format!("max_call_depth ({})", limits.max_call_depth))
        }
        EvalAltResult::ErrorDataTooLarge(what, _) => limit(match what.as_str() {
            "Length of string" => format!("max_string_bytes ({})", limits.max_string_bytes),
            "Size of array/BLOB" => format!("max_array_len ({})", limits.max_array_len),
            "Size of object map" => format!("max_map_len ({})", limits.max_map_len),
            other => other.to_owned(),
        }),
        EvalAltResult::ErrorTooManyVariables(_) => limit("variables".to_owned()),
        e => {
            let mut message = message_of(e);
            if let Some(f) = functions.first().filter(|f| !is_anonymous(f)) {
                message.push_str(&format!(" (in function `{f}`)"));
            }
            TransformError::Script {
                message,
                line,
                column: pos.position(),
            }
        }
    }
}

fn is_anonymous(name: &str) -> bool {
    name.starts_with("anon$")
}

/// The error's message without rhai's own position suffix.
fn message_of(e: &EvalAltResult) -> String {
    match e {
        // A thrown value (or a script function's error string) as it is.
        EvalAltResult::ErrorRuntime(v, _) if v.is_string() => v.to_string(),
        EvalAltResult::ErrorRuntime(v, _) if !v.is_unit() => format!("thrown: {v}"),
        _ => {
            let s = e.to_string();
            // rhai appends " (line L, position C)" when it knows the position.
            match s.rfind(" (line ") {
                Some(i) if s.ends_with(')') => s[..i].to_owned(),
                _ => s,
            }
        }
    }
}
