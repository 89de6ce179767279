//! Decompression bombs of every codec cost bounded memory, measured as the
//! process's peak resident size (VmHWM, reset before each bomb through
//! `/proc/self/clear_refs`). This file holds one test so nothing else runs in
//! the process while it measures. The codecs' own buffers (libzstd's and
//! liblz4's are C allocations a Rust allocator would not see) are counted too.

use std::io::{Read, Write};

use weir_core::decode::{decode, validate, InvalidBatch, Limits};

const HEADER_LEN: usize = 61;
const TS: i64 = 1_700_000_000_000;
const BOUND: usize = 1 << 20;
/// What a bomb may cost above the memory in use before it: the zstd window
/// (at most 16 MiB), an lz4 block (at most 4 MiB), buffers. Decompressing
/// any of these bombs into memory would take 64 MiB to 1 GiB.
const ALLOWED_GROWTH_KIB: u64 = 24 << 10;

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

/// One small record with its length prefix; a bomb's zeros follow it.
fn one_record() -> Vec<u8> {
    let mut body = vec![0u8];
    body.extend(zigzag(0));
    body.extend(zigzag(0));
    body.extend(zigzag(-1));
    body.extend(zigzag(1));
    body.push(b'x');
    body.extend(zigzag(0));
    let mut r = zigzag(body.len() as i64);
    r.extend(body);
    r
}

/// A one-record batch with a correct CRC around `section`, compressed with `code`.
fn batch(code: i16, section: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend(0i64.to_be_bytes());
    b.extend(((HEADER_LEN - 12 + section.len()) as i32).to_be_bytes());
    b.extend((-1i32).to_be_bytes());
    b.push(2);
    b.extend([0u8; 4]);
    b.extend(code.to_be_bytes());
    b.extend(0i32.to_be_bytes());
    b.extend(TS.to_be_bytes());
    b.extend(TS.to_be_bytes());
    b.extend((-1i64).to_be_bytes());
    b.extend((-1i16).to_be_bytes());
    b.extend((-1i32).to_be_bytes());
    b.extend(1i32.to_be_bytes());
    b.extend(section);
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

/// zstd: 64 concatenated frames of 16 MiB of zeros after the record: 1 GiB.
fn zstd_bomb() -> Vec<u8> {
    let chunk = zstd::stream::encode_all(std::io::repeat(0).take(16 << 20), 3).unwrap();
    let mut s = zstd::stream::encode_all(&one_record()[..], 3).unwrap();
    for _ in 0..64 {
        s.extend(&chunk);
    }
    batch(4, &s)
}

/// gzip: 64 members of 16 MiB of zeros after the record: 1 GiB.
fn gzip_bomb() -> Vec<u8> {
    let gz = |b: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    };
    let chunk = gz(&vec![0u8; 16 << 20]);
    let mut s = gz(&one_record());
    for _ in 0..64 {
        s.extend(&chunk);
    }
    batch(1, &s)
}

/// lz4: one frame of 256 blocks of 4 MiB of zeros after the record: 1 GiB.
fn lz4_bomb() -> Vec<u8> {
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
    let (header, rest) = one.split_at(7);
    let block = &rest[..rest.len() - 4];
    let mut s = header.to_vec();
    let rec = one_record();
    s.extend((rec.len() as u32 | 1 << 31).to_le_bytes());
    s.extend(&rec);
    for _ in 0..256 {
        s.extend(block);
    }
    s.extend([0u8; 4]);
    batch(3, &s)
}

/// snappy (xerial framing, as the Java client): 64 MiB of zeros in 32 KiB blocks.
fn snappy_bomb() -> Vec<u8> {
    let mut s = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01".to_vec();
    let mut first = one_record();
    first.resize(32 << 10, 0);
    let mut enc = snap::raw::Encoder::new();
    let zeros = enc.compress_vec(&vec![0u8; 32 << 10]).unwrap();
    let head = enc.compress_vec(&first).unwrap();
    s.extend((head.len() as u32).to_be_bytes());
    s.extend(head);
    for _ in 0..2048 {
        s.extend((zeros.len() as u32).to_be_bytes());
        s.extend(&zeros);
    }
    batch(2, &s)
}

/// A `/proc/self/status` field in KiB.
fn status_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = s.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_bomb_of_every_codec_is_refused_within_bounded_memory() {
    let limits = Limits {
        max_decompressed_bytes: BOUND,
        ..Limits::default()
    };
    for (name, bomb) in [
        ("zstd", zstd_bomb as fn() -> Vec<u8>),
        ("gzip", gzip_bomb),
        ("lz4", lz4_bomb),
        ("snappy", snappy_bomb),
    ] {
        let b = bomb();
        assert!(b.len() < 16 << 20, "{name} bomb is {} bytes", b.len());
        // Give freed heap back, so the bomb cannot hide in it, then reset
        // the peak to what is resident now (Linux >= 4.0).
        // SAFETY: malloc_trim has no preconditions.
        unsafe { libc::malloc_trim(0) };
        std::fs::write("/proc/self/clear_refs", "5").unwrap();
        let before = status_kib("VmHWM:");
        let v = validate(&b, &limits);
        let d = decode(&b, &limits).map(|r| r.len());
        let growth = status_kib("VmHWM:").saturating_sub(before);
        let refused = Err(InvalidBatch::TooLarge { limit: BOUND });
        assert_eq!(v.map(|_| ()), refused, "{name}: validate");
        assert_eq!(d.map(|_| ()), refused, "{name}: decode");
        assert!(
            growth < ALLOWED_GROWTH_KIB,
            "{name}: peak memory grew by {growth} KiB"
        );
        eprintln!(
            "{name}: {} byte bomb refused; peak memory grew by {growth} KiB",
            b.len()
        );
    }
}
