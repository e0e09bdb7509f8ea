//! Ctrl-C (SIGINT) and SIGTERM for `tether connect`. Left to their default action they kill
//! the process: the server sees the TCP connection drop without a close (1006), and messages
//! the CLI had accepted but not delivered are lost without a word. Listened for, they ask
//! for a clean close instead; a second one exits at once, for whoever will not wait.
//!
//! Once listened for, a signal never gets its default action back for the life of the
//! process, which is why [`Signals`] keeps listening after the first: the second is ours to
//! act on too. On Unix; elsewhere Ctrl-C only.

/// A signal that stops `tether connect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    /// SIGINT: Ctrl-C in a terminal.
    Interrupt,
    /// SIGTERM: how `kill`, service managers and `docker stop` ask politely.
    Terminate,
}

impl Signal {
    /// Its usual name, as the output prints it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
        }
    }

    /// 128 + the signal's number: the status a shell reports for a process the signal
    /// killed, so a script that tells "stopped by a signal" apart that way still can.
    pub(crate) fn exit_status(self) -> u8 {
        match self {
            Signal::Interrupt => 130,
            Signal::Terminate => 143,
        }
    }
}

/// SIGINT and SIGTERM, listened for from [`Signals::install`] on: on Unix, one that comes
/// before the first [`Signals::recv`] is kept for it, not lost to the default action.
/// Elsewhere only Ctrl-C is heard, and only while a `recv` waits (each call listens anew):
/// one between two calls keeps its default action. Not tested: CI runs on Linux.
#[derive(Debug)]
pub(crate) struct Signals {
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    /// Starts listening (needs a tokio runtime). A signal that cannot be listened for keeps
    /// its default action; that is logged.
    pub(crate) fn install() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let listen = |kind: SignalKind, name: &str| match signal(kind) {
                Ok(stream) => Some(stream),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for {name}; it will kill the process");
                    None
                }
            };
            Signals {
                interrupt: listen(SignalKind::interrupt(), "SIGINT"),
                terminate: listen(SignalKind::terminate(), "SIGTERM"),
            }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    /// The next signal. Cancel-safe on Unix: a signal that comes while another branch of a
    /// `select!` wins is kept for the next call (not elsewhere; see [`Signals`]).
    pub(crate) async fn recv(&mut self) -> Signal {
        #[cfg(unix)]
        {
            tokio::select! {
                () = next(&mut self.interrupt) => Signal::Interrupt,
                () = next(&mut self.terminate) => Signal::Terminate,
            }
        }
        #[cfg(not(unix))]
        {
            if let Err(e) = tokio::signal::ctrl_c().await {
                tracing::warn!(error = %e, "cannot listen for Ctrl-C");
                std::future::pending::<()>().await;
            }
            Signal::Interrupt
        }
    }
}

/// Resolves on the next delivery of `signal`; never, if it is not listened for.
#[cfg(unix)]
async fn next(signal: &mut Option<tokio::signal::unix::Signal>) {
    if let Some(stream) = signal {
        if stream.recv().await.is_some() {
            return;
        }
    }
    std::future::pending().await
}
