//! A deterministic "first of many" for a changing set of in-flight futures.
//!
//! `FuturesUnordered` completes futures in waker order, which a replay need not reproduce. This
//! polls every future in insertion order each time and takes the first ready one, so the same
//! history always yields the same completion order.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::future::FusedFuture;

/// In-flight futures, each tagged with a key (a page number).
pub struct InFlight<K, F> {
    items: Vec<(K, Pin<Box<F>>)>,
}

impl<K: Copy, F: Future> InFlight<K, F> {
    /// An empty set.
    pub fn new() -> Self {
        Self { items: Vec::new() }
    }

    /// Adds a future.
    pub fn push(&mut self, key: K, future: F) {
        self.items.push((key, Box::pin(future)));
    }

    /// How many are in flight.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Resolves with the first future (in insertion order) that is ready, removing it. Never
    /// resolves while the set is empty.
    pub fn first_ready(&mut self) -> Next<'_, K, F> {
        Next { set: self }
    }
}

impl<K: Copy, F: Future> Default for InFlight<K, F> {
    fn default() -> Self {
        Self::new()
    }
}

/// The future of [`InFlight::first_ready`].
pub struct Next<'a, K, F> {
    set: &'a mut InFlight<K, F>,
}

impl<K: Copy, F: Future> Future for Next<'_, K, F> {
    type Output = (K, F::Output);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let items = &mut self.set.items;
        for i in 0..items.len() {
            if let Poll::Ready(out) = items[i].1.as_mut().poll(cx) {
                let (key, _) = items.remove(i);
                return Poll::Ready((key, out));
            }
        }
        Poll::Pending
    }
}

impl<K: Copy, F: Future> FusedFuture for Next<'_, K, F> {
    fn is_terminated(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use std::future::{pending, ready};

    use futures::FutureExt;
    use futures::future::BoxFuture;

    use super::*;

    #[test]
    fn takes_the_first_ready_in_insertion_order() {
        let mut set: InFlight<u32, BoxFuture<'static, u32>> = InFlight::new();
        set.push(1, pending().boxed());
        set.push(2, ready(20).boxed());
        set.push(3, ready(30).boxed());
        assert_eq!(set.first_ready().now_or_never(), Some((2, 20)));
        assert_eq!(set.first_ready().now_or_never(), Some((3, 30)));
        assert_eq!(set.len(), 1);
        assert_eq!(set.first_ready().now_or_never(), None);
    }
}
