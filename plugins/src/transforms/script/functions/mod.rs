//! The functions scripts get besides rhai's standard library, and what they
//! share: the event being processed (its time and metadata), what the run
//! emitted, the regex cache and the log limiter.
//!
//! | module | functions |
//! |---|---|
//! | `parse` | `parse_json`, `encode_json`, `parse_key_value`, `parse_regex` |
//! | `time` | `parse_timestamp`, `format_timestamp`, `now`, `Timestamp` operators |
//! | `numbers` | `to_int`, `to_float` |
//! | `hash` | `sha256`, `hash64`, `crc32` |
//! | `host` | `event_timestamp`, `set_event_timestamp`, `source`, `host`, `key`, `set_key`, `topic`, `set_topic`, `emit`, `log`, `print`, `debug` |

mod hash;
mod host;
pub mod numbers;
mod parse;
mod time;

use std::sync::{Arc, Mutex, MutexGuard};

use rhai::{Engine, Map};
use weir_core::event::Metadata;

pub use host::LogLimiter;
pub use parse::{captures_value, json_value, key_values_value, Pattern, RegexCache};

/// What the functions of one script see of the run in progress.
#[derive(Debug, Default)]
pub struct Run {
    /// The transform's time (`Emitter::now`), ns since the epoch.
    pub now: i64,
    /// The event's timestamp, as the script leaves it.
    pub timestamp: i64,
    /// The event's metadata, as the script leaves it.
    pub meta: Metadata,
    /// Events sent with `emit`, by output (`None`: the default one), in order.
    pub emitted: Vec<(Option<String>, Map)>,
}

/// State shared by a script's functions.
pub struct Host {
    pub component: Arc<str>,
    /// Named outputs `emit` may send to; `None` where emitting is not allowed (conditions).
    pub outputs: Option<Vec<String>>,
    pub run: Mutex<Run>,
    pub regexes: Mutex<RegexCache>,
    pub log: Mutex<LogLimiter>,
}

impl Host {
    /// A host for `component`, which may emit to `outputs` (`None`: no `emit`).
    pub fn new(component: &str, outputs: Option<Vec<String>>, log_per_second: u32) -> Host {
        Host {
            component: component.into(),
            outputs,
            run: Mutex::new(Run::default()),
            regexes: Mutex::new(RegexCache::default()),
            log: Mutex::new(LogLimiter::new(log_per_second)),
        }
    }

    /// The run in progress. A panic while it was held cannot leave it
    /// inconsistent in a way that matters (it is reset before each run).
    pub fn run(&self) -> MutexGuard<'_, Run> {
        self.run.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Registers every function on `engine`.
pub fn register(engine: &mut Engine, host: &Arc<Host>) {
    time::register(engine, host);
    numbers::register(engine);
    hash::register(engine);
    parse::register(engine, host);
    host::register(engine, host);
}
