//! A bounded map from 64-bit keys to values that forgets the least recently
//! used entry when full. Its order is part of a transform's behaviour, so
//! it is explicit (a sequence number per use) and snapshots list entries
//! oldest first: restoring them in that order rebuilds the same behaviour.

use std::collections::{BTreeMap, HashMap};

/// The map.
#[derive(Debug)]
pub struct Lru<V> {
    entries: HashMap<u64, (u64, V)>,
    /// Use sequence → key, oldest first.
    order: BTreeMap<u64, u64>,
    next: u64,
    capacity: usize,
}

impl<V> Lru<V> {
    /// An empty map holding at most `capacity` entries (at least one).
    pub fn new(capacity: usize) -> Lru<V> {
        Lru {
            entries: HashMap::new(),
            order: BTreeMap::new(),
            next: 0,
            capacity: capacity.max(1),
        }
    }

    /// The value of `key`, marked as just used.
    pub fn get_mut(&mut self, key: u64) -> Option<&mut V> {
        let (seq, v) = self.entries.get_mut(&key)?;
        self.order.remove(seq);
        *seq = self.next;
        self.order.insert(self.next, key);
        self.next += 1;
        Some(v)
    }

    /// Inserts `key` as just used; returns whether an older entry was forgotten to make room.
    pub fn insert(&mut self, key: u64, value: V) -> bool {
        if let Some(v) = self.get_mut(key) {
            *v = value;
            return false;
        }
        let mut evicted = false;
        if self.entries.len() >= self.capacity {
            if let Some((_, old)) = self.order.pop_first() {
                self.entries.remove(&old);
                evicted = true;
            }
        }
        self.entries.insert(key, (self.next, value));
        self.order.insert(self.next, key);
        self.next += 1;
        evicted
    }

    /// Entries, least recently used first.
    pub fn oldest_first(&self) -> impl Iterator<Item = (u64, &V)> {
        self.order
            .values()
            .filter_map(|k| self.entries.get(k).map(|(_, v)| (*k, v)))
    }

    /// Number of entries.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.order.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgets_the_least_recently_used_and_lists_oldest_first() {
        let mut l = Lru::new(2);
        assert!(!l.insert(1, "a"));
        assert!(!l.insert(2, "b"));
        assert!(l.get_mut(1).is_some());
        assert!(l.insert(3, "c"), "full: 2 was the least recently used");
        assert!(l.get_mut(2).is_none());
        let order: Vec<u64> = l.oldest_first().map(|(k, _)| k).collect();
        assert_eq!(order, vec![1, 3]);
        assert_eq!(l.len(), 2);
    }
}
