// SPDX-License-Identifier: GPL-2.0

//! The C entry points dm core calls for a target of type `T` (the
//! `target_type` callouts [`super::Registration`] fills in), each turning
//! its raw arguments into a call of the [`Target`] trait.

use super::{AnchorOwner, CtrError, DeviceVisitor, Private, Target, TargetCtx};
use crate::dm::bindings;
use crate::dm::bio::{index_bit, BioKind, BlkStatus};
use crate::dm::fanout::{fanout_finish, per_bio_of, per_bio_size, MapBio, PerBio};
use crate::dm::status::{Emitter, StatusType};
use core::ffi::{c_char, c_int, c_uint, c_void};
use core::marker::PhantomData;
use core::ptr::NonNull;
use core::sync::atomic::Ordering;
use kernel::prelude::*;

/// The target's private data.
///
/// # Safety
///
/// `ti` must be a live target of type `T` whose constructor succeeded and
/// whose destructor has not run.
unsafe fn target<'a, T: Target>(ti: *mut bindings::dm_target) -> &'a T {
    // SAFETY: `ctr_cb` set `private` to a leaked `KBox<Private<T>>`, freed
    // only in `dtr_cb`.
    unsafe { &(*(*ti).private.cast::<Private<T>>()).target }
}

/// Collects `argv` as C strings, refusing none.
///
/// # Safety
///
/// `argv` must hold `argc` valid NUL-terminated strings that outlive `'a`.
unsafe fn args<'a>(argc: c_uint, argv: *mut *mut c_char) -> Result<KVec<&'a CStr>> {
    let mut v = KVec::with_capacity(argc as usize, GFP_KERNEL)?;
    for i in 0..argc as usize {
        // SAFETY: `argv[i]` is a valid C string for `'a` (caller's promise).
        let s = unsafe { CStr::from_char_ptr((*argv.add(i)).cast()) };
        v.push(s, GFP_KERNEL)?;
    }
    Ok(v)
}

/// # Safety
///
/// dm core's `ctr` callout: `ti` is a target being constructed, `argv` holds
/// `argc` strings alive during the call.
pub(super) unsafe extern "C" fn ctr_cb<T: Target>(
    ti: *mut bindings::dm_target,
    argc: c_uint,
    argv: *mut *mut c_char,
) -> c_int {
    let Some(tip) = NonNull::new(ti) else {
        return EINVAL.to_errno();
    };
    // Dropped last on failure (after whatever the constructor got), or
    // kept with the target until `dtr_cb`.
    let anchor = AnchorOwner::new(tip).map_err(CtrError::from);
    let result = anchor.and_then(|anchor| {
        // SAFETY: the strings live for the duration of this call.
        let t = match unsafe { args(argc, argv) } {
            Ok(a) => {
                let mut ctx = TargetCtx {
                    ti: tip,
                    anchor: &anchor,
                    _p: PhantomData,
                };
                T::new(&mut ctx, &a)
            }
            Err(e) => Err(CtrError::from(e)),
        }?;
        // On failure the box drops the target, then the anchor.
        Ok(KBox::new(
            Private {
                target: t,
                _anchor: anchor,
            },
            GFP_KERNEL,
        )?)
    });
    match result {
        Ok(p) => {
            // SAFETY: `ti` is ours during construction. `private` keeps the
            // box until `dtr_cb`; `error` must point at a static string.
            unsafe {
                (*ti).per_io_data_size = per_bio_size::<T>() as c_uint;
                (*ti).private = KBox::into_raw(p).cast();
            }
            0
        }
        Err(e) => {
            // SAFETY: as above; `reason` is `'static`.
            unsafe { (*ti).error = e.reason.as_char_ptr().cast_mut().cast() };
            e.errno.to_errno()
        }
    }
}

/// # Safety
///
/// dm core's `dtr` callout: `ti` was constructed by `ctr_cb::<T>` and all
/// its bios have ended (a completion may still be returning from a
/// [`BioStack::push_and_wake`]).
pub(super) unsafe extern "C" fn dtr_cb<T: Target>(ti: *mut bindings::dm_target) {
    // dm core destroys a table once its bios have ended, but a completion
    // that handed a bio to a thread (`BioStack::push_and_wake`) may still
    // be waking it inside an RCU read-side section: wait for that before
    // the target (and the thread's task reference) goes.
    // SAFETY: the destructor runs in process context and may sleep.
    unsafe { bindings::fracture_synchronize_rcu() };
    // SAFETY: `private` is the `KBox<Private<T>>` leaked by `ctr_cb`;
    // nothing uses it after the destructor. Dropping it drops the target,
    // then waits for any handle to it left (see `AnchorOwner`).
    drop(unsafe { KBox::from_raw((*ti).private.cast::<Private<T>>()) });
}

/// # Safety
///
/// dm core's `map` callout for a bio of target `ti` of type `T`.
pub(super) unsafe extern "C" fn map_cb<T: Target>(
    ti: *mut bindings::dm_target,
    bio: *mut bindings::bio,
) -> c_int {
    let (Some(tip), Some(bio)) = (NonNull::new(ti), NonNull::new(bio)) else {
        return bindings::DM_MAPIO_KILL as c_int;
    };
    // SAFETY: a bio of a target of type `T`.
    let data = unsafe { per_bio_of::<T>(bio) };
    // SAFETY: a constructed target of type `T`.
    let target = unsafe { target::<T>(ti) };
    // SAFETY: dm core reserved the per-bio data for us; it is uninitialised
    // before map, so it is written, not assigned.
    unsafe { data.as_ptr().write(PerBio::new(target, ti)) };
    let mb = MapBio {
        ti: tip,
        bio,
        data,
        target,
    };
    mb.target.map(mb).0
}

/// # Safety
///
/// dm core's `end_io` callout for a bio `map_cb::<T>` mapped; `error` valid.
pub(super) unsafe extern "C" fn end_io_cb<T: Target>(
    ti: *mut bindings::dm_target,
    bio: *mut bindings::bio,
    error: *mut bindings::blk_status_t,
) -> c_int {
    let (Some(bio), false) = (NonNull::new(bio), error.is_null()) else {
        return bindings::DM_ENDIO_DONE as c_int;
    };
    // SAFETY: a live bio mapped by `map_cb::<T>`, whose per-bio data it
    // initialised; `error` is valid for reads and writes.
    unsafe {
        let data = per_bio_of::<T>(bio);
        let st = data.as_ref();
        // Seen once: a bio handed back below completes here again when the
        // target ends it, and is then done.
        let remapped = st.remapped.swap(0, Ordering::Relaxed);
        if remapped != 0 && *error != bindings::BLK_STS_OK {
            // `remap_retryable` recorded the bio before it went down; what
            // the layers below changed (position, device, splits) is put
            // back, so that it can be cloned or sent again. dm core leaves
            // a bio to its target after DM_ENDIO_INCOMPLETE, and nothing
            // below touches it after completing it.
            bindings::fracture_bio_restore((*st.details.get()).as_ptr(), bio.as_ptr());
            (*bio.as_ptr()).bi_status = bindings::BLK_STS_OK;
            // As a fan-out of one clone that failed.
            st.failed.store(index_bit(remapped - 1), Ordering::Relaxed);
            st.timed_out.store(0, Ordering::Relaxed);
            // `map_cb` stored the target, alive while its bios are. Not
            // touched again here: the target may end it at once.
            fanout_finish::<T>(&*st.target, bio, data);
            return bindings::DM_ENDIO_INCOMPLETE as c_int;
        }
        let mut status = BlkStatus(*error);
        target::<T>(ti).end_io(BioKind::of(bio), &data.as_ref().user, &mut status);
        *error = status.0;
    }
    bindings::DM_ENDIO_DONE as c_int
}

/// # Safety
///
/// dm core's `status` callout: `result` is valid for `maxlen` bytes.
pub(super) unsafe extern "C" fn status_cb<T: Target>(
    ti: *mut bindings::dm_target,
    kind: bindings::status_type_t,
    _flags: c_uint,
    result: *mut c_char,
    maxlen: c_uint,
) {
    let kind = match kind {
        bindings::status_type_t_STATUSTYPE_INFO => StatusType::Info,
        bindings::status_type_t_STATUSTYPE_TABLE => StatusType::Table,
        _ => StatusType::Ima,
    };
    // SAFETY: dm core's result buffer, ours for the call.
    let mut out = unsafe { Emitter::new(result.cast(), maxlen as usize) };
    // SAFETY: a constructed target of type `T`.
    unsafe { target::<T>(ti) }.status(kind, &mut out);
}

/// # Safety
///
/// dm core's `message` callout: `argv` holds `argc` strings, `result` is
/// valid for `maxlen` bytes.
pub(super) unsafe extern "C" fn message_cb<T: Target>(
    ti: *mut bindings::dm_target,
    argc: c_uint,
    argv: *mut *mut c_char,
    result: *mut c_char,
    maxlen: c_uint,
) -> c_int {
    // SAFETY: the strings live for the duration of this call.
    let a = match unsafe { args(argc, argv) } {
        Ok(a) => a,
        Err(e) => return e.to_errno(),
    };
    // SAFETY: dm core's result buffer, ours for the call.
    let mut out = unsafe { Emitter::new(result.cast(), maxlen as usize) };
    // SAFETY: a constructed target of type `T`.
    match unsafe { target::<T>(ti) }.message(&a, &mut out) {
        Ok(()) => i32::from(!out.is_empty()),
        Err(e) => e.to_errno(),
    }
}

/// # Safety
///
/// dm core's `iterate_devices` callout.
pub(super) unsafe extern "C" fn iterate_devices_cb<T: Target>(
    ti: *mut bindings::dm_target,
    f: bindings::iterate_devices_callout_fn,
    data: *mut c_void,
) -> c_int {
    let mut v = DeviceVisitor {
        ti,
        f,
        data,
        _p: PhantomData,
    };
    // SAFETY: a constructed target of type `T`.
    unsafe { target::<T>(ti) }.iterate_devices(&mut v)
}

/// # Safety
///
/// dm core's `presuspend_undo` callout for a constructed target.
pub(super) unsafe extern "C" fn presuspend_undo_cb<T: Target>(ti: *mut bindings::dm_target) {
    // SAFETY: a constructed target of type `T`.
    unsafe { target::<T>(ti) }.presuspend_undo();
}

/// # Safety
///
/// dm core's `presuspend` callout for a constructed target.
pub(super) unsafe extern "C" fn presuspend_cb<T: Target>(ti: *mut bindings::dm_target) {
    // SAFETY: a constructed target of type `T`.
    unsafe { target::<T>(ti) }.presuspend();
}

/// # Safety
///
/// dm core's `postsuspend` callout for a constructed target.
pub(super) unsafe extern "C" fn postsuspend_cb<T: Target>(ti: *mut bindings::dm_target) {
    // SAFETY: a constructed target of type `T`.
    unsafe { target::<T>(ti) }.postsuspend();
}

/// # Safety
///
/// dm core's `preresume` callout for a constructed target.
pub(super) unsafe extern "C" fn preresume_cb<T: Target>(ti: *mut bindings::dm_target) -> c_int {
    // SAFETY: a constructed target of type `T`.
    match unsafe { target::<T>(ti) }.preresume() {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}

/// # Safety
///
/// dm core's `resume` callout for a constructed target.
pub(super) unsafe extern "C" fn resume_cb<T: Target>(ti: *mut bindings::dm_target) {
    // SAFETY: a constructed target of type `T`.
    unsafe { target::<T>(ti) }.resume();
}
