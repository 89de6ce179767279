//! Telling files apart: device and inode, plus a CRC of the first bytes, so a
//! recycled inode holding a new file is not mistaken for the file we knew.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};

/// The fingerprint of a file's first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint {
    pub len: u64,
    pub crc: u32,
}

/// CRC-32C of the first `min(size, max)` bytes.
pub fn fingerprint(f: &File, max: u64) -> io::Result<Fingerprint> {
    let size = f.metadata()?.len();
    let len = size.min(max);
    let mut buf = vec![0u8; len as usize];
    f.read_exact_at(&mut buf, 0)?;
    Ok(Fingerprint {
        len,
        crc: crc32c::crc32c(&buf),
    })
}

/// Whether `f` still starts with the bytes `fp` was taken from.
pub fn starts_with(f: &File, fp: Fingerprint) -> io::Result<bool> {
    if f.metadata()?.len() < fp.len {
        return Ok(false);
    }
    let mut buf = vec![0u8; fp.len as usize];
    f.read_exact_at(&mut buf, 0)?;
    Ok(crc32c::crc32c(&buf) == fp.crc)
}

/// (device, inode) of an open file.
pub fn dev_ino(f: &File) -> io::Result<(u64, u64)> {
    let m = f.metadata()?;
    Ok((m.dev(), m.ino()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn fingerprint_tells_same_start_from_new_content() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        std::fs::write(&p, b"first line\nsecond\n").unwrap();
        let f = File::open(&p).unwrap();
        let fp = fingerprint(&f, 8).unwrap();
        assert_eq!(fp.len, 8);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .unwrap()
            .write_all(b"more\n")
            .unwrap();
        assert!(starts_with(&f, fp).unwrap(), "growth keeps the identity");
        std::fs::write(&p, b"other content\n").unwrap();
        assert!(!starts_with(&File::open(&p).unwrap(), fp).unwrap());
    }
}
