//! A FUSE filesystem that forgets, on command, everything not yet fsynced —
//! as a power cut would — so a program can be restarted on the state a real
//! disk could be left in.
//!
//! # Model
//! The filesystem lives in memory and keeps two views of every inode:
//! - the *current* one, which every operation reads and changes, and
//! - the *durable* one, which only these operations update:
//!   - `fsync`/`fdatasync` of a file: its current data (and size) become durable;
//!   - `fsync` of a directory: its current entries (names → inodes) become
//!     durable — creations, renames into it, unlinks and renames out of it.
//!
//! A **cut** (`Handle::cut`, or writing `cut` / `cut torn` to the control
//! file `/.powercut`) replaces the current view with the durable one: the
//! tree is rebuilt from the root through durable directory entries only;
//! each reachable file gets its durable data (empty if never fsynced).
//! Inodes nothing durable reaches are gone. A renamed file whose old
//! directory was fsynced but not its new one comes back under its old name,
//! with the data of its last fsync. With `torn`, a file whose current data
//! extends its durable data keeps a random-length prefix of the extension
//! (a partially written-back append); data that was overwritten in place
//! always reverts. After a cut the filesystem keeps serving, so the program
//! can be started again at once.
//!
//! # Limits
//! - What is durable without an fsync on a real filesystem (ext4 commits its
//!   journal every 5 s; `rename` over an existing file is often made atomic)
//!   is treated as lost here: the model is the strictest POSIX reading.
//! - Write-back order within a file is not modelled beyond the torn prefix of
//!   an append (no holes, no reordered pages, no torn sectors in overwrites).
//! - Metadata other than size (modes, times) is not persisted by the cut;
//!   there are no hard links, symlinks, xattrs or special files.
//! - File handles open across a cut must not be used: the test kills the
//!   program first, as the power cut would.
//! - Everything is in memory: meant for test data of tens of MB.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    FileAttr, FileType, Filesystem, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow,
};

/// Name of the control file at the root (found by lookup, not listed).
pub const CONTROL: &str = ".powercut";
const ROOT: u64 = fuser::FUSE_ROOT_ID;
const CONTROL_INO: u64 = u64::MAX - 1;
/// Nothing is cached by the kernel: after a cut every name and size is asked again.
const TTL: Duration = Duration::ZERO;

#[derive(Debug, Clone)]
enum Body {
    File(Vec<u8>),
    Dir(BTreeMap<OsString, u64>),
}

#[derive(Debug, Clone)]
struct Node {
    body: Body,
    mode: u16,
    mtime: SystemTime,
}

#[derive(Default)]
struct State {
    nodes: HashMap<u64, Node>,
    durable_data: HashMap<u64, Vec<u8>>,
    durable_entries: HashMap<u64, BTreeMap<OsString, u64>>,
    next_ino: u64,
    cuts: u64,
    fsyncs: u64,
    seed: u64,
}

/// Shared access to the filesystem's state, for tests.
#[derive(Clone)]
pub struct Handle(Arc<Mutex<State>>);

/// The filesystem, to pass to `fuser::mount2` or `spawn_mount2`.
pub struct PowercutFs(Arc<Mutex<State>>);

/// A new empty filesystem and a handle to cut its power.
pub fn new(seed: u64) -> (PowercutFs, Handle) {
    let mut s = State {
        next_ino: 2,
        seed: seed | 1,
        ..State::default()
    };
    s.nodes.insert(
        ROOT,
        Node {
            body: Body::Dir(BTreeMap::new()),
            mode: 0o755,
            mtime: SystemTime::now(),
        },
    );
    s.durable_entries.insert(ROOT, BTreeMap::new());
    let shared = Arc::new(Mutex::new(s));
    (PowercutFs(shared.clone()), Handle(shared))
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Handle {
    /// Discards everything not fsynced. With `torn`, appends not fsynced
    /// survive as a random-length prefix.
    pub fn cut(&self, torn: bool) {
        lock(&self.0).cut(torn);
    }

    /// (cuts so far, fsyncs served so far).
    pub fn counts(&self) -> (u64, u64) {
        let s = lock(&self.0);
        (s.cuts, s.fsyncs)
    }
}

impl State {
    fn rand(&mut self) -> u64 {
        // xorshift64: deterministic per seed, enough for picking prefixes.
        let mut x = self.seed;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.seed = x;
        x
    }

    fn cut(&mut self, torn: bool) {
        let mut nodes = HashMap::new();
        let mut stack = vec![ROOT];
        while let Some(ino) = stack.pop() {
            let Some(old) = self.nodes.get(&ino).cloned() else {
                continue;
            };
            let body = match old.body {
                Body::Dir(_) => {
                    let entries: BTreeMap<OsString, u64> = self
                        .durable_entries
                        .get(&ino)
                        .cloned()
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|(_, c)| self.nodes.contains_key(c) && !nodes.contains_key(c))
                        .collect();
                    stack.extend(entries.values().copied());
                    self.durable_entries.insert(ino, entries.clone());
                    Body::Dir(entries)
                }
                Body::File(current) => {
                    let mut data = self.durable_data.get(&ino).cloned().unwrap_or_default();
                    if torn && current.len() > data.len() && current.starts_with(&data) {
                        let extra = current.len() - data.len();
                        let keep = (self.rand() % (extra as u64 + 1)) as usize;
                        data.extend_from_slice(&current[data.len()..data.len() + keep]);
                    }
                    Body::File(data)
                }
            };
            nodes.insert(ino, Node { body, ..old });
        }
        self.durable_data.retain(|i, _| nodes.contains_key(i));
        self.durable_entries.retain(|i, _| nodes.contains_key(i));
        self.nodes = nodes;
        self.cuts += 1;
    }

    fn attr(&self, ino: u64) -> Option<FileAttr> {
        if ino == CONTROL_INO {
            return Some(file_attr(ino, 0, FileType::RegularFile, 0o600, UNIX_EPOCH));
        }
        let n = self.nodes.get(&ino)?;
        Some(match &n.body {
            Body::File(d) => file_attr(ino, d.len() as u64, FileType::RegularFile, n.mode, n.mtime),
            Body::Dir(_) => file_attr(ino, 0, FileType::Directory, n.mode, n.mtime),
        })
    }

    fn dir(&mut self, ino: u64) -> Result<&mut BTreeMap<OsString, u64>, i32> {
        match self.nodes.get_mut(&ino).map(|n| &mut n.body) {
            Some(Body::Dir(e)) => Ok(e),
            Some(_) => Err(libc::ENOTDIR),
            None => Err(libc::ENOENT),
        }
    }

    fn file(&mut self, ino: u64) -> Result<&mut Vec<u8>, i32> {
        match self.nodes.get_mut(&ino).map(|n| &mut n.body) {
            Some(Body::File(d)) => Ok(d),
            Some(_) => Err(libc::EISDIR),
            None => Err(libc::ENOENT),
        }
    }

    fn make(&mut self, parent: u64, name: &OsStr, body: Body, mode: u32) -> Result<FileAttr, i32> {
        if self.dir(parent)?.contains_key(name) {
            return Err(libc::EEXIST);
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        self.nodes.insert(
            ino,
            Node {
                body,
                mode: (mode & 0o7777) as u16,
                mtime: SystemTime::now(),
            },
        );
        self.dir(parent)?.insert(name.to_owned(), ino);
        self.attr(ino).ok_or(libc::EIO)
    }
}

fn file_attr(ino: u64, size: u64, kind: FileType, perm: u16, mtime: SystemTime) -> FileAttr {
    FileAttr {
        ino,
        size,
        blocks: size.div_ceil(512),
        atime: mtime,
        mtime,
        ctime: mtime,
        crtime: mtime,
        kind,
        perm,
        nlink: if kind == FileType::Directory { 2 } else { 1 },
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

/// Open flags for files: bypass the page cache, so reads after a cut see the cut.
const DIRECT_IO: u32 = fuser::consts::FOPEN_DIRECT_IO;

impl Filesystem for PowercutFs {
    fn lookup(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        let mut s = lock(&self.0);
        if parent == ROOT && name == CONTROL {
            if let Some(a) = s.attr(CONTROL_INO) {
                return reply.entry(&TTL, &a, 0);
            }
        }
        let found = s.dir(parent).ok().and_then(|d| d.get(name).copied());
        match found.and_then(|i| s.attr(i)) {
            Some(a) => reply.entry(&TTL, &a, 0),
            None => reply.error(libc::ENOENT),
        }
    }

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, _fh: Option<u64>, reply: ReplyAttr) {
        match lock(&self.0).attr(ino) {
            Some(a) => reply.attr(&TTL, &a),
            None => reply.error(libc::ENOENT),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn setattr(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<u64>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<u32>,
        reply: ReplyAttr,
    ) {
        let mut s = lock(&self.0);
        if ino == CONTROL_INO {
            return reply.attr(
                &TTL,
                &file_attr(ino, 0, FileType::RegularFile, 0o600, UNIX_EPOCH),
            );
        }
        if let Some(size) = size {
            match s.file(ino) {
                Ok(d) => d.resize(size as usize, 0),
                Err(e) => return reply.error(e),
            }
        }
        if let (Some(m), Some(n)) = (mode, s.nodes.get_mut(&ino)) {
            n.mode = (m & 0o7777) as u16;
        }
        match s.attr(ino) {
            Some(a) => reply.attr(&TTL, &a),
            None => reply.error(libc::ENOENT),
        }
    }

    fn mknod(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        match lock(&self.0).make(parent, name, Body::File(Vec::new()), mode) {
            Ok(a) => reply.entry(&TTL, &a, 0),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        match lock(&self.0).make(parent, name, Body::Dir(BTreeMap::new()), mode) {
            Ok(a) => reply.entry(&TTL, &a, 0),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        let mut s = lock(&self.0);
        let res = s
            .dir(parent)
            .and_then(|d| d.remove(name).ok_or(libc::ENOENT));
        // The inode stays: a durable entry may still name it, and a cut brings it back.
        match res {
            Ok(_) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        let mut s = lock(&self.0);
        let child = match s.dir(parent).map(|d| d.get(name).copied()) {
            Ok(Some(c)) => c,
            Ok(None) => return reply.error(libc::ENOENT),
            Err(e) => return reply.error(e),
        };
        match s.dir(child) {
            Ok(d) if !d.is_empty() => return reply.error(libc::ENOTEMPTY),
            Ok(_) => {}
            Err(e) => return reply.error(e),
        }
        if let Ok(d) = s.dir(parent) {
            d.remove(name);
        }
        reply.ok();
    }

    fn rename(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: u32,
        reply: ReplyEmpty,
    ) {
        let mut s = lock(&self.0);
        let ino = match s.dir(parent).map(|d| d.get(name).copied()) {
            Ok(Some(i)) => i,
            Ok(None) => return reply.error(libc::ENOENT),
            Err(e) => return reply.error(e),
        };
        if flags & libc::RENAME_EXCHANGE != 0 {
            return reply.error(libc::EINVAL);
        }
        let exists = s.dir(newparent).map(|d| d.contains_key(newname));
        match exists {
            Ok(true) if flags & libc::RENAME_NOREPLACE != 0 => return reply.error(libc::EEXIST),
            Ok(_) => {}
            Err(e) => return reply.error(e),
        }
        if let Ok(d) = s.dir(parent) {
            d.remove(name);
        }
        if let Ok(d) = s.dir(newparent) {
            d.insert(newname.to_owned(), ino);
        }
        reply.ok();
    }

    fn open(&mut self, _req: &Request<'_>, ino: u64, flags: i32, reply: ReplyOpen) {
        let mut s = lock(&self.0);
        if ino != CONTROL_INO && flags & libc::O_TRUNC != 0 {
            if let Ok(d) = s.file(ino) {
                d.clear();
            }
        }
        reply.opened(0, DIRECT_IO);
    }

    fn read(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        size: u32,
        _flags: i32,
        _lock: Option<u64>,
        reply: ReplyData,
    ) {
        let mut s = lock(&self.0);
        if ino == CONTROL_INO {
            let text = format!("cuts {} fsyncs {}\n", s.cuts, s.fsyncs);
            let b = text.as_bytes();
            let from = (offset as usize).min(b.len());
            return reply.data(&b[from..]);
        }
        match s.file(ino) {
            Ok(d) => {
                let from = (offset.max(0) as usize).min(d.len());
                let to = (from + size as usize).min(d.len());
                reply.data(&d[from..to]);
            }
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        data: &[u8],
        _write_flags: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyWrite,
    ) {
        let mut s = lock(&self.0);
        if ino == CONTROL_INO {
            let cmd = String::from_utf8_lossy(data);
            let cmd = cmd.trim();
            if cmd == "cut" || cmd == "cut torn" {
                s.cut(cmd == "cut torn");
                return reply.written(data.len() as u32);
            }
            return reply.error(libc::EINVAL);
        }
        match s.file(ino) {
            Ok(d) => {
                let at = offset.max(0) as usize;
                if d.len() < at + data.len() {
                    d.resize(at + data.len(), 0);
                }
                d[at..at + data.len()].copy_from_slice(data);
                if let Some(n) = s.nodes.get_mut(&ino) {
                    n.mtime = SystemTime::now();
                }
                reply.written(data.len() as u32);
            }
            Err(e) => reply.error(e),
        }
    }

    fn flush(&mut self, _req: &Request<'_>, _ino: u64, _fh: u64, _lock: u64, reply: ReplyEmpty) {
        reply.ok();
    }

    fn fsync(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let mut s = lock(&self.0);
        s.fsyncs += 1;
        match s.file(ino).map(|d| d.clone()) {
            Ok(d) => {
                s.durable_data.insert(ino, d);
                reply.ok();
            }
            // The control file, or an fsync through a directory handle opened as a file.
            Err(_) => match s.dir(ino).map(|d| d.clone()) {
                Ok(e) => {
                    s.durable_entries.insert(ino, e);
                    reply.ok();
                }
                Err(_) => reply.ok(),
            },
        }
    }

    fn readdir(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        mut reply: ReplyDirectory,
    ) {
        let mut s = lock(&self.0);
        let entries: Vec<(u64, FileType, OsString)> = match s.dir(ino) {
            Ok(d) => d
                .iter()
                .map(|(n, i)| (*i, FileType::RegularFile, n.clone()))
                .collect(),
            Err(e) => return reply.error(e),
        };
        let mut all = vec![
            (ino, FileType::Directory, OsString::from(".")),
            (ino, FileType::Directory, OsString::from("..")),
        ];
        for (i, _, n) in entries {
            let kind = match s.nodes.get(&i).map(|n| &n.body) {
                Some(Body::Dir(_)) => FileType::Directory,
                _ => FileType::RegularFile,
            };
            all.push((i, kind, n));
        }
        for (k, (i, kind, name)) in all.into_iter().enumerate().skip(offset.max(0) as usize) {
            if reply.add(i, (k + 1) as i64, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let mut s = lock(&self.0);
        s.fsyncs += 1;
        match s.dir(ino).map(|d| d.clone()) {
            Ok(e) => {
                s.durable_entries.insert(ino, e);
                reply.ok();
            }
            Err(e) => reply.error(e),
        }
    }

    fn statfs(&mut self, _req: &Request<'_>, _ino: u64, reply: ReplyStatfs) {
        // Plenty of room: 1 TiB free in 4 KiB blocks.
        reply.statfs(1 << 28, 1 << 28, 1 << 28, 1 << 20, 1 << 20, 4096, 255, 4096);
    }

    fn access(&mut self, _req: &Request<'_>, _ino: u64, _mask: i32, reply: ReplyEmpty) {
        reply.ok();
    }

    fn create(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        match lock(&self.0).make(parent, name, Body::File(Vec::new()), mode) {
            Ok(a) => reply.created(&TTL, &a, 0, 0, DIRECT_IO),
            Err(e) => reply.error(e),
        }
    }
}

/// A mounted power-cut filesystem; unmounted when dropped.
pub struct Mounted {
    pub handle: Handle,
    pub path: std::path::PathBuf,
    _session: fuser::BackgroundSession,
}

/// Mounts a new filesystem at `path` (created if missing), served by a
/// background thread of this process.
pub fn mount(path: &std::path::Path, seed: u64) -> std::io::Result<Mounted> {
    std::fs::create_dir_all(path)?;
    let (fs, handle) = new(seed);
    let opts = [
        fuser::MountOption::FSName("powercut".into()),
        fuser::MountOption::DefaultPermissions,
    ];
    let session = fuser::spawn_mount2(fs, path, &opts)?;
    Ok(Mounted {
        handle,
        path: path.to_path_buf(),
        _session: session,
    })
}
