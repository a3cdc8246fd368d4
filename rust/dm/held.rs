// SPDX-License-Identifier: GPL-2.0

//! Bios a target has taken over: [`HeldBio`] (ended exactly once, or
//! fanned out again) and [`BioStack`], the lock-free hand-off of held bios
//! from completions to a thread.

use super::bindings;
use super::bio::{BioKind, BlkStatus, FanTarget};
use super::fanout::{end_bio, fan_out_raw, per_bio_of, target_sector, PerBio, RcuReadGuard};
use super::kthread::{ProcessCtx, Waker};
use super::target::Target;
use core::marker::PhantomData;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicPtr, Ordering};

/// A bio the target has taken over (its map returned "submitted", or it came
/// back from a failed remap) and must end exactly once with [`HeldBio::end`]
/// or hand on with [`HeldBio::fan_out`]. Dropping it ends it with `EIO`,
/// so a bio is never leaked.
pub struct HeldBio<T: Target> {
    pub(super) bio: NonNull<bindings::bio>,
    pub(super) data: NonNull<PerBio<T>>,
    pub(super) _p: PhantomData<T>,
}

// SAFETY: a held bio may be ended from any context and any CPU.
unsafe impl<T: Target> Send for HeldBio<T> {}

impl<T: Target> HeldBio<T> {
    /// The kind of bio.
    pub fn kind(&self) -> BioKind {
        // SAFETY: the bio is live until ended.
        unsafe { BioKind::of(self.bio) }
    }

    /// The target's per-bio data.
    pub fn per_bio(&self) -> &T::PerBio {
        // SAFETY: initialised in map and alive until the bio ends.
        unsafe { &self.data.as_ref().user }
    }

    /// First sector, relative to the start of the target. Valid because a
    /// held bio itself is either never submitted (only clones are) or was
    /// restored after a failed remap (see [`MapBio::remap_retryable`]), so
    /// its position is the one it was mapped at.
    /// 0 for a bio without a range (an empty flush; see
    /// [`target_sector`]).
    pub fn sector(&self) -> u64 {
        // SAFETY: the bio and its per-bio data are live until ended; `ti`
        // outlives its bios.
        unsafe { target_sector(&*self.bio.as_ptr(), (*self.data.as_ref().ti).begin) }
    }

    /// Length in sectors.
    pub fn sectors(&self) -> u64 {
        // SAFETY: the bio is live until ended.
        u64::from(unsafe { (*self.bio.as_ptr()).bi_iter.bi_size } >> 9)
    }

    /// Fans the bio out like [`MapBio::fan_out`]; [`Target::fanout_done`]
    /// is called when every clone completed. May sleep (the clones are
    /// allocated with `GFP_NOIO`, a timed copy may wait for memory), so it
    /// takes a [`ProcessCtx`]: [`Target::fanout_done`], which may run in
    /// interrupt context, has none and cannot call it; it hands the bio to a
    /// thread instead.
    pub fn fan_out<'b>(self, _ctx: &ProcessCtx, to: impl Iterator<Item = FanTarget<'b>>) {
        let (bio, data) = (self.bio, self.data);
        let sector = self.sector();
        core::mem::forget(self);
        // SAFETY: `map_cb` stored the target in the per-bio data; a target
        // is only destroyed once none of its bios is in flight, and this one
        // is.
        let target = unsafe { &*data.as_ref().target };
        // SAFETY: we own the live bio (held: never submitted, or restored
        // after a failed remap) and forgot `self`, so it is dealt with once,
        // by the fan-out; `_ctx` proves process context.
        unsafe { fan_out_raw(target, bio, data, sector, to) };
    }

    /// Ends the bio with `status`.
    pub fn end(self, status: BlkStatus) {
        let bio = self.bio;
        core::mem::forget(self);
        // SAFETY: we own the live bio and forgot `self`, so it is ended once.
        unsafe { end_bio(bio, status) };
    }
}

impl<T: Target> Drop for HeldBio<T> {
    fn drop(&mut self) {
        // SAFETY: we own the live bio; this is its only ending.
        unsafe { end_bio(self.bio, BlkStatus::IOERR) };
    }
}

/// A lock-free stack of held bios, linked through `bi_next` (free while a
/// bio is held): [`BioStack::push`] from any context, including interrupts;
/// [`BioStack::take_all`] by one consumer. Dropping it ends what is left
/// with `EIO`.
pub struct BioStack<T: Target> {
    head: AtomicPtr<bindings::bio>,
    _p: PhantomData<T>,
}

// SAFETY: the stack hands bios between contexts; `HeldBio` is `Send`.
unsafe impl<T: Target> Send for BioStack<T> {}
// SAFETY: push and take_all are atomic operations on `head`.
unsafe impl<T: Target> Sync for BioStack<T> {}

impl<T: Target> Default for BioStack<T> {
    fn default() -> Self {
        Self {
            head: AtomicPtr::new(core::ptr::null_mut()),
            _p: PhantomData,
        }
    }
}

impl<T: Target> BioStack<T> {
    /// Pushes a held bio. From a completion, where the bio may be ended
    /// by its consumer before this returns, use [`BioStack::push_and_wake`].
    pub fn push(&self, bio: HeldBio<T>) {
        let p = bio.bio.as_ptr();
        core::mem::forget(bio);
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            // SAFETY: we own the held bio; `bi_next` is unused while held.
            unsafe { (*p).bi_next = head };
            match self
                .head
                .compare_exchange_weak(head, p, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(h) => head = h,
            }
        }
    }

    /// Pushes a held bio and wakes the thread of `waker`, which takes it:
    /// the hand-off of a completion ([`Target::fanout_done`]). The thread
    /// may end the bio at once, and dm core then destroy the target, before
    /// the wake-up: it runs inside an RCU read-side section, which the
    /// target's destructor waits for, so `self` and `waker` stay valid.
    pub fn push_and_wake(&self, bio: HeldBio<T>, waker: &Waker) {
        let _rcu = RcuReadGuard::new();
        self.push(bio);
        waker.wake();
    }

    /// Whether the stack is empty.
    pub fn is_empty(&self) -> bool {
        self.head.load(Ordering::Relaxed).is_null()
    }

    /// Takes every bio pushed so far (newest first).
    pub fn take_all(&self) -> BioChain<T> {
        BioChain {
            next: self.head.swap(core::ptr::null_mut(), Ordering::Acquire),
            _p: PhantomData,
        }
    }
}

impl<T: Target> Drop for BioStack<T> {
    fn drop(&mut self) {
        drop(self.take_all());
    }
}

/// Bios taken from a [`BioStack`]; an iterator of [`HeldBio`]s. Dropping
/// it ends the bios not yet taken with `EIO`.
pub struct BioChain<T: Target> {
    next: *mut bindings::bio,
    _p: PhantomData<T>,
}

impl<T: Target> Iterator for BioChain<T> {
    type Item = HeldBio<T>;

    fn next(&mut self) -> Option<HeldBio<T>> {
        let bio = NonNull::new(self.next)?;
        // SAFETY: every bio in the chain was a `HeldBio<T>` pushed by
        // `BioStack::push`: live, of a target of type `T`, owned by us.
        unsafe {
            self.next = (*bio.as_ptr()).bi_next;
            (*bio.as_ptr()).bi_next = core::ptr::null_mut();
            Some(HeldBio {
                bio,
                data: per_bio_of::<T>(bio),
                _p: PhantomData,
            })
        }
    }
}

impl<T: Target> Drop for BioChain<T> {
    fn drop(&mut self) {
        for bio in self.by_ref() {
            drop(bio);
        }
    }
}
