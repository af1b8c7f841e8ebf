//! The item table of `dien prepare`: every item's id, category, number of
//! events and whether `item-info` lists it. It is held in memory (it is
//! small next to the log); events refer to items by their index here.

use std::collections::HashMap;

/// The category of items whose category is unknown (index 0 of `cat_voc`).
pub(super) const DEFAULT_CAT: &str = "default_cat";

/// Strings ↔ dense indices in order of first appearance.
#[derive(Debug, Default)]
struct Interner {
    index: HashMap<Box<str>, u32>,
    names: Vec<Box<str>>,
}

impl Interner {
    /// The index of `s`, adding it if new; `true` when it was new.
    fn intern(&mut self, s: &str) -> (u32, bool) {
        if let Some(&i) = self.index.get(s) {
            return (i, false);
        }
        let i = u32::try_from(self.names.len()).expect("fewer than 2^32 distinct ids");
        self.index.insert(s.into(), i);
        self.names.push(s.into());
        (i, true)
    }
}

/// Items, their categories and event counts.
#[derive(Debug)]
pub(super) struct Items {
    items: Interner,
    /// Category index of each item.
    cat: Vec<u32>,
    /// Whether `item-info` lists the item.
    listed: Vec<bool>,
    /// Events of each item (after the behaviour filter).
    pub(super) counts: Vec<u64>,
    /// Category names; index 0 is [`DEFAULT_CAT`].
    cats: Interner,
    /// Categories come from an item file, not from the events.
    catalogue: bool,
}

impl Default for Items {
    fn default() -> Self {
        let mut cats = Interner::default();
        cats.intern(DEFAULT_CAT);
        Self { items: Interner::default(), cat: vec![], listed: vec![], counts: vec![], cats, catalogue: false }
    }
}

impl Items {
    /// Takes categories from an item file from now on: events then carry
    /// none, and items the file does not list get [`DEFAULT_CAT`] and are not
    /// listed in `item-info` (as the reference does).
    pub(super) fn use_catalogue(&mut self) {
        self.catalogue = true;
    }

    /// The category index of `cat` (`None` or empty: [`DEFAULT_CAT`]).
    fn cat_index(&mut self, cat: Option<&str>) -> u32 {
        match cat {
            Some(c) if !c.is_empty() => self.cats.intern(c).0,
            _ => 0,
        }
    }

    /// Adds an item of the item file with its category; an item listed twice
    /// keeps its first category.
    pub(super) fn list(&mut self, item: &str, cat: Option<&str>) {
        let (i, new) = self.items.intern(item);
        if new {
            let c = self.cat_index(cat);
            self.cat.push(c);
            self.listed.push(true);
            self.counts.push(0);
        }
        debug_assert!(self.listed[i as usize]);
    }

    /// Counts one event of `item` (with the event's category, when the format
    /// has one); returns the item index and whether the category differs
    /// from the first one seen for the item (which is kept).
    pub(super) fn event(&mut self, item: &str, cat: Option<&str>) -> (u32, bool) {
        let (i, new) = self.items.intern(item);
        let conflict = if new {
            let c = if self.catalogue { 0 } else { self.cat_index(cat) };
            self.cat.push(c);
            self.listed.push(!self.catalogue);
            self.counts.push(0);
            false
        } else {
            // Compared as text: no interning on the common path.
            let first = self.cat_name(self.cat[i as usize]);
            !self.catalogue && first != cat.filter(|c| !c.is_empty()).unwrap_or(DEFAULT_CAT)
        };
        self.counts[i as usize] += 1;
        (i, conflict)
    }

    /// Number of items.
    pub(super) fn len(&self) -> usize {
        self.items.names.len()
    }

    /// The id of item `i`.
    pub(super) fn name(&self, i: u32) -> &str {
        &self.items.names[i as usize]
    }

    /// The category index of item `i`.
    pub(super) fn cat_of(&self, i: u32) -> u32 {
        self.cat[i as usize]
    }

    /// The name of category index `c`.
    pub(super) fn cat_name(&self, c: u32) -> &str {
        &self.cats.names[c as usize]
    }

    /// The category name of item `i`.
    pub(super) fn item_cat_name(&self, i: u32) -> &str {
        self.cat_name(self.cat_of(i))
    }

    /// Number of category names ([`DEFAULT_CAT`] included).
    pub(super) fn num_cats(&self) -> usize {
        self.cats.names.len()
    }

    /// Whether `item-info` lists item `i` (if `min_count` keeps it).
    pub(super) fn listed(&self, i: u32) -> bool {
        self.listed[i as usize]
    }

    /// Which items `min_count` keeps: those with at least that many events
    /// (every item when `None`).
    pub(super) fn kept(&self, min_count: Option<u64>) -> Vec<bool> {
        self.counts.iter().map(|&c| min_count.is_none_or(|n| c >= n)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_category_wins_and_conflicts_are_reported() {
        let mut items = Items::default();
        assert_eq!(items.event("a", Some("x")), (0, false));
        assert_eq!(items.event("b", None), (1, false));
        assert_eq!(items.event("a", Some("y")), (0, true));
        assert_eq!(items.event("a", Some("x")), (0, false));
        assert_eq!((items.item_cat_name(0), items.item_cat_name(1)), ("x", DEFAULT_CAT));
        assert_eq!(items.counts, [3, 1]);
        assert_eq!(items.kept(Some(2)), [true, false]);
        assert!(items.listed(0) && items.listed(1));
    }

    #[test]
    fn with_a_catalogue_unlisted_items_get_the_default_category() {
        let mut items = Items::default();
        items.use_catalogue();
        items.list("m1", Some("Drama"));
        items.list("m1", Some("Comedy"));
        items.list("m2", None);
        assert_eq!(items.event("m9", None), (2, false));
        assert_eq!(items.event("m1", None), (0, false));
        assert_eq!(items.item_cat_name(0), "Drama");
        assert_eq!(items.item_cat_name(1), DEFAULT_CAT);
        assert_eq!(items.item_cat_name(2), DEFAULT_CAT);
        assert!(items.listed(0) && items.listed(1) && !items.listed(2));
        assert_eq!(items.counts, [1, 0, 1]);
    }
}
