// SPDX-License-Identifier: GPL-2.0

//! Rate limiting of the recovery copies: a token bucket in bytes.

/// Caps a byte rate. Time is given by the caller (nanoseconds, monotonic),
/// so the logic is testable without a clock.
///
/// A copy is admitted whenever the bucket is not in debt, and then takes its
/// whole size (the bucket may go negative): a copy larger than one second's
/// worth of the rate still runs, and the next waits until the debt is paid.
/// Unused allowance accumulates up to a tenth of a second's worth, so a pause
/// is not followed by a burst.
#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    /// Bytes per second; 0 = unlimited.
    rate: u64,
    /// Allowance in bytes (negative: debt).
    tokens: i64,
    /// Time of the last refill.
    last_ns: u64,
}

impl RateLimit {
    /// A limit of `kib_per_s` KiB/s (0 = unlimited), starting at `now_ns`.
    pub fn new(kib_per_s: u64, now_ns: u64) -> Self {
        Self {
            rate: kib_per_s.saturating_mul(1024),
            tokens: 0,
            last_ns: now_ns,
        }
    }

    /// Changes the rate, keeping the current allowance.
    pub fn set_rate(&mut self, kib_per_s: u64) {
        self.rate = kib_per_s.saturating_mul(1024);
    }

    /// The rate in KiB/s (0 = unlimited).
    pub fn rate_kib(&self) -> u64 {
        self.rate / 1024
    }

    fn refill(&mut self, now_ns: u64) {
        // 64-bit arithmetic only (no 128-bit division in the kernel):
        // whole seconds and the microseconds left over separately; rate
        // (< 2^41) times either part stays below 2^62.
        let dt_us = (now_ns.saturating_sub(self.last_ns) / 1000).min(1 << 40);
        self.last_ns = self.last_ns.max(now_ns);
        let rate = self.rate.min(1 << 41);
        let cap = (rate / 10) as i64;
        let secs = (dt_us / 1_000_000).min(1 << 20);
        let add = rate * secs + rate * (dt_us % 1_000_000) / 1_000_000;
        self.tokens = self
            .tokens
            .saturating_add(i64::try_from(add).unwrap_or(i64::MAX))
            .min(cap);
    }

    /// Asks to copy `bytes` at `now_ns`: `Ok` if it may start now (the bytes
    /// are then accounted), else `Err(ns)` to wait before asking again.
    pub fn admit(&mut self, now_ns: u64, bytes: u64) -> Result<(), u64> {
        if self.rate == 0 {
            return Ok(());
        }
        self.refill(now_ns);
        if self.tokens < 0 {
            // Debt is at most one copy (< 2^42 bytes): fits with 10^6.
            let debt = self.tokens.unsigned_abs().min(1 << 42);
            let wait_us = debt * 1_000_000 / self.rate.min(1 << 41);
            return Err((wait_us * 1000).max(1));
        }
        self.tokens = self
            .tokens
            .saturating_sub(i64::try_from(bytes).unwrap_or(i64::MAX));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlimited_admits_everything() {
        let mut r = RateLimit::new(0, 0);
        for _ in 0..1000 {
            assert_eq!(r.admit(0, 1 << 30), Ok(()));
        }
    }

    /// Over a simulated run the bytes admitted track the rate: a copier that
    /// asks again exactly when told to moves `rate * time`, give or take one
    /// copy.
    #[test]
    fn long_run_matches_rate() {
        for (kib, copy) in [
            (1024u64, 65536u64),
            (100, 1 << 20),
            (10, 1 << 20),
            (50_000, 4096),
        ] {
            let mut r = RateLimit::new(kib, 0);
            let mut now = 0u64;
            let mut moved = 0u64;
            let end = 100_000_000_000u64; // 100 s
            while now < end {
                match r.admit(now, copy) {
                    Ok(()) => moved += copy,
                    Err(wait) => now += wait,
                }
            }
            let expect = kib * 1024 * 100;
            // One copy may be admitted on credit at the end.
            let slack = copy + kib * 1024 / 10;
            assert!(
                moved.abs_diff(expect) <= slack,
                "rate {kib} KiB/s, copies of {copy}: moved {moved}, expected {expect}"
            );
        }
    }

    #[test]
    fn idle_time_does_not_build_a_burst() {
        let mut r = RateLimit::new(1000, 0);
        // An hour idle, then as fast as allowed: at most a tenth of a
        // second's worth plus one copy goes at once.
        let now = 3_600_000_000_000u64;
        let mut moved = 0;
        while r.admit(now, 1024).is_ok() {
            moved += 1024;
        }
        assert!(moved <= 1000 * 1024 / 10 + 1024, "burst of {moved}");
    }

    #[test]
    fn clock_going_backwards_is_harmless() {
        let mut r = RateLimit::new(1, 1_000_000_000);
        assert_eq!(r.admit(1_000_000_000, 4096), Ok(()));
        assert!(r.admit(0, 4096).is_err());
        r.set_rate(0);
        assert_eq!(r.admit(0, 4096), Ok(()));
        assert_eq!(r.rate_kib(), 0);
    }
}
