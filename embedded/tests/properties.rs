//! Properties of the codec over generated frames and bytes: what the serial
//! source relies on (round trip, no panics, resynchronisation, one damaged
//! frame costs one frame) and what firmware relies on (any buffer size is
//! handled, nothing that fitted is lost).

mod support;

use proptest::collection::vec;
use proptest::prelude::*;
use support::{chunking, deframe_all, frame, OwnedFrame};
use weir_embedded::{
    decode, max_encoded_len, unframe, DefaultDeframer, Deframer, EncodeError, FrameBuilder,
    MAX_ENCODED_LEN,
};

/// Encodes `frames` back to back with distinct sequence numbers, so a
/// frame can be told from the others, and returns the stream and where each
/// frame's bytes start and end.
fn stream_of(frames: &mut [OwnedFrame]) -> (Vec<u8>, Vec<std::ops::Range<usize>>) {
    let (mut stream, mut spans) = (Vec::new(), Vec::new());
    for (i, f) in frames.iter_mut().enumerate() {
        f.header.sequence = i as u32;
        let start = stream.len();
        stream.extend(f.encode());
        spans.push(start..stream.len());
    }
    (stream, spans)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_frames_round_trip(f in frame(), sizes in chunking()) {
        let wire = f.encode();
        prop_assert!(wire.len() <= MAX_ENCODED_LEN);
        prop_assert_eq!((wire[0], wire[wire.len() - 1]), (0, 0));
        prop_assert!(!wire[1..wire.len() - 1].contains(&0));

        let (frames, errors) = deframe_all(&mut DefaultDeframer::default(), &wire, &sizes);
        prop_assert_eq!(errors, vec![]);
        prop_assert_eq!(frames, vec![f.clone()]);

        let mut stuffed = wire[1..wire.len() - 1].to_vec();
        let decoded = decode(unframe(&mut stuffed).unwrap()).unwrap();
        prop_assert_eq!(OwnedFrame::from_frame(&decoded), f);
    }

    #[test]
    fn any_buffer_size_is_refused_or_filled_without_losing_what_fitted(
        f in frame(),
        capacity in 0usize..400,
    ) {
        let mut buf = vec![0u8; capacity];
        let mut builder = match FrameBuilder::new(&mut buf, &f.header) {
            Ok(b) => b,
            Err(EncodeError::BufferTooSmall { needed, capacity: c }) => {
                prop_assert!(needed > c);
                return Ok(());
            }
            Err(e) => return Err(TestCaseError::fail(format!("unexpected {e}"))),
        };
        let mut pushed = 0;
        for (channel, v) in &f.readings {
            match builder.push(*channel, v.as_value()) {
                Ok(()) => pushed += 1,
                Err(EncodeError::BufferTooSmall { needed, capacity: c }) => {
                    prop_assert!(needed > c);
                    // The size it asked for is enough for the frame it tried.
                    let mut bigger = vec![0u8; needed];
                    let mut retry = FrameBuilder::new(&mut bigger, &f.header).unwrap();
                    for (channel, v) in &f.readings[..=pushed] {
                        retry.push(*channel, v.as_value()).unwrap();
                    }
                    prop_assert!(retry.finish() <= needed);
                    break;
                }
                Err(e) => return Err(TestCaseError::fail(format!("unexpected {e}"))),
            }
        }
        let len = builder.finish();
        prop_assert!(len <= capacity);
        let body = unframe(&mut buf[1..len - 1]).unwrap();
        let decoded = OwnedFrame::from_frame(&decode(body).unwrap());
        prop_assert_eq!(decoded.header, f.header);
        prop_assert_eq!(&decoded.readings[..], &f.readings[..pushed]);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_deframer_or_decoder(
        bytes in prop_oneof![
            vec(any::<u8>(), 0..2048),
            // Few distinct bytes: many delimiters, short blocks, long runs.
            vec(prop_oneof![Just(0u8), Just(1), Just(2), Just(0xFF), any::<u8>()], 0..2048),
        ],
        sizes in chunking(),
    ) {
        let (frames, _) = deframe_all(&mut DefaultDeframer::default(), &bytes, &sizes);
        let (small, _) = deframe_all(&mut Deframer::new([0u8; 16]), &bytes, &sizes);
        // Garbage that happens to carry a valid CRC is possible but must
        // still decode to something iterable.
        for f in frames.iter().chain(&small) {
            prop_assert!(f.readings.len() <= 255);
        }
        let _ = unframe(&mut bytes.clone());
        if let Ok(frame) = decode(&bytes) {
            prop_assert_eq!(frame.readings().count(), frame.reading_count());
        }
    }

    #[test]
    fn damaged_bodies_decode_or_fail_cleanly(
        f in frame(),
        edits in vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..4),
    ) {
        // The CRC keeps random damage away from the parser; this goes
        // around it to exercise every parsing path with almost-valid bodies.
        let mut stuffed = f.encode()[1..].to_vec();
        stuffed.pop();
        let mut body = unframe(&mut stuffed).unwrap().to_vec();
        for (at, byte, kind) in edits {
            if body.is_empty() {
                break;
            }
            let i = at.index(body.len());
            match kind {
                0 => body[i] = byte,
                1 => body.truncate(i),
                _ => body.insert(i, byte),
            }
        }
        if let Ok(frame) = decode(&body) {
            prop_assert_eq!(frame.readings().count(), frame.reading_count());
        }
    }

    #[test]
    fn every_frame_after_injected_garbage_is_recovered_in_order(
        mut before in vec(frame(), 0..4),
        garbage in vec(any::<u8>(), 0..300),
        mut after in vec(frame(), 1..5),
        sizes in chunking(),
    ) {
        let boundary = before.len();
        before.append(&mut after);
        let mut frames = before;
        let (mut stream, spans) = stream_of(&mut frames);
        let cut = if boundary == 0 { 0 } else { spans[boundary - 1].end };
        stream.splice(cut..cut, garbage.iter().copied());

        let mut deframer = DefaultDeframer::default();
        let (decoded, _) = deframe_all(&mut deframer, &stream, &sizes);
        prop_assert_eq!(decoded, frames);
        let noise = garbage.iter().filter(|&&b| b != 0).count() as u64;
        prop_assert_eq!(deframer.garbage_bytes(), noise);
    }

    #[test]
    fn a_flipped_bit_is_detected_and_costs_only_its_frame(
        mut frames in vec(frame(), 1..6),
        bit in any::<prop::sample::Index>(),
        sizes in chunking(),
    ) {
        let (mut stream, spans) = stream_of(&mut frames);
        let bit = bit.index(stream.len() * 8);
        stream[bit / 8] ^= 1 << (bit % 8);
        let hit = spans.iter().position(|s| s.contains(&(bit / 8))).unwrap();

        let (decoded, errors) = deframe_all(&mut DefaultDeframer::default(), &stream, &sizes);
        let mut expected = frames.clone();
        expected.remove(hit);
        prop_assert_eq!(decoded, expected);
        // Only the very last byte of the stream (the final delimiter) can be
        // damaged without a report: that frame is still waiting for its end.
        let last_byte = bit / 8 == stream.len() - 1;
        prop_assert!(!errors.is_empty() || last_byte, "flip at bit {} went unreported", bit);
    }
}

#[test]
fn max_encoded_len_is_the_wire_size_of_the_largest_frame() {
    assert_eq!(
        MAX_ENCODED_LEN,
        max_encoded_len(weir_embedded::MAX_FRAME_LEN)
    );
    assert_eq!(MAX_ENCODED_LEN, 1031);
}
