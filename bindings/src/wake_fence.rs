//! [`Fenced`]: an awaited call does not return to the app while the thread that woke it is
//! still inside the app's language.
//!
//! UniFFI resumes an awaited call through a callback into the foreign language, made on the
//! thread that wakes the future: for our async methods, a runtime worker finishing the task
//! the call waits for. That callback hands the result to the foreign executor (Python:
//! `call_soon_threadsafe`) and then still has to leave the foreign runtime. Meanwhile the
//! app's thread resumes and may run to the end of the program: a Python interpreter that
//! starts finalising while the worker is still in its callback (waiting for the GIL it gave
//! up to the main thread) kills that worker with `pthread_exit`, whose forced unwind through
//! tokio's frames aborts the process ("FATAL: exception not rethrown"). It happened to the
//! README's quick start after `await client.shutdown()` in about 1 run in 4 under load.
//!
//! So the future the foreign code polls is woken through a relay that counts the wake-ups
//! still inside their callback, and the poll that returns the result first waits (the app's
//! thread is in Rust then, with the GIL released) until none is; so does dropping the future
//! (a call the app cancelled, as `asyncio.run` does with the tasks left when it returns). The wait is bounded: a
//! callback that never returns (CPython 3.14 parks such a thread for ever) costs the app at
//! most [`WAKE_RETURN_WAIT`] once.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

/// How long the final poll waits for a wake-up still inside its callback (as long as the
/// release of a listener waits for a callback in progress).
const WAKE_RETURN_WAIT: Duration = Duration::from_secs(1);

thread_local! {
    /// Set while this thread is inside a relayed wake-up: a foreign executor that polls the
    /// future inline from its wake callback (Kotlin's `Dispatchers.Unconfined`) must not
    /// wait for its own callback to return.
    static WAKING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// `future`, whose output is returned only once no wake-up of it is still in a callback.
pub(crate) fn fenced<F: Future + Unpin>(future: F) -> Fenced<F> {
    Fenced {
        future,
        relay: Arc::new(Relay::default()),
    }
}

/// See the module docs.
pub(crate) struct Fenced<F> {
    future: F,
    relay: Arc<Relay>,
}

#[derive(Default)]
struct Relay {
    state: Mutex<RelayState>,
    returned: Condvar,
}

#[derive(Default)]
struct RelayState {
    /// The waker of the latest poll: UniFFI's, which calls into the foreign language.
    waker: Option<Waker>,
    /// Wake-ups that called `waker` and have not returned yet.
    in_callback: usize,
}

impl Relay {
    fn lock(&self) -> std::sync::MutexGuard<'_, RelayState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until no wake-up is inside its callback, at most [`WAKE_RETURN_WAIT`].
    fn wait_for_callbacks(&self) {
        if WAKING.with(|w| w.get()) {
            return;
        }
        let deadline = Instant::now() + WAKE_RETURN_WAIT;
        let mut state = self.lock();
        while state.in_callback > 0 {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return;
            };
            state = self
                .returned
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

impl Wake for Relay {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // Taken, not cloned: one wake-up per poll is all the foreign executor needs, and the
        // next poll stores a fresh waker.
        let waker = {
            let mut state = self.lock();
            let waker = state.waker.take();
            state.in_callback += usize::from(waker.is_some());
            waker
        };
        let Some(waker) = waker else { return };
        let outer = WAKING.with(|w| w.replace(true));
        waker.wake();
        WAKING.with(|w| w.set(outer));
        let mut state = self.lock();
        state.in_callback -= 1;
        if state.in_callback == 0 {
            self.returned.notify_all();
        }
    }
}

/// A call the foreign side gives up on (a cancelled coroutine or task: UniFFI frees its
/// future) waits the same way: `asyncio.run` cancels the tasks still pending and finalises
/// right after, while a runtime thread may be waking one of them.
impl<F> Drop for Fenced<F> {
    fn drop(&mut self) {
        // Also ends the cycle relay -> foreign waker -> UniFFI's future -> this.
        self.relay.lock().waker = None;
        self.relay.wait_for_callbacks();
    }
}

impl<F: Future + Unpin> Future for Fenced<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.relay.lock().waker = Some(cx.waker().clone());
        let relayed = Waker::from(self.relay.clone());
        let output =
            std::task::ready!(Pin::new(&mut self.future).poll(&mut Context::from_waker(&relayed)));
        self.relay.wait_for_callbacks();
        Poll::Ready(output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::thread;

    /// A foreign executor's waker: reports the wake-up, then stays "inside the callback" until
    /// told to return, and logs its return.
    struct SlowForeignWaker {
        woken: Mutex<mpsc::Sender<()>>,
        leave: Mutex<mpsc::Receiver<()>>,
        log: Log,
    }

    impl Wake for SlowForeignWaker {
        fn wake(self: Arc<Self>) {
            self.woken.lock().unwrap().send(()).unwrap();
            self.leave.lock().unwrap().recv().unwrap();
            self.log.lock().unwrap().push("wake returned");
        }
    }

    type Log = Arc<Mutex<Vec<&'static str>>>;

    /// A call polled once with a [`SlowForeignWaker`], then completed on another thread
    /// (returned, to be joined): its wake-up is inside the foreign callback when this
    /// returns, and stays there until `leave` is sent.
    fn call_being_woken() -> (
        Fenced<tokio::sync::oneshot::Receiver<u32>>,
        mpsc::Sender<()>,
        Log,
        thread::JoinHandle<()>,
    ) {
        let (complete, completion) = tokio::sync::oneshot::channel::<u32>();
        let mut call = fenced(completion);
        let (woken_tx, woken) = mpsc::channel();
        let (leave, leave_rx) = mpsc::channel();
        let log = Log::default();
        let foreign = Waker::from(Arc::new(SlowForeignWaker {
            woken: Mutex::new(woken_tx),
            leave: Mutex::new(leave_rx),
            log: log.clone(),
        }));
        assert!(Pin::new(&mut call)
            .poll(&mut Context::from_waker(&foreign))
            .is_pending());
        let waking = thread::spawn(move || complete.send(7).unwrap());
        woken.recv().unwrap();
        (call, leave, log, waking)
    }

    #[test]
    fn the_output_is_returned_only_after_the_wake_up_left_its_callback() {
        // The runtime thread completed the call and woke the foreign executor, whose callback
        // has not returned yet when the app's thread polls again.
        let (mut call, leave, log, waking) = call_being_woken();
        let poll_log = log.clone();
        let app = thread::spawn(move || {
            let output = Pin::new(&mut call).poll(&mut Context::from_waker(Waker::noop()));
            poll_log.lock().unwrap().push("output returned");
            output
        });
        // Give a poll that does not wait every chance to return first.
        thread::sleep(Duration::from_millis(50));
        leave.send(()).unwrap();
        assert_eq!(app.join().unwrap(), Poll::Ready(Ok(7)));
        waking.join().unwrap();
        assert_eq!(*log.lock().unwrap(), ["wake returned", "output returned"]);
    }

    #[test]
    fn a_call_given_up_on_is_released_only_after_the_wake_up_left_its_callback() {
        // The app cancels the call while the wake-up is still in its callback.
        let (call, leave, log, waking) = call_being_woken();
        let drop_log = log.clone();
        let app = thread::spawn(move || {
            drop(call);
            drop_log.lock().unwrap().push("call released");
        });
        thread::sleep(Duration::from_millis(50));
        leave.send(()).unwrap();
        app.join().unwrap();
        waking.join().unwrap();
        assert_eq!(*log.lock().unwrap(), ["wake returned", "call released"]);
    }

    /// An executor that polls inline from its wake callback (Kotlin's `Unconfined`).
    struct InlineExecutor {
        call: Mutex<Option<Fenced<tokio::sync::oneshot::Receiver<u32>>>>,
        output: Mutex<Option<Poll<u32>>>,
    }

    impl Wake for InlineExecutor {
        fn wake(self: Arc<Self>) {
            let mut call = self.call.lock().unwrap().take().unwrap();
            let waker = Waker::from(self.clone());
            let output = Pin::new(&mut call)
                .poll(&mut Context::from_waker(&waker))
                .map(Result::unwrap);
            *self.output.lock().unwrap() = Some(output);
        }
    }

    #[test]
    fn an_executor_that_polls_from_inside_its_wake_callback_gets_the_output_there() {
        let (complete, completion) = tokio::sync::oneshot::channel::<u32>();
        let executor = Arc::new(InlineExecutor {
            call: Mutex::new(None),
            output: Mutex::new(None),
        });
        let mut call = fenced(completion);
        let waker = Waker::from(executor.clone());
        assert!(Pin::new(&mut call)
            .poll(&mut Context::from_waker(&waker))
            .is_pending());
        *executor.call.lock().unwrap() = Some(call);
        // The wake-up polls inline: the relay's lock is not held across the callback, so this
        // does not deadlock, and the poll inside the callback returns the output.
        complete.send(7).unwrap();
        assert_eq!(*executor.output.lock().unwrap(), Some(Poll::Ready(7)));
    }
}
