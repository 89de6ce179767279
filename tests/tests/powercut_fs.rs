//! The power-cut filesystem keeps exactly what was fsynced: file data by a
//! file fsync, names by a directory fsync.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

use weir_tests::powercut;

fn sync_dir(p: &Path) {
    File::open(p).unwrap().sync_all().unwrap();
}

#[test]
fn a_cut_keeps_what_was_fsynced_and_nothing_else() {
    let tmp = tempfile::tempdir().unwrap();
    let fs = powercut::mount(&tmp.path().join("mnt"), 7)
        .expect("mounting the power-cut filesystem (needs /dev/fuse and fusermount3; scripts/test installs fuse3)");
    let m = fs.path.clone();

    // Data fsynced, name not: gone.
    let mut f = File::create(m.join("a")).unwrap();
    f.write_all(b"hello").unwrap();
    f.sync_all().unwrap();
    drop(f);
    fs.handle.cut(false);
    assert!(
        !m.join("a").exists(),
        "a name is durable only after its directory's fsync"
    );

    // Name and data fsynced: kept; a later unsynced append is dropped.
    let mut f = File::create(m.join("b")).unwrap();
    f.write_all(b"one").unwrap();
    f.sync_all().unwrap();
    sync_dir(&m);
    f.write_all(b" two").unwrap();
    drop(f);
    fs.handle.cut(false);
    assert_eq!(fs::read(m.join("b")).unwrap(), b"one");

    // A durable name whose data was never fsynced comes back empty.
    File::create(m.join("c"))
        .unwrap()
        .write_all(b"lost")
        .unwrap();
    sync_dir(&m);
    fs.handle.cut(false);
    assert_eq!(fs::read(m.join("c")).unwrap(), b"");

    // A rename is undone until the directory is fsynced; then it holds.
    fs::rename(m.join("b"), m.join("b2")).unwrap();
    fs.handle.cut(false);
    assert!(m.join("b").exists() && !m.join("b2").exists());
    fs::rename(m.join("b"), m.join("b2")).unwrap();
    sync_dir(&m);
    fs.handle.cut(false);
    assert!(!m.join("b").exists() && m.join("b2").exists());

    // An unlink is undone too, with the file's fsynced data.
    fs::remove_file(m.join("b2")).unwrap();
    fs.handle.cut(false);
    assert_eq!(fs::read(m.join("b2")).unwrap(), b"one");

    // A new directory's entries need the new directory's own fsync.
    fs::create_dir(m.join("d")).unwrap();
    sync_dir(&m);
    let mut f = File::create(m.join("d/x")).unwrap();
    f.write_all(b"x").unwrap();
    f.sync_all().unwrap();
    fs.handle.cut(false);
    assert!(m.join("d").is_dir() && !m.join("d/x").exists());

    // Torn: an unsynced append survives as some prefix, an overwrite never does.
    let mut f = OpenOptions::new().append(true).open(m.join("b2")).unwrap();
    f.write_all(&[b'z'; 1000]).unwrap();
    drop(f);
    fs.handle.cut(true);
    let got = fs::read(m.join("b2")).unwrap();
    assert!(got.starts_with(b"one") && got.len() <= 1003 && got[3..].iter().all(|b| *b == b'z'));

    // The control file does the same for a shell.
    File::create(m.join("e")).unwrap();
    fs::write(m.join(powercut::CONTROL), "cut").unwrap();
    assert!(!m.join("e").exists());
    assert!(fs::read_to_string(m.join(powercut::CONTROL))
        .unwrap()
        .starts_with("cuts "));
}
