//! Topic templates: `site/{{ device }}/alerts` renders each record's
//! `device` field into the topic. `{{ a.b }}` reads into nested objects.

use serde_json::Value as Json;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Field(Vec<String>),
}

/// A parsed topic template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

/// Why a record has no topic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("field `{0}` is missing or not a string, number or boolean")]
    Missing(String),
    #[error("field `{0}` holds `+`, `#` or NUL, which a topic name cannot contain")]
    Wildcard(String),
    #[error("the value is not a JSON object")]
    NotAnObject,
    #[error("the topic is empty")]
    Empty,
}

fn bad_topic_char(s: &str) -> bool {
    s.contains(['+', '#', '\0'])
}

impl Template {
    /// Parses `text`; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Text(rest[..start].to_owned()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| format!("{text:?}: `{{{{` without `}}}}`"))?;
            let name = after[..end].trim();
            if name.is_empty()
                || !name.split('.').all(|p| {
                    !p.is_empty()
                        && p.chars()
                            .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
                })
            {
                return Err(format!("{text:?}: `{{{{ {name} }}}}` is not a field name"));
            }
            parts.push(Part::Field(name.split('.').map(str::to_owned).collect()));
            rest = &after[end + 2..];
        }
        if rest.contains("}}") {
            return Err(format!("{text:?}: `}}}}` without `{{{{`"));
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        if parts.is_empty() {
            return Err("a topic must not be empty".to_owned());
        }
        for p in &parts {
            if let Part::Text(t) = p {
                if bad_topic_char(t) {
                    return Err(format!(
                        "{text:?}: a topic name cannot contain `+`, `#` or NUL"
                    ));
                }
            }
        }
        Ok(Template { parts })
    }

    /// Whether the template reads any field.
    pub fn has_fields(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Field(_)))
    }

    /// The topic for a record whose value is the JSON `value`.
    pub fn render(&self, value: &[u8]) -> Result<String, RenderError> {
        let mut out = String::new();
        let json: Option<Json> = if self.has_fields() {
            let v: Json = serde_json::from_slice(value).map_err(|_| RenderError::NotAnObject)?;
            if !v.is_object() {
                return Err(RenderError::NotAnObject);
            }
            Some(v)
        } else {
            None
        };
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Field(path) => {
                    let name = path.join(".");
                    let mut v = json.as_ref().ok_or(RenderError::NotAnObject)?;
                    for k in path {
                        v = v.get(k).ok_or_else(|| RenderError::Missing(name.clone()))?;
                    }
                    let text = match v {
                        Json::String(s) => s.clone(),
                        Json::Number(n) => n.to_string(),
                        Json::Bool(b) => b.to_string(),
                        _ => return Err(RenderError::Missing(name)),
                    };
                    if bad_topic_char(&text) {
                        return Err(RenderError::Wildcard(name));
                    }
                    out.push_str(&text);
                }
            }
        }
        if out.is_empty() {
            return Err(RenderError::Empty);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_render_into_the_topic() {
        let t = Template::parse("site/{{ device }}/alerts/{{n}}").unwrap();
        assert_eq!(
            t.render(br#"{"device":"d7","n":3}"#).unwrap(),
            "site/d7/alerts/3"
        );
        let nested = Template::parse("{{ a.b }}/x").unwrap();
        assert_eq!(nested.render(br#"{"a":{"b":true}}"#).unwrap(), "true/x");
        let fixed = Template::parse("plain/topic").unwrap();
        assert!(!fixed.has_fields());
        assert_eq!(fixed.render(b"not even json").unwrap(), "plain/topic");
    }

    #[test]
    fn missing_or_unusable_fields_are_errors() {
        let t = Template::parse("site/{{ device }}").unwrap();
        assert_eq!(
            t.render(br#"{"x":1}"#),
            Err(RenderError::Missing("device".into()))
        );
        assert_eq!(
            t.render(br#"{"device":{"a":1}}"#),
            Err(RenderError::Missing("device".into()))
        );
        assert_eq!(
            t.render(br#"{"device":"a+b"}"#),
            Err(RenderError::Wildcard("device".into()))
        );
        assert_eq!(t.render(b"[1]"), Err(RenderError::NotAnObject));
        assert_eq!(
            Template::parse("{{ d }}").unwrap().render(br#"{"d":""}"#),
            Err(RenderError::Empty)
        );
    }

    #[test]
    fn malformed_templates_are_refused() {
        for bad in ["", "a/{{ x", "a/}}", "a/{{}}", "a/+/b", "a/#", "{{ a b }}"] {
            assert!(Template::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
