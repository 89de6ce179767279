//! `weir top`: per-component rates, errors, backlog and lag from two
//! readings of the agent's metrics.
//!
//! Nothing here lists metric names: every sample with a `component` (or
//! `sink`) label belongs to that component, and its name says which column
//! it feeds — counters of events in (`*_in_*`, `received`) and out
//! (`sent`, `acked`, `out`, `sink_events`) as rates, counters of failures
//! (`error`, `fail`, `dropped`, `corrupt`, `rejected`, `retries`) as totals,
//! gauges of backlog (`backlog`, `records`), bytes, capacity and lag as
//! values. Metrics added later show up in `--all`, and in the columns
//! when their names say what they are.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

/// One sample of the Prometheus text format.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
    pub counter: bool,
}

impl Sample {
    fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses the Prometheus text format (the subset our registry writes).
pub fn parse(text: &str) -> Vec<Sample> {
    let mut counters = std::collections::HashSet::new();
    let mut out = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some((name, kind)) = rest.split_once(' ') {
                if kind.trim() == "counter" {
                    counters.insert(name.to_owned());
                }
            }
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let Some((head, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = match head.split_once('{') {
            Some((n, l)) => (n, parse_labels(l.trim_end_matches('}'))),
            None => (head, Vec::new()),
        };
        out.push(Sample {
            counter: counters.contains(name),
            name: name.to_owned(),
            labels,
            value,
        });
    }
    out
}

fn parse_labels(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => {}
                },
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.push((key.trim_start_matches(',').to_owned(), value));
        rest = &after[end..];
    }
    out
}

/// Which column a metric feeds, by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    In,
    Out,
    Errors,
    Backlog,
    Bytes,
    Capacity,
    Lag,
    Other,
}

fn column(name: &str, counter: bool) -> Column {
    let has = |words: &[&str]| words.iter().any(|w| name.contains(w));
    if counter {
        if has(&[
            "error", "fail", "dropped", "corrupt", "rejected", "retries", "lost",
        ]) {
            Column::Errors
        } else if !has(&["bytes", "batches"]) && has(&["_in_", "received"])
            || name == "weir_source_events_total"
        {
            Column::In
        } else if !has(&["bytes", "batches"])
            && has(&["sent", "acked", "_out_", "sink_events", "delivered"])
        {
            Column::Out
        } else {
            Column::Other
        }
    } else if has(&["capacity"]) {
        Column::Capacity
    } else if has(&["lag"]) {
        Column::Lag
    } else if has(&["bytes"]) && !has(&["disk"]) {
        Column::Bytes
    } else if has(&["backlog", "records"]) || name.ends_with("channel_events") {
        Column::Backlog
    } else {
        Column::Other
    }
}

/// One row of the table.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Row {
    pub kind: String,
    pub in_rate: f64,
    pub out_rate: f64,
    pub errors: f64,
    pub backlog: Option<f64>,
    pub bytes: Option<f64>,
    pub capacity: Option<f64>,
    pub lag: Option<f64>,
    /// Every metric of the component: name (with its other labels) → value, rate.
    pub all: BTreeMap<String, (f64, Option<f64>)>,
}

/// The kind of component a sample tells of, and whether it tells for sure:
/// channel metrics belong to a sink or to a stateful transform's input log,
/// so they only decide when nothing else does. (`component_type` is the
/// component's `type:`, e.g. `file`, which a source and a sink share.)
fn kind_of(s: &Sample) -> Option<(&'static str, bool)> {
    let n = s.name.as_str();
    if n.starts_with("weir_transform_") {
        Some(("transform", true))
    } else if n.starts_with("weir_sink_") {
        Some(("sink", true))
    } else if n.starts_with("weir_source_") || n == "weir_component_sent_events_total" {
        Some(("source", true))
    } else if n.starts_with("weir_channel_") || s.label("sink").is_some() {
        Some(("sink", false))
    } else {
        None
    }
}

/// The table from two readings `elapsed` apart, by component id.
pub fn rows(before: &[Sample], after: &[Sample], elapsed: Duration) -> BTreeMap<String, Row> {
    let secs = elapsed.as_secs_f64().max(1e-3);
    let key = |s: &Sample| -> String {
        let mut k = s.name.clone();
        for (lk, lv) in &s.labels {
            let _ = write!(k, ",{lk}={lv}");
        }
        k
    };
    let prev: std::collections::HashMap<String, f64> =
        before.iter().map(|s| (key(s), s.value)).collect();
    let mut out: BTreeMap<String, Row> = BTreeMap::new();
    // Several metrics may count one flow (a sink's acknowledged and
    // delivered events): summed within a metric, the largest across them.
    let mut flows: BTreeMap<(String, bool, String), f64> = BTreeMap::new();
    let mut sure = std::collections::HashSet::new();
    for s in after {
        let Some(id) = s.label("component").or_else(|| s.label("sink")) else {
            continue;
        };
        let row = out.entry(id.to_owned()).or_default();
        if !sure.contains(id) {
            match kind_of(s) {
                Some((k, true)) => {
                    row.kind = k.to_owned();
                    sure.insert(id.to_owned());
                }
                Some((k, false)) if row.kind.is_empty() => row.kind = k.to_owned(),
                _ => {}
            }
        }
        let rate = s
            .counter
            .then(|| (s.value - prev.get(&key(s)).copied().unwrap_or(s.value)).max(0.0) / secs);
        let others: Vec<String> = s
            .labels
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "component" | "sink" | "component_type"))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let label = if others.is_empty() {
            s.name.clone()
        } else {
            format!("{}{{{}}}", s.name, others.join(","))
        };
        row.all.insert(label, (s.value, rate));
        let add = |slot: &mut Option<f64>, v: f64| *slot = Some(slot.unwrap_or(0.0) + v);
        match column(&s.name, s.counter) {
            Column::In | Column::Out => {
                let k = (
                    id.to_owned(),
                    column(&s.name, true) == Column::In,
                    s.name.clone(),
                );
                *flows.entry(k).or_default() += rate.unwrap_or(0.0);
            }
            Column::Errors => row.errors += s.value,
            Column::Backlog => add(&mut row.backlog, s.value),
            Column::Bytes => add(&mut row.bytes, s.value),
            Column::Capacity => add(&mut row.capacity, s.value),
            Column::Lag => add(&mut row.lag, s.value),
            Column::Other => {}
        }
    }
    for ((id, is_in, _), rate) in flows {
        if let Some(row) = out.get_mut(&id) {
            let slot = if is_in {
                &mut row.in_rate
            } else {
                &mut row.out_rate
            };
            *slot = slot.max(rate);
        }
    }
    out
}

/// The table as text; with `all`, every metric of each component below its row.
pub fn render(rows: &BTreeMap<String, Row>, all: bool) -> String {
    let opt = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), human);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<20} {:<9} {:>9} {:>9} {:>8} {:>9} {:>9} {:>9} {:>8}",
        "COMPONENT", "TYPE", "IN/s", "OUT/s", "ERRORS", "BACKLOG", "BYTES", "CAPACITY", "LAG"
    );
    for (id, r) in rows {
        let _ = writeln!(
            out,
            "{:<20} {:<9} {:>9} {:>9} {:>8} {:>9} {:>9} {:>9} {:>8}",
            id,
            if r.kind.is_empty() { "-" } else { &r.kind },
            human(r.in_rate),
            human(r.out_rate),
            human(r.errors),
            opt(r.backlog),
            opt(r.bytes),
            opt(r.capacity),
            opt(r.lag),
        );
        if all {
            for (name, (v, rate)) in &r.all {
                let rate = rate
                    .map(|r| format!("  ({}/s)", human(r)))
                    .unwrap_or_default();
                let _ = writeln!(out, "    {name} = {}{rate}", human(*v));
            }
        }
    }
    out
}

fn human(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.1}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = r#"# HELP weir_transform_events_in_total Events a transform received.
# TYPE weir_source_events_total counter
weir_source_events_total{component="app",component_type="file"} 1000
# TYPE weir_transform_events_in_total counter
weir_transform_events_in_total{component="parse",component_type="script"} 100
# TYPE weir_channel_events_in_total counter
weir_channel_events_in_total{component="stats",component_type="aggregate"} 0
# TYPE weir_sink_acked_events_total counter
weir_sink_acked_events_total{component="out",component_type="file"} 10
# TYPE weir_channel_events gauge
weir_channel_events{component="out",component_type="file"} 5
"#;

    const AFTER: &str = r#"# TYPE weir_source_events_total counter
weir_source_events_total{component="app",component_type="file"} 1600
# TYPE weir_channel_events_in_total counter
weir_channel_events_in_total{component="stats",component_type="aggregate"} 40
# TYPE weir_transform_events_in_total counter
weir_transform_events_in_total{component="parse",component_type="script"} 300
weir_transform_events_in_total{component="stats",component_type="aggregate"} 40
# TYPE weir_transform_errors_total counter
weir_transform_errors_total{component="parse",component_type="script",reason="script"} 7
# TYPE weir_sink_acked_events_total counter
weir_sink_acked_events_total{component="out",component_type="file"} 50
# TYPE weir_channel_events gauge
weir_channel_events{component="out",component_type="file"} 5
# TYPE weir_channel_bytes gauge
weir_channel_bytes{component="out",component_type="file"} 500
# TYPE weir_channel_disk_bytes gauge
weir_channel_disk_bytes{component="out",component_type="file"} 4096
# TYPE weir_channel_capacity_bytes gauge
weir_channel_capacity_bytes{component="out",component_type="file"} 1024
# TYPE weir_channel_lag_seconds gauge
weir_channel_lag_seconds{component="out",component_type="file"} 2
"#;

    #[test]
    fn rates_come_from_two_readings_and_columns_from_metric_names() {
        let rows = rows(&parse(BEFORE), &parse(AFTER), Duration::from_secs(2));
        let app = &rows["app"];
        assert_eq!(
            app.kind, "source",
            "a file source, though `file` is also a sink type"
        );
        assert_eq!(app.in_rate, 300.0);
        let parse_row = &rows["parse"];
        assert_eq!(parse_row.kind, "transform");
        assert_eq!(parse_row.in_rate, 100.0);
        assert_eq!(parse_row.errors, 7.0);
        assert_eq!(
            rows["stats"].kind, "transform",
            "a stateful transform's input log does not make it a sink"
        );
        let out = &rows["out"];
        assert_eq!(out.kind, "sink");
        assert_eq!(out.out_rate, 20.0);
        assert_eq!(out.backlog, Some(5.0));
        assert_eq!(
            out.bytes,
            Some(500.0),
            "backlog bytes, not the spool's files"
        );
        assert_eq!(
            out.capacity,
            Some(1024.0),
            "a metric added later is picked up by its name"
        );
        assert_eq!(out.lag, Some(2.0));
        let text = render(&rows, true);
        assert!(
            text.contains("weir_transform_errors_total{reason=script} = 7"),
            "{text}"
        );
    }

    #[test]
    fn labels_with_escapes_parse() {
        let s = parse("# TYPE x counter\nx{a=\"q\\\"z\",b=\"2\"} 3\n");
        assert_eq!(
            s[0].labels,
            vec![("a".into(), "q\"z".into()), ("b".into(), "2".into())]
        );
        assert!(s[0].counter);
    }
}
