//! Writes a synthetic collector log for start-up measurements, in the layout
//! a collector without index files leaves (segments only), so the first
//! start rebuilds every index and the second uses them.
//!
//! `cargo run --release -p weir-collector --example synth_log -- DATA_DIR GIB [SEGMENT_MIB]`

use weir_core::batch;
use weir_core::record::{encode_batch, Compression, ProducerStamp};
use weir_core::{Event, Metadata};

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(gib)) = (args.next(), args.next()) else {
        eprintln!("usage: synth_log DATA_DIR GIB [SEGMENT_MIB]");
        std::process::exit(1);
    };
    let total = (gib.parse::<f64>().unwrap_or(1.0) * (1u64 << 30) as f64) as u64;
    let seg_bytes = args
        .next()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(256)
        << 20;
    let events: Vec<Event> = (0..50)
        .map(|i| {
            Event::from_message(
                format!("synthetic line {i:04} {}", "x".repeat(100)),
                Metadata::default(),
            )
        })
        .collect();
    let stamp = ProducerStamp {
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
    };
    let template = encode_batch(&events, stamp, Compression::None)
        .map_err(std::io::Error::other)?
        .to_vec();
    let pdir = std::path::Path::new(&dir).join("topics/bench/0");
    std::fs::create_dir_all(&pdir)?;
    std::fs::write(
        std::path::Path::new(&dir).join("topics/bench/topic.json"),
        br#"{"partitions":1}"#,
    )?;
    let (mut written, mut offset) = (0u64, 0i64);
    while written < total {
        let mut seg = Vec::with_capacity(seg_bytes as usize + template.len());
        let base = offset;
        while (seg.len() as u64) < seg_bytes && written + (seg.len() as u64) < total {
            let mut b = template.clone();
            batch::set_base_offset(&mut b, offset);
            offset += 50;
            seg.extend_from_slice(&b);
        }
        written += seg.len() as u64;
        std::fs::write(pdir.join(format!("{base:020}.log")), &seg)?;
    }
    println!(
        "{written} bytes, {offset} records, batches of {} bytes",
        template.len()
    );
    Ok(())
}
