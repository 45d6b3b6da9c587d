//! Per proxy / per visitor caps on concurrent connections, shared by all shards.
//!
//! One atomic per proxy or visitor, touched twice per connection (never per chunk), so
//! the cap is exact across cores. Refusals are logged at most once per [`LOG_EVERY`]
//! with a count, so a flood of refused connections cannot flood the log.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const LOG_EVERY: Duration = Duration::from_secs(10);

pub struct ConnLimit {
    max: Option<u32>,
    open: AtomicU32,
    last_log_ms: AtomicU64,
    refused_unlogged: AtomicU64,
}

/// An admitted connection; dropping it frees its place.
pub struct Slot<'a>(&'a ConnLimit);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

impl ConnLimit {
    /// `None` or `Some(0)`: no cap.
    pub fn new(max: Option<u32>) -> ConnLimit {
        ConnLimit {
            max: max.filter(|&m| m > 0),
            open: AtomicU32::new(0),
            last_log_ms: AtomicU64::new(0),
            refused_unlogged: AtomicU64::new(0),
        }
    }

    pub fn max(&self) -> Option<u32> {
        self.max
    }

    /// Admits one more connection, or returns the cap it would exceed.
    pub fn try_acquire(&self) -> Result<Slot<'_>, u32> {
        let prev = self.open.fetch_add(1, Ordering::AcqRel);
        match self.max {
            Some(max) if prev >= max => {
                self.open.fetch_sub(1, Ordering::AcqRel);
                Err(max)
            }
            _ => Ok(Slot(self)),
        }
    }

    /// Counts a refusal; `Some(n)` when it should be logged now, `n` being the refusals
    /// since the last logged one (this one included).
    pub fn note_refusal(&self) -> Option<u64> {
        self.refused_unlogged.fetch_add(1, Ordering::AcqRel);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let last = self.last_log_ms.load(Ordering::Acquire);
        if last != 0 && now.saturating_sub(last) < LOG_EVERY.as_millis() as u64 {
            return None;
        }
        if self
            .last_log_ms
            .compare_exchange(last, now.max(1), Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return None; // Another shard logs this burst.
        }
        Some(self.refused_unlogged.swap(0, Ordering::AcqRel).max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_and_frees() {
        let l = ConnLimit::new(Some(2));
        let a = l.try_acquire().unwrap();
        let _b = l.try_acquire().unwrap();
        assert_eq!(l.try_acquire().err(), Some(2));
        drop(a);
        assert!(l.try_acquire().is_ok());
        let none = ConnLimit::new(Some(0));
        let held: Vec<_> = (0..100).map(|_| none.try_acquire().unwrap()).collect();
        assert_eq!(held.len(), 100);
    }

    #[test]
    fn refusals_are_logged_once_per_burst_with_a_count() {
        let l = ConnLimit::new(Some(1));
        assert_eq!(l.note_refusal(), Some(1));
        for _ in 0..50 {
            assert_eq!(l.note_refusal(), None);
        }
        // The next line (after LOG_EVERY) reports the 50 silent ones and itself.
        l.last_log_ms.store(1, Ordering::Release);
        assert_eq!(l.note_refusal(), Some(51));
    }
}
