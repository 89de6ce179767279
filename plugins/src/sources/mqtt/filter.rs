//! Topic filters with named levels: `sensors/+device/+metric` subscribes to
//! `sensors/+/+` and turns the matched levels into the fields `device` and
//! `metric`; `#rest` captures the remaining levels joined by `/`.

/// One level of a filter.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Level {
    Exact(String),
    /// `+` or `+name`.
    One(Option<String>),
    /// `#` or `#name` (last level only).
    Many(Option<String>),
}

/// A parsed topic filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicFilter {
    /// What is sent in SUBSCRIBE: names removed.
    subscription: String,
    levels: Vec<Level>,
}

fn valid_name(n: &str) -> bool {
    !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl TopicFilter {
    /// Parses a filter; the error says what is wrong with it.
    pub fn parse(filter: &str) -> Result<TopicFilter, String> {
        if filter.is_empty() {
            return Err("a topic filter must not be empty".to_owned());
        }
        if filter.contains('\0') {
            return Err(format!("{filter:?}: contains a NUL character"));
        }
        // `$share/<group>/<filter>`: the group is kept in the subscription,
        // matching uses the filter after it.
        let (share, body) = match filter.strip_prefix("$share/") {
            Some(rest) => {
                let (group, f) = rest
                    .split_once('/')
                    .ok_or_else(|| format!("{filter:?}: $share/<group>/<filter> expected"))?;
                if group.is_empty() || group.contains(['+', '#']) || f.is_empty() {
                    return Err(format!("{filter:?}: $share/<group>/<filter> expected"));
                }
                (Some(group), f)
            }
            None => (None, filter),
        };
        let parts: Vec<&str> = body.split('/').collect();
        let mut levels = Vec::with_capacity(parts.len());
        let mut names: Vec<&str> = Vec::new();
        for (i, p) in parts.iter().enumerate() {
            let level = if let Some(name) = p.strip_prefix('+') {
                Level::One(Self::name(filter, name, &mut names)?)
            } else if let Some(name) = p.strip_prefix('#') {
                if i + 1 != parts.len() {
                    return Err(format!("{filter:?}: `#` must be the last level"));
                }
                Level::Many(Self::name(filter, name, &mut names)?)
            } else if p.contains(['+', '#']) {
                return Err(format!(
                    "{filter:?}: `+` and `#` must start a level (`+`, `+name`, `#`, `#name`)"
                ));
            } else {
                Level::Exact((*p).to_owned())
            };
            levels.push(level);
        }
        let plain: Vec<&str> = levels
            .iter()
            .map(|l| match l {
                Level::Exact(s) => s.as_str(),
                Level::One(_) => "+",
                Level::Many(_) => "#",
            })
            .collect();
        let plain = plain.join("/");
        let subscription = match share {
            Some(g) => format!("$share/{g}/{plain}"),
            None => plain,
        };
        Ok(TopicFilter {
            subscription,
            levels,
        })
    }

    fn name<'a>(
        filter: &str,
        name: &'a str,
        seen: &mut Vec<&'a str>,
    ) -> Result<Option<String>, String> {
        if name.is_empty() {
            return Ok(None);
        }
        if !valid_name(name) {
            return Err(format!(
                "{filter:?}: level name {name:?} may hold only letters, digits and `_`"
            ));
        }
        if seen.contains(&name) {
            return Err(format!("{filter:?}: level name {name:?} is used twice"));
        }
        seen.push(name);
        Ok(Some(name.to_owned()))
    }

    /// The filter as subscribed (named levels become `+` / `#`).
    pub fn subscription(&self) -> &str {
        &self.subscription
    }

    /// The level names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.levels.iter().filter_map(|l| match l {
            Level::One(Some(n)) | Level::Many(Some(n)) => Some(n.as_str()),
            _ => None,
        })
    }

    /// If `topic` matches, the named levels' values (empty when none are named).
    pub fn capture(&self, topic: &str) -> Option<Vec<(&str, String)>> {
        let parts: Vec<&str> = topic.split('/').collect();
        // Wildcards in the first level do not match topics starting with `$`.
        if topic.starts_with('$') && !matches!(self.levels.first(), Some(Level::Exact(_))) {
            return None;
        }
        let mut out = Vec::new();
        for (i, level) in self.levels.iter().enumerate() {
            match level {
                Level::Exact(s) => {
                    if parts.get(i) != Some(&s.as_str()) {
                        return None;
                    }
                }
                Level::One(name) => {
                    let v = parts.get(i)?;
                    if let Some(n) = name {
                        out.push((n.as_str(), (*v).to_owned()));
                    }
                }
                Level::Many(name) => {
                    // `a/#` also matches `a` itself.
                    if let Some(n) = name {
                        let rest = parts.get(i..).map(|r| r.join("/")).unwrap_or_default();
                        out.push((n.as_str(), rest));
                    }
                    return Some(out);
                }
            }
        }
        (parts.len() == self.levels.len()).then_some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap(f: &str, t: &str) -> Option<Vec<(String, String)>> {
        TopicFilter::parse(f)
            .unwrap()
            .capture(t)
            .map(|v| v.into_iter().map(|(a, b)| (a.to_owned(), b)).collect())
    }

    fn pairs(p: &[(&str, &str)]) -> Option<Vec<(String, String)>> {
        Some(
            p.iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                .collect(),
        )
    }

    #[test]
    fn named_levels_are_subscribed_as_wildcards_and_captured_as_fields() {
        let f = TopicFilter::parse("sensors/+device/+metric").unwrap();
        assert_eq!(f.subscription(), "sensors/+/+");
        assert_eq!(f.names().collect::<Vec<_>>(), ["device", "metric"]);
        assert_eq!(
            cap("sensors/+device/+metric", "sensors/d7/temp"),
            pairs(&[("device", "d7"), ("metric", "temp")])
        );
        assert_eq!(cap("sensors/+device/+metric", "sensors/d7"), None);
        assert_eq!(cap("sensors/+device/+metric", "sensors/d7/temp/x"), None);
        assert_eq!(cap("sensors/+device/+metric", "other/d7/temp"), None);
    }

    #[test]
    fn a_named_hash_captures_the_rest_of_the_topic() {
        assert_eq!(
            TopicFilter::parse("site/#rest").unwrap().subscription(),
            "site/#"
        );
        assert_eq!(cap("site/#rest", "site/a/b/c"), pairs(&[("rest", "a/b/c")]));
        assert_eq!(cap("site/#rest", "site"), pairs(&[("rest", "")]));
        assert_eq!(cap("site/#", "site/a"), pairs(&[]));
        assert_eq!(cap("#", "anything/at/all"), pairs(&[]));
    }

    #[test]
    fn unnamed_wildcards_match_without_fields_and_empty_levels_count() {
        assert_eq!(cap("a/+/c", "a/b/c"), pairs(&[]));
        assert_eq!(cap("a/+x/c", "a//c"), pairs(&[("x", "")]));
        assert_eq!(cap("a/b", "a/b"), pairs(&[]));
        assert_eq!(cap("a/b", "a/c"), None);
    }

    #[test]
    fn wildcards_do_not_match_dollar_topics_at_the_first_level() {
        assert_eq!(cap("#", "$SYS/broker/uptime"), None);
        assert_eq!(cap("+/broker/uptime", "$SYS/broker/uptime"), None);
        assert_eq!(cap("$SYS/#", "$SYS/broker/uptime"), pairs(&[]));
    }

    #[test]
    fn shared_subscriptions_keep_the_group_and_match_the_filter() {
        let f = TopicFilter::parse("$share/g1/sensors/+device").unwrap();
        assert_eq!(f.subscription(), "$share/g1/sensors/+");
        assert_eq!(
            f.capture("sensors/x"),
            Some(vec![("device", "x".to_owned())])
        );
    }

    #[test]
    fn malformed_filters_are_refused_with_a_reason() {
        for bad in ["", "a/#/b", "a/b+", "a/+x-y", "a/+d/+d", "$share/g", "a/x#"] {
            assert!(TopicFilter::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
