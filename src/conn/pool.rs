//! Per-shard (thread-local) pool of relay buffers. A relay direction takes a buffer when
//! it has bytes to move and gives it back when its socket runs dry, and a yamux stream
//! does the same with its receive buffer, so idle connections hold no large buffers and
//! busy ones reuse the same few: steady state allocates nothing per chunk.

use std::cell::RefCell;
use std::collections::VecDeque;

/// Buffers smaller than this are not worth caching (they are simply freed).
const MIN_CACHED: usize = 1024;
/// At most this many buffers are cached per thread.
const MAX_CACHED: usize = 256;
/// ...holding at most this many bytes of capacity in all, so a burst of large yamux
/// receive buffers (up to a 6 MiB window each) is not kept after it ends.
const MAX_CACHED_BYTES: usize = 16 << 20;

struct Pool {
    bufs: Vec<Vec<u8>>,
    bytes: usize,
}

thread_local! {
    static POOL: RefCell<Pool> = const { RefCell::new(Pool { bufs: Vec::new(), bytes: 0 }) };
}

/// A buffer with at least `cap` bytes of capacity. Its length and contents are whatever
/// its last user left (initialised bytes), so callers need not zero it again.
pub fn take(cap: usize) -> Vec<u8> {
    let reused = POOL.with(|p| {
        let mut p = p.borrow_mut();
        let i = p.bufs.iter().rposition(|b| b.capacity() >= cap)?;
        let b = p.bufs.swap_remove(i);
        p.bytes -= b.capacity();
        Some(b)
    });
    reused.unwrap_or_else(|| Vec::with_capacity(cap))
}

/// Returns a buffer to this thread's pool (dropped if the pool is full or it is tiny).
pub fn give(buf: Vec<u8>) {
    if buf.capacity() < MIN_CACHED {
        return;
    }
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        if p.bufs.len() < MAX_CACHED && p.bytes + buf.capacity() <= MAX_CACHED_BYTES {
            p.bytes += buf.capacity();
            p.bufs.push(buf);
        }
    });
}

/// An empty queue on a pooled buffer of at least `cap` bytes (a yamux stream's receive
/// buffer). `Vec` <-> `VecDeque` conversions of an empty buffer never copy or allocate.
/// It gets the largest cached buffer: a stream's queue that had to grow during a burst
/// starts the next one at that size instead of growing (reallocating) again.
pub fn take_deque(cap: usize) -> VecDeque<u8> {
    let largest = POOL.with(|p| {
        let mut p = p.borrow_mut();
        let (i, _) = p
            .bufs
            .iter()
            .enumerate()
            .max_by_key(|(_, b)| b.capacity())
            .filter(|(_, b)| b.capacity() >= cap)?;
        let b = p.bufs.swap_remove(i);
        p.bytes -= b.capacity();
        Some(b)
    });
    let mut v = largest.unwrap_or_else(|| Vec::with_capacity(cap));
    v.clear();
    VecDeque::from(v)
}

/// Gives a drained queue's buffer back (see [`give`]).
pub fn give_deque(q: VecDeque<u8>) {
    if q.capacity() > 0 {
        give(Vec::from(q));
    }
}

/// Gives `v` back, leaving an empty (unallocated) vector in its place: an idle
/// connection then holds no relay buffer at all.
pub fn release(v: &mut Vec<u8>) {
    if v.capacity() > 0 {
        give(std::mem::take(v));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_returned_buffers() {
        let b = take(64 * 1024);
        let ptr = b.as_ptr();
        give(b);
        let again = take(32 * 1024);
        assert_eq!(again.as_ptr(), ptr, "a cached buffer should be reused");
    }

    #[test]
    fn small_buffers_are_not_cached() {
        give(Vec::with_capacity(16));
        let b = take(1024 * 1024);
        assert!(b.capacity() >= 1024 * 1024);
    }
}
