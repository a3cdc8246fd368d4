//! Generation rules: which leg may serve as the primary (and copy source)
//! after any sequence of write failures, splits, rejoins, recoveries and
//! reloads. A model of the legs' contents checks, after every step, that
//! a leg the superblock lets serve holds every acknowledged write and that
//! every difference of another leg is in its fracture log.

use fracture_core::format::{LegState, PrimaryCheck, Superblock};
use fracture_core::region::Geometry;

const LEGS: u32 = 3;
const REGIONS: usize = 4;

fn superblock() -> Superblock {
    Superblock::new([1; 16], &Geometry::new(4096, 1024).unwrap(), LEGS)
}

#[test]
fn leave_and_enter_sync() {
    let mut sb = superblock();
    assert_eq!((sb.event, sb.leg(0).generation), (1, 1));
    sb.leave_sync(2);
    sb.leg_mut(2).state = LegState::Fractured;
    assert_eq!(sb.event, 2);
    assert_eq!(sb.leg(0).generation, 2);
    assert_eq!(sb.leg(1).generation, 2);
    assert_eq!(
        sb.leg(2).generation,
        1,
        "the leg that left keeps its generation"
    );
    // Leaving again changes nothing: it is no longer in sync.
    sb.leave_sync(2);
    assert_eq!(sb.event, 2);
    assert_eq!(sb.source_candidate(0), Some(0));
    assert_eq!(sb.source_candidate(1), Some(1));
    assert_eq!(
        sb.source_candidate(0b011),
        None,
        "a fractured leg is never a source"
    );
    sb.enter_sync(2);
    assert_eq!(
        (sb.leg(2).state, sb.leg(2).generation),
        (LegState::InSync, 2)
    );
    assert_eq!(sb.source_candidate(0b011), Some(2));
}

#[test]
fn fail_over_picks_an_in_sync_leg_that_took_the_write() {
    let mut sb = superblock();
    // Leg 1 did not take the write (fractured, or it failed it too).
    assert_eq!(sb.fail_over(0b010), Some(2));
    assert_eq!(sb.primary_leg, 2);
    // The caller fractures the old primary.
    sb.leave_sync(0);
    sb.leg_mut(0).state = LegState::Fractured;
    assert_eq!(sb.leg(2).generation, sb.event);
    assert!(sb.leg(0).generation < sb.event);
    // Leg 2 fails next with leg 1 excluded: no leg can take over.
    assert_eq!(sb.fail_over(0b010), None);
    assert_eq!(sb.primary_leg, 2, "unchanged when nobody can take over");
    // A stale in-sync record (generation behind) is not a source either.
    let mut sb = superblock();
    sb.leg_mut(1).generation = 0;
    assert_eq!(sb.fail_over(0b100), None);
}

#[test]
fn check_primary_at_activation() {
    let mut sb = superblock();
    assert_eq!(sb.check_primary(0), PrimaryCheck::Kept);
    // Bits of a failover reached the disk, its superblock did not: leg 0
    // has bits and still reads as the primary.
    assert_eq!(
        sb.check_primary(0b001),
        PrimaryCheck::Switched { from: 0, to: 1 }
    );
    assert_eq!(sb.primary_leg, 1);
    // A primary whose record is out of sync hands over too.
    let mut sb = superblock();
    sb.leg_mut(0).state = LegState::Fractured;
    assert_eq!(
        sb.check_primary(0b010),
        PrimaryCheck::Switched { from: 0, to: 2 }
    );
    // Nobody in sync at the current generation.
    let mut sb = superblock();
    sb.leg_mut(0).state = LegState::Fractured;
    sb.leg_mut(1).state = LegState::Recovering;
    sb.leg_mut(2).generation = 0;
    assert_eq!(sb.check_primary(0), PrimaryCheck::NoSource);
}

/// The mirror as the kernel drives the superblock, with the legs' data.
struct Model {
    sb: Superblock,
    /// Version of each region on each leg.
    data: [[u64; REGIONS]; LEGS as usize],
    /// Latest acknowledged version of each region.
    truth: [u64; REGIONS],
    /// Fracture bitmaps.
    dirty: [[bool; REGIONS]; LEGS as usize],
    version: u64,
    /// The primary failed with nobody to take over (health D).
    lost: bool,
    /// Writes that completed with failed legs, not yet handled by the
    /// metadata thread: (region, failed, sent, version). Still in flight
    /// for the host (not acknowledged) and for the intent log.
    pending: Vec<(usize, u32, u32, u64)>,
    /// Let copies run while a failure is pending, as if the failed write
    /// no longer counted as in flight once its clones completed (a
    /// deliberately broken kernel, to show that the model catches it).
    ignore_pending: bool,
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

impl Model {
    fn new() -> Self {
        Self {
            sb: superblock(),
            data: [[0; REGIONS]; LEGS as usize],
            truth: [0; REGIONS],
            dirty: [[false; REGIONS]; LEGS as usize],
            version: 0,
            lost: false,
            pending: Vec::new(),
            ignore_pending: false,
        }
    }

    fn state(&self, leg: u32) -> LegState {
        self.sb.leg(leg).state
    }

    fn fracture(&mut self, leg: u32) {
        self.sb.leave_sync(leg);
        self.sb.leg_mut(leg).state = LegState::Fractured;
    }

    fn in_flight(&self, region: usize) -> bool {
        self.pending.iter().any(|p| p.0 == region)
    }

    /// A host write of `region` that the legs in `fail` fail: sent to the
    /// legs not fractured, completed on those that do not fail it. With a
    /// failure it waits for the metadata thread ([`Model::process`]).
    fn write(&mut self, region: usize, fail: u32) {
        if self.in_flight(region) {
            // The host has a write to it in flight: no overlapping one.
            return;
        }
        self.version += 1;
        let v = self.version;
        let sent: u32 = (0..LEGS)
            .filter(|&l| self.state(l) != LegState::Fractured)
            .fold(0, |m, l| m | 1 << l);
        let fail = fail & sent;
        // Fractured legs get it in their bitmaps instead (`begin_write`).
        for l in 0..LEGS {
            if sent & (1 << l) == 0 {
                self.dirty[l as usize][region] = true;
            }
        }
        for l in 0..LEGS {
            if sent & fail & (1 << l) == 0 && sent & (1 << l) != 0 {
                self.data[l as usize][region] = v;
            }
        }
        if fail == 0 {
            self.truth[region] = v;
        } else {
            self.pending.push((region, fail, sent, v));
        }
    }

    /// The metadata thread handles the oldest failed write, as
    /// `Shared::write_failed` does.
    fn process(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let (region, fail, sent, v) = self.pending.remove(0);
        let p = self.sb.primary_leg;
        let mut logged = fail;
        let mut ok = true;
        if fail & (1 << p) != 0 && self.sb.fail_over(fail | !sent).is_none() {
            logged &= !(1 << p);
            ok = false;
            self.lost = true;
        }
        for l in 0..LEGS {
            if logged & (1 << l) != 0 {
                if self.state(l) != LegState::Fractured {
                    self.fracture(l);
                }
                self.dirty[l as usize][region] = true;
            }
        }
        if !ok {
            for l in 0..LEGS {
                if sent & !fail & (1 << l) != 0 && l != p && self.state(l) != LegState::InSync {
                    self.dirty[l as usize][region] = true;
                }
            }
        } else {
            self.truth[region] = v;
        }
    }

    fn split(&mut self, leg: u32) {
        let s = self.state(leg);
        if leg != self.sb.primary_leg && (s == LegState::InSync || s == LegState::Recovering) {
            self.fracture(leg);
        }
    }

    fn rejoin(&mut self, leg: u32) {
        if leg != self.sb.primary_leg && self.state(leg) == LegState::Fractured {
            self.sb.leg_mut(leg).state = LegState::Recovering;
        }
    }

    /// Recovery copies one region of a recovering leg from the primary.
    fn copy(&mut self, leg: u32, region: usize) {
        if self.state(leg) != LegState::Recovering || self.lost {
            return;
        }
        // `Shared::failure_pending`, and a host write in flight voids it.
        if !self.ignore_pending && (!self.pending.is_empty() || self.in_flight(region)) {
            return;
        }
        let p = self.sb.primary_leg as usize;
        if self.dirty[leg as usize][region] {
            self.data[leg as usize][region] = self.data[p][region];
            self.dirty[leg as usize][region] = false;
        }
        if !self.dirty[leg as usize].iter().any(|&d| d) {
            self.sb.enter_sync(leg);
        }
    }

    /// A reload: the superblock and bitmaps are read back.
    fn reload(&mut self) {
        // A suspend waits for the I/O in flight, the thread handles it.
        while !self.pending.is_empty() {
            self.process();
        }
        let dirty = (0..LEGS)
            .filter(|&l| self.dirty[l as usize].iter().any(|&d| d))
            .fold(0, |m, l| m | 1 << l);
        for l in 0..LEGS {
            if dirty & (1 << l) != 0 && self.state(l) == LegState::InSync {
                self.fracture(l);
            }
        }
        assert_ne!(self.sb.check_primary(dirty), PrimaryCheck::NoSource);
        self.lost = false;
    }

    /// Whether leg `l` holds every acknowledged write (regions with a
    /// write in flight may hold either version).
    fn current(&self, l: usize) -> bool {
        (0..REGIONS).all(|r| self.in_flight(r) || self.data[l][r] == self.truth[r])
    }

    fn check(&self, step: &str) {
        let p = self.sb.primary_leg as usize;
        assert!(
            self.current(p),
            "primary {p} lost a write after {step}: {:?} vs {:?}",
            self.data[p],
            self.truth
        );
        for l in 0..LEGS {
            let rec = self.sb.leg(l);
            if self.sb.source_candidate(!(1 << l)).is_some() {
                assert!(self.current(l as usize), "source leg {l} after {step}");
            }
            if rec.state == LegState::InSync {
                assert_eq!(
                    rec.generation, self.sb.event,
                    "in-sync leg {l} generation after {step}"
                );
                assert!(
                    !self.dirty[l as usize].iter().any(|&d| d),
                    "in-sync leg {l} has bits after {step}"
                );
            } else {
                assert!(
                    rec.generation < self.sb.event,
                    "out-of-sync leg {l} at the current generation after {step}"
                );
                for r in 0..REGIONS {
                    // A write in flight is covered by the intent log.
                    if !self.in_flight(r) && self.data[l as usize][r] != self.data[p][r] {
                        assert!(
                            self.dirty[l as usize][r],
                            "leg {l} region {r} differs, unlogged, after {step}"
                        );
                    }
                }
            }
        }
    }
}

/// Random histories of every event, checked after each step. Returns the
/// number of failovers.
fn histories(ignore_pending: bool) -> u32 {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut failovers = 0;
    for _ in 0..3000 {
        let mut m = Model::new();
        m.ignore_pending = ignore_pending;
        for step in 0..60 {
            let leg = rng.below(u64::from(LEGS)) as u32;
            let region = rng.below(REGIONS as u64) as usize;
            let before = m.sb.primary_leg;
            let what = match rng.below(13) {
                0..=4 => {
                    // Mostly clean writes; sometimes legs fail.
                    let fail = if rng.below(4) == 0 {
                        rng.below(1 << LEGS) as u32
                    } else {
                        0
                    };
                    m.write(region, fail);
                    "write"
                }
                5 => {
                    m.split(leg);
                    "split"
                }
                6 => {
                    m.rejoin(leg);
                    "rejoin"
                }
                7 | 8 => {
                    for r in 0..REGIONS {
                        m.copy(leg, r);
                    }
                    "recovery"
                }
                9 | 10 => {
                    m.process();
                    "failure handled"
                }
                11 => {
                    // A planned switchover (the `primary` message).
                    if m.sb.switch_primary(leg) {
                        m.lost = false;
                    }
                    "switchover"
                }
                _ => {
                    m.reload();
                    "reload"
                }
            };
            failovers += u32::from(m.sb.primary_leg != before);
            m.check(&format!("step {step} ({what})"));
        }
    }
    failovers
}

/// The generation rules keep the primary (and every leg that may serve)
/// current through any history.
#[test]
fn random_histories_keep_the_source_current() {
    let failovers = histories(false);
    assert!(
        failovers > 100,
        "the histories must fail over often ({failovers})"
    );
}

/// A copy that may clear bits between a write's failure on the primary and
/// the failover (the failed write no longer counted in flight, and the
/// kernel's `failure_pending` check removed) makes a recovered leg miss
/// that write: the model must notice.
#[test]
fn copies_during_an_unhandled_failure_are_caught() {
    let r = std::panic::catch_unwind(|| histories(true));
    assert!(
        r.is_err(),
        "the model did not notice copies clearing bits during a pending failure"
    );
}
