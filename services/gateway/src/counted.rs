//! A count of things in use, each held by a guard that gives its place
//! back when dropped: a member's calls in flight, the streams whose
//! message log entries are still to come.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// One place in a count, given back when dropped.
#[derive(Debug)]
pub struct Counted(Arc<AtomicUsize>);

impl Counted {
    /// One more in `count`.
    pub fn one_more(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Self(count.clone())
    }

    /// One more in `count`, unless `max` are already.
    pub fn one_more_below(count: &Arc<AtomicUsize>, max: usize) -> Option<Self> {
        count.fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| (held < max).then_some(held + 1)).ok()?;
        Some(Self(count.clone()))
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_place_is_counted_while_held_and_none_is_taken_beyond_the_most() {
        let count = Arc::new(AtomicUsize::new(0));
        let first = Counted::one_more_below(&count, 2).expect("below the most");
        let second = Counted::one_more(&count);
        assert_eq!(count.load(Ordering::Acquire), 2);
        assert!(Counted::one_more_below(&count, 2).is_none(), "at the most");
        drop(first);
        let third = Counted::one_more_below(&count, 2).expect("a place given back");
        drop((second, third));
        assert_eq!(count.load(Ordering::Acquire), 0);
    }
}
