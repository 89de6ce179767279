//! The `add_fields` transform: sets constant fields on every event (site,
//! environment, device id…), the enrichment nearly every edge pipeline needs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use weir_core::Value;

use crate::component::{BuildError, SourceBatch, Transform, TransformConfig, TransformContext};

/// A constant field value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Constant {
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
}

impl From<&Constant> for Value {
    fn from(c: &Constant) -> Value {
        match c {
            Constant::Bool(b) => Value::Bool(*b),
            Constant::Int(i) => Value::Int(*i),
            Constant::Float(f) => Value::Float(*f),
            Constant::String(s) => Value::String(s.clone()),
        }
    }
}

/// Adds constant fields to every event.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddFieldsConfig {
    /// Field names and their values (strings, integers, floats, booleans).
    pub fields: BTreeMap<String, Constant>,
    /// Replace a field the event already has (default true); false keeps the event's value.
    #[serde(default = "yes")]
    pub overwrite: bool,
}

fn yes() -> bool {
    true
}

impl TransformConfig for AddFieldsConfig {
    fn problems(&self) -> Vec<String> {
        if self.fields.is_empty() {
            vec!["fields: at least one field is required".to_owned()]
        } else {
            Vec::new()
        }
    }

    fn build(&self, _ctx: TransformContext) -> Result<Box<dyn Transform>, BuildError> {
        let fields = self
            .fields
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v)))
            .collect();
        Ok(Box::new(AddFields {
            fields,
            overwrite: self.overwrite,
        }))
    }
}

struct AddFields {
    fields: Vec<(String, Value)>,
    overwrite: bool,
}

impl Transform for AddFields {
    fn apply(&mut self, batch: &mut SourceBatch) {
        for e in &mut batch.events {
            for (k, v) in &self.fields {
                if self.overwrite || e.fields.get(k).is_none() {
                    e.fields.insert(k.as_str(), v.clone());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_core::{Event, Metadata};

    #[test]
    fn sets_fields_and_respects_overwrite() {
        let cfg: AddFieldsConfig =
            serde_yaml::from_str("fields: { env: prod, site: 7, message: x }\noverwrite: false")
                .unwrap();
        let mut t = cfg
            .build(TransformContext {
                id: "t".into(),
                metrics: Default::default(),
            })
            .unwrap();
        let mut b = SourceBatch {
            events: vec![Event::from_message("hello", Metadata::default())],
            stream: None,
            ends: vec![],
        };
        t.apply(&mut b);
        let f = &b.events[0].fields;
        assert_eq!(f.get("env"), Some(&Value::String("prod".into())));
        assert_eq!(f.get("site"), Some(&Value::Int(7)));
        assert_eq!(
            f.get("message"),
            Some(&Value::String("hello".into())),
            "overwrite: false keeps the event's value"
        );
    }

    #[test]
    fn retain_keeps_positions_aligned() {
        let mut b = SourceBatch {
            events: (0..5)
                .map(|i| Event::from_message(format!("{i}"), Metadata::default()))
                .collect(),
            stream: Some("s".into()),
            ends: vec![10, 20, 30, 40, 50],
        };
        b.retain(|e| e.message() != Some("1") && e.message() != Some("3"));
        assert_eq!(b.ends, vec![10, 30, 50]);
        assert_eq!(b.events.len(), 3);
    }
}
