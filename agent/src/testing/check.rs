//! Checking what an output carried against a test's expectations, and
//! saying clearly how it differs: an event-by-event diff (`-` expected and
//! missing, `+` got and not expected) with the differing fields named.

use serde_json::Value as J;
use weir_core::Event;
use weir_plugins::transforms::script::Conditions;

use super::spec::Expect;

/// Longest lists diffed event by event; longer ones are compared by position.
const MAX_DIFF: usize = 2000;
/// Events shown for a failing condition.
const MAX_SHOWN: usize = 5;

/// An event's fields as JSON (timestamps as RFC 3339, as sinks write them).
pub fn fields_json(e: &Event) -> J {
    serde_json::from_slice(&e.fields_json()).unwrap_or(J::Null)
}

/// Equal as a test means it: numbers by value (`85` is `85.0`), times by
/// instant (`2024-05-01T12:00:00Z` is `2024-05-01T12:00:00.000000000Z`).
pub fn same(a: &J, b: &J) -> bool {
    match (a, b) {
        (J::String(x), J::String(y)) => x == y || same_time(x, y),
        (J::Number(x), J::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i == j,
            _ => x.as_f64() == y.as_f64(),
        },
        (J::Array(x), J::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (J::Object(x), J::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// The problems with `got` against `expect`, as report lines (empty: it passed).
pub fn check(
    expect: &Expect,
    got: &[Event],
    conditions: Option<&mut Conditions>,
    now: i64,
) -> Vec<String> {
    let mut lines = Vec::new();
    let name = &expect.output;
    if let Some(n) = expect.count {
        if got.len() != n {
            lines.push(format!(
                "{name}: expected {n} event{}, got {}",
                plural(n),
                got.len()
            ));
            if expect.events.is_none() {
                for e in got.iter().take(MAX_SHOWN) {
                    lines.push(format!("    got {}", fields_json(e)));
                }
            }
        }
    }
    if let Some(want) = &expect.events {
        let have: Vec<J> = got.iter().map(fields_json).collect();
        if want.len() != have.len() || want.iter().zip(&have).any(|(a, b)| !same(a, b)) {
            lines.push(format!(
                "{name}: the events differ (- expected, + got; {} expected, {} got)",
                want.len(),
                have.len()
            ));
            lines.extend(diff(want, &have));
        }
    }
    if let Some(conds) = conditions {
        for (i, text) in expect.conditions.iter().enumerate() {
            let mut shown = 0;
            let mut failing = 0;
            for (k, e) in got.iter().enumerate() {
                conds.set_event(e, now);
                let why = match conds.eval(i) {
                    Ok(true) => continue,
                    Ok(false) => "false".to_owned(),
                    Err(err) => format!("an error ({err})"),
                };
                failing += 1;
                if shown < MAX_SHOWN {
                    shown += 1;
                    lines.push(format!(
                        "{name}: condition `{text}` is {why} for event {}: {}",
                        k + 1,
                        fields_json(e)
                    ));
                }
            }
            if failing > shown {
                lines.push(format!("{name}: … and for {} more events", failing - shown));
            }
        }
    }
    lines
}

fn same_time(a: &str, b: &str) -> bool {
    let time = |s: &str| s.as_bytes().first().is_some_and(u8::is_ascii_digit) && s.len() >= 20;
    if !time(a) || !time(b) {
        return false;
    }
    match (
        humantime::parse_rfc3339_weak(a),
        humantime::parse_rfc3339_weak(b),
    ) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// A line diff of two event lists (longest common subsequence).
fn diff(want: &[J], have: &[J]) -> Vec<String> {
    let ops = if want.len() <= MAX_DIFF && have.len() <= MAX_DIFF {
        lcs(want, have)
    } else {
        positional(want.len(), have.len(), |i, j| same(&want[i], &have[j]))
    };
    let mut out = Vec::new();
    // Removals not yet paired with an addition: a run of `-` followed by a
    // run of `+` is read as changed events, paired in order.
    let mut pending = std::collections::VecDeque::new();
    for op in ops {
        match op {
            Op::Same(i, _) => {
                pending.clear();
                out.push(format!("      {}", want[i]));
            }
            Op::Removed(i) => {
                pending.push_back(i);
                out.push(format!("    - {}", want[i]));
            }
            Op::Added(j) => {
                out.push(format!("    + {}", have[j]));
                if let Some(i) = pending.pop_front() {
                    out.extend(field_diff(&want[i], &have[j]));
                }
            }
        }
    }
    out
}

/// The fields in which two events differ.
fn field_diff(want: &J, have: &J) -> Vec<String> {
    let (J::Object(w), J::Object(h)) = (want, have) else {
        return Vec::new();
    };
    let mut keys: Vec<&String> = w.keys().chain(h.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|k| match (w.get(k), h.get(k)) {
            (Some(a), Some(b)) if !same(a, b) => {
                Some(format!("        {k}: expected {a}, got {b}"))
            }
            (Some(a), None) => Some(format!("        {k}: expected {a}, missing")),
            (None, Some(b)) => Some(format!("        {k}: not expected, got {b}")),
            _ => None,
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Same(usize, usize),
    Removed(usize),
    Added(usize),
}

fn lcs(a: &[J], b: &[J]) -> Vec<Op> {
    let (n, m) = (a.len(), b.len());
    // len[i][j]: the LCS length of a[i..] and b[j..].
    let mut len = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            len[i][j] = if same(&a[i], &b[j]) {
                len[i + 1][j + 1] + 1
            } else {
                len[i + 1][j].max(len[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut ops = Vec::new();
    while i < n && j < m {
        if same(&a[i], &b[j]) {
            ops.push(Op::Same(i, j));
            i += 1;
            j += 1;
        } else if len[i + 1][j] >= len[i][j + 1] {
            // Removals first, so a changed event reads `-` then `+`.
            ops.push(Op::Removed(i));
            i += 1;
        } else {
            ops.push(Op::Added(j));
            j += 1;
        }
    }
    ops.extend((i..n).map(Op::Removed));
    ops.extend((j..m).map(Op::Added));
    ops
}

fn positional(n: usize, m: usize, eq: impl Fn(usize, usize) -> bool) -> Vec<Op> {
    let mut ops = Vec::new();
    for k in 0..n.max(m) {
        match (k < n, k < m) {
            (true, true) if eq(k, k) => ops.push(Op::Same(k, k)),
            (true, true) => {
                ops.push(Op::Removed(k));
                ops.push(Op::Added(k));
            }
            (true, false) => ops.push(Op::Removed(k)),
            _ => ops.push(Op::Added(k)),
        }
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_compare_by_value() {
        assert!(same(
            &json!({"t": 85, "a": [1.0]}),
            &json!({"a": [1], "t": 85.0})
        ));
        assert!(!same(&json!({"t": 85}), &json!({"t": 85.5})));
        assert!(!same(&json!({"t": 1}), &json!({"t": 1, "u": 2})));
        assert!(same(
            &json!("2024-05-01T12:00:00Z"),
            &json!("2024-05-01T12:00:00.000000000Z")
        ));
        assert!(!same(
            &json!("2024-05-01T12:00:00Z"),
            &json!("2024-05-01T12:00:01Z")
        ));
    }

    #[test]
    fn the_diff_marks_missing_and_unexpected_events_and_names_fields() {
        let want = vec![json!({"n": 1}), json!({"d": "a", "n": 2}), json!({"n": 3})];
        let have = vec![
            json!({"n": 1}),
            json!({"d": "b", "n": 2}),
            json!({"n": 3}),
            json!({"n": 4}),
        ];
        let d = diff(&want, &have);
        assert_eq!(
            d,
            vec![
                "      {\"n\":1}",
                "    - {\"d\":\"a\",\"n\":2}",
                "    + {\"d\":\"b\",\"n\":2}",
                "        d: expected \"a\", got \"b\"",
                "      {\"n\":3}",
                "    + {\"n\":4}",
            ]
        );
    }
}
