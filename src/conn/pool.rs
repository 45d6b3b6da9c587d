//! Per-shard (thread-local) pool of relay buffers. A relay direction takes a buffer when
//! it has bytes to move and gives it back when its socket runs dry, so idle connections
//! hold no large buffers and busy ones reuse the same few: steady state allocates
//! nothing per chunk.

use std::cell::RefCell;

/// Buffers smaller than this are not worth caching (they are simply freed).
const MIN_CACHED: usize = 1024;
/// At most this many buffers are cached per thread (64 KiB each: 16 MiB).
const MAX_CACHED: usize = 256;

thread_local! {
    static POOL: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// A buffer with at least `cap` bytes of capacity. Its length and contents are whatever
/// its last user left (initialised bytes), so callers need not zero it again.
pub fn take(cap: usize) -> Vec<u8> {
    let reused = POOL.with(|p| {
        let mut p = p.borrow_mut();
        let i = p.iter().rposition(|b| b.capacity() >= cap)?;
        Some(p.swap_remove(i))
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
        if p.len() < MAX_CACHED {
            p.push(buf);
        }
    });
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
