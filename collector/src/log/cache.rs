//! Open sealed segments, shared by every partition of the process and
//! bounded: a partition keeps only its active segment open; a sealed one is
//! opened (file and index entries) on its first read and closed when it is
//! the least recently read of more than `capacity`. So the file handles a
//! collector needs are one per partition plus `capacity`, however many
//! segments the log holds, and it always starts.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::index::SparseIndex;

/// A sealed segment opened for reading.
pub struct OpenSegment {
    pub file: File,
    pub index: SparseIndex,
}

/// Open segments by path, and their paths from least to most recently read.
type Lru = (HashMap<PathBuf, Arc<OpenSegment>>, VecDeque<PathBuf>);

/// The bounded set of open sealed segments.
pub struct SegmentCache {
    capacity: usize,
    inner: Mutex<Lru>,
}

impl SegmentCache {
    /// A cache holding at most `capacity` open segments.
    pub fn new(capacity: usize) -> Self {
        SegmentCache {
            capacity: capacity.max(1),
            inner: Mutex::new((HashMap::new(), VecDeque::new())),
        }
    }

    /// The open segment at `path`, opening it with `open` when absent. The
    /// lock is not held while opening (it reads files).
    pub fn get_or_open<E>(
        &self,
        path: &Path,
        open: impl FnOnce() -> Result<OpenSegment, E>,
    ) -> Result<Arc<OpenSegment>, E> {
        if let Some(s) = self.touch(path) {
            return Ok(s);
        }
        let seg = Arc::new(open()?);
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (map, order) = &mut *g;
        if let Some(existing) = map.get(path) {
            return Ok(existing.clone());
        }
        map.insert(path.to_path_buf(), seg.clone());
        order.push_back(path.to_path_buf());
        while map.len() > self.capacity {
            match order.pop_front() {
                // Readers holding the Arc keep the file open until they finish.
                Some(old) => {
                    map.remove(&old);
                }
                None => break,
            }
        }
        Ok(seg)
    }

    fn touch(&self, path: &Path) -> Option<Arc<OpenSegment>> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (map, order) = &mut *g;
        let s = map.get(path)?.clone();
        if let Some(i) = order.iter().position(|p| p == path) {
            order.remove(i);
        }
        order.push_back(path.to_path_buf());
        Some(s)
    }

    /// Forgets a segment (deleted by retention).
    pub fn remove(&self, path: &Path) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (map, order) = &mut *g;
        map.remove(path);
        order.retain(|p| p != path);
    }

    /// Segments open now.
    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).0.len()
    }

    /// Whether none is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_capacity_segments_stay_open_and_the_least_recently_read_goes_first() {
        let dir = tempfile::tempdir().unwrap();
        let cache = SegmentCache::new(2);
        let open = |name: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, b"").unwrap();
            move || {
                Ok::<_, std::io::Error>(OpenSegment {
                    file: File::open(&p)?,
                    index: SparseIndex::new(0),
                })
            }
        };
        let a = dir.path().join("a");
        cache.get_or_open(&a, open("a")).unwrap();
        cache.get_or_open(&dir.path().join("b"), open("b")).unwrap();
        cache.get_or_open(&a, open("a")).unwrap(); // a is now the most recent
        cache.get_or_open(&dir.path().join("c"), open("c")).unwrap();
        assert_eq!(cache.len(), 2);
        let mut reopened = false;
        cache
            .get_or_open(&a, || {
                reopened = true;
                open("a")()
            })
            .unwrap();
        assert!(!reopened, "b was evicted, not a");
    }
}
