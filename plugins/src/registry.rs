//! From `type:` names to component configs. Adding a component is one module
//! and one line here.

use serde::de::DeserializeOwned;

use crate::component::{SinkConfig, SourceConfig, TransformConfig};

/// A config that did not deserialize: the key path inside the component and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// Dotted path below the component, e.g. `batch.max_events`; empty for the component itself.
    pub path: String,
    pub message: String,
}

/// What parsing a component's keys gave: every problem found, and the
/// config as parsed without the keys that had problems (so its value
/// problems can be reported in the same round), when that parses.
pub struct Parsed<T: ?Sized> {
    pub config: Option<Box<T>>,
    pub errors: Vec<ParseError>,
}

impl<T: ?Sized> Parsed<T> {
    /// The config, if it parsed without problems.
    pub fn ok(self) -> Result<Box<T>, Vec<ParseError>> {
        match (self.config, self.errors.is_empty()) {
            (Some(c), true) => Ok(c),
            (_, _) => Err(self.errors),
        }
    }

    fn map<U: ?Sized>(self, f: impl FnOnce(Box<T>) -> Box<U>) -> Parsed<U> {
        Parsed {
            config: self.config.map(f),
            errors: self.errors,
        }
    }
}

type Parse<T> = fn(serde_yaml::Value) -> Parsed<T>;

/// One component type.
pub struct Kind<T: ?Sized> {
    /// The `type:` name.
    pub name: &'static str,
    /// Deserializes the component's keys (without `type`, `inputs`, `channel`).
    pub parse: Parse<T>,
    /// A minimal valid config (keys only), checked by a test.
    pub example: &'static str,
}

/// Deserializes a component's keys, reporting every problem rather than the
/// first: after each error the offending key is taken out and the rest
/// parsed again (bounded), so a user fixes a config in one round.
fn parse<C: DeserializeOwned>(v: serde_yaml::Value) -> Parsed<C> {
    let mut v = v;
    let mut errors: Vec<ParseError> = Vec::new();
    for _ in 0..32 {
        match serde_path_to_error::deserialize::<_, C>(v.clone()) {
            Ok(c) => {
                return Parsed {
                    config: Some(Box::new(c)),
                    errors,
                }
            }
            Err(e) => {
                let path = e.path().to_string();
                let path = if path == "." { String::new() } else { path };
                let message = weir_core::problems::plain_words(&e.into_inner().to_string());
                // A key taken out for a wrong value now "misses": not news.
                let missing_removed = errors.iter().any(|prev| {
                    message.starts_with("missing field")
                        && message.contains(&format!("`{}`", last_key(&prev.path)))
                });
                if missing_removed
                    || errors
                        .iter()
                        .any(|p| p.path == path && p.message == message)
                {
                    break;
                }
                let removed = !path.is_empty() && remove_path(&mut v, &path);
                errors.push(ParseError { path, message });
                if !removed {
                    break;
                }
            }
        }
    }
    Parsed {
        config: None,
        errors,
    }
}

fn last_key(path: &str) -> &str {
    path.rsplit('.').next().unwrap_or(path)
}

/// Removes the value at a dotted path (`batch.max_events`, `topics[1].qos`).
fn remove_path(v: &mut serde_yaml::Value, path: &str) -> bool {
    let mut parts: Vec<&str> = path.split('.').collect();
    let Some(last) = parts.pop() else {
        return false;
    };
    let mut cur = v;
    for p in parts {
        let (key, index) = split_index(p);
        let Some(next) = cur.get_mut(key) else {
            return false;
        };
        cur = match index {
            Some(i) => match next.get_mut(i) {
                Some(n) => n,
                None => return false,
            },
            None => next,
        };
    }
    let (key, index) = split_index(last);
    match index {
        Some(i) => match cur.get_mut(key).and_then(|s| s.as_sequence_mut()) {
            Some(seq) if i < seq.len() => {
                seq.remove(i);
                true
            }
            _ => false,
        },
        None => cur
            .as_mapping_mut()
            .is_some_and(|m| m.remove(key).is_some()),
    }
}

/// `topics[1]` → (`topics`, Some(1)).
fn split_index(part: &str) -> (&str, Option<usize>) {
    match part.split_once('[') {
        Some((k, rest)) => (k, rest.trim_end_matches(']').parse().ok()),
        None => (part, None),
    }
}

macro_rules! source_kind {
    ($name:literal, $cfg:ty, $example:expr) => {
        Kind::<dyn SourceConfig> {
            name: $name,
            parse: |v| parse::<$cfg>(v).map(|c| c as Box<dyn SourceConfig>),
            example: $example,
        }
    };
}

macro_rules! sink_kind {
    ($name:literal, $cfg:ty, $example:expr) => {
        Kind::<dyn SinkConfig> {
            name: $name,
            parse: |v| parse::<$cfg>(v).map(|c| c as Box<dyn SinkConfig>),
            example: $example,
        }
    };
}

/// Every compiled-in source type.
pub fn sources() -> Vec<Kind<dyn SourceConfig>> {
    vec![
        #[cfg(feature = "source-file")]
        source_kind!(
            "file",
            crate::sources::file::FileSourceConfig,
            "include: [\"/var/log/app/*.log\"]"
        ),
        #[cfg(feature = "source-mqtt")]
        source_kind!(
            "mqtt",
            crate::sources::mqtt::MqttSourceConfig,
            "url: mqtt://127.0.0.1:1883\ntopics: [{ filter: \"sensors/+device/+metric\", qos: 2 }]"
        ),
        #[cfg(feature = "source-serial")]
        source_kind!(
            "serial",
            crate::sources::serial::SerialSourceConfig,
            "path: /dev/ttyUSB0\nbaud: 9600\nframing: lines\nparser: nmea"
        ),
        #[cfg(feature = "source-modbus")]
        source_kind!(
            "modbus",
            crate::sources::modbus::ModbusSourceConfig,
            "url: tcp://127.0.0.1:502\ninterval: 5s\nreads:\n  - { unit: 1, kind: holding, address: 100, type: f32, word_order: big, name: flow, scale: 0.1 }"
        ),
    ]
}

macro_rules! transform_kind {
    ($name:literal, $cfg:ty, $example:expr) => {
        Kind::<dyn TransformConfig> {
            name: $name,
            parse: |v| parse::<$cfg>(v).map(|c| c as Box<dyn TransformConfig>),
            example: $example,
        }
    };
}

/// Every compiled-in transform type.
pub fn transforms() -> Vec<Kind<dyn TransformConfig>> {
    use crate::transforms::*;
    vec![
        transform_kind!(
            "add_fields",
            add_fields::AddFieldsConfig,
            "fields: { env: prod, site: 7 }"
        ),
        #[cfg(feature = "transform-script")]
        transform_kind!(
            "script",
            script::ScriptConfig,
            "source: |\n  event.n = to_int(event.n, 0) + 1;\n  event"
        ),
        #[cfg(feature = "transform-script")]
        transform_kind!(
            "route",
            route::RouteConfig,
            "routes: { hot: \"event.temp > 80.0\", cold: \"event.temp < -20.0\" }"
        ),
        transform_kind!("sample", sample::SampleConfig, "rate: 10"),
        transform_kind!(
            "throttle",
            throttle::ThrottleConfig,
            "rate: 100\nkey_fields: [device]"
        ),
        transform_kind!("dedupe", dedupe::DedupeConfig, "fields: [id]\nttl: 10m"),
        #[cfg(feature = "transform-aggregate")]
        transform_kind!(
            "aggregate",
            aggregate::AggregateConfig,
            "window: { kind: tumbling, size: 10s }\ngroup_by: [device]\naggregates: { n: { fn: count } }"
        ),
    ]
}

/// Every compiled-in sink type.
pub fn sinks() -> Vec<Kind<dyn SinkConfig>> {
    vec![
        #[cfg(feature = "sink-collector")]
        sink_kind!(
            "collector",
            crate::sinks::collector::CollectorSinkConfig,
            "url: http://127.0.0.1:7400\ntopic: logs"
        ),
        #[cfg(feature = "sink-mqtt")]
        sink_kind!(
            "mqtt",
            crate::sinks::mqtt::MqttSinkConfig,
            "url: mqtt://127.0.0.1:1883\ntopic: \"site/{{ device }}/alerts\"\nqos: 1"
        ),
        #[cfg(feature = "sink-stdout")]
        sink_kind!("stdout", crate::sinks::stdout::StdoutSinkConfig, "{}"),
        #[cfg(feature = "sink-file")]
        sink_kind!(
            "file",
            crate::sinks::file::FileSinkConfig,
            "path: /tmp/weir-out.jsonl"
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_example_config_parses() {
        for k in sources() {
            let v: serde_yaml::Value = serde_yaml::from_str(k.example).unwrap();
            let cfg = (k.parse)(v)
                .ok()
                .unwrap_or_else(|e| panic!("source {}: {e:?}", k.name));
            assert!(
                cfg.problems().is_empty(),
                "source {}: {:?}",
                k.name,
                cfg.problems()
            );
        }
        for k in transforms() {
            let v: serde_yaml::Value = serde_yaml::from_str(k.example).unwrap();
            let cfg = (k.parse)(v)
                .ok()
                .unwrap_or_else(|e| panic!("transform {}: {e:?}", k.name));
            assert!(
                cfg.problems().is_empty(),
                "transform {}: {:?}",
                k.name,
                cfg.problems()
            );
            assert!(
                cfg.text_problems("t").is_empty(),
                "transform {}: {:?}",
                k.name,
                cfg.text_problems("t")
            );
        }
        for k in sinks() {
            let v: serde_yaml::Value = serde_yaml::from_str(k.example).unwrap();
            let cfg = (k.parse)(v)
                .ok()
                .unwrap_or_else(|e| panic!("sink {}: {e:?}", k.name));
            assert!(
                cfg.problems().is_empty(),
                "sink {}: {:?}",
                k.name,
                cfg.problems()
            );
        }
    }

    #[test]
    fn unknown_keys_name_their_path() {
        let k = sinks().into_iter().find(|k| k.name == "collector").unwrap();
        let v: serde_yaml::Value =
            serde_yaml::from_str("url: http://x\ntopic: t\nbatch: { max_evnts: 3 }").unwrap();
        let e = (k.parse)(v).errors;
        assert_eq!(e[0].path, "batch.max_evnts");
        assert!(e[0].message.contains("max_evnts"), "{}", e[0].message);
    }

    #[test]
    fn every_problem_of_a_component_is_reported_in_plain_words() {
        let k = sinks().into_iter().find(|k| k.name == "collector").unwrap();
        let v: serde_yaml::Value = serde_yaml::from_str(
            "url: http://x\ntopic: t\nmax_in_flight: many\nbatch: { max_evnts: 3, max_events: -1 }\nbogus: 1",
        )
        .unwrap();
        let e = (k.parse)(v).errors;
        let paths: Vec<&str> = e.iter().map(|p| p.path.as_str()).collect();
        assert!(paths.contains(&"max_in_flight"), "{e:?}");
        assert!(paths.contains(&"batch.max_evnts"), "{e:?}");
        assert!(paths.contains(&"bogus") || paths.is_empty(), "{e:?}");
        assert!(e.len() >= 3, "{e:?}");
        for p in &e {
            assert!(
                !p.message.contains("usize"),
                "Rust type names leak: {}",
                p.message
            );
        }
    }
}
