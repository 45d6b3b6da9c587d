//! Token auth keys (`frp:pkg/util/util/util.go` `GetAuthKey`) and the clock they use.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use md5::{Digest, Md5};

/// `privilege_key` / `sign_key`: lowercase hex MD5 of `secret` followed by the decimal
/// `timestamp`, no separator. An empty secret still hashes (just the digits).
pub fn auth_key(secret: &str, timestamp: i64) -> String {
    let mut hasher = Md5::new();
    hasher.update(secret.as_bytes());
    hasher.update(timestamp.to_string().as_bytes());
    let mut hex = String::with_capacity(32);
    for byte in hasher.finalize() {
        // Writing to a String cannot fail.
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

/// Compares without an early exit, so the time taken does not reveal how many
/// leading bytes matched (frps compares privilege keys this way).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Source of Unix seconds for auth timestamps; swappable in tests.
pub trait Clock: Send + Sync {
    fn now_unix(&self) -> i64;
}

/// The real wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_unix(&self) -> i64 {
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(elapsed) => i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX),
            Err(before_epoch) => {
                i64::try_from(before_epoch.duration().as_secs()).map_or(i64::MIN, |s| -s)
            }
        }
    }
}

/// Always returns the same instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FixedClock(pub i64);

impl Clock for FixedClock {
    fn now_unix(&self) -> i64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_keys() {
        assert_eq!(
            auth_key("abc", 1_700_000_000),
            "22bd6333f840eeeee03ad14f75fd96ac"
        );
        assert_eq!(
            auth_key("", 1_700_000_000),
            "24920decf83f6960b80f737a28eeafc1"
        );
        assert_eq!(
            auth_key("secret", 1_700_000_000),
            "e37729af62f40f134311cffbc230178e"
        );
    }

    #[test]
    fn constant_time_eq_compares_contents_and_lengths() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn clocks() {
        assert_eq!(FixedClock(42).now_unix(), 42);
        assert!(SystemClock.now_unix() > 1_700_000_000);
    }
}
