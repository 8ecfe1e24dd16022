//! "Many recipients with identical content": how often a sender has sent
//! the same body recently. A bounded in-memory table of (sender, body
//! digest) → count within a window; an approximation that is reset rather
//! than allowed to grow.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

/// Window over which identical bodies are counted.
const WINDOW_MS: i64 = 10 * 60 * 1000;
/// Entries kept before the table starts over.
const MAX_ENTRIES: usize = 100_000;

#[derive(Default)]
pub struct Repeats {
    seen: HashMap<(String, u64), (i64, u32)>,
}

impl Repeats {
    /// Record one message; return how many earlier messages of this sender
    /// in the window had the same body (everything after `body_start`).
    pub fn seen(&mut self, sender: &str, body_start: usize, data: &[u8], now_ms: i64) -> u32 {
        if sender.is_empty() {
            return 0;
        }
        let mut h = std::collections::hash_map::DefaultHasher::new();
        data.get(body_start..).unwrap_or_default().hash(&mut h);
        if self.seen.len() >= MAX_ENTRIES {
            self.seen.clear();
        }
        let entry = self.seen.entry((sender.to_ascii_lowercase(), h.finish())).or_insert((now_ms, 0));
        if now_ms - entry.0 > WINDOW_MS {
            *entry = (now_ms, 0);
        }
        let before = entry.1;
        entry.1 = entry.1.saturating_add(1);
        before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_identical_bodies_per_sender_within_the_window() {
        let mut r = Repeats::default();
        let m = b"Subject: a\r\n\r\nsame body\r\n";
        let n = b"Subject: b\r\n\r\nsame body\r\n";
        assert_eq!(r.seen("news@x.test", 12, m, 0), 0);
        assert_eq!(r.seen("NEWS@x.test", 12, n, 1000), 1, "headers differ, body is the same");
        assert_eq!(r.seen("other@x.test", 12, m, 1000), 0);
        assert_eq!(r.seen("news@x.test", 12, m, WINDOW_MS + 1001), 0, "window expired");
        assert_eq!(r.seen("", 12, m, 0), 0);
    }
}
