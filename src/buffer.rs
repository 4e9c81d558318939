//! The per-worker pool of fixed-size I/O buffers.
//!
//! Every body byte ringway relays passes through a buffer leased from its worker's pool, so a
//! worker's body memory is bounded by `buffers.per_worker * buffers.size_bytes` whatever the
//! number, size or length of transfers. Buffers are allocated on first use, kept for reuse up to
//! `MAX_IDLE_BUFFERS`, and returned to the pool when the lease is dropped, including when an
//! in-flight operation that owns the buffer completes after its future was cancelled. A worker
//! that has leased no buffer for a while frees its idle ones too (`BufferPool::free_if_unused`).
//!
//! When the pool is exhausted, tasks wait in FIFO order instead of allocating more. The
//! connection loop waits only while it holds no buffer (see `BufferPool::acquire`), so waiting
//! cannot deadlock.
//! Extra buffers that speed a transfer up (overlapping a read with a write) are only taken with
//! `try_acquire`, which never waits.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// Free buffers a pool keeps allocated for reuse; buffers released beyond this are freed, so a
/// worker's resident memory returns close to its idle level after a burst. Eight 64 KiB buffers
/// (512 KiB) serve a few concurrent transfers without touching the allocator.
pub const MAX_IDLE_BUFFERS: usize = 8;

/// A per-worker pool of `size`-byte buffers, at most `max` leased at once.
#[derive(Clone)]
pub struct BufferPool {
    shared: Rc<RefCell<PoolState>>,
}

struct PoolState {
    size: usize,
    max: usize,
    leased: usize,
    free: Vec<Vec<u8>>,
    waiters: VecDeque<(u64, Waker)>,
    next_ticket: u64,
    waits: u64,
    /// A buffer was leased since the last `free_if_unused` call.
    leased_recently: bool,
}

/// Counters describing a pool, for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    pub leased: usize,
    pub allocated: usize,
    pub waiting: usize,
    pub waits: u64,
}

impl BufferPool {
    pub fn new(size: usize, max: usize) -> BufferPool {
        assert!(
            size > 0 && max > 0,
            "a buffer pool needs a size and a capacity"
        );
        BufferPool {
            shared: Rc::new(RefCell::new(PoolState {
                size,
                max,
                leased: 0,
                free: Vec::new(),
                waiters: VecDeque::new(),
                next_ticket: 0,
                waits: 0,
                leased_recently: false,
            })),
        }
    }

    /// Returns the capacity of every buffer of this pool.
    pub fn buffer_size(&self) -> usize {
        self.shared.borrow().size
    }

    /// Returns how many buffers could be leased now without waiting (none while others wait).
    pub fn free(&self) -> usize {
        let state = self.shared.borrow();
        if state.waiters.is_empty() {
            state.max - state.leased
        } else {
            0
        }
    }

    pub fn stats(&self) -> PoolStats {
        let state = self.shared.borrow();
        PoolStats {
            leased: state.leased,
            allocated: state.leased + state.free.len(),
            waiting: state.waiters.len(),
            waits: state.waits,
        }
    }

    /// Leases `N` buffers at once, waiting in FIFO order while fewer are free. Taking them together
    /// is what keeps the pool deadlock-free: the caller must hold no other lease while it waits.
    pub fn acquire<const N: usize>(&self) -> Acquire<N> {
        Acquire {
            pool: self.clone(),
            ticket: None,
        }
    }

    /// Leases one buffer if one is free and no task is waiting for one. It never waits.
    pub fn try_acquire(&self) -> Option<PoolBuf> {
        let mut state = self.shared.borrow_mut();
        if !state.waiters.is_empty() || state.leased >= state.max {
            return None;
        }
        Some(self.lease(&mut state))
    }

    /// Frees every idle buffer if no buffer was leased since the previous call, and returns how
    /// many it freed. The allocator can return a page to the kernel only once every buffer in it
    /// is free, so even a few idle buffers can keep a burst's pages resident. Called
    /// periodically, this lets a quiet worker give that memory back.
    pub fn free_if_unused(&self) -> usize {
        let mut state = self.shared.borrow_mut();
        if std::mem::take(&mut state.leased_recently) {
            return 0;
        }
        let freed = state.free.len();
        state.free = Vec::new();
        freed
    }

    fn lease(&self, state: &mut PoolState) -> PoolBuf {
        state.leased += 1;
        state.leased_recently = true;
        let vec = state
            .free
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(state.size));
        PoolBuf {
            vec,
            pool: Some(self.clone()),
        }
    }

    fn release(&self, mut vec: Vec<u8>) {
        let mut state = self.shared.borrow_mut();
        state.leased -= 1;
        if state.free.len() < MAX_IDLE_BUFFERS && vec.capacity() == state.size {
            vec.clear();
            state.free.push(vec);
        }
        if let Some((_, waker)) = state.waiters.front() {
            waker.wake_by_ref();
        }
    }
}

/// The future returned by `BufferPool::acquire`.
pub struct Acquire<const N: usize> {
    pool: BufferPool,
    ticket: Option<u64>,
}

impl<const N: usize> Future for Acquire<N> {
    type Output = [PoolBuf; N];

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<[PoolBuf; N]> {
        let pool = self.pool.clone();
        let mut state = pool.shared.borrow_mut();
        let at_front = match self.ticket {
            None => state.waiters.is_empty(),
            Some(ticket) => state.waiters.front().is_some_and(|(t, _)| *t == ticket),
        };
        if at_front && state.max - state.leased >= N {
            if self.ticket.take().is_some() {
                state.waiters.pop_front();
                // The next waiter may be satisfiable too; let it check.
                if let Some((_, waker)) = state.waiters.front() {
                    waker.wake_by_ref();
                }
            }
            return Poll::Ready(std::array::from_fn(|_| pool.lease(&mut state)));
        }
        match self.ticket {
            None => {
                let ticket = state.next_ticket;
                state.next_ticket += 1;
                state.waits += 1;
                state.waiters.push_back((ticket, cx.waker().clone()));
                self.ticket = Some(ticket);
            }
            Some(ticket) => {
                if let Some(entry) = state.waiters.iter_mut().find(|(t, _)| *t == ticket) {
                    entry.1.clone_from(cx.waker());
                }
            }
        }
        Poll::Pending
    }
}

impl<const N: usize> Drop for Acquire<N> {
    fn drop(&mut self) {
        let Some(ticket) = self.ticket else { return };
        let mut state = self.pool.shared.borrow_mut();
        let was_front = state.waiters.front().is_some_and(|(t, _)| *t == ticket);
        state.waiters.retain(|(t, _)| *t != ticket);
        if was_front {
            if let Some((_, waker)) = state.waiters.front() {
                waker.wake_by_ref();
            }
        }
    }
}

/// A buffer leased from a `BufferPool`; it goes back to the pool when dropped.
///
/// Its capacity is fixed at the pool's buffer size: code that writes into it must stay within
/// `capacity()`, which I/O through `monoio` slices does by construction.
pub struct PoolBuf {
    pub(crate) vec: Vec<u8>,
    pool: Option<BufferPool>,
}

impl PoolBuf {
    /// Returns an empty buffer that belongs to no pool. It takes the real buffer's place while an
    /// operation owns that one, and its capacity of zero allocates nothing.
    pub fn detached() -> PoolBuf {
        PoolBuf {
            vec: Vec::new(),
            pool: None,
        }
    }

    /// Makes `len()` at least `min_len`, zero-filling new bytes, so a read may start at `min_len`
    /// without leaving uninitialised bytes below it.
    pub fn ensure_len(&mut self, min_len: usize) {
        if self.vec.len() < min_len {
            self.vec.resize(min_len, 0);
        }
    }
}

impl Deref for PoolBuf {
    type Target = Vec<u8>;

    fn deref(&self) -> &Vec<u8> {
        &self.vec
    }
}

impl DerefMut for PoolBuf {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.vec
    }
}

impl Drop for PoolBuf {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            pool.release(std::mem::take(&mut self.vec));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
        let mut cx = Context::from_waker(Waker::noop());
        Pin::new(future).poll(&mut cx)
    }

    #[test]
    fn lease_and_release_reuse_buffers() {
        let pool = BufferPool::new(1024, 4);
        let first = pool.try_acquire().expect("a free buffer");
        assert_eq!(first.capacity(), 1024);
        assert_eq!(pool.stats().leased, 1);
        drop(first);
        assert_eq!(pool.stats().leased, 0);
        assert_eq!(pool.stats().allocated, 1);
        let _again = pool.try_acquire().expect("a free buffer");
        assert_eq!(pool.stats().allocated, 1);
    }

    #[test]
    fn exhausted_pool_makes_acquire_wait() {
        let pool = BufferPool::new(64, 2);
        let held = pool.try_acquire().expect("a free buffer");
        let mut pair = pool.acquire::<2>();
        assert!(poll_once(&mut pair).is_pending());
        assert!(
            pool.try_acquire().is_none(),
            "try_acquire must not jump the queue"
        );
        drop(held);
        let Poll::Ready(buffers) = poll_once(&mut pair) else {
            panic!("pair not granted")
        };
        assert_eq!(buffers.len(), 2);
        assert_eq!(pool.stats().leased, 2);
    }

    #[test]
    fn waiters_are_served_in_order() {
        let pool = BufferPool::new(64, 1);
        let held = pool.try_acquire().expect("a free buffer");
        let mut first = pool.acquire::<1>();
        let mut second = pool.acquire::<1>();
        assert!(poll_once(&mut first).is_pending());
        assert!(poll_once(&mut second).is_pending());
        drop(held);
        assert!(
            poll_once(&mut second).is_pending(),
            "second waiter overtook the first"
        );
        assert!(poll_once(&mut first).is_ready());
    }

    #[test]
    fn dropped_waiter_leaves_queue() {
        let pool = BufferPool::new(64, 1);
        let held = pool.try_acquire().expect("a free buffer");
        let mut first = pool.acquire::<1>();
        let mut second = pool.acquire::<1>();
        assert!(poll_once(&mut first).is_pending());
        assert!(poll_once(&mut second).is_pending());
        drop(first);
        drop(held);
        assert!(poll_once(&mut second).is_ready());
        assert_eq!(pool.stats().waiting, 0);
    }

    #[test]
    fn unused_pool_frees_idle_buffers() {
        let pool = BufferPool::new(64, 8);
        let buffers: Vec<PoolBuf> = (0..3).map(|_| pool.try_acquire().expect("free")).collect();
        drop(buffers);
        assert_eq!(pool.stats().allocated, 3);
        assert_eq!(pool.free_if_unused(), 0, "buffers were leased since the last call");
        assert_eq!(pool.stats().allocated, 3);
        assert_eq!(pool.free_if_unused(), 3, "nothing was leased since the last call");
        assert_eq!(pool.stats().allocated, 0);
    }

    #[test]
    fn free_if_unused_keeps_leased_buffers() {
        let pool = BufferPool::new(64, 8);
        let leased = pool.try_acquire().expect("free");
        drop(pool.try_acquire().expect("free"));
        pool.free_if_unused();
        assert_eq!(pool.free_if_unused(), 1);
        assert_eq!(pool.stats().leased, 1);
        assert_eq!(pool.stats().allocated, 1);
        drop(leased);
        assert_eq!(pool.stats().allocated, 1, "a released buffer is kept for reuse");
        let again = pool.try_acquire().expect("free");
        assert_eq!(again.capacity(), 64);
    }

    #[test]
    fn idle_buffers_beyond_limit_are_freed() {
        let pool = BufferPool::new(64, 64);
        let buffers: Vec<PoolBuf> = (0..20).map(|_| pool.try_acquire().expect("free")).collect();
        drop(buffers);
        assert_eq!(pool.stats().allocated, MAX_IDLE_BUFFERS);
    }
}
