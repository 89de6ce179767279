//! Per-device sequence numbers: lost frames, duplicates and restarts.
//!
//! A device numbers its frames +1 each, wrapping from `u32::MAX` to 0
//! (`docs/frame-format.md`). For each device id the tracker keeps the last
//! sequence number and the CRC-32C of its most recent frame bodies:
//!
//! | frame | verdict |
//! |---|---|
//! | first from this device (since the agent started) | accepted |
//! | the same sequence number *and* body as a recent frame | duplicate (a replay): dropped, counted |
//! | `d = seq − last` (mod 2^32) with `1 ≤ d < 2^31` | accepted; `d − 1` frames lost (wrap-around is `d = 1`) |
//! | any other jump (backwards, or the same number with another body) | the device restarted: accepted, counted; frames it sent just before restarting cannot be known |
//!
//! Comparing bodies, not only numbers, is what tells a replay (the same
//! bytes again) from a device that restarted and reuses low numbers with
//! new readings. Memory is bounded: at most `MAX_DEVICES` devices are
//! tracked; frames of further devices are accepted without gap accounting.

use std::collections::HashMap;

/// Recent frames remembered per device for duplicate detection.
const RECENT: usize = 8;
/// Devices tracked at most (about 100 bytes each).
pub const MAX_DEVICES: usize = 4096;

/// What the tracker made of one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Deliver it; `lost` frames of this device were skipped before it.
    Accept { lost: u64 },
    /// A repeat of a frame already delivered: drop it.
    Duplicate,
    /// The device started counting again: deliver it.
    Restart,
    /// Too many devices to track: deliver it, no accounting.
    Untracked,
}

#[derive(Debug, Clone)]
struct Device {
    last: u32,
    /// (sequence, body CRC) of the latest frames, newest at `next - 1`.
    recent: [(u32, u32); RECENT],
    filled: usize,
    next: usize,
}

impl Device {
    fn new(seq: u32, crc: u32) -> Device {
        let mut d = Device {
            last: seq,
            recent: [(0, 0); RECENT],
            filled: 0,
            next: 0,
        };
        d.remember(seq, crc);
        d
    }

    fn remember(&mut self, seq: u32, crc: u32) {
        self.recent[self.next] = (seq, crc);
        self.next = (self.next + 1) % RECENT;
        self.filled = (self.filled + 1).min(RECENT);
    }

    fn seen(&self, seq: u32, crc: u32) -> bool {
        self.recent[..self.filled].contains(&(seq, crc))
    }
}

/// Sequence state of every device heard from.
#[derive(Debug, Default)]
pub struct SequenceTracker {
    devices: HashMap<u64, Device>,
}

impl SequenceTracker {
    /// Judges frame `seq` of `device` whose body has CRC-32C `crc`.
    pub fn observe(&mut self, device: u64, seq: u32, crc: u32) -> Verdict {
        let Some(d) = self.devices.get_mut(&device) else {
            if self.devices.len() >= MAX_DEVICES {
                return Verdict::Untracked;
            }
            self.devices.insert(device, Device::new(seq, crc));
            return Verdict::Accept { lost: 0 };
        };
        if d.seen(seq, crc) {
            return Verdict::Duplicate;
        }
        let delta = seq.wrapping_sub(d.last);
        if (1..1 << 31).contains(&delta) {
            d.last = seq;
            d.remember(seq, crc);
            Verdict::Accept {
                lost: u64::from(delta - 1),
            }
        } else {
            *d = Device::new(seq, crc);
            Verdict::Restart
        }
    }

    /// Devices tracked.
    #[cfg(test)]
    pub fn devices(&self) -> usize {
        self.devices.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_frames_lose_nothing_and_gaps_count_the_missing() {
        let mut t = SequenceTracker::default();
        assert_eq!(t.observe(1, 10, 0xA), Verdict::Accept { lost: 0 });
        assert_eq!(t.observe(1, 11, 0xB), Verdict::Accept { lost: 0 });
        assert_eq!(t.observe(1, 15, 0xC), Verdict::Accept { lost: 3 });
        // Another device has its own numbering.
        assert_eq!(t.observe(2, 500, 0xD), Verdict::Accept { lost: 0 });
        assert_eq!(t.observe(1, 16, 0xE), Verdict::Accept { lost: 0 });
    }

    #[test]
    fn wraparound_is_not_a_gap() {
        let mut t = SequenceTracker::default();
        t.observe(7, u32::MAX - 1, 1);
        assert_eq!(t.observe(7, u32::MAX, 2), Verdict::Accept { lost: 0 });
        assert_eq!(t.observe(7, 0, 3), Verdict::Accept { lost: 0 });
        assert_eq!(t.observe(7, 2, 4), Verdict::Accept { lost: 1 });
    }

    #[test]
    fn a_replayed_frame_is_a_duplicate() {
        let mut t = SequenceTracker::default();
        for s in 0..5 {
            t.observe(1, s, 100 + s);
        }
        assert_eq!(t.observe(1, 4, 104), Verdict::Duplicate);
        assert_eq!(t.observe(1, 2, 102), Verdict::Duplicate);
        assert_eq!(t.observe(1, 5, 105), Verdict::Accept { lost: 0 });
    }

    #[test]
    fn a_jump_back_with_new_content_is_a_restart_not_a_duplicate() {
        let mut t = SequenceTracker::default();
        for s in 0..5 {
            t.observe(1, s, 100 + s);
        }
        // Rebooted: sequence 0 again, but other readings (another CRC).
        assert_eq!(t.observe(1, 0, 999), Verdict::Restart);
        assert_eq!(t.observe(1, 1, 998), Verdict::Accept { lost: 0 });
        // A restart far from zero is also a jump back.
        assert_eq!(t.observe(1, 0, 5), Verdict::Restart);
        assert_eq!(t.observe(1, 0, 6), Verdict::Restart);
    }

    #[test]
    fn tracks_a_bounded_number_of_devices() {
        let mut t = SequenceTracker::default();
        for d in 0..MAX_DEVICES as u64 {
            t.observe(d, 0, 0);
        }
        assert_eq!(t.observe(u64::MAX, 0, 0), Verdict::Untracked);
        assert_eq!(t.devices(), MAX_DEVICES);
        assert_eq!(t.observe(3, 1, 1), Verdict::Accept { lost: 0 });
    }
}
