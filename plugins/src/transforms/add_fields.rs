//! The `add_fields` transform: sets constant fields on every event (site,
//! environment, device id…), the enrichment nearly every edge pipeline needs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use weir_core::{Event, Value};

use crate::component::{BuildError, Emitter, Transform, TransformConfig, TransformContext};

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
    fn process(&mut self, mut event: Event, out: &mut Emitter) {
        for (k, v) in &self.fields {
            if self.overwrite || event.fields.get(k).is_none() {
                event.fields.insert(k.as_str(), v.clone());
            }
        }
        out.emit(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_core::Metadata;

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
        let mut out = Emitter::new("t", &[], 0);
        t.process(Event::from_message("hello", Metadata::default()), &mut out);
        let (emitted, _) = out.take();
        let f = &emitted[0].events[0].fields;
        assert_eq!(f.get("env"), Some(&Value::String("prod".into())));
        assert_eq!(f.get("site"), Some(&Value::Int(7)));
        assert_eq!(
            f.get("message"),
            Some(&Value::String("hello".into())),
            "overwrite: false keeps the event's value"
        );
    }
}
