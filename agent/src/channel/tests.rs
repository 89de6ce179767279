//! A source batch of lines through `Channel::push`, into either backend.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;
use weir_core::lines::LineBatch;
use weir_core::metrics::Registry;
use weir_core::units::ByteSize;
use weir_plugins::SourceBatch;

use super::*;

fn lines(n: usize) -> SourceBatch {
    let text: String = (0..n).map(|i| format!("line {i} \"x\"\n")).collect();
    let mut ranges = Vec::new();
    let mut at = 0;
    for l in text.split_inclusive('\n') {
        ranges.push((at, at + l.len() - 1));
        at += l.len();
    }
    let mut l = LineBatch::new(Bytes::from(text), Default::default(), 7);
    l.ranges = ranges;
    let ends: Vec<u64> = (1..=n as u64).collect();
    SourceBatch::ordered_lines("src/1", l, &ends)
}

#[tokio::test]
async fn a_pushed_line_batch_reads_back_as_its_events_from_either_backend() {
    let dir = tempfile::tempdir().unwrap();
    for kind in [ChannelType::Disk, ChannelType::Memory] {
        let cfg = ChannelConfig {
            kind,
            max_bytes: Some(ByteSize(1 << 20)),
            ..ChannelConfig::default()
        };
        let spool = dir.path().join(format!("{kind:?}"));
        let ch = Channel::open("sink", &cfg, &spool, &Registry::new()).unwrap();
        let (_tx, mut stop) = watch::channel(false);
        let batch = lines(50);
        let want = batch.events_from(0).into_owned();
        ch.push(Arc::new(batch), &mut stop).await.unwrap();
        let got = ch
            .next_batch(1000, usize::MAX, Some(Duration::ZERO), &mut stop)
            .await
            .unwrap();
        let got: Vec<_> = got.into_iter().map(|(_, e)| e).collect();
        assert_eq!(got, want, "{kind:?}");
    }
}
