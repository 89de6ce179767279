//! The `script` transform's configuration.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::sandbox::Limits;
use crate::component::{TextProblem, ERRORS_OUTPUT};

/// Runs a rhai script on every event.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptConfig {
    /// The script itself (one of `source` or `file`).
    #[serde(default)]
    pub source: Option<String>,
    /// A file holding the script, read when the pipeline is loaded (relative
    /// paths are relative to the working directory).
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// Named outputs the script sends to with `emit("name", ev)`; downstream
    /// components read them as `<id>.<name>`.
    #[serde(default)]
    pub outputs: Vec<String>,
    /// Give the script a `state` map that lives across events and is
    /// checkpointed with the input it reflects (the transform becomes
    /// stateful: it gets a durable input log and exactly-once replay).
    #[serde(default)]
    pub state: bool,
    /// Bounds on one event's run.
    #[serde(default)]
    pub limits: Limits,
    /// Most lines `log`, `print` and `debug` write per second; the rest are
    /// counted and the count is logged with the next line that gets through.
    #[serde(default = "default_log_rate")]
    pub log_rate: u32,
}

fn default_log_rate() -> u32 {
    10
}

/// The script's text and, when it came from `file`, that file.
pub struct ScriptText {
    pub text: String,
    pub file: Option<PathBuf>,
}

impl ScriptConfig {
    /// The script's text, read from `file` if that is where it is.
    pub fn text(&self) -> Result<ScriptText, String> {
        match (&self.source, &self.file) {
            (Some(s), None) => Ok(ScriptText {
                text: s.clone(),
                file: None,
            }),
            (None, Some(f)) => std::fs::read_to_string(f)
                .map(|text| ScriptText {
                    text,
                    file: Some(f.clone()),
                })
                .map_err(|e| format!("file: cannot read {}: {e}", f.display())),
            (Some(_), Some(_)) => Err("give the script as `source` or `file`, not both".to_owned()),
            (None, None) => Err("a script is required: `source` (inline) or `file`".to_owned()),
        }
    }

    /// Problems with the values (not the script's own errors: see `text_problems`).
    pub fn value_problems(&self) -> Vec<String> {
        let mut p = self.limits.problems();
        if let Err(e) = self.text() {
            p.push(e);
        }
        for (i, o) in self.outputs.iter().enumerate() {
            if let Some(why) = output_name_problem(o) {
                p.push(format!("outputs[{i}]: {why}"));
            }
            if self.outputs[..i].contains(o) {
                p.push(format!("outputs[{i}]: `{o}` is listed twice"));
            }
        }
        p
    }

    /// The script's compile errors, located in its text.
    pub fn compile_problems(&self, component: &str) -> Vec<TextProblem> {
        let Ok(t) = self.text() else {
            return Vec::new();
        };
        match super::Compiled::new(self, component, &t.text) {
            Ok(_) => Vec::new(),
            Err(e) => vec![TextProblem {
                key: if t.file.is_some() { "file" } else { "source" }.to_owned(),
                file: t.file,
                line: e.line,
                column: e.column,
                message: format!("the script does not compile: {e}"),
            }],
        }
    }
}

/// Why `name` cannot be an output name, if it cannot.
pub fn output_name_problem(name: &str) -> Option<String> {
    if name == ERRORS_OUTPUT {
        return Some(format!(
            "`{ERRORS_OUTPUT}` is the dead-letter output every transform has"
        ));
    }
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    (!ok).then(|| format!("`{name}`: output names are 1-64 letters, digits, '_' or '-'"))
}
