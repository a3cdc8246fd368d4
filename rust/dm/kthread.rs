// SPDX-License-Identifier: GPL-2.0

//! Kernel threads: one function running in its own thread until stopped,
//! sleeping until woken. `Waker`s may be used from any context.

use super::bindings;
use core::ffi::{c_int, c_void};
use core::marker::PhantomData;
use core::ptr::NonNull;
use kernel::prelude::*;
use kernel::str::CString;
use kernel::sync::Arc;
use kernel::task::Task;
use kernel::types::ARef;

/// What a thread runs: `f(state, ctx)`, which should return once
/// [`ThreadCtx::should_stop`] is true.
struct Payload<S> {
    state: Arc<S>,
    f: fn(&S, &ThreadCtx),
}

/// Handed to the thread function. Neither `Send` nor `Sync` (through its
/// [`ProcessCtx`]): it stays on the thread it was made for.
pub struct ThreadCtx {
    process: ProcessCtx,
}

/// Proof that the code holding it runs in process context: on a task, not
/// in an interrupt, softirq or bio completion. Required by what may sleep
/// on behalf of a completion's work, such as
/// [`HeldBio::fan_out`](super::held::HeldBio::fan_out).
///
/// Sound as a proof because it is zero-sized, has no public constructor
/// and is neither `Send` nor `Sync`: the only one is inside the
/// [`ThreadCtx`] of a kthread ([`ThreadCtx::process`]), borrowed for the
/// thread function's call, so neither it nor a reference to it can reach
/// another context (a completion, a target's state, another thread).
/// Sleeping while holding a spinlock stays the caller's lock discipline, as
/// for every sleeping function.
pub struct ProcessCtx {
    _not_send: PhantomData<*mut ()>,
}

impl ThreadCtx {
    /// Proof of process context, for as long as the thread function runs.
    pub fn process(&self) -> &ProcessCtx {
        &self.process
    }

    /// Whether [`KThread`] is being dropped: the function should return.
    pub fn should_stop(&self) -> bool {
        // SAFETY: called on a kthread (only thread functions get a ctx).
        unsafe { bindings::fracture_kthread_should_stop() }
    }

    /// A waker for this thread, for work it hands out and waits for.
    pub fn waker(&self) -> Waker {
        Waker {
            task: ARef::from(kernel::current!()),
        }
    }

    /// Sleeps until `ready()` is true, the thread is woken and `ready()`
    /// holds, the thread must stop, or `timeout_ms` passes (if given).
    /// Race-free: a wake-up after `ready()` was found false is not lost.
    pub fn wait(&self, timeout_ms: Option<u32>, ready: impl Fn() -> bool) {
        let mut left: i64 = match timeout_ms {
            // SAFETY: a pure conversion.
            Some(ms) => i64::try_from(unsafe { bindings::fracture_msecs_to_jiffies(ms) })
                .unwrap_or(i64::MAX),
            // SAFETY: returns a constant.
            None => unsafe { bindings::fracture_max_schedule_timeout() },
        };
        loop {
            // SAFETY: sets the current task's state; undone below.
            unsafe { bindings::fracture_prepare_sleep() };
            if ready() || self.should_stop() || left <= 0 {
                break;
            }
            // SAFETY: sleeping in process context with no lock held (the
            // caller's contract for `wait`).
            left = unsafe { bindings::fracture_sleep(left) };
        }
        // SAFETY: back to running; pairs with `fracture_prepare_sleep`.
        unsafe { bindings::fracture_finish_sleep() };
    }
}

/// Monotonic time in nanoseconds (`ktime_get_ns`).
pub fn now_ns() -> u64 {
    // SAFETY: callable from any context but NMI.
    unsafe { bindings::fracture_now_ns() }
}

/// Lets another task run if one should (`cond_resched`): for loops that
/// may go on for long without sleeping. Process context only.
pub fn yield_cpu() {
    // SAFETY: may sleep; the caller is in process context with no lock held.
    unsafe { bindings::fracture_cond_resched() };
}

/// Sleeps for about `ms` milliseconds (`msleep`). Process context only.
pub fn sleep_ms(ms: u32) {
    // SAFETY: sleeping is allowed in the process context the caller is in.
    unsafe { bindings::msleep(ms) };
}

/// Sleeps until `count()` reads zero, polling every 10 ms and warning
/// every 10 s with the count: `waiting for <count> <what>`. For a drop that
/// must outlive whatever still uses its object: waiting for ever is safe,
/// returning early is not. Process context only.
pub fn wait_until_zero(count: impl Fn() -> usize, what: &str) {
    let mut waited_ms = 0u32;
    while count() != 0 {
        if waited_ms % 10_000 == 0 {
            crate::dm_warn!("waiting for {} {}", count(), what);
        }
        sleep_ms(10);
        waited_ms = waited_ms.wrapping_add(10);
    }
}

/// Wakes a [`KThread`] from any context, including interrupts.
///
/// Sound however long it is kept: it holds a reference to the thread's
/// task (`ARef<Task>`), so the `task_struct` stays valid; waking a task
/// that has exited does nothing.
#[derive(Clone)]
pub struct Waker {
    task: ARef<Task>,
}

impl Waker {
    /// Wakes the thread if it sleeps in [`ThreadCtx::wait`].
    pub fn wake(&self) {
        self.task.wake_up();
    }
}

/// A running kernel thread; dropping it stops the thread and waits for it.
///
/// Invariant: `task` holds a task reference taken by
/// `fracture_kthread_start`, and `payload` is the leaked box the thread
/// reads, freed only after the thread is stopped.
pub struct KThread<S: Send + Sync + 'static> {
    task: NonNull<bindings::task_struct>,
    payload: NonNull<Payload<S>>,
}

// SAFETY: the handle only stops the thread; `S` is `Send + Sync`.
unsafe impl<S: Send + Sync + 'static> Send for KThread<S> {}
// SAFETY: `&KThread` only gives out `Waker`s.
unsafe impl<S: Send + Sync + 'static> Sync for KThread<S> {}

/// # Safety
///
/// `data` is the `Payload<S>` leaked by `KThread::spawn`, alive until the
/// thread has been stopped.
unsafe extern "C" fn thread_main<S: Send + Sync + 'static>(data: *mut c_void) -> c_int {
    // SAFETY: the payload outlives the thread (see `KThread`'s invariant).
    let p = unsafe { &*data.cast::<Payload<S>>() };
    let ctx = ThreadCtx {
        process: ProcessCtx {
            _not_send: PhantomData,
        },
    };
    (p.f)(&p.state, &ctx);
    // Return only once asked to: kthread_stop() then finds us as expected.
    while !ctx.should_stop() {
        ctx.wait(None, || false);
    }
    0
}

impl<S: Send + Sync + 'static> KThread<S> {
    /// Starts a thread named `name` running `f(&state, ctx)`.
    pub fn spawn(
        name: core::fmt::Arguments<'_>,
        state: Arc<S>,
        f: fn(&S, &ThreadCtx),
    ) -> Result<Self> {
        let name = CString::try_from_fmt(name)?;
        let payload = KBox::new(Payload { state, f }, GFP_KERNEL)?;
        let payload = NonNull::new(KBox::into_raw(payload)).ok_or(ENOMEM)?;
        // SAFETY: `thread_main::<S>` expects exactly this payload, which
        // stays alive until `drop` has stopped the thread.
        let task = unsafe {
            bindings::fracture_kthread_start(
                Some(thread_main::<S>),
                payload.as_ptr().cast(),
                name.as_char_ptr().cast(),
            )
        };
        let Some(task) = NonNull::new(task) else {
            // SAFETY: no thread was created, so nothing else uses it.
            drop(unsafe { KBox::from_raw(payload.as_ptr()) });
            return Err(ENOMEM);
        };
        Ok(Self { task, payload })
    }

    /// A handle that wakes the thread.
    pub fn waker(&self) -> Waker {
        // SAFETY: `task` is a live task (we hold a reference to it, type
        // invariant); `Task` is a transparent wrapper of `task_struct`.
        let task = unsafe { &*self.task.as_ptr().cast::<Task>() };
        Waker {
            task: ARef::from(task),
        }
    }
}

impl<S: Send + Sync + 'static> Drop for KThread<S> {
    fn drop(&mut self) {
        // SAFETY: the task reference is ours; after this the thread has
        // exited (or never ran its function), so the payload is unused.
        unsafe {
            bindings::fracture_kthread_stop(self.task.as_ptr());
            drop(KBox::from_raw(self.payload.as_ptr()));
        }
    }
}
