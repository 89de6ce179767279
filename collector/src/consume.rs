//! `weir-collector consume`: reads a topic from the collector and prints one
//! JSON object per record. With `--group` it starts from the group's committed
//! offsets and commits after every printed fetch, so a later run resumes
//! exactly after the last record this one printed.

use std::io::Write;
use std::time::Duration;

use serde_json::json;
use tokio::sync::mpsc;
use tracing::warn;
use weir_core::batch::{self, BatchHeader};
use weir_core::decode::{Limits, Records};
use weir_core::event::format_rfc3339_millis;
use weir_core::protocol::*;
use weir_core::record::StoredRecord;

/// JSON produced from one fetch before it is handed over; a fetch whose
/// records expand past this stops at a batch boundary and the rest is
/// fetched again, so memory stays bounded whatever the batches hold.
const MAX_LINES_BYTES: usize = 32 << 20;

/// Bounds for decoding fetched batches: the collector's default size bound,
/// and any timestamp (the consumer prints what the log holds).
fn decode_limits() -> Limits {
    Limits::reading()
}

/// Where to start in each partition when the group has no committed offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    Earliest,
    Latest,
    Offset(i64),
    /// Milliseconds since the epoch.
    Time(i64),
}

impl std::str::FromStr for StartAt {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "earliest" => Ok(StartAt::Earliest),
            "latest" => Ok(StartAt::Latest),
            _ => {
                if let Ok(o) = s.parse::<i64>() {
                    return Ok(StartAt::Offset(o));
                }
                weir_core::event::parse_rfc3339_millis(s)
                    .map(StartAt::Time)
                    .ok_or_else(|| format!("--from {s:?}: expected earliest, latest, an offset or an RFC 3339 time"))
            }
        }
    }
}

/// What to consume.
#[derive(Debug, Clone)]
pub struct ConsumeOptions {
    pub url: String,
    /// Bearer token and TLS settings for the collector.
    pub auth: crate::client::ClientAuth,
    pub topic: String,
    pub from: StartAt,
    pub group: Option<String>,
    pub follow: bool,
    /// Stop after this many records.
    pub max_records: Option<u64>,
}

/// Why consuming stopped.
#[derive(Debug, thiserror::Error)]
pub enum ConsumeError {
    #[error("collector at {url}: {}", weir_core::http_client::chain(.source))]
    Http { url: String, source: reqwest::Error },
    #[error(transparent)]
    Client(#[from] weir_core::http_client::ClientError),
    #[error("collector answered {status}: {body}")]
    Api { status: u16, body: String },
    #[error("topic {0:?} does not exist")]
    NoTopic(String),
    #[error("decoding a fetched batch: {0}")]
    Decode(String),
    #[error("writing output: {0}")]
    Output(#[from] std::io::Error),
}

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    async fn get(&self, path: &str) -> Result<reqwest::Response, ConsumeError> {
        let url = format!("{}{}", self.base, path);
        let r = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|source| ConsumeError::Http {
                url: url.clone(),
                source,
            })?;
        if !r.status().is_success() {
            let status = r.status().as_u16();
            return Err(ConsumeError::Api {
                status,
                body: r.text().await.unwrap_or_default(),
            });
        }
        Ok(r)
    }

    async fn json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, ConsumeError> {
        let r = self.get(path).await?;
        let bytes = r.bytes().await.map_err(|source| ConsumeError::Http {
            url: path.into(),
            source,
        })?;
        serde_json::from_slice(&bytes).map_err(|e| ConsumeError::Decode(e.to_string()))
    }
}

struct Fetched {
    partition: u32,
    /// Offset ranges the collector reported lost to damage, or that could not be decoded.
    lost: Vec<(i64, i64, &'static str)>,
    lines: Vec<u8>,
    /// Offset of each line, in order.
    offsets: Vec<i64>,
    next: i64,
}

/// Lists topics.
pub async fn topics(
    url: &str,
    auth: &crate::client::ClientAuth,
) -> Result<Vec<TopicInfo>, ConsumeError> {
    let c = Client {
        http: auth.client()?,
        base: url.trim_end_matches('/').to_owned(),
    };
    c.json("/v1/topics").await
}

/// Consumes per the options, writing JSON lines to `out`; returns the record count.
pub async fn consume(
    opts: ConsumeOptions,
    out: &mut (dyn Write + Send),
) -> Result<u64, ConsumeError> {
    let client = std::sync::Arc::new(Client {
        http: opts.auth.client()?,
        base: opts.url.trim_end_matches('/').to_owned(),
    });
    let info = loop {
        let all: Vec<TopicInfo> = client.json("/v1/topics").await?;
        match all.into_iter().find(|t| t.topic == opts.topic) {
            Some(t) => break t,
            None if opts.follow => tokio::time::sleep(Duration::from_millis(500)).await,
            None => return Err(ConsumeError::NoTopic(opts.topic.clone())),
        }
    };
    let committed: Vec<GroupOffset> = match &opts.group {
        Some(g) => {
            client
                .json(&format!("/v1/groups/{g}/{}", opts.topic))
                .await?
        }
        None => Vec::new(),
    };
    let (tx, mut rx) = mpsc::channel::<Result<Fetched, ConsumeError>>(4);
    let mut tasks = Vec::new();
    for p in &info.partitions {
        let start = match committed.iter().find(|c| c.partition == p.partition) {
            Some(c) => c.offset,
            None => match opts.from {
                StartAt::Earliest => p.start_offset,
                StartAt::Latest => p.end_offset,
                StartAt::Offset(o) => o.clamp(p.start_offset, p.end_offset),
                StartAt::Time(ms) => {
                    let a: OffsetAnswer = client
                        .json(&format!(
                            "/v1/offsets/{}/{}?at={ms}",
                            opts.topic, p.partition
                        ))
                        .await?;
                    a.offset
                }
            },
        };
        tasks.push(tokio::spawn(partition_reader(
            client.clone(),
            opts.topic.clone(),
            p.partition,
            start,
            opts.follow,
            tx.clone(),
        )));
    }
    drop(tx);
    let mut total = 0u64;
    while let Some(f) = rx.recv().await {
        let f = f?;
        for (first, last, why) in &f.lost {
            warn!(topic = %opts.topic, partition = f.partition, first, last,
                "records {first}..{last} {why}; continuing after them");
        }
        let mut lines = f.lines;
        let mut count = f.offsets.len();
        let mut next = f.next;
        if let Some(max) = opts.max_records {
            // Print only up to the limit, and commit exactly what was printed.
            let keep = (max - total) as usize;
            if keep < count {
                let cut = lines
                    .iter()
                    .enumerate()
                    .filter(|(_, b)| **b == b'\n')
                    .nth(keep.wrapping_sub(1))
                    .map_or(0, |(i, _)| i + 1);
                lines.truncate(if keep == 0 { 0 } else { cut });
                next = f.offsets[keep];
                count = keep;
            }
        }
        out.write_all(&lines)?;
        out.flush()?;
        total += count as u64;
        if let Some(g) = &opts.group {
            let body = vec![GroupOffset {
                partition: f.partition,
                offset: next,
            }];
            let url = format!("{}/v1/groups/{g}/{}", client.base, opts.topic);
            let r = client
                .http
                .post(&url)
                .header("content-type", "application/json")
                .body(serde_json::to_vec(&body).unwrap_or_default())
                .send()
                .await
                .map_err(|source| ConsumeError::Http { url, source })?;
            if !r.status().is_success() {
                return Err(ConsumeError::Api {
                    status: r.status().as_u16(),
                    body: r.text().await.unwrap_or_default(),
                });
            }
        }
        if opts.max_records.is_some_and(|m| total >= m) {
            break;
        }
    }
    for t in tasks {
        t.abort();
    }
    Ok(total)
}

async fn partition_reader(
    client: std::sync::Arc<Client>,
    topic: String,
    partition: u32,
    mut offset: i64,
    follow: bool,
    tx: mpsc::Sender<Result<Fetched, ConsumeError>>,
) {
    loop {
        let wait = if follow { 1000 } else { 0 };
        let path = format!(
            "/v1/fetch/{topic}/{partition}?offset={offset}&max_bytes=1048576&wait_ms={wait}"
        );
        let res = async {
            let r = client.get(&path).await?;
            let header = |name: &str| {
                r.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let end: i64 = header(HEADER_END_OFFSET)
                .and_then(|v| v.parse().ok())
                .unwrap_or(offset);
            let next: i64 = header(HEADER_NEXT_OFFSET)
                .and_then(|v| v.parse().ok())
                .unwrap_or(offset);
            let lost = header(HEADER_LOST_OFFSETS)
                .map(|v| parse_lost(&v))
                .unwrap_or_default();
            let bytes = r.bytes().await.map_err(|source| ConsumeError::Http {
                url: path.clone(),
                source,
            })?;
            Ok::<_, ConsumeError>((bytes, next, end, lost))
        }
        .await;
        let (bytes, next, end, lost) = match res {
            Ok(v) => v,
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        };
        if !bytes.is_empty() || !lost.is_empty() {
            let mut f = render(&topic, partition, offset, &bytes, next);
            f.lost.splice(
                0..0,
                lost.into_iter().map(|(a, b)| (a, b, "lost to damage")),
            );
            f.lost.sort_by_key(|l| l.0);
            offset = f.next;
            if tx.send(Ok(f)).await.is_err() {
                return;
            }
        }
        if !follow && offset >= end {
            return;
        }
    }
}

/// Turns fetched batches into JSON lines, record by record. A batch that
/// cannot be decoded is reported by its offset range and skipped; the records
/// before and after it are printed. Never panics, whatever the bytes.
fn render(topic: &str, partition: u32, from: i64, bytes: &[u8], next: i64) -> Fetched {
    let limits = decode_limits();
    let mut f = Fetched {
        partition,
        lost: Vec::new(),
        lines: Vec::new(),
        offsets: Vec::new(),
        next,
    };
    let mut rest = bytes;
    let mut expected = from;
    while !rest.is_empty() {
        let whole =
            batch::peek_total_len(rest).filter(|n| *n >= batch::HEADER_LEN && *n <= rest.len());
        let (Some(n), Ok(h)) = (whole, BatchHeader::parse(rest)) else {
            // Unframed bytes: nothing after them can be located.
            if next > expected {
                f.lost
                    .push((expected, next - 1, "could not be decoded (unframed bytes)"));
            }
            break;
        };
        let (one, tail) = rest.split_at(n);
        rest = tail;
        let decoded = batch::check_crc(one)
            .map_err(|e| e.to_string())
            .and_then(|()| Records::new(one, &limits).map_err(|e| e.to_string()));
        let mut bad_from = None;
        match decoded {
            Ok(mut records) => {
                let mut done = 0i64;
                loop {
                    match records.next_record() {
                        Ok(Some(r)) => {
                            if r.offset >= from {
                                push_line(&mut f, topic, partition, &r);
                            }
                            done += 1;
                        }
                        Ok(None) => break,
                        Err(e) => {
                            bad_from = Some((h.base_offset.saturating_add(done), e.to_string()));
                            break;
                        }
                    }
                }
            }
            Err(e) => bad_from = Some((h.base_offset, e)),
        }
        if let Some((first, reason)) = bad_from {
            warn!(topic, partition, first, last = h.last_offset(), reason = %reason, "A fetched batch could not be decoded.");
            f.lost
                .push((first.max(from), h.last_offset(), "could not be decoded"));
        }
        expected = h.last_offset() + 1;
        if f.lines.len() > MAX_LINES_BYTES && !rest.is_empty() {
            // Hand over what is rendered; the rest is fetched again.
            f.next = expected;
            break;
        }
    }
    f
}

fn push_line(f: &mut Fetched, topic: &str, partition: u32, r: &StoredRecord) {
    let headers: serde_json::Map<String, serde_json::Value> = r
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.as_ref().map_or(serde_json::Value::Null, |b| {
                    String::from_utf8_lossy(b).into()
                }),
            )
        })
        .collect();
    let value = r.value.as_ref().map_or(serde_json::Value::Null, |v| {
        serde_json::from_slice(v).unwrap_or_else(|_| String::from_utf8_lossy(v).into())
    });
    let obj = json!({
        "topic": topic,
        "partition": partition,
        "offset": r.offset,
        "timestamp": format_rfc3339_millis(r.timestamp),
        "key": r.key.as_ref().map(|k| String::from_utf8_lossy(k).into_owned()),
        "headers": headers,
        "value": value,
    });
    let _ = serde_json::to_writer(&mut f.lines, &obj);
    f.lines.push(b'\n');
    f.offsets.push(r.offset);
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_core::record::{encode_batch, Compression, ProducerStamp};
    use weir_core::{Event, Metadata};

    fn batch_at(offset: i64, n: usize) -> Vec<u8> {
        let events: Vec<Event> = (0..n)
            .map(|i| Event::from_message(format!("m{}", offset + i as i64), Metadata::default()))
            .collect();
        let stamp = ProducerStamp {
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
        };
        let mut b = encode_batch(&events, stamp, Compression::None)
            .unwrap()
            .to_vec();
        batch::set_base_offset(&mut b, offset);
        b
    }

    fn offsets(f: &Fetched) -> Vec<i64> {
        f.offsets.clone()
    }

    #[test]
    fn an_undecodable_batch_is_reported_by_range_and_the_records_around_it_are_printed() {
        let mut bad = batch_at(3, 4);
        // Garbage in the records, with a CRC that matches it (as if stored so).
        for b in &mut bad[batch::HEADER_LEN + 2..batch::HEADER_LEN + 12] {
            *b = 0xff;
        }
        let crc = crc32c::crc32c(&bad[21..]);
        bad[17..21].copy_from_slice(&crc.to_be_bytes());
        let bytes = [batch_at(0, 3), bad, batch_at(7, 3)].concat();
        let f = render("t", 0, 0, &bytes, 10);
        assert_eq!(offsets(&f), vec![0, 1, 2, 7, 8, 9]);
        assert_eq!(f.lost, vec![(3, 6, "could not be decoded")]);
        assert_eq!(f.next, 10);
        let text = String::from_utf8(f.lines).unwrap();
        assert!(text.contains("\"message\":\"m8\""));
    }

    #[test]
    fn a_record_timestamp_beyond_year_9999_is_printed_not_a_panic() {
        let mut e = Event::from_message("far", Metadata::default());
        e.timestamp = i64::MAX;
        let stamp = ProducerStamp {
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
        };
        let b = encode_batch(&[e], stamp, Compression::Zstd).unwrap();
        let f = render("t", 0, 0, &b, 1);
        assert_eq!(offsets(&f), vec![0]);
    }

    #[test]
    fn arbitrary_fetched_bytes_never_panic_the_renderer() {
        use proptest::prelude::*;
        let good = [batch_at(0, 3), batch_at(3, 2)].concat();
        proptest!(ProptestConfig::with_cases(256), |(edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6), cut in any::<usize>())| {
            let mut b = good.clone();
            for (at, v) in edits {
                let i = at % b.len();
                b[i] = v;
            }
            b.truncate(cut % (b.len() + 1));
            let _ = render("t", 0, 0, &b, 5);
        });
    }
}
