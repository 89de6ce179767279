//! Functions about the event being processed and the world around the
//! script: metadata, `emit`, and rate-limited logging.

use std::sync::Arc;

use bytes::Bytes;
use rhai::{Dynamic, Engine, EvalAltResult, ImmutableString, Map};
use tracing::{debug, error, info, trace, warn};

use super::Host;
use crate::transforms::script::convert::Timestamp;

type Res<T> = Result<T, Box<EvalAltResult>>;

/// At most `per_second` log lines per second of the transform's time; the
/// number left out is logged with the next line that gets through.
#[derive(Debug)]
pub struct LogLimiter {
    per_second: u32,
    second: i64,
    used: u32,
    suppressed: u64,
}

impl LogLimiter {
    /// A limiter letting `per_second` lines through per second (0: none).
    pub fn new(per_second: u32) -> LogLimiter {
        LogLimiter {
            per_second,
            second: i64::MIN,
            used: 0,
            suppressed: 0,
        }
    }

    /// Whether a line may be logged at `now` (ns); if so, how many were
    /// suppressed since the last one that was.
    pub fn admit(&mut self, now: i64) -> Option<u64> {
        let second = now.div_euclid(1_000_000_000);
        if second != self.second {
            self.second = second;
            self.used = 0;
        }
        if self.used >= self.per_second {
            self.suppressed += 1;
            return None;
        }
        self.used += 1;
        Some(std::mem::take(&mut self.suppressed))
    }
}

fn log(host: &Host, level: &str, message: &str) -> Res<()> {
    if !matches!(level, "error" | "warn" | "info" | "debug" | "trace") {
        return Err(
            format!("log: unknown level `{level}`; use error, warn, info, debug or trace").into(),
        );
    }
    let now = host.run().now;
    let admitted = host
        .log
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .admit(now);
    let Some(suppressed) = admitted else {
        return Ok(());
    };
    let c = &*host.component;
    match level {
        "error" => error!(transform = c, suppressed, script = message, "Script log."),
        "warn" => warn!(transform = c, suppressed, script = message, "Script log."),
        "info" => info!(transform = c, suppressed, script = message, "Script log."),
        "debug" => debug!(transform = c, suppressed, script = message, "Script log."),
        _ => trace!(transform = c, suppressed, script = message, "Script log."),
    }
    Ok(())
}

fn emit(host: &Host, output: &str, event: Dynamic) -> Res<()> {
    let Some(outputs) = &host.outputs else {
        return Err("emit is not available here (only in a script transform)".into());
    };
    let output = match output {
        "" => None,
        o if outputs.iter().any(|d| d == o) => Some(o.to_owned()),
        o => {
            return Err(format!(
                "emit: no output named `{o}`; declare it in `outputs` (declared: {})",
                if outputs.is_empty() {
                    "none".to_owned()
                } else {
                    outputs.join(", ")
                }
            )
            .into())
        }
    };
    let Some(map) = event.try_cast::<Map>() else {
        return Err("emit: the event must be an object map".into());
    };
    host.run().emitted.push((output, map));
    Ok(())
}

fn text(s: &Option<Arc<str>>) -> Dynamic {
    s.as_deref()
        .map_or(Dynamic::UNIT, |s| Dynamic::from(ImmutableString::from(s)))
}

pub fn register(engine: &mut Engine, host: &Arc<Host>) {
    let h = host.clone();
    engine.register_fn("event_timestamp", move || Timestamp(h.run().timestamp));
    let h = host.clone();
    engine.register_fn("set_event_timestamp", move |t: Timestamp| {
        h.run().timestamp = t.0;
    });
    let h = host.clone();
    engine.register_fn("source", move || h.run().meta.source.to_string());
    let h = host.clone();
    engine.register_fn("host", move || h.run().meta.host.to_string());
    let h = host.clone();
    engine.register_fn("key", move || match &h.run().meta.key {
        Some(k) => Dynamic::from(String::from_utf8_lossy(k).into_owned()),
        None => Dynamic::UNIT,
    });
    let h = host.clone();
    engine.register_fn("set_key", move |k: &str| {
        h.run().meta.key = Some(Bytes::copy_from_slice(k.as_bytes()));
    });
    let h = host.clone();
    engine.register_fn("set_key", move |_: ()| {
        h.run().meta.key = None;
    });
    let h = host.clone();
    engine.register_fn("topic", move || text(&h.run().meta.topic));
    let h = host.clone();
    engine.register_fn("set_topic", move |t: &str| {
        h.run().meta.topic = Some(t.into());
    });
    let h = host.clone();
    engine.register_fn("set_topic", move |_: ()| {
        h.run().meta.topic = None;
    });
    let h = host.clone();
    engine.register_fn("emit", move |o: &str, e: Dynamic| emit(&h, o, e));
    let h = host.clone();
    engine.register_fn("emit", move |e: Dynamic| emit(&h, "", e));
    let h = host.clone();
    engine.register_fn("log", move |level: &str, m: Dynamic| {
        log(&h, level, &m.to_string())
    });
    let h = host.clone();
    engine.on_print(move |s| {
        let _ = log(&h, "info", s);
    });
    let h = host.clone();
    engine.on_debug(move |s, _, _| {
        let _ = log(&h, "debug", s);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_limiter_admits_a_few_per_second_and_counts_the_rest() {
        let mut l = LogLimiter::new(2);
        assert_eq!(l.admit(0), Some(0));
        assert_eq!(l.admit(1), Some(0));
        assert_eq!(l.admit(2), None);
        assert_eq!(l.admit(3), None);
        assert_eq!(
            l.admit(1_000_000_000),
            Some(2),
            "the next second reports the suppressed"
        );
        assert_eq!(LogLimiter::new(0).admit(0), None);
    }
}
