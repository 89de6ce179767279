//! `weir-collector consume`: reads a topic from the collector and prints one
//! JSON object per record. With `--group` it starts from the group's committed
//! offsets and commits after every printed fetch, so a later run resumes
//! exactly after the last record this one printed.

use std::io::Write;
use std::time::Duration;

use serde_json::json;
use tokio::sync::mpsc;
use weir_core::event::format_rfc3339_millis;
use weir_core::protocol::*;
use weir_core::record::decode_batches;

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
            let end: i64 = r
                .headers()
                .get(HEADER_END_OFFSET)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(offset);
            let next: i64 = r
                .headers()
                .get(HEADER_NEXT_OFFSET)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(offset);
            let bytes = r.bytes().await.map_err(|source| ConsumeError::Http {
                url: path.clone(),
                source,
            })?;
            Ok::<_, ConsumeError>((bytes, next, end))
        }
        .await;
        let (bytes, next, end) = match res {
            Ok(v) => v,
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        };
        if !bytes.is_empty() {
            let records = match decode_batches(&bytes) {
                Ok(r) => r,
                Err(e) => {
                    let _ = tx.send(Err(ConsumeError::Decode(e.to_string()))).await;
                    return;
                }
            };
            let mut lines = Vec::with_capacity(bytes.len() * 2);
            let mut offsets = Vec::with_capacity(records.len());
            for r in records.iter().filter(|r| r.offset >= offset) {
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
                let _ = serde_json::to_writer(&mut lines, &obj);
                lines.push(b'\n');
                offsets.push(r.offset);
            }
            offset = next;
            if tx
                .send(Ok(Fetched {
                    partition,
                    lines,
                    offsets,
                    next,
                }))
                .await
                .is_err()
            {
                return;
            }
        }
        if !follow && offset >= end {
            return;
        }
    }
}
