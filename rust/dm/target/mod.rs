// SPDX-License-Identifier: GPL-2.0

//! Device-mapper targets: the [`Target`] trait a Rust target implements,
//! what its constructor may see and set ([`TargetCtx`]), the handles it
//! keeps ([`EventRaiser`], [`DeviceVisitor`]), and [`Registration`] of the
//! target type. The C entry points that call the trait are in `callbacks`;
//! the per-bio layer (mapping, fan-out, held bios) in [`super::fanout`] and
//! [`super::held`].
//!
//! dm core calls `map` concurrently on many CPUs and `end_io` possibly in
//! interrupt context, so the trait takes `&self` everywhere but in the
//! constructor; the target's state must use interior mutability with locks
//! and atomics fit for that.

mod callbacks;

use super::bindings;
use super::bio::{BioKind, BlkStatus};
use super::device::Dev;
use super::fanout::{per_bio_size, MapBio, MapResult, PerBio};
use super::held::HeldBio;
use super::status::{Emitter, StatusType};
use callbacks::{
    ctr_cb, dtr_cb, end_io_cb, iterate_devices_cb, map_cb, message_cb, postsuspend_cb,
    preresume_cb, presuspend_cb, presuspend_undo_cb, resume_cb, status_cb,
};
use core::ffi::{c_int, c_void};
use core::marker::PhantomData;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};
use kernel::prelude::*;
use kernel::str::CString;
use kernel::types::Opaque;

/// Why a constructor refused a table line.
#[derive(Debug)]
pub struct CtrError {
    /// A short reason dm core prints with the device name (`ti->error`).
    /// Print the details with [`crate::dm_err!`] before returning.
    pub reason: &'static CStr,
    /// The error code returned to userspace.
    pub errno: Error,
}

impl CtrError {
    /// An `EINVAL` error with `reason`.
    pub fn inval(reason: &'static CStr) -> Self {
        Self {
            reason,
            errno: EINVAL,
        }
    }
}

impl From<kernel::alloc::AllocError> for CtrError {
    fn from(_: kernel::alloc::AllocError) -> Self {
        ENOMEM.into()
    }
}

impl From<Error> for CtrError {
    fn from(errno: Error) -> Self {
        Self {
            reason: kernel::c_str!("out of resources"),
            errno,
        }
    }
}

/// A device-mapper target implemented in Rust.
pub trait Target: Sized + Send + Sync + 'static {
    /// State dm core keeps with every bio mapped by the target, set to its
    /// default before `map`. It is never dropped, so it may not need drop.
    type PerBio: Default + Send + Sync;

    /// Target name, as in the table line.
    const NAME: &'static CStr;
    /// Target version, shown by `dmsetup targets`.
    const VERSION: [u32; 3];

    /// Builds the target from the words of its table line.
    fn new(ti: &mut TargetCtx<'_>, args: &[&CStr]) -> Result<KBox<Self>, CtrError>;

    /// Maps a bio: remap it, fan it out, end it or kill it. Runs
    /// concurrently, in process context, possibly with a deep stack.
    fn map(&self, bio: MapBio<'_, Self>) -> MapResult;

    /// All clones of a fanned-out bio completed; `failed` has bit `index` set
    /// for every [`FanTarget`](super::bio::FanTarget) whose clone failed,
    /// could not be made or (a timed one) did not complete in time, the last
    /// also in `timed_out`. The target must end `bio`. May run in interrupt
    /// or softirq context: no sleeping and no `GFP_KERNEL` allocation. Once
    /// `bio` is ended (or handed on and ended elsewhere) the target may be
    /// destroyed: hand it to a thread with
    /// [`BioStack::push_and_wake`](super::held::BioStack::push_and_wake) and
    /// touch nothing after.
    fn fanout_done(&self, bio: HeldBio<Self>, failed: u32, timed_out: u32);

    /// A bio the target mapped completes with `status`, which the target may
    /// change. May run in interrupt context.
    fn end_io(&self, _kind: BioKind, _per_bio: &Self::PerBio, _status: &mut BlkStatus) {}

    /// Writes `dmsetup status` (`Info`) or `dmsetup table` (`Table`) output.
    fn status(&self, kind: StatusType, out: &mut Emitter<'_>);

    /// Handles `dmsetup message`. The default refuses every message.
    fn message(&self, args: &[&CStr], _out: &mut Emitter<'_>) -> Result {
        let first = args.first().and_then(|a| a.to_str().ok()).unwrap_or("");
        crate::dm_err!("unknown message '{}'", first);
        Err(EINVAL)
    }

    /// Reports every data device and the range of it the target uses.
    fn iterate_devices(&self, visit: &mut DeviceVisitor<'_>) -> c_int;

    /// The device is about to be suspended: stop queuing new internal work.
    fn presuspend(&self) {}
    /// A suspend after `presuspend` did not happen: the target runs on.
    fn presuspend_undo(&self) {}
    /// The device is suspended and its I/O drained.
    fn postsuspend(&self) {}
    /// The device is about to resume; an error keeps it suspended. Any
    /// table this one replaces has been suspended by now.
    fn preresume(&self) -> Result {
        Ok(())
    }
    /// The device is about to resume.
    fn resume(&self) {}
}

/// What the handles of a target ([`Dev`], [`EventRaiser`]) point at: the
/// target, and how many handles exist.
struct Anchor {
    ti: NonNull<bindings::dm_target>,
    handles: AtomicUsize,
}

/// The owner of a target's [`Anchor`], made before the constructor runs
/// and dropped last when the constructor fails or the destructor runs:
/// dropping it waits until no handle is left, so none outlives the target.
///
/// Invariant: `anchor.ti` is a target being constructed or constructed,
/// whose destructor (or failed constructor) has not returned yet.
struct AnchorOwner {
    anchor: KBox<Anchor>,
}

impl AnchorOwner {
    fn new(ti: NonNull<bindings::dm_target>) -> Result<Self> {
        let anchor = KBox::new(
            Anchor {
                ti,
                handles: AtomicUsize::new(0),
            },
            GFP_KERNEL,
        )?;
        Ok(Self { anchor })
    }

    /// A new counted handle to the target.
    fn handle(&self) -> TargetRef {
        self.anchor.handles.fetch_add(1, Ordering::Relaxed);
        TargetRef {
            anchor: NonNull::from(&*self.anchor),
        }
    }
}

impl Drop for AnchorOwner {
    fn drop(&mut self) {
        // The target's own handles were dropped with it, before this: a
        // handle left was leaked (`mem::forget`, a forgotten thread that
        // holds one). Waiting for ever is safe; returning is not (dm core
        // frees the target and its devices then). Sleeps: process context
        // (dm core's `ctr` or `dtr`).
        super::kthread::wait_until_zero(
            || self.anchor.handles.load(Ordering::Acquire),
            "device or event handles of a target being destroyed",
        );
    }
}

/// A counted handle to a target, for [`Dev`] and [`EventRaiser`]: while it
/// exists, the target is valid ([`AnchorOwner`] waits for it).
///
/// Invariant: `anchor` is the live anchor of an [`AnchorOwner`], counting
/// this handle.
pub(super) struct TargetRef {
    anchor: NonNull<Anchor>,
}

impl TargetRef {
    /// The target; valid while `self` lives.
    pub(super) fn ti(&self) -> NonNull<bindings::dm_target> {
        // SAFETY: the anchor is alive while it counts us (type invariant).
        unsafe { self.anchor.as_ref().ti }
    }
}

impl Clone for TargetRef {
    fn clone(&self) -> Self {
        // SAFETY: the anchor is alive while it counts us (type invariant).
        unsafe { self.anchor.as_ref() }
            .handles
            .fetch_add(1, Ordering::Relaxed);
        Self {
            anchor: self.anchor,
        }
    }
}

impl Drop for TargetRef {
    fn drop(&mut self) {
        // SAFETY: the anchor is alive while it counts us (type invariant).
        // Last: the owner may free it once the count reaches zero; every
        // use of the target by the holder came before (Release).
        unsafe { self.anchor.as_ref() }
            .handles
            .fetch_sub(1, Ordering::Release);
    }
}

/// What `ti->private` holds: the target, then its anchor, dropped in this
/// order (the anchor waits for the handles the target did not drop).
struct Private<T> {
    target: KBox<T>,
    _anchor: AnchorOwner,
}

/// The target being constructed, as the constructor may see and set it.
pub struct TargetCtx<'a> {
    ti: NonNull<bindings::dm_target>,
    anchor: &'a AnchorOwner,
    _p: PhantomData<&'a mut bindings::dm_target>,
}

impl TargetCtx<'_> {
    fn ti(&self) -> &bindings::dm_target {
        // SAFETY: `ti` is the live target dm core is constructing; during the
        // constructor nothing else accesses it.
        unsafe { self.ti.as_ref() }
    }

    fn ti_mut(&mut self) -> &mut bindings::dm_target {
        // SAFETY: as in `ti`, and `&mut self` makes this the only reference.
        unsafe { self.ti.as_mut() }
    }

    /// Length of the target in sectors.
    pub fn len(&self) -> u64 {
        self.ti().len
    }

    /// Whether the target has length zero.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Opens a device named by a table-line word (`major:minor` or a path)
    /// with the table's mode.
    pub fn get_device(&mut self, name: &str) -> Result<Dev> {
        let path = CString::try_from_fmt(kernel::fmt!("{}", name))?;
        let ti = self.ti.as_ptr();
        let mut dev: *mut bindings::dm_dev = core::ptr::null_mut();
        // SAFETY: `ti` is the target being constructed; `path` is a
        // NUL-terminated string that outlives the call; `dev` is a valid
        // out-pointer.
        let ret = unsafe {
            let mode = bindings::dm_table_get_mode((*ti).table);
            bindings::dm_get_device(ti, path.as_char_ptr().cast(), mode, &mut dev)
        };
        kernel::error::to_result(ret)?;
        let dev = NonNull::new(dev).ok_or(ENODEV)?;
        // SAFETY: `dev` was just got for the target of the handle.
        Ok(unsafe { Dev::from_raw(self.anchor.handle(), dev) })
    }

    /// A handle to raise dm events for this target.
    pub fn event_raiser(&self) -> EventRaiser {
        EventRaiser {
            target: self.anchor.handle(),
        }
    }

    /// How many empty flush bios dm core sends the target for each flush
    /// (told apart by [`BioKind::target_bio_nr`]).
    pub fn set_num_flush_bios(&mut self, n: u32) {
        self.ti_mut().num_flush_bios = n;
    }

    /// How many copies of each discard bio dm core sends.
    pub fn set_num_discard_bios(&mut self, n: u32) {
        self.ti_mut().num_discard_bios = n;
    }

    /// How many copies of each write-zeroes bio dm core sends.
    pub fn set_num_write_zeroes_bios(&mut self, n: u32) {
        self.ti_mut().num_write_zeroes_bios = n;
    }

    /// Caps the bios the target is given at `sectors` (dm core splits
    /// longer ones).
    pub fn set_max_io_len(&mut self, sectors: u32) -> Result {
        // SAFETY: the target is being constructed; dm core allows setting
        // its limit from the constructor.
        kernel::error::to_result(unsafe {
            bindings::dm_set_target_max_io_len(self.ti_mut(), u64::from(sectors))
        })
    }
}

/// Raises dm events for a target (`dmsetup wait` returns). Process context
/// only: dm core takes a mutex.
///
/// Sound however long it is kept: it is a counted handle ([`TargetRef`]),
/// and the target's destructor (or failed constructor) does not return
/// while one exists, so its target is valid for its whole life. A leaked
/// one makes the destructor wait for ever instead.
#[derive(Clone)]
pub struct EventRaiser {
    target: TargetRef,
}

// SAFETY: `dm_table_event` is safe to call from any thread in process
// context; the handle's count is atomic.
unsafe impl Send for EventRaiser {}
// SAFETY: as above.
unsafe impl Sync for EventRaiser {}

impl EventRaiser {
    /// Raises an event. Sleeps.
    pub fn raise(&self) {
        // SAFETY: the target is live while the handle is (type doc);
        // process context is the caller's contract.
        unsafe { bindings::fracture_table_event(self.target.ti().as_ptr()) };
    }
}

/// The callback `iterate_devices` passes each device to.
pub struct DeviceVisitor<'a> {
    ti: *mut bindings::dm_target,
    f: bindings::iterate_devices_callout_fn,
    data: *mut c_void,
    _p: PhantomData<&'a ()>,
}

impl DeviceVisitor<'_> {
    /// Reports `dev`, of which the target uses `len` sectors from `start`.
    /// A non-zero return ends the iteration; return it.
    pub fn visit(&mut self, dev: &Dev, start: u64, len: u64) -> c_int {
        match self.f {
            // SAFETY: dm core's callout with its own `data`, for a device of
            // this target (`dev.raw_dm_dev()` is held by `ti`).
            Some(f) => unsafe { f(self.ti, dev.raw_dm_dev(), start, len, self.data) },
            None => 0,
        }
    }
}

/// The target type of `T`, registered with dm core for as long as it lives.
pub struct Registration<T: Target> {
    tt: Pin<KBox<Opaque<bindings::target_type>>>,
    _p: PhantomData<T>,
}

// SAFETY: after registration dm core owns the `target_type`; we only touch
// it again to unregister, which dm core serialises.
unsafe impl<T: Target> Send for Registration<T> {}
// SAFETY: no method takes `&self`.
unsafe impl<T: Target> Sync for Registration<T> {}

impl<T: Target> Registration<T> {
    /// Registers target type `T` on behalf of `module`.
    pub fn new(module: &'static ThisModule) -> Result<Self> {
        const {
            assert!(!core::mem::needs_drop::<T::PerBio>());
            // dm core places per-bio data right before an 8-byte aligned
            // structure, so a size that is a multiple of 8 keeps it aligned.
            assert!(core::mem::align_of::<PerBio<T>>() <= 8);
            assert!(per_bio_size::<T>() % 8 == 0);
        }
        // SAFETY: an all-zero `target_type` is valid: null pointers, `None`
        // callbacks, zero numbers and an empty (unused) list head.
        let mut tt: bindings::target_type = unsafe { core::mem::zeroed() };
        tt.name = T::NAME.as_char_ptr().cast();
        tt.module = module.as_ptr().cast();
        tt.version = T::VERSION;
        tt.ctr = Some(ctr_cb::<T>);
        tt.dtr = Some(dtr_cb::<T>);
        tt.map = Some(map_cb::<T>);
        tt.end_io = Some(end_io_cb::<T>);
        tt.status = Some(status_cb::<T>);
        tt.message = Some(message_cb::<T>);
        tt.iterate_devices = Some(iterate_devices_cb::<T>);
        tt.presuspend = Some(presuspend_cb::<T>);
        tt.presuspend_undo = Some(presuspend_undo_cb::<T>);
        tt.postsuspend = Some(postsuspend_cb::<T>);
        tt.preresume = Some(preresume_cb::<T>);
        tt.resume = Some(resume_cb::<T>);
        let tt = KBox::pin(Opaque::new(tt), GFP_KERNEL)?;
        // SAFETY: `tt` is a valid, pinned target type that stays registered
        // until `drop` unregisters it; its name is a static string.
        kernel::error::to_result(unsafe { bindings::dm_register_target(tt.get()) })?;
        Ok(Self {
            tt,
            _p: PhantomData,
        })
    }
}

impl<T: Target> Drop for Registration<T> {
    fn drop(&mut self) {
        // SAFETY: registered in `new`; module unload only happens when no
        // table uses the target (dm holds a module reference per table).
        unsafe { bindings::dm_unregister_target(self.tt.get()) };
    }
}
