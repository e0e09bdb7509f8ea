//! Ordered collections on sorted vectors, for the engine's small sets and maps (channels,
//! presence members, documents, pending requests, a document's keys).
//!
//! They replace `BTreeMap`/`BTreeSet`, which the browser build pays for with several KB of code
//! per key/value type; a sorted vector costs a few hundred bytes and, for the tens or hundreds
//! of entries an engine holds, searches as fast (binary search) and iterates faster. Inserting
//! and removing move the tail: O(n), fine at these sizes.

use std::borrow::Borrow;
use std::collections::BinaryHeap;

/// A map kept sorted by key; iteration is in key order, like `BTreeMap`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SortedMap<K, V> {
    entries: Vec<(K, V)>,
}

impl<K, V> Default for SortedMap<K, V> {
    fn default() -> Self {
        SortedMap {
            entries: Vec::new(),
        }
    }
}

impl<K: Ord, V> SortedMap<K, V> {
    fn find<Q: Ord + ?Sized>(&self, key: &Q) -> Result<usize, usize>
    where
        K: Borrow<Q>,
    {
        self.entries.binary_search_by(|(k, _)| k.borrow().cmp(key))
    }

    pub(crate) fn get<Q: Ord + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        let i = self.find(key).ok()?;
        self.entries.get(i).map(|(_, v)| v)
    }

    pub(crate) fn get_mut<Q: Ord + ?Sized>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
    {
        let i = self.find(key).ok()?;
        self.entries.get_mut(i).map(|(_, v)| v)
    }

    pub(crate) fn contains_key<Q: Ord + ?Sized>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.find(key).is_ok()
    }

    /// Inserts `value` at `key`, returning the value it replaced.
    pub(crate) fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self.find(&key) {
            Ok(i) => self
                .entries
                .get_mut(i)
                .map(|(_, v)| std::mem::replace(v, value)),
            Err(i) => {
                self.entries.insert(i, (key, value));
                None
            }
        }
    }

    pub(crate) fn remove<Q: Ord + ?Sized>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        let i = self.find(key).ok()?;
        Some(self.entries.remove(i).1)
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    // Used by shared documents only.
    #[cfg_attr(not(feature = "documents"), allow(dead_code))]
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (&K, &mut V)> {
        self.entries.iter_mut().map(|(k, v)| (&*k, v))
    }

    pub(crate) fn keys(&self) -> impl Iterator<Item = &K> {
        self.entries.iter().map(|(k, _)| k)
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &V> {
        self.entries.iter().map(|(_, v)| v)
    }

    /// Keeps the entries for which `keep` is true.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&K, &V) -> bool) {
        self.entries.retain(|(k, v)| keep(k, v));
    }

    /// Removes every entry, returning the keys in order.
    pub(crate) fn take_keys(&mut self) -> Vec<K> {
        std::mem::take(&mut self.entries)
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    }
}

/// A set kept sorted and free of duplicates; iteration is in order, like `BTreeSet`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SortedSet<T> {
    items: Vec<T>,
}

impl<T> Default for SortedSet<T> {
    fn default() -> Self {
        SortedSet { items: Vec::new() }
    }
}

impl<T: Ord> SortedSet<T> {
    pub(crate) fn contains(&self, item: &T) -> bool {
        self.items.binary_search(item).is_ok()
    }

    /// Adds `item`; false if it was already there.
    pub(crate) fn insert(&mut self, item: T) -> bool {
        match self.items.binary_search(&item) {
            Ok(_) => false,
            Err(i) => {
                self.items.insert(i, item);
                true
            }
        }
    }

    /// Removes `item`; false if it was not there.
    pub(crate) fn remove(&mut self, item: &T) -> bool {
        match self.items.binary_search(item) {
            Ok(i) => {
                self.items.remove(i);
                true
            }
            Err(_) => false,
        }
    }

    // Used by shared documents only.
    #[cfg_attr(not(feature = "documents"), allow(dead_code))]
    pub(crate) fn clear(&mut self) {
        self.items.clear();
    }

    pub(crate) fn iter(&self) -> std::slice::Iter<'_, T> {
        self.items.iter()
    }

    pub(crate) fn as_slice(&self) -> &[T] {
        &self.items
    }
}

impl<T: Ord> SortedSet<T> {
    fn from_vec(items: Vec<T>) -> Self {
        // A heap sort (O(n log n), in place): `slice::sort` would link ~5 KB of wasm per
        // element type for speed these small sets do not need.
        let mut items = BinaryHeap::from(items).into_sorted_vec();
        items.dedup();
        SortedSet { items }
    }
}

impl<T: Ord> FromIterator<T> for SortedSet<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        SortedSet::from_vec(iter.into_iter().collect())
    }
}

impl<T: Ord> Extend<T> for SortedSet<T> {
    fn extend<I: IntoIterator<Item = T>>(&mut self, iter: I) {
        let mut items = std::mem::take(&mut self.items);
        items.extend(iter);
        *self = SortedSet::from_vec(items);
    }
}

impl<'a, T> IntoIterator for &'a SortedSet<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.items.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_map_keeps_key_order_and_replaces() {
        let mut m = SortedMap::default();
        for (k, v) in [("b", 2), ("a", 1), ("c", 3)] {
            assert_eq!(m.insert(k.to_owned(), v), None);
        }
        assert_eq!(m.insert("b".to_owned(), 20), Some(2));
        assert_eq!(
            m.keys().map(String::as_str).collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
        assert_eq!(m.get("b"), Some(&20));
        assert!(m.contains_key("c") && !m.contains_key("d"));
        *m.get_mut("c").unwrap() += 1;
        assert_eq!(m.remove("a"), Some(1));
        assert_eq!(m.remove("a"), None);
        m.retain(|_, v| *v > 10);
        assert_eq!(m.values().copied().collect::<Vec<_>>(), [20]);
        assert_eq!(m.take_keys(), ["b"]);
        assert_eq!(m.len(), 0);
    }

    #[test]
    fn the_set_is_sorted_and_free_of_duplicates() {
        let mut s: SortedSet<String> = ["b", "a", "b"].into_iter().map(String::from).collect();
        assert_eq!(s.as_slice(), ["a", "b"]);
        assert!(s.insert("c".into()) && !s.insert("a".into()));
        assert!(s.remove(&"a".into()) && !s.remove(&"a".into()));
        s.extend(["a".to_owned(), "c".to_owned()]);
        assert_eq!(s.iter().collect::<Vec<_>>(), ["a", "b", "c"]);
        assert!(s.contains(&"b".into()));
        s.clear();
        assert!(s.as_slice().is_empty());
    }
}
