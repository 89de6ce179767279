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

type Parse<T> = fn(serde_yaml::Value) -> Result<Box<T>, ParseError>;

/// One component type.
pub struct Kind<T: ?Sized> {
    /// The `type:` name.
    pub name: &'static str,
    /// Deserializes the component's keys (without `type`, `inputs`, `channel`).
    pub parse: Parse<T>,
    /// A minimal valid config (keys only), checked by a test.
    pub example: &'static str,
}

fn parse<C: DeserializeOwned>(v: serde_yaml::Value) -> Result<C, ParseError> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        ParseError {
            path: if path == "." { String::new() } else { path },
            message: e.into_inner().to_string(),
        }
    })
}

macro_rules! source_kind {
    ($name:literal, $cfg:ty, $example:expr) => {
        Kind::<dyn SourceConfig> {
            name: $name,
            parse: |v| parse::<$cfg>(v).map(|c| Box::new(c) as Box<dyn SourceConfig>),
            example: $example,
        }
    };
}

macro_rules! sink_kind {
    ($name:literal, $cfg:ty, $example:expr) => {
        Kind::<dyn SinkConfig> {
            name: $name,
            parse: |v| parse::<$cfg>(v).map(|c| Box::new(c) as Box<dyn SinkConfig>),
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
    ]
}

/// Every compiled-in transform type.
pub fn transforms() -> Vec<Kind<dyn TransformConfig>> {
    vec![
        Kind::<dyn TransformConfig> {
            name: "add_fields",
            parse: |v| {
                parse::<crate::transforms::add_fields::AddFieldsConfig>(v)
                    .map(|c| Box::new(c) as Box<dyn TransformConfig>)
            },
            example: "fields: { env: prod, site: 7 }",
        },
        #[cfg(feature = "transform-aggregate")]
        Kind::<dyn TransformConfig> {
            name: "aggregate",
            parse: |v| {
                parse::<crate::transforms::aggregate::AggregateConfig>(v)
                    .map(|c| Box::new(c) as Box<dyn TransformConfig>)
            },
            example: "window: { kind: tumbling, size: 10s }\ngroup_by: [device]\naggregates: { n: { fn: count } }",
        },
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
            let cfg = (k.parse)(v).unwrap_or_else(|e| panic!("source {}: {e:?}", k.name));
            assert!(
                cfg.problems().is_empty(),
                "source {}: {:?}",
                k.name,
                cfg.problems()
            );
        }
        for k in transforms() {
            let v: serde_yaml::Value = serde_yaml::from_str(k.example).unwrap();
            let cfg = (k.parse)(v).unwrap_or_else(|e| panic!("transform {}: {e:?}", k.name));
            assert!(
                cfg.problems().is_empty(),
                "transform {}: {:?}",
                k.name,
                cfg.problems()
            );
        }
        for k in sinks() {
            let v: serde_yaml::Value = serde_yaml::from_str(k.example).unwrap();
            let cfg = (k.parse)(v).unwrap_or_else(|e| panic!("sink {}: {e:?}", k.name));
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
        let e = (k.parse)(v).unwrap_err();
        assert_eq!(e.path, "batch.max_evnts");
        assert!(e.message.contains("max_evnts"), "{}", e.message);
    }
}
