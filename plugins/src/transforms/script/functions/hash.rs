//! Hashes of strings and blobs: `sha256` (hex), `hash64` (XXH3-64, as a
//! signed integer; stable across machines and versions, so usable for
//! partitioning and sampling), `crc32` (IEEE, as a non-negative integer).

use rhai::{Blob, Engine, ImmutableString};
use sha2::{Digest, Sha256};

/// Lower-case hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    let digest = Sha256::digest(data);
    let mut s = String::with_capacity(64);
    for b in digest {
        s.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        s.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    s
}

/// XXH3-64 of `data` (seed 0), as the bits of an `i64`.
pub fn hash64(data: &[u8]) -> i64 {
    xxhash_rust::xxh3::xxh3_64(data) as i64
}

/// CRC-32 (IEEE 802.3) of `data`.
pub fn crc32(data: &[u8]) -> i64 {
    i64::from(crc32fast::hash(data))
}

pub fn register(engine: &mut Engine) {
    engine.register_fn("sha256", |s: ImmutableString| sha256_hex(s.as_bytes()));
    engine.register_fn("sha256", |b: Blob| sha256_hex(&b));
    engine.register_fn("hash64", |s: ImmutableString| hash64(s.as_bytes()));
    engine.register_fn("hash64", |b: Blob| hash64(&b));
    engine.register_fn("crc32", |s: ImmutableString| crc32(s.as_bytes()));
    engine.register_fn("crc32", |b: Blob| crc32(&b));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_match_published_test_vectors() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        // XXH3-64 of the empty input with seed 0.
        assert_eq!(hash64(b"") as u64, 0x2D06_8005_38D3_94C2);
        assert_ne!(hash64(b"a"), hash64(b"b"));
    }
}
