//! Read buffers reused across fetches.
//!
//! A fetch reads up to `limits.max_fetch_bytes` (16 MiB by default) into one
//! buffer. Allocated fresh each time, a buffer that large is a new mapping
//! whose every page faults and is zeroed by the kernel when first written,
//! and is unmapped when the answer is sent: measured, that was about 40 % of
//! the collector's CPU serving a fetch from the page cache. So answers hand
//! their buffer back here when sent ([`recycled`]) and the next read takes
//! it ([`take`]). At most [`KEEP`] buffers of [`MIN_CAPACITY`] to
//! [`MAX_CAPACITY`] bytes are kept, so what an idle collector holds for this
//! is bounded (4 × 16 MiB with the default fetch limit).

use std::sync::Mutex;

use bytes::Bytes;

/// Buffers kept at most.
pub const KEEP: usize = 4;
/// Smaller buffers are not worth keeping (the allocator reuses them itself).
pub const MIN_CAPACITY: usize = 1 << 20;
/// Larger buffers are freed, not kept.
pub const MAX_CAPACITY: usize = 64 << 20;

static POOL: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// A buffer of `len` bytes for the caller to overwrite, reusing a kept one
/// when one is large enough. A kept buffer's bytes are those of its last
/// use (only what it did not hold is zeroed: zeroing 16 MiB per fetch was
/// 13 % of the CPU serving it), so callers read into it and keep only what
/// they read.
pub fn take(len: usize) -> Vec<u8> {
    if len >= MIN_CAPACITY {
        let reused = {
            let mut pool = POOL.lock().unwrap_or_else(|p| p.into_inner());
            pool.iter()
                .position(|b| b.capacity() >= len)
                .map(|i| pool.swap_remove(i))
        };
        if let Some(mut b) = reused {
            b.truncate(len);
            b.resize(len, 0);
            return b;
        }
    }
    vec![0u8; len]
}

/// Keeps `b` for a later [`take`], if it is worth keeping and there is room.
pub fn give_back(b: Vec<u8>) {
    if !(MIN_CAPACITY..=MAX_CAPACITY).contains(&b.capacity()) {
        return;
    }
    let mut pool = POOL.lock().unwrap_or_else(|p| p.into_inner());
    if pool.len() < KEEP {
        pool.push(b);
    }
}

/// `b` as `Bytes` without a copy; its buffer comes back here when the last
/// clone is dropped (the answer was written, or its connection closed).
pub fn recycled(b: Vec<u8>) -> Bytes {
    if b.capacity() < MIN_CAPACITY {
        return Bytes::from(b);
    }
    Bytes::from_owner(Recycle(b))
}

struct Recycle(Vec<u8>);

impl AsRef<[u8]> for Recycle {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Recycle {
    fn drop(&mut self) {
        give_back(std::mem::take(&mut self.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_given_back_is_taken_again_with_the_length_asked() {
        let mut b = take(MIN_CAPACITY + 10);
        b.iter_mut().for_each(|x| *x = 7);
        let ptr = b.as_ptr();
        drop(recycled(b));
        // Other tests may take it first; look for it among a few takes.
        let again: Vec<Vec<u8>> = (0..KEEP).map(|_| take(MIN_CAPACITY + 5)).collect();
        assert!(again.iter().all(|b| b.len() == MIN_CAPACITY + 5));
        assert!(
            again.iter().any(|b| b.as_ptr() == ptr),
            "the kept buffer was reused"
        );
    }

    #[test]
    fn small_and_huge_buffers_are_not_kept() {
        assert_eq!(recycled(vec![1, 2, 3]).as_ref(), &[1, 2, 3]);
        give_back(Vec::with_capacity(MAX_CAPACITY + 1));
        let pool = POOL.lock().unwrap_or_else(|p| p.into_inner());
        assert!(pool.iter().all(|b| b.capacity() <= MAX_CAPACITY));
    }
}
