//! The fleet page's data: agents (from their heartbeats, `agents.rs`),
//! topics with sizes and append rates, consumer groups with their lag; and
//! the page itself (`page.html`, one file with inline CSS and JS, embedded
//! in the binary: no build step, no external resources).
//!
//! Nothing here is persisted: a restarted collector lists agents again as
//! their next heartbeats arrive (within one interval).

pub mod agents;

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

pub use agents::{AgentView, Agents, Status};

/// The fleet page, served at `/fleet`.
pub const PAGE: &str = include_str!("page.html");

/// The `Content-Security-Policy` of the page: its own inline script and
/// style, `fetch` to its own origin, nothing else.
pub const PAGE_CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Most (group, topic) rows in one answer.
pub const MAX_GROUP_ROWS: usize = 1000;

/// `GET /v1/fleet`.
#[derive(Debug, Clone, Serialize)]
pub struct FleetView {
    /// When the answer was made, in milliseconds since the Unix epoch.
    pub generated_unix_ms: u64,
    pub agents: Vec<AgentView>,
    pub topics: Vec<TopicView>,
    pub groups: Vec<GroupView>,
    /// Whether rows of `groups` were left out (past `MAX_GROUP_ROWS`).
    pub groups_truncated: bool,
}

/// One topic.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopicView {
    pub topic: String,
    pub partitions: u32,
    /// Records held (end minus start offsets, summed over partitions).
    pub records: i64,
    /// Sum of the partitions' end offsets: records ever appended.
    pub end_offset: i64,
    pub bytes: u64,
    pub segments: usize,
    /// Records appended per second, over the last minute of reads of this
    /// view (0 until two reads a second apart).
    pub records_per_sec: f64,
}

/// One consumer group in one topic.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupView {
    pub group: String,
    pub topic: String,
    /// Records the group has yet to read, summed over partitions.
    pub lag: i64,
    pub partitions: Vec<GroupPartition>,
}

/// A group's position in one partition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupPartition {
    pub partition: u32,
    pub committed: i64,
    pub end_offset: i64,
    pub lag: i64,
}

/// Agents and the short history behind topic rates.
pub struct Fleet {
    pub agents: Agents,
    rates: Rates,
}

impl Fleet {
    /// Remembers at most `max_agents` agents.
    pub fn new(max_agents: usize) -> Fleet {
        Fleet {
            agents: Agents::new(max_agents),
            rates: Rates::default(),
        }
    }

    /// Fills in each topic's rate from its end offset now, and forgets
    /// topics no longer present. `all` says whether `topics` lists every
    /// topic (a principal seeing only some must not erase the others' history).
    pub fn rate_topics(&self, topics: &mut [TopicView], all: bool, now: Instant) {
        self.rates.update(topics, all, now);
    }
}

/// Samples kept per topic and their spacing.
const RATE_SAMPLES: usize = 60;
const RATE_SPACING: Duration = Duration::from_secs(1);
const RATE_WINDOW: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Rates(Mutex<HashMap<String, VecDeque<(Instant, i64)>>>);

impl Rates {
    fn update(&self, topics: &mut [TopicView], all: bool, now: Instant) {
        let mut h = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if all {
            h.retain(|name, _| topics.iter().any(|t| &t.topic == name));
        }
        for t in topics.iter_mut() {
            let q = h.entry(t.topic.clone()).or_default();
            // A topic deleted and made again starts over.
            if q.back().is_some_and(|(_, end)| *end > t.end_offset) {
                q.clear();
            }
            if q.back()
                .is_none_or(|(at, _)| now.saturating_duration_since(*at) >= RATE_SPACING)
            {
                q.push_back((now, t.end_offset));
            }
            while q.len() > RATE_SAMPLES
                || q.front()
                    .is_some_and(|(at, _)| now.saturating_duration_since(*at) > RATE_WINDOW)
            {
                q.pop_front();
            }
            t.records_per_sec = match q.front() {
                Some((at, end)) if now > *at => {
                    (t.end_offset - end).max(0) as f64 / (now - *at).as_secs_f64()
                }
                _ => 0.0,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str, end: i64) -> TopicView {
        TopicView {
            topic: name.into(),
            partitions: 1,
            records: end,
            end_offset: end,
            bytes: 0,
            segments: 1,
            records_per_sec: 0.0,
        }
    }

    #[test]
    fn topic_rates_are_appends_per_second_between_reads() {
        let f = Fleet::new(1);
        let t0 = Instant::now();
        let mut v = vec![topic("logs", 100)];
        f.rate_topics(&mut v, true, t0);
        assert_eq!(v[0].records_per_sec, 0.0);
        let mut v = vec![topic("logs", 300)];
        f.rate_topics(&mut v, true, t0 + Duration::from_secs(2));
        assert_eq!(v[0].records_per_sec, 100.0);
        // Reads closer than a second apart still answer, from the oldest sample.
        let mut v = vec![topic("logs", 350)];
        f.rate_topics(&mut v, true, t0 + Duration::from_millis(2500));
        assert_eq!(v[0].records_per_sec, 100.0);
    }

    #[test]
    fn history_is_bounded_and_forgets_removed_topics() {
        let f = Fleet::new(1);
        let t0 = Instant::now();
        for i in 0..200u64 {
            let mut v = vec![topic("a", i as i64), topic("b", 0)];
            f.rate_topics(&mut v, true, t0 + Duration::from_secs(i));
        }
        {
            let h = f.rates.0.lock().unwrap();
            assert!(h["a"].len() <= RATE_SAMPLES);
        }
        let mut v = vec![topic("a", 200)];
        f.rate_topics(&mut v, true, t0 + Duration::from_secs(201));
        assert!(!f.rates.0.lock().unwrap().contains_key("b"));
        // A partial view keeps the others' history.
        f.rate_topics(&mut [topic("c", 0)], false, t0 + Duration::from_secs(202));
        assert!(f.rates.0.lock().unwrap().contains_key("a"));
    }

    #[test]
    fn the_page_is_self_contained() {
        assert!(PAGE.contains("/v1/fleet"));
        for external in ["http://", "https://", "src=\"//", "<link"] {
            assert!(!PAGE.contains(external), "the page loads {external}");
        }
    }
}
