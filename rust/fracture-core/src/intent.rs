// SPDX-License-Identifier: GPL-2.0

//! The write-intent log, in memory: which regions may be written without
//! waiting for the metadata device, and which may have their intent bit
//! cleared. Lock-free on the write path.
//!
//! A region's bit in the on-disk intent bitmap means "writes to this region
//! may be in flight, or done but not yet flushed on every leg": after a
//! crash exactly those regions are copied from the primary to the
//! secondaries. A region goes through
//!
//! ```text
//!            write                    commit
//!   clean ----------> marking --------------------> marked (durable)
//!     ^               (write waits for              |  writes go straight
//!     |                the metadata commit)         |  to the legs
//!     |                                             | idle for a whole
//!     |   commit         every leg flushed          v scan period
//!   cleared <-------- (Settled::try_clear) <----- settling
//!                       no write since the scan
//! ```
//!
//! The caller (the kernel's metadata code) owns the bitmap image that goes
//! to disk and changes it under its lock; this tracker owns four lock-free
//! sets the write path uses without that lock:
//!
//! - `durable`: the region's bit is set on disk (a write may go ahead);
//! - `touched`: a write started since the last scan (the region is hot);
//! - `settling`: candidate of the current scan;
//! - `inflight`: writes in flight, per bucket of regions (hashed, so a busy
//!   bucket may hold back an idle region; never the other way round).
//!
//! The rule "an intent bit is cleared only once every write to its region
//! completed and every leg was flushed after that" is carried by the
//! types: [`Settled::try_clear`] exists only on the value
//! [`IntentTracker::flush`] returns, which calls the caller's flush after
//! the scan that chose the candidates, and `try_clear` refuses a region
//! written since that scan.
//!
//! Ordering: a write counts itself in flight and marks the region touched,
//! then reads `durable` (all `SeqCst`); `try_clear` takes `durable` away,
//! then reads the in-flight count and `touched` (`SeqCst`). Either the
//! write sees `durable` gone (and takes the locked path, which sets the
//! bit again and waits for it), or `try_clear` sees the write and keeps the
//! bit.

use core::ops::{Deref, Range};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering::SeqCst};

/// Number of in-flight counters (a power of two).
pub const WRITE_BUCKETS: usize = 1024;

/// Words of a bitmap of `nr_regions` bits.
pub const fn words_for(nr_regions: u64) -> usize {
    nr_regions.div_ceil(64) as usize
}

/// Why a tracker could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeError;

/// See the module documentation. `W` holds a bitmap of atomic words, `B`
/// the in-flight buckets.
pub struct IntentTracker<W, B> {
    durable: W,
    touched: W,
    settling: W,
    inflight: B,
    nr_regions: u64,
}

/// The candidates of one scan, before the legs were flushed.
#[must_use = "a scan clears nothing until the legs are flushed"]
pub struct Scan {
    quiesced: bool,
    candidates: u64,
}

impl Scan {
    /// Regions chosen so far.
    pub fn candidates(&self) -> u64 {
        self.candidates
    }
}

/// The candidates of a scan after every leg was flushed: the only way to
/// clear an intent bit.
pub struct Settled<'a, W, B> {
    tracker: &'a IntentTracker<W, B>,
}

/// Sets bits `range` of `bits`, a word at a time.
fn set_range(bits: &[AtomicU64], range: Range<u64>) {
    for_words(range, |w, mask| {
        if let Some(word) = bits.get(w) {
            word.fetch_or(mask, SeqCst);
        }
    });
}

/// Whether every bit of `range` is set.
fn all_set(bits: &[AtomicU64], range: Range<u64>) -> bool {
    let mut all = true;
    for_words(range, |w, mask| {
        all &= bits
            .get(w)
            .is_some_and(|word| word.load(SeqCst) & mask == mask);
    });
    all
}

/// Calls `f(word, mask)` for the words `range` covers.
fn for_words(range: Range<u64>, mut f: impl FnMut(usize, u64)) {
    let mut r = range.start;
    while r < range.end {
        let w = r / 64;
        let lo = r % 64;
        let hi = (range.end - w * 64).min(64);
        let mask = if hi - lo == 64 {
            u64::MAX
        } else {
            ((1u64 << (hi - lo)) - 1) << lo
        };
        f(w as usize, mask);
        r = (w + 1) * 64;
    }
}

fn bit(r: u64) -> (usize, u64) {
    ((r / 64) as usize, 1u64 << (r % 64))
}

impl<W, B> IntentTracker<W, B>
where
    W: Deref<Target = [AtomicU64]>,
    B: Deref<Target = [AtomicU32]>,
{
    /// A tracker for `nr_regions` regions, every set empty. The bitmaps must
    /// have [`words_for`]`(nr_regions)` words, all zero, and `inflight`
    /// [`WRITE_BUCKETS`] zero counters.
    pub fn new(
        durable: W,
        touched: W,
        settling: W,
        inflight: B,
        nr_regions: u64,
    ) -> Result<Self, SizeError> {
        let words = words_for(nr_regions);
        if durable.len() != words
            || touched.len() != words
            || settling.len() != words
            || inflight.len() != WRITE_BUCKETS
        {
            return Err(SizeError);
        }
        Ok(Self {
            durable,
            touched,
            settling,
            inflight,
            nr_regions,
        })
    }

    fn bucket(&self, r: u64) -> &AtomicU32 {
        // In bounds: WRITE_BUCKETS is a power of two and the length (`new`).
        &self.inflight[(r as usize) & (WRITE_BUCKETS - 1)]
    }

    fn for_buckets(&self, regions: Range<u64>, f: impl Fn(&AtomicU32)) {
        if regions.end - regions.start >= WRITE_BUCKETS as u64 {
            self.inflight.iter().for_each(f);
        } else {
            for r in regions {
                f(self.bucket(r));
            }
        }
    }

    /// A write of `regions` is about to be sent to the legs: counts it in
    /// flight (until [`IntentTracker::end_write`]) and marks the regions
    /// touched. Returns whether every region's bit is durable, i.e. the
    /// write may go ahead without a metadata commit. If not, the caller
    /// sets the bits in its image under its lock, commits, and calls
    /// [`IntentTracker::mark_durable`] before sending the write.
    pub fn start_write(&self, regions: Range<u64>) -> bool {
        let regions = regions.start.min(self.nr_regions)..regions.end.min(self.nr_regions);
        self.for_buckets(regions.clone(), |b| {
            b.fetch_add(1, SeqCst);
        });
        set_range(&self.touched, regions.clone());
        all_set(&self.durable, regions)
    }

    /// Ends what [`IntentTracker::start_write`] started, once the write
    /// completed on every leg it was sent to.
    pub fn end_write(&self, regions: Range<u64>) {
        let regions = regions.start.min(self.nr_regions)..regions.end.min(self.nr_regions);
        self.for_buckets(regions, |b| {
            b.fetch_sub(1, SeqCst);
        });
    }

    /// Whether a write to region `r` (or to one sharing its bucket) is in
    /// flight.
    pub fn busy(&self, r: u64) -> bool {
        self.bucket(r).load(SeqCst) != 0
    }

    /// Every region a write counted by [`IntentTracker::start_write`] and
    /// not yet ended may be in flight to: a superset, since the count is
    /// kept per bucket (every region of a busy bucket is named). A write
    /// counts itself before it looks at anything else, so one that a
    /// caller's later `SeqCst` read can still miss is either ended or
    /// started after that read (see the kernel's split of a leg, which
    /// relies on this). Walks every region of each busy bucket.
    pub fn in_flight(&self) -> impl Iterator<Item = u64> + '_ {
        let nr = self.nr_regions;
        (0..(WRITE_BUCKETS as u64).min(nr))
            .filter(move |&b| self.busy(b))
            .flat_map(move |b| (b..nr).step_by(WRITE_BUCKETS))
    }

    /// The bits of `regions` are on disk (a commit that included them
    /// completed): writes to them need not wait any more. Only for regions
    /// with a write counted in flight, which keeps them from being cleared.
    pub fn mark_durable(&self, regions: Range<u64>) {
        let regions = regions.start.min(self.nr_regions)..regions.end.min(self.nr_regions);
        set_range(&self.durable, regions);
    }

    /// Whether region `r`'s bit is known durable.
    pub fn is_durable(&self, r: u64) -> bool {
        let (w, m) = bit(r);
        self.durable.get(w).is_some_and(|x| x.load(SeqCst) & m != 0)
    }

    /// Forgets every region (the on-disk bitmap was emptied or replaced
    /// while no write was in flight).
    pub fn reset(&self) {
        for set in [&self.durable, &self.touched, &self.settling] {
            set.iter().for_each(|w| w.store(0, SeqCst));
        }
    }

    /// Starts choosing the regions whose bits may be cleared. With
    /// `quiesced` (the device is suspended: no write can start), recently
    /// written regions are chosen too.
    pub fn scan(&self, quiesced: bool) -> Scan {
        self.settling.iter().for_each(|w| w.store(0, SeqCst));
        Scan {
            quiesced,
            candidates: 0,
        }
    }

    /// Looks at region `r`, whose bit is set in the caller's image: it is a
    /// candidate if no write to it started since the last scan (or the
    /// device is quiesced) and none is in flight. Returns whether it is.
    pub fn consider(&self, scan: &mut Scan, r: u64) -> bool {
        let (w, m) = bit(r);
        let (Some(touched), Some(settling)) = (self.touched.get(w), self.settling.get(w)) else {
            return false;
        };
        let hot = touched.fetch_and(!m, SeqCst) & m != 0;
        if (hot && !scan.quiesced) || self.busy(r) {
            return false;
        }
        settling.fetch_or(m, SeqCst);
        scan.candidates += 1;
        true
    }

    /// Calls `flush`, which must flush every leg that receives writes, and
    /// then allows the scan's candidates to be cleared. An error from
    /// `flush` is returned and nothing can be cleared.
    pub fn flush<E>(
        &self,
        scan: Scan,
        flush: impl FnOnce() -> Result<(), E>,
    ) -> Result<Settled<'_, W, B>, E> {
        let _ = scan;
        flush()?;
        Ok(Settled { tracker: self })
    }
}

impl<W, B> Settled<'_, W, B>
where
    W: Deref<Target = [AtomicU64]>,
    B: Deref<Target = [AtomicU32]>,
{
    /// Whether region `r`'s bit may be cleared now: it was a candidate of
    /// the scan and no write to it started since. If so its writes take
    /// the locked path from now on (the caller clears its image bit under
    /// the same lock the locked path sets it under, then commits).
    pub fn try_clear(&self, r: u64) -> bool {
        let t = self.tracker;
        let (w, m) = bit(r);
        let (Some(durable), Some(touched), Some(settling)) =
            (t.durable.get(w), t.touched.get(w), t.settling.get(w))
        else {
            return false;
        };
        if settling.fetch_and(!m, SeqCst) & m == 0 {
            return false;
        }
        let was = durable.fetch_and(!m, SeqCst) & m;
        if t.busy(r) || touched.load(SeqCst) & m != 0 {
            durable.fetch_or(was, SeqCst);
            return false;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Mutex;
    use std::vec::Vec;

    type T = IntentTracker<Vec<AtomicU64>, Vec<AtomicU32>>;

    fn tracker(n: u64) -> T {
        let bits = || (0..words_for(n)).map(|_| AtomicU64::new(0)).collect();
        let buckets = (0..WRITE_BUCKETS).map(|_| AtomicU32::new(0)).collect();
        IntentTracker::new(bits(), bits(), bits(), buckets, n).unwrap()
    }

    fn ok() -> Result<(), ()> {
        Ok(())
    }

    #[test]
    fn sizes_are_checked() {
        let bits = |n: usize| (0..n).map(|_| AtomicU64::new(0)).collect::<Vec<_>>();
        let buckets = || {
            (0..WRITE_BUCKETS)
                .map(|_| AtomicU32::new(0))
                .collect::<Vec<_>>()
        };
        assert!(IntentTracker::new(bits(2), bits(2), bits(2), buckets(), 129).is_err());
        assert!(IntentTracker::new(bits(3), bits(3), bits(3), buckets(), 129).is_ok());
        let few = (0..4).map(|_| AtomicU32::new(0)).collect::<Vec<_>>();
        assert!(IntentTracker::new(bits(3), bits(3), bits(3), few, 129).is_err());
    }

    #[test]
    fn word_masks() {
        let t = tracker(200);
        t.mark_durable(3..131);
        for r in 0..200 {
            assert_eq!(t.is_durable(r), (3..131).contains(&r), "region {r}");
        }
        assert!(all_set(&t.durable, 3..131));
        assert!(!all_set(&t.durable, 2..131));
        assert!(!all_set(&t.durable, 3..132));
        t.mark_durable(0..200);
        assert!(all_set(&t.durable, 0..200));
        // Past the end: clipped, never a panic.
        t.mark_durable(190..100_000);
        assert!(t.start_write(199..100_000));
        t.end_write(199..100_000);
    }

    #[test]
    fn a_write_waits_only_for_unmarked_regions() {
        let t = tracker(100);
        assert!(!t.start_write(5..7));
        t.mark_durable(5..7);
        t.end_write(5..7);
        assert!(t.start_write(5..7));
        t.end_write(5..7);
        assert!(!t.start_write(6..8));
        t.end_write(6..8);
    }

    /// Marks regions durable the way the caller does, with a write that
    /// completed.
    fn written(t: &T, r: Range<u64>) {
        if !t.start_write(r.clone()) {
            t.mark_durable(r.clone());
        }
        t.end_write(r);
    }

    /// One scan looking at region `r` only (clears its `touched`).
    fn pass(t: &T, r: u64) -> bool {
        let mut s = t.scan(false);
        t.consider(&mut s, r)
    }

    #[test]
    fn hot_regions_stay_for_a_period() {
        let t = tracker(100);
        written(&t, 10..11);
        let mut s = t.scan(false);
        assert!(!t.consider(&mut s, 10), "written since the last scan");
        assert_eq!(s.candidates(), 0);
        let mut s = t.scan(false);
        assert!(t.consider(&mut s, 10), "idle for a whole period");
        let settled = t.flush(s, ok).unwrap();
        assert!(settled.try_clear(10));
        assert!(!t.is_durable(10));
        assert!(!settled.try_clear(10), "cleared once");
        // The next write must wait for the bit again.
        assert!(!t.start_write(10..11));
        t.end_write(10..11);
    }

    #[test]
    fn in_flight_regions_are_never_candidates() {
        let t = tracker(2000);
        written(&t, 7..8);
        assert!(!pass(&t, 7));
        assert!(t.start_write(7..8));
        let mut s = t.scan(false);
        // Touched by the write above, and still in flight.
        assert!(!t.consider(&mut s, 7));
        let mut s = t.scan(false);
        assert!(!t.consider(&mut s, 7), "in flight");
        // A region sharing the bucket is held back too (conservative).
        written(&t, 7 + WRITE_BUCKETS as u64..8 + WRITE_BUCKETS as u64);
        assert!(!pass(&t, 7 + WRITE_BUCKETS as u64));
        let mut s = t.scan(false);
        assert!(!t.consider(&mut s, 7 + WRITE_BUCKETS as u64));
        t.end_write(7..8);
        let mut s = t.scan(false);
        assert!(t.consider(&mut s, 7));
    }

    #[test]
    fn a_write_after_the_scan_keeps_the_bit() {
        let t = tracker(100);
        written(&t, 3..4);
        assert!(!pass(&t, 3));
        let mut s = t.scan(false);
        assert!(t.consider(&mut s, 3));
        // Starts between the scan and the clear, sees the bit durable.
        assert!(t.start_write(3..4));
        let settled = t.flush(s, ok).unwrap();
        assert!(!settled.try_clear(3));
        assert!(t.is_durable(3), "restored");
        t.end_write(3..4);
        // It even completed before the clear: still kept (not flushed).
        assert!(!pass(&t, 3));
        let mut s = t.scan(false);
        assert!(t.consider(&mut s, 3));
        written(&t, 3..4);
        let settled = t.flush(s, ok).unwrap();
        assert!(!settled.try_clear(3));
    }

    #[test]
    fn a_failed_flush_clears_nothing() {
        let t = tracker(100);
        written(&t, 1..2);
        assert!(!pass(&t, 1));
        let mut s = t.scan(false);
        assert!(t.consider(&mut s, 1));
        assert!(t.flush(s, || Err("flush failed")).is_err());
        assert!(t.is_durable(1));
        // Candidates of an abandoned scan are forgotten by the next one.
        let s = t.scan(false);
        let settled = t.flush(s, ok).unwrap();
        assert!(!settled.try_clear(1));
    }

    #[test]
    fn quiesced_scans_take_recent_regions() {
        let t = tracker(100);
        written(&t, 4..6);
        let mut s = t.scan(true);
        assert!(t.consider(&mut s, 4) && t.consider(&mut s, 5));
        let settled = t.flush(s, ok).unwrap();
        assert!(settled.try_clear(4) && settled.try_clear(5));
    }

    #[test]
    fn the_flush_runs_after_the_scan_and_once() {
        let t = tracker(100);
        written(&t, 0..1);
        let mut s = t.scan(true);
        let flushed = AtomicBool::new(false);
        assert!(t.consider(&mut s, 0));
        let settled = t
            .flush(s, || {
                assert!(!flushed.swap(true, SeqCst));
                ok()
            })
            .unwrap();
        assert!(flushed.load(SeqCst));
        assert!(settled.try_clear(0));
    }

    #[test]
    fn in_flight_names_every_busy_region() {
        let n = 3 * WRITE_BUCKETS as u64 + 10;
        let t = tracker(n);
        assert_eq!(t.in_flight().count(), 0);
        t.start_write(5..7);
        t.start_write(WRITE_BUCKETS as u64 + 900..WRITE_BUCKETS as u64 + 901);
        let mut got: Vec<u64> = t.in_flight().collect();
        got.sort_unstable();
        let mut want = Vec::new();
        for b in [5u64, 6, 900] {
            want.extend((b..n).step_by(WRITE_BUCKETS));
        }
        want.sort_unstable();
        assert_eq!(got, want, "the regions of the busy buckets, and only them");
        t.end_write(5..7);
        assert!(t.in_flight().all(|r| r % WRITE_BUCKETS as u64 == 900));
        // A write over more regions than buckets counts in every bucket.
        t.start_write(0..n);
        assert_eq!(t.in_flight().count() as u64, n);
        t.end_write(0..n);
        t.end_write(WRITE_BUCKETS as u64 + 900..WRITE_BUCKETS as u64 + 901);
        assert_eq!(t.in_flight().count(), 0);
        // Fewer regions than buckets: nothing past the end.
        let small = tracker(10);
        small.start_write(9..20);
        assert_eq!(small.in_flight().collect::<Vec<_>>(), [9]);
    }

    /// The kernel's split of a leg: writers count themselves in flight,
    /// then read whether the leg is split (the write goes to it only if
    /// not); the splitter sets the flag, then takes [`IntentTracker::in_flight`],
    /// then flushes the leg. Every write the leg got must either have
    /// completed before the flush began (the flush makes it durable) or
    /// have its region in the set taken (logged for the leg).
    #[test]
    fn a_split_misses_no_write_in_flight() {
        const N: u64 = 3000;
        for round in 0..8u64 {
            let t = tracker(N);
            let split = AtomicBool::new(false);
            let clock = AtomicU64::new(1);
            let flushed_at = AtomicU64::new(u64::MAX);
            let marked = Mutex::new(Vec::new());
            // (region, completion time) of the writes the leg got.
            let got = Mutex::new(Vec::new());
            std::thread::scope(|s| {
                for w in 0..3u64 {
                    let (t, split, clock, got) = (&t, &split, &clock, &got);
                    s.spawn(move || {
                        let mut x = 0x2545_f491_4f6c_dd1du64 ^ (w << 32) ^ round;
                        for _ in 0..3000 {
                            x ^= x << 13;
                            x ^= x >> 7;
                            x ^= x << 17;
                            let r = x % N;
                            t.start_write(r..r + 1);
                            let to_leg = !split.load(SeqCst);
                            // On its way to the legs for a while.
                            for _ in 0..(x >> 50) % 200 {
                                std::hint::spin_loop();
                            }
                            let done = clock.fetch_add(1, SeqCst);
                            if to_leg {
                                got.lock().unwrap().push((r, done));
                            }
                            t.end_write(r..r + 1);
                        }
                    });
                }
                let (t, split, clock, flushed_at, marked) =
                    (&t, &split, &clock, &flushed_at, &marked);
                s.spawn(move || {
                    while clock.load(SeqCst) < 1000 * (1 + round % 5) {
                        std::hint::spin_loop();
                    }
                    split.store(true, SeqCst);
                    *marked.lock().unwrap() = t.in_flight().collect::<Vec<_>>();
                    flushed_at.store(clock.load(SeqCst), SeqCst);
                });
            });
            let marked = marked.into_inner().unwrap();
            let flushed_at = flushed_at.load(SeqCst);
            for (r, done) in got.into_inner().unwrap() {
                assert!(
                    done < flushed_at || marked.contains(&r),
                    "round {round}: region {r} written to the leg at {done}, after the flush at {flushed_at}, and not marked"
                );
            }
        }
    }

    /// Writers and a clearer race; the model checks the rule the log
    /// exists for: whenever a write is sent to a leg its region's bit is on
    /// "disk", and a bit is cleared on "disk" only when every write to the
    /// region completed before a flush that started after them.
    #[test]
    fn concurrent_writers_and_clearer_keep_the_rule() {
        const N: u64 = 96;
        let t = tracker(N);
        // The caller's image, which the model commits at once.
        let disk: Vec<AtomicBool> = (0..N).map(|_| AtomicBool::new(false)).collect();
        let lock = Mutex::new(());
        // Per region: writes sent and not completed; the clock value of
        // the last completion.
        let sent: Vec<AtomicU32> = (0..N).map(|_| AtomicU32::new(0)).collect();
        let last_done: Vec<AtomicU64> = (0..N).map(|_| AtomicU64::new(0)).collect();
        let clock = AtomicU64::new(1);
        // Writers finished (or panicked).
        let stop = AtomicU32::new(0);
        let cleared = AtomicU64::new(0);
        std::thread::scope(|s| {
            for w in 0..3u64 {
                let (t, disk, lock, sent, last_done, clock, stop) =
                    (&t, &disk, &lock, &sent, &last_done, &clock, &stop);
                s.spawn(move || {
                    // Counted even if this thread panics.
                    struct Done<'a>(&'a AtomicU32);
                    impl Drop for Done<'_> {
                        fn drop(&mut self) {
                            self.0.fetch_add(1, SeqCst);
                        }
                    }
                    let _done = Done(stop);
                    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ w;
                    for _ in 0..40_000 {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let r = x % (N - 1);
                        let len = 1 + (x >> 40) % 2;
                        let range = r..r + len;
                        if !t.start_write(range.clone()) {
                            let _g = lock.lock().unwrap();
                            for q in range.clone() {
                                disk[q as usize].store(true, SeqCst);
                            }
                            drop(_g);
                            t.mark_durable(range.clone());
                        }
                        for q in range.clone() {
                            assert!(
                                disk[q as usize].load(SeqCst),
                                "write sent to region {q} with no intent bit on disk"
                            );
                            sent[q as usize].fetch_add(1, SeqCst);
                        }
                        for q in range.clone() {
                            sent[q as usize].fetch_sub(1, SeqCst);
                            last_done[q as usize].store(clock.fetch_add(1, SeqCst), SeqCst);
                        }
                        t.end_write(range);
                    }
                });
            }
            let (t, disk, lock, sent, last_done, clock, stop, cleared) =
                (&t, &disk, &lock, &sent, &last_done, &clock, &stop, &cleared);
            s.spawn(move || {
                // While the writers run, then two passes more with none:
                // a region idle for a whole scan period is cleared then,
                // so every bit must be gone (no count left behind).
                let mut after = 0;
                while after < 2 {
                    if stop.load(SeqCst) == 3 {
                        after += 1;
                    }
                    let mut scan = t.scan(false);
                    {
                        let _g = lock.lock().unwrap();
                        for r in 0..N {
                            if disk[r as usize].load(SeqCst) {
                                t.consider(&mut scan, r);
                            }
                        }
                    }
                    let mut flushed_before = 0;
                    let settled = t
                        .flush(scan, || {
                            flushed_before = clock.load(SeqCst);
                            ok()
                        })
                        .unwrap();
                    let _g = lock.lock().unwrap();
                    for r in 0..N {
                        if disk[r as usize].load(SeqCst) && settled.try_clear(r) {
                            assert_eq!(
                                sent[r as usize].load(SeqCst),
                                0,
                                "region {r} cleared with a write in flight"
                            );
                            assert!(
                                last_done[r as usize].load(SeqCst) < flushed_before,
                                "region {r} cleared with a write not flushed"
                            );
                            disk[r as usize].store(false, SeqCst);
                            cleared.fetch_add(1, SeqCst);
                        }
                    }
                }
            });
        });
        assert!(
            cleared.load(SeqCst) > 0,
            "the clearer never cleared anything"
        );
        for (r, d) in disk.iter().enumerate() {
            assert!(
                !d.load(SeqCst),
                "region {r} still marked with every write done"
            );
        }
    }
}
