// SPDX-License-Identifier: GPL-2.0

//! Asynchronous copies between block devices with dm-kcopyd.
//!
//! A [`Kcopyd`] client owns a fixed set of *jobs* (any type implementing
//! [`CopyJob`]); a copy names the job that is told the result. A client
//! exists only inside [`Kcopyd::scope`], which destroys it before
//! returning, waiting until every copy has completed and its job's
//! [`CopyJob::done`] has returned, so jobs and the devices a copy uses
//! (borrowed for `'d`, which outlives the scope) are never used after they
//! are gone.

use super::bindings;
use super::device::Dev;
use core::cell::Cell;
use core::ffi::{c_int, c_ulong, c_void};
use core::marker::PhantomData;
use core::ptr::NonNull;
use kernel::prelude::*;

/// Most destinations of one copy (`DM_KCOPYD_MAX_REGIONS`).
pub const MAX_DESTS: usize = 8;

/// Told the result of a copy.
pub trait CopyJob: Sync {
    /// The copy finished. `read_failed`: the source could not be read (then
    /// nothing was written); `write_failed`: bit `i` set when destination
    /// `i` (in the order given to [`Kcopyd::copy`]) failed a write.
    ///
    /// Runs in kcopyd's worker thread: process context, but it must not
    /// block for long (other copies complete through the same worker).
    fn done(&self, read_failed: bool, write_failed: u64);
}

/// A dm-kcopyd client with its jobs, lent by [`Kcopyd::scope`].
///
/// Sound although a value can be forgotten: no caller ever owns a client,
/// only a reference for the scope's closure, and the scope itself
/// destroys it (waiting for every copy) before returning, so no copy
/// outlives `'d`, the borrow of its devices, nor the jobs. (A `Kcopyd`
/// handed out by value could be `mem::forget`-ten with copies in flight,
/// ending the devices' borrow while kcopyd still used them.) `'d` is
/// invariant, so the closure cannot shorten it.
///
/// Invariant: `kc` came from `dm_kcopyd_client_create` and is destroyed only
/// in `drop`, before `jobs` is freed; `jobs` is never resized, so pointers to
/// its elements stay valid while the client lives; only `scope` makes a
/// `Kcopyd`, and drops it before returning.
pub struct Kcopyd<'d, J: CopyJob> {
    kc: NonNull<bindings::dm_kcopyd_client>,
    jobs: KVec<J>,
    _devs: PhantomData<Cell<&'d Dev>>,
}

// SAFETY: a kcopyd client may be used from any thread; jobs are `Sync`.
unsafe impl<J: CopyJob + Send> Send for Kcopyd<'_, J> {}
// SAFETY: `copy` may be called concurrently (kcopyd locks internally).
unsafe impl<J: CopyJob + Send> Sync for Kcopyd<'_, J> {}

/// kcopyd's completion callback.
///
/// # Safety
///
/// `context` is the job pointer `Kcopyd::copy` passed, whose client (and so
/// the job) is alive until every callback has returned.
// `c_ulong` is `u64` only on 64-bit targets.
#[allow(clippy::useless_conversion)]
unsafe extern "C" fn copy_done<J: CopyJob>(
    read_err: c_int,
    write_err: c_ulong,
    context: *mut c_void,
) {
    // SAFETY: see the function's safety section.
    let job = unsafe { &*context.cast::<J>() };
    job.done(read_err != 0, u64::from(write_err));
}

impl<'d, J: CopyJob> Kcopyd<'d, J> {
    /// Creates a client whose copies report to `jobs`, runs `f` with it,
    /// then destroys it, waiting for every copy `f` started; returns what
    /// `f` returned, or an error (and runs nothing) if the client cannot be
    /// created. Sleeps.
    pub fn scope<R>(jobs: KVec<J>, f: impl for<'k> FnOnce(&'k Kcopyd<'d, J>) -> R) -> Result<R> {
        // SAFETY: plain constructor; NULL on failure.
        let kc = unsafe { bindings::fracture_kcopyd_create() };
        let kc = NonNull::new(kc).ok_or(ENOMEM)?;
        let client = Self {
            kc,
            jobs,
            _devs: PhantomData,
        };
        let r = f(&client);
        // Waits for every copy (see `Drop`).
        drop(client);
        Ok(r)
    }

    /// The jobs.
    pub fn jobs(&self) -> &[J] {
        &self.jobs
    }

    /// Copies `sectors` sectors at `sector` of `from` to the same place on
    /// each of `to` (1..=[`MAX_DESTS`] devices); `jobs()[job]` is told the
    /// result, possibly before this returns. Never sleeps for long (kcopyd
    /// queues the work).
    pub fn copy(
        &self,
        job: usize,
        from: &'d Dev,
        sector: u64,
        sectors: u64,
        to: &[&'d Dev],
    ) -> Result {
        let j = self.jobs.get(job).ok_or(EINVAL)?;
        if to.is_empty() || to.len() > MAX_DESTS || sectors == 0 {
            return Err(EINVAL);
        }
        let mut dests = [core::ptr::null_mut::<bindings::block_device>(); MAX_DESTS];
        for (d, dev) in dests.iter_mut().zip(to) {
            *d = dev.raw_bdev();
        }
        // SAFETY: the client is alive; the devices are held open for `'d`,
        // which outlives the scope, whose end destroys the client (it cannot
        // be skipped: see the type's doc), waiting for this copy; the job
        // pointer stays valid until then (type invariant), and `copy_done`
        // is instantiated for its type. The region array is only read
        // during the call.
        unsafe {
            bindings::fracture_kcopyd_copy(
                self.kc.as_ptr(),
                from.raw_bdev(),
                sector,
                sectors,
                to.len() as u32,
                dests.as_mut_ptr(),
                Some(copy_done::<J>),
                (j as *const J).cast_mut().cast(),
            )
        };
        Ok(())
    }
}

impl<J: CopyJob> Drop for Kcopyd<'_, J> {
    fn drop(&mut self) {
        // SAFETY: created in `new`; dm_kcopyd_client_destroy waits until
        // every job's callback has returned, so `jobs` (freed after this)
        // and the devices are no longer referenced.
        unsafe { bindings::dm_kcopyd_client_destroy(self.kc.as_ptr()) };
    }
}
