//! The C encoder in `embedded/c/` against the Rust decoder: compiles it and
//! `tests/c/known_frames.c` with the system gcc, runs the program, and checks
//! that its output is byte for byte what the Rust encoder writes for the same
//! frames and decodes to exactly the values the C program put in.
//!
//! Without gcc this test fails (it does not skip): a C encoder that is never
//! compiled is a C encoder that silently rots.

mod support;

use std::path::Path;
use std::process::Command;

use support::{deframe_all, OwnedFrame, OwnedValue as V};
use weir_embedded::{DefaultDeframer, EncodeError, FrameBuilder, Header, Timestamp, Value};

/// The frames `known_frames.c` writes, in order, as literal values.
fn expected() -> Vec<OwnedFrame> {
    let frame = |device_id, sequence, timestamp, readings: Vec<(u16, V)>| OwnedFrame {
        header: Header {
            device_id,
            sequence,
            timestamp,
        },
        readings,
    };
    let run: Vec<u8> = (0..300u32).map(|i| (i % 255 + 1) as u8).collect();
    vec![
        frame(
            1,
            0,
            Timestamp::None,
            vec![
                (0, V::I32(-5)),
                (1, V::U32(42)),
                (2, V::F32(21.5f32.to_bits())),
                (3, V::Bool(true)),
            ],
        ),
        frame(
            0x0123_4567_89AB_CDEF,
            u32::MAX,
            Timestamp::UnixMicros(1_700_000_000_123_456),
            vec![
                (300, V::I64(i64::MIN)),
                (65535, V::U64(u64::MAX)),
                (7, V::F64((-0.125f64).to_bits())),
                (8, V::Bool(false)),
                (9, V::Bytes(vec![0x00, 0x01, 0x02, 0x00, 0xFF])),
                (10, V::Str("héllo".into())),
                (11, V::I32(i32::MIN)),
            ],
        ),
        frame(7, 1, Timestamp::UptimeMicros(123), vec![]),
        frame(
            2,
            3,
            Timestamp::None,
            vec![
                (1, V::Bytes(run)),
                (2, V::I32(i32::MAX)),
                (3, V::F32(0x7FC0_0001)),
            ],
        ),
        // What fits a 40-byte buffer: 7 readings (worked out by hand: 33
        // bytes of body room, 5 of header, 3 + 6 × 4 of readings).
        frame(
            5,
            9,
            Timestamp::None,
            (0..7).map(|i| (i, V::U32(u32::from(i) * 1000))).collect(),
        ),
    ]
}

/// The Rust encoder's bytes for `expected()`, the last frame built the way
/// the C program builds it: push into a 40-byte buffer until it refuses.
fn rust_encoding() -> Vec<u8> {
    let mut frames = expected();
    let last = frames.pop().unwrap();
    let mut out: Vec<u8> = frames.iter().flat_map(OwnedFrame::encode).collect();

    let mut small = [0u8; 40];
    let mut b = FrameBuilder::new(&mut small, &last.header).unwrap();
    let mut i = 0u16;
    let refusal = loop {
        if let Err(e) = b.push(i, Value::U32(u32::from(i) * 1000)) {
            break e;
        }
        i += 1;
    };
    assert!(matches!(refusal, EncodeError::BufferTooSmall { needed, .. } if needed > 40));
    assert_eq!(b.reading_count(), last.readings.len());
    let len = b.finish();
    out.extend_from_slice(&small[..len]);
    out
}

/// Compiles the encoder and the test program into a temporary directory,
/// runs it and returns its stdout.
fn run_c_program() -> Vec<u8> {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("known_frames");
    let compile = Command::new("gcc")
        .args(["-std=c99", "-O2", "-Wall", "-Wextra", "-Wpedantic", "-Wconversion", "-Werror"])
        .args(["-fsanitize=undefined", "-fno-sanitize-recover=all"])
        .arg("-I")
        .arg(crate_dir.join("c"))
        .arg(crate_dir.join("c/weir_frame.c"))
        .arg(crate_dir.join("tests/c/known_frames.c"))
        .arg("-o")
        .arg(&exe)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run gcc ({e}): this test compiles the C encoder in embedded/c with the system \
                 C compiler and must not be skipped; install gcc (Debian: apt-get install gcc)"
            )
        });
    assert!(
        compile.status.success(),
        "gcc failed to compile the C encoder:\n{}",
        String::from_utf8_lossy(&compile.stderr)
    );
    let run = Command::new(&exe).output().unwrap();
    assert!(
        run.status.success(),
        "known_frames failed ({}):\n{}",
        run.status,
        String::from_utf8_lossy(&run.stderr)
    );
    run.stdout
}

#[test]
fn c_encoder_output_decodes_to_the_values_it_encoded() {
    let c_bytes = run_c_program();

    let mut deframer = DefaultDeframer::default();
    let (frames, errors) = deframe_all(&mut deframer, &c_bytes, &[7, 1, 300]);
    assert_eq!(errors, vec![]);
    assert_eq!(deframer.garbage_bytes(), 0);
    assert_eq!(frames, expected());

    assert!(
        c_bytes == rust_encoding(),
        "the C and Rust encoders wrote different bytes for the same frames"
    );
}
