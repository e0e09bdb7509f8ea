//! A foreign object (a listener, the log sink) that one library thread calls, one call at a
//! time, and that the app's thread can take away and then wait for, bounded, until a call in
//! progress on another thread has let go of it: so the object is released on the app's thread
//! and no library thread calls into it after the release returns (a finalising Python
//! interpreter aborts the process when a thread calls into it).
//!
//! The calling thread takes its reference, and marks the call in progress, under the lock the
//! object is taken away under: either the taker sees the call and waits for it, or the call
//! does not start. The lock is never held during a call, and nothing foreign is released
//! under it.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::ThreadId;
use std::time::Instant;

/// How long a release waits, in all, for calls in progress on other threads. Bounded so that
/// an app releasing on a thread a call blocks on (a callback that waits for the UI thread
/// while the UI thread releases) is slowed, not deadlocked.
pub(crate) const RELEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

pub(crate) struct ForeignSlot<T> {
    state: Mutex<State<T>>,
    /// Notified when a call has returned and its reference is let go.
    returned: Condvar,
}

struct State<T> {
    /// The object, until taken.
    object: Option<T>,
    /// The thread in a call, from when it took its reference (under the lock) until it has
    /// let go of it.
    calling: Option<ThreadId>,
}

impl<T> ForeignSlot<T> {
    pub(crate) fn new(object: T) -> Self {
        ForeignSlot {
            state: Mutex::new(State {
                object: Some(object),
                calling: None,
            }),
            returned: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Calls `call` with the reference `pick` takes from the object (under the lock: it may
    /// also say no), unless the object was taken. Returns whether `call` ran.
    pub(crate) fn call<L>(
        &self,
        pick: impl FnOnce(&T) -> Option<L>,
        call: impl FnOnce(&L),
    ) -> bool {
        let in_call = {
            let mut state = self.lock();
            let Some(reference) = state.object.as_ref().and_then(pick) else {
                return false;
            };
            state.calling = Some(std::thread::current().id());
            InCall {
                slot: self,
                reference: Some(reference),
            }
        };
        if let Some(reference) = &in_call.reference {
            call(reference);
        }
        true
    }

    /// Takes the object away: no call starts after this.
    pub(crate) fn take(&self) -> Option<T> {
        self.lock().object.take()
    }

    /// Waits until no call on another thread is in progress (one on this thread, a release
    /// from inside a call, is not waited for), or until `deadline`. Returns whether a call
    /// outlasted it; that call's thread then lets go of its reference when the call returns.
    pub(crate) fn wait_for_call(&self, deadline: Instant) -> bool {
        let here = std::thread::current().id();
        let left = deadline.saturating_duration_since(Instant::now());
        let (_state, waited) = self
            .returned
            .wait_timeout_while(self.lock(), left, |s| s.calling.is_some_and(|t| t != here))
            .unwrap_or_else(PoisonError::into_inner);
        waited.timed_out()
    }

    /// The calling thread ends: it releases the object still in the slot itself, marked in
    /// progress like a call, so that a taker meanwhile waits for the foreign release to be
    /// over instead of finding nothing left to wait for.
    pub(crate) fn release_here(&self) {
        let object = {
            let mut state = self.lock();
            let object = state.object.take();
            if object.is_some() {
                state.calling = Some(std::thread::current().id());
            }
            object
        };
        if object.is_some() {
            // Outside the lock: a foreign release may run foreign code.
            drop(object);
            self.returned_here();
        }
    }

    fn returned_here(&self) {
        self.lock().calling = None;
        self.returned.notify_all();
    }
}

/// A call in progress: when dropped (also by an unwind), lets go of its reference, then
/// clears the mark and wakes a taker waiting for it, which then holds the last reference.
struct InCall<'a, T, L> {
    slot: &'a ForeignSlot<T>,
    reference: Option<L>,
}

impl<T, L> Drop for InCall<'_, T, L> {
    fn drop(&mut self) {
        // Outside the lock: if the object was taken and released meanwhile on this thread
        // (from inside the call), this is the last reference, and its release may run
        // foreign code.
        drop(self.reference.take());
        self.slot.returned_here();
    }
}
