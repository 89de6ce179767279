use super::*;
use crate::event::{Event, Metadata};
use crate::record::{encode_batch, Compression, ProducerStamp};
use proptest::prelude::*;

const TS: i64 = 1_700_000_000_000;

fn zigzag(v: i64) -> Vec<u8> {
    let mut u = ((v << 1) ^ (v >> 63)) as u64;
    let mut out = Vec::new();
    loop {
        let b = (u & 0x7f) as u8;
        u >>= 7;
        if u == 0 {
            out.push(b);
            return out;
        }
        out.push(b | 0x80);
    }
}

/// One record body with its length prefix.
fn record(ts_delta: i64, offset_delta: i64, value: &[u8]) -> Vec<u8> {
    let mut body = vec![0u8];
    body.extend(zigzag(ts_delta));
    body.extend(zigzag(offset_delta));
    body.extend(zigzag(-1));
    body.extend(zigzag(value.len() as i64));
    body.extend(value);
    body.extend(zigzag(0));
    let mut r = zigzag(body.len() as i64);
    r.extend(body);
    r
}

/// A batch with a correct CRC around any records section.
fn raw_batch(attributes: i16, count: i32, max_ts: i64, section: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend(0i64.to_be_bytes());
    b.extend(((HEADER_LEN - 12 + section.len()) as i32).to_be_bytes());
    b.extend((-1i32).to_be_bytes());
    b.push(2);
    b.extend([0u8; 4]);
    b.extend(attributes.to_be_bytes());
    b.extend((count - 1).to_be_bytes());
    b.extend(TS.to_be_bytes());
    b.extend(max_ts.to_be_bytes());
    b.extend((-1i64).to_be_bytes());
    b.extend((-1i16).to_be_bytes());
    b.extend((-1i32).to_be_bytes());
    b.extend(count.to_be_bytes());
    b.extend(section);
    fix_crc(&mut b);
    b
}

fn fix_crc(b: &mut [u8]) {
    if b.len() >= HEADER_LEN {
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
    }
}

fn records(n: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|i| record(i as i64, i as i64, b"{\"message\":\"x\"}"))
        .collect()
}

fn encoded(n: usize, c: Compression) -> Vec<u8> {
    let events: Vec<Event> = (0..n)
        .map(|i| {
            let mut e = Event::from_message(format!("line {i}"), Metadata::default());
            e.timestamp = (TS + i as i64) * 1_000_000;
            e
        })
        .collect();
    let stamp = ProducerStamp {
        producer_id: 1,
        producer_epoch: 0,
        base_sequence: 0,
    };
    encode_batch(&events, stamp, c).unwrap().to_vec()
}

#[test]
fn batches_from_our_encoder_validate_and_decode() {
    for c in [Compression::None, Compression::Lz4, Compression::Zstd] {
        let b = encoded(100, c);
        let h = validate(&b, &Limits::default()).unwrap();
        assert_eq!(h.record_count, 100);
        let recs = decode(&b, &Limits::default()).unwrap();
        assert_eq!(recs.len(), 100);
        assert_eq!(
            recs[7].value.as_deref(),
            Some(&br#"{"message":"line 7"}"#[..])
        );
        assert_eq!(recs[7].timestamp, TS + 7);
        assert_eq!(recs[7].headers.len(), 2);
    }
}

#[test]
fn a_record_count_that_lies_is_refused_both_ways() {
    let more = raw_batch(0, 4, TS + 2, &records(3));
    assert!(matches!(
        validate(&more, &Limits::default()),
        Err(InvalidBatch::Record { index: 3, .. })
    ));
    let fewer = raw_batch(0, 2, TS + 1, &records(3));
    assert!(matches!(
        validate(&fewer, &Limits::default()),
        Err(InvalidBatch::Trailing(_))
    ));
    // A huge count reserves nothing: it fails at the first missing record.
    let huge = raw_batch(0, i32::MAX, TS + 2, &records(3));
    assert!(validate(&huge, &Limits::default()).is_err());
}

#[test]
fn garbage_records_and_unknown_compression_are_refused() {
    let garbage = raw_batch(0, 3, TS, &[0xff; 40]);
    assert!(validate(&garbage, &Limits::default()).is_err());
    for code in [5, 6, 7] {
        let b = raw_batch(code, 3, TS + 2, &records(3));
        assert_eq!(
            validate(&b, &Limits::default()),
            Err(InvalidBatch::Compression(code))
        );
    }
    // Known codes whose body is not in their format: refused, naming the codec.
    for (code, name) in [(1, "gzip"), (3, "lz4"), (4, "zstd")] {
        let b = raw_batch(code, 3, TS + 2, &records(3));
        match validate(&b, &Limits::default()) {
            Err(InvalidBatch::Decompress(m)) => assert!(m.starts_with(name), "{m}"),
            other => panic!("code {code}: {other:?}"),
        }
    }
    // Uncompressed records are not a raw snappy block either.
    assert!(validate(&raw_batch(2, 3, TS + 2, &records(3)), &Limits::default()).is_err());
    let transactional = raw_batch(0x10, 3, TS + 2, &records(3));
    assert_eq!(
        validate(&transactional, &Limits::default()),
        Err(InvalidBatch::Transactional)
    );
}

#[test]
fn absurd_timestamps_are_refused_and_the_header_must_agree_with_the_records() {
    let far = 1i64 << 62;
    let mut section = record(far - TS, 0, b"x");
    section.extend(record(0, 1, b"y"));
    let b = raw_batch(0, 2, far, &section);
    assert!(matches!(
        validate(&b, &Limits::default()),
        Err(InvalidBatch::Timestamp { .. })
    ));
    let overflow = raw_batch(0, 1, TS, &record(i64::MAX, 0, b"x"));
    assert!(validate(&overflow, &Limits::default()).is_err());
    let lying_max = raw_batch(0, 3, TS + 100, &records(3));
    assert!(matches!(
        validate(&lying_max, &Limits::default()),
        Err(InvalidBatch::MaxTimestamp { .. })
    ));
    let strict = Limits {
        min_timestamp: TS + 1,
        ..Limits::default()
    };
    assert!(matches!(
        validate(&raw_batch(0, 3, TS + 2, &records(3)), &strict),
        Err(InvalidBatch::Timestamp { index: 0, .. })
    ));
}

#[test]
fn negative_and_oversized_lengths_are_refused() {
    let mut body = vec![0u8];
    body.extend(zigzag(0));
    body.extend(zigzag(0));
    body.extend(zigzag(-5)); // key length -5
    let mut section = zigzag(body.len() as i64);
    section.extend(body);
    assert!(validate(&raw_batch(0, 1, TS, &section), &Limits::default()).is_err());
    let claims_more = [zigzag(1 << 30), vec![0; 8]].concat();
    assert!(validate(&raw_batch(0, 1, TS, &claims_more), &Limits::default()).is_err());
    let negative = zigzag(-3);
    assert!(validate(&raw_batch(0, 1, TS, &negative), &Limits::default()).is_err());
}

#[test]
fn a_small_zstd_frame_expanding_to_a_gibibyte_costs_at_most_the_bound() {
    // One record whose value is 1 GiB of zeros, in a few KiB of zstd.
    let value_len: i64 = 1 << 30;
    let mut head = vec![0u8];
    head.extend(zigzag(0));
    head.extend(zigzag(0));
    head.extend(zigzag(-1));
    head.extend(zigzag(value_len));
    let mut prefix = zigzag(head.len() as i64 + value_len + 1);
    prefix.extend(head);
    // Concatenated frames decode as one stream: 64 frames of 16 MiB of zeros.
    let chunk = zstd::stream::encode_all(io::repeat(0).take(16 << 20), 3).unwrap();
    let mut frame = zstd::stream::encode_all(&prefix[..], 3).unwrap();
    for _ in 0..64 {
        frame.extend(&chunk);
    }
    frame.extend(zstd::stream::encode_all(&[0u8][..], 3).unwrap());
    assert!(frame.len() < 64 << 10, "frame is {} bytes", frame.len());
    let b = raw_batch(4, 1, TS, &frame);
    let small = Limits {
        max_decompressed_bytes: 1 << 20,
        ..Limits::default()
    };
    let start = std::time::Instant::now();
    assert_eq!(
        validate(&b, &small),
        Err(InvalidBatch::TooLarge { limit: 1 << 20 })
    );
    assert!(start.elapsed() < std::time::Duration::from_secs(2));
    // Many small records past the bound are cut off as well.
    let many: Vec<u8> = records(200_000);
    let frame = zstd::stream::encode_all(&many[..], 3).unwrap();
    let b = raw_batch(4, 200_000, TS + 199_999, &frame);
    assert!(matches!(
        validate(&b, &small),
        Err(InvalidBatch::TooLarge { .. })
    ));
}

/// The five codes, for tests that go through all of them.
const CODES: [i16; 5] = [0, 1, 2, 3, 4];

/// Records of a batch as a Kafka client library builds them.
fn kafka_records(n: usize, value_len: usize) -> Vec<kafka_protocol::records::Record> {
    use kafka_protocol::records::{Record, TimestampType};
    (0..n)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: 7,
            producer_epoch: 0,
            sequence: i as i32,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            timestamp: TS + i as i64,
            key: (i % 3 == 0).then(|| bytes::Bytes::from(format!("k{i}"))),
            value: Some(bytes::Bytes::from(
                format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(value_len)).into_bytes(),
            )),
            headers: [(
                kafka_protocol::protocol::StrBytes::from_static_str("h"),
                Some(bytes::Bytes::from_static(b"v")),
            )]
            .into_iter()
            .collect(),
        })
        .collect()
}

/// A batch encoded by the kafka-protocol crate (what Rust Kafka clients send;
/// its snappy is the Java client's xerial framing) with compression `code`.
fn kafka_batch(records: &[kafka_protocol::records::Record], code: i16) -> Vec<u8> {
    use kafka_protocol::records::{Compression as K, RecordBatchEncoder, RecordEncodeOptions};
    let compression = match code {
        0 => K::None,
        1 => K::Gzip,
        2 => K::Snappy,
        3 => K::Lz4,
        _ => K::Zstd,
    };
    let mut out = bytes::BytesMut::new();
    let opts = RecordEncodeOptions {
        version: 2,
        compression,
    };
    RecordBatchEncoder::encode(&mut out, records, &opts).unwrap();
    out.to_vec()
}

/// The uncompressed records section of a batch.
fn section_of(batch: &[u8]) -> Vec<u8> {
    batch[HEADER_LEN..].to_vec()
}

/// The same batch with its records section replaced (compressed with `code`).
fn recompressed(plain: &[u8], code: i16, section: &[u8]) -> Vec<u8> {
    let h = crate::batch::BatchHeader::parse(plain).unwrap();
    raw_batch(code, h.record_count, h.max_timestamp, section)
}

fn gzip(b: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

/// A raw snappy block, as librdkafka and sarama send.
fn snappy_raw(b: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(b).unwrap()
}

/// snappy-java's stream format, as the Java client sends: magic, versions,
/// then length-prefixed raw blocks of `block` input bytes.
fn snappy_xerial(b: &[u8], block: usize) -> Vec<u8> {
    let mut out = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01".to_vec();
    for chunk in b.chunks(block) {
        let c = snappy_raw(chunk);
        out.extend((c.len() as u32).to_be_bytes());
        out.extend(c);
    }
    out
}

fn lz4_frame(b: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = lz4::EncoderBuilder::new()
        .block_mode(lz4::BlockMode::Independent)
        .build(Vec::new())
        .unwrap();
    e.write_all(b).unwrap();
    let (out, r) = e.finish();
    r.unwrap();
    out
}

#[test]
fn kafka_client_batches_of_every_codec_validate_and_decode_to_the_same_records() {
    // Large enough that snappy is split into several xerial blocks (32 KiB each).
    let recs = kafka_records(300, 200);
    let plain = decode(&kafka_batch(&recs, 0), &Limits::default()).unwrap();
    assert_eq!(plain.len(), 300);
    assert_eq!(plain[3].key.as_deref(), Some(&b"k3"[..]));
    for code in CODES {
        let b = kafka_batch(&recs, code);
        assert_eq!(
            crate::batch::BatchHeader::parse(&b).unwrap().attributes & 7,
            code
        );
        let h = validate(&b, &Limits::default())
            .unwrap_or_else(|e| panic!("{}: {e}", codecs::name(code)));
        assert_eq!(h.record_count, 300);
        assert_eq!(
            decode(&b, &Limits::default()).unwrap(),
            plain,
            "code {code}"
        );
    }
}

#[test]
fn every_snappy_framing_kafka_clients_send_decodes() {
    let plain = kafka_batch(&kafka_records(200, 300), 0);
    let section = section_of(&plain);
    let want = decode(&plain, &Limits::default()).unwrap();
    assert!(section.len() > 64 << 10);
    let two_streams = [
        snappy_xerial(&section[..1000], 32 << 10),
        snappy_xerial(&section[1000..], 32 << 10),
    ]
    .concat();
    for (what, body) in [
        ("raw (librdkafka, sarama)", snappy_raw(&section)),
        ("xerial (Java client)", snappy_xerial(&section, 32 << 10)),
        ("xerial, small blocks", snappy_xerial(&section, 1000)),
        ("xerial, two streams concatenated", two_streams),
    ] {
        let b = recompressed(&plain, 2, &body);
        assert_eq!(decode(&b, &Limits::default()).unwrap(), want, "{what}");
        validate(&b, &Limits::default()).unwrap_or_else(|e| panic!("{what}: {e}"));
    }
}

#[test]
fn a_snappy_records_section_from_upstream_kafka_decodes() {
    // One record (value "sdfdsf", offset delta 0, no key or headers) as
    // Apache Kafka's Java client compresses it (snappy-java stream format);
    // the vector kafka-protocol checks its codec against.
    let section = b"\x82\x53\x4e\x41\x50\x50\x59\x00\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00\x0f\x0d\x30\x18\x00\x00\x00\x01\x0csdfdsf\x00";
    let b = raw_batch(2, 1, TS, section);
    let recs = decode(&b, &Limits::default()).unwrap();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].value.as_deref(), Some(&b"sdfdsf"[..]));
    assert_eq!(recs[0].timestamp, TS);
    validate(&b, &Limits::default()).unwrap();
}

#[test]
fn concatenated_gzip_members_decode_and_broken_streams_are_refused_with_the_codec_named() {
    let plain = kafka_batch(&kafka_records(50, 10), 0);
    let section = section_of(&plain);
    let want = decode(&plain, &Limits::default()).unwrap();
    let members = [gzip(&section[..100]), gzip(&section[100..])].concat();
    assert_eq!(
        decode(&recompressed(&plain, 1, &members), &Limits::default()).unwrap(),
        want
    );
    for (code, mut body) in [
        (1, gzip(&section)),
        (2, snappy_xerial(&section, 1 << 10)),
        (3, lz4_frame(&section)),
    ] {
        let n = body.len();
        body[n / 2] ^= 0x55;
        body.truncate(n - 3);
        let r = validate(&recompressed(&plain, code, &body), &Limits::default());
        assert!(r.is_err(), "code {code} accepted a damaged stream");
    }
}

/// Asserts that `b` is refused as too large under a 1 MiB bound, quickly.
fn refused_as_bomb(what: &str, b: &[u8]) {
    let small = Limits {
        max_decompressed_bytes: 1 << 20,
        ..Limits::default()
    };
    let start = std::time::Instant::now();
    let r = validate(b, &small);
    assert_eq!(r, Err(InvalidBatch::TooLarge { limit: 1 << 20 }), "{what}");
    let r = decode(b, &small).map(|v| v.len());
    assert_eq!(r, Err(InvalidBatch::TooLarge { limit: 1 << 20 }), "{what}");
    assert!(
        start.elapsed() < std::time::Duration::from_secs(5),
        "{what} took {:?}",
        start.elapsed()
    );
}

/// One small record; a bomb's zeros follow it, past the count in the header,
/// so the validator must stream them to find where the records end.
fn one_record() -> Vec<u8> {
    record(0, 0, b"x")
}

#[test]
fn a_small_gzip_stream_expanding_to_a_gibibyte_costs_at_most_the_bound() {
    // 64 members of 16 MiB of zeros (about 16 KiB each): 1 GiB in ~1 MiB.
    let zeros = vec![0u8; 16 << 20];
    let chunk = gzip(&zeros);
    let mut body = gzip(&one_record());
    for _ in 0..64 {
        body.extend(&chunk);
    }
    assert!(body.len() < 2 << 20, "{} bytes", body.len());
    refused_as_bomb("gzip", &raw_batch(1, 1, TS, &body));
}

#[test]
fn an_lz4_frame_expanding_to_a_gibibyte_costs_at_most_the_bound() {
    // One frame of independent 4 MiB blocks: the block of zeros repeated.
    use std::io::Write;
    let mut e = lz4::EncoderBuilder::new()
        .block_mode(lz4::BlockMode::Independent)
        .block_size(lz4::BlockSize::Max4MB)
        .checksum(lz4::ContentChecksum::NoChecksum)
        .block_checksum(lz4::liblz4::BlockChecksum::NoBlockChecksum)
        .build(Vec::new())
        .unwrap();
    e.write_all(&vec![0u8; 4 << 20]).unwrap();
    let (one, r) = e.finish();
    r.unwrap();
    // magic, FLG, BD, HC = 7 bytes; then one block; then the end mark.
    let (header, rest) = one.split_at(7);
    let block = &rest[..rest.len() - 4];
    let mut body = header.to_vec();
    // The record, stored (high bit of the block size set).
    let rec = one_record();
    body.extend((rec.len() as u32 | 1 << 31).to_le_bytes());
    body.extend(&rec);
    for _ in 0..256 {
        body.extend(block);
    }
    body.extend([0u8; 4]);
    assert!(body.len() < 8 << 20, "{} bytes", body.len());
    refused_as_bomb("lz4", &raw_batch(3, 1, TS, &body));
}

#[test]
fn a_snappy_block_claiming_more_than_the_bound_is_refused_before_it_is_allocated() {
    // Raw: a varint claiming 2^31 bytes and nothing behind it.
    let claim = [0x80, 0x80, 0x80, 0x80, 0x08];
    refused_as_bomb("raw snappy claim", &raw_batch(2, 1, TS, &claim));
    // Xerial: honest 32 KiB blocks adding up past the bound.
    let mut section = one_record();
    section.extend(vec![0u8; 4 << 20]);
    refused_as_bomb(
        "xerial snappy",
        &raw_batch(2, 1, TS, &snappy_xerial(&section, 32 << 10)),
    );
    // A claim within the bound but beyond what the block could expand to.
    let mut lie = vec![0x80, 0x80, 0x80, 0x10]; // 32 MiB
    lie.extend([0u8; 16]);
    match validate(&raw_batch(2, 1, TS, &lie), &Limits::default()) {
        Err(InvalidBatch::Decompress(m)) => {
            assert!(m.contains("more than snappy can expand"), "{m}")
        }
        other => panic!("{other:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn any_records_in_any_codec_decode_back_exactly(
        n in 1usize..60,
        pad in 0usize..400,
        code in 0i16..5,
    ) {
        let recs = kafka_records(n, pad);
        let want = decode(&kafka_batch(&recs, 0), &Limits::default()).unwrap();
        let b = kafka_batch(&recs, code);
        prop_assert!(validate(&b, &Limits::default()).is_ok());
        prop_assert_eq!(decode(&b, &Limits::default()).unwrap(), want);
    }

    #[test]
    fn arbitrary_compressed_bodies_never_panic_and_stay_bounded(
        code in 0i16..5,
        body in proptest::collection::vec(any::<u8>(), 0..400),
        count in 0i32..10,
    ) {
        let small = Limits { max_decompressed_bytes: 64 << 10, ..Limits::default() };
        let b = raw_batch(code, count, TS, &body);
        let _ = validate(&b, &small);
        let _ = decode(&b, &small);
    }

    #[test]
    fn mutated_compressed_batches_of_every_codec_never_panic(
        code in 0i16..5,
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
    ) {
        let mut b = kafka_batch(&kafka_records(20, 30), code);
        for (at, v) in edits {
            let i = HEADER_LEN + at % (b.len() - HEADER_LEN);
            b[i] = v;
        }
        fix_crc(&mut b);
        let _ = validate(&b, &Limits::default());
        let _ = decode(&b, &Limits::default());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = validate(&bytes, &Limits::default());
        let _ = decode(&bytes, &Limits::default());
        let _ = crate::record::decode_batches(&bytes);
    }

    #[test]
    fn mutated_valid_batches_never_panic(
        codec in 0usize..3,
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in proptest::option::of(any::<usize>()),
    ) {
        let c = [Compression::None, Compression::Lz4, Compression::Zstd][codec];
        let mut b = encoded(5, c);
        for (at, v) in edits {
            let i = at % b.len();
            b[i] = v;
        }
        if let Some(c) = cut {
            b.truncate(c % (b.len() + 1));
        }
        // With the CRC fixed up the mutation reaches the record parser.
        let mut fixed = b.clone();
        fix_crc(&mut fixed);
        for buf in [&b, &fixed] {
            let _ = validate(buf, &Limits::default());
            let _ = decode(buf, &Limits::default());
        }
    }
}

#[test]
fn the_in_place_walk_of_an_uncompressed_batch_refuses_cut_records_and_trailing_bytes_with_their_reasons(
) {
    let whole = records(3);
    // The last record's body cut short by 2 bytes (its length says more).
    let cut = raw_batch(0, 3, TS + 2, &whole[..whole.len() - 2]);
    assert_eq!(
        validate(&cut, &Limits::default()),
        Err(InvalidBatch::Record {
            index: 2,
            reason: "records end before the count in the header"
        })
    );
    // The last record's length varint itself missing.
    let one = record(0, 0, b"{\"message\":\"x\"}");
    let no_length = raw_batch(0, 2, TS, &one);
    assert!(matches!(
        validate(&no_length, &Limits::default()),
        Err(InvalidBatch::Record { index: 1, .. })
    ));
    let trailing = raw_batch(0, 3, TS + 2, &[whole.clone(), vec![7; 5]].concat());
    assert_eq!(
        validate(&trailing, &Limits::default()),
        Err(InvalidBatch::Trailing(5))
    );
    // Trailing bytes past the size bound are refused as too large.
    let tight = Limits {
        max_decompressed_bytes: whole.len() + 2,
        ..Limits::default()
    };
    assert_eq!(
        validate(&trailing, &tight),
        Err(InvalidBatch::TooLarge {
            limit: whole.len() + 2
        })
    );
    // A good batch walked in place decodes to its records.
    let good = raw_batch(0, 3, TS + 2, &whole);
    let decoded = decode(&good, &Limits::default()).unwrap();
    assert_eq!(decoded.len(), 3);
    assert_eq!(
        decoded[2].value.as_deref(),
        Some(&b"{\"message\":\"x\"}"[..])
    );
}

#[test]
fn the_window_walk_of_a_compressed_batch_decodes_records_cut_by_refills_and_larger_than_the_window()
{
    // Record sizes that cut records at every window refill, and one record
    // twice the window: the window grows to hold it and the walk goes on.
    let sizes = [10, 3_000, 70_000, 1, 200_000, 5, 65_530, 17];
    let mut section = Vec::new();
    for (i, n) in sizes.iter().enumerate() {
        section.extend(record(i as i64, i as i64, &vec![b'a' + i as u8; *n]));
    }
    let n = sizes.len() as i32;
    let max_ts = TS + i64::from(n) - 1;
    for code in [1i16, 2, 3, 4] {
        let body = match code {
            1 => gzip(&section),
            2 => snappy_xerial(&section, 32 << 10),
            3 => lz4_frame(&section),
            _ => zstd::stream::encode_all(&section[..], 1).unwrap(),
        };
        let b = raw_batch(code, n, max_ts, &body);
        assert!(validate(&b, &Limits::default()).is_ok(), "code {code}");
        let got = decode(&b, &Limits::default()).unwrap();
        let lens: Vec<usize> = got
            .iter()
            .map(|r| r.value.as_ref().unwrap().len())
            .collect();
        assert_eq!(lens, sizes, "code {code}");
        for (i, r) in got.iter().enumerate() {
            assert!(
                r.value
                    .as_ref()
                    .unwrap()
                    .iter()
                    .all(|c| *c == b'a' + i as u8),
                "code {code} record {i}"
            );
        }
        // One record more in the count than the stream holds: cut, by index.
        let short = raw_batch(code, n + 1, max_ts, &body);
        assert_eq!(
            validate(&short, &Limits::default()),
            Err(InvalidBatch::Record {
                index: n,
                reason: "records end before the count in the header"
            }),
            "code {code}"
        );
        // The largest record's length checked against the bound before the
        // window grows for it.
        let tight = Limits {
            max_decompressed_bytes: 150_000,
            ..Limits::default()
        };
        assert_eq!(
            validate(&b, &tight),
            Err(InvalidBatch::TooLarge { limit: 150_000 }),
            "code {code}"
        );
    }
}
