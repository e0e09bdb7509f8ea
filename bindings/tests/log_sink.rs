//! The log bridge (`set_log_sink`) in a process of its own: the global `tracing` subscriber it
//! installs would also see every other test's records, and the overflow count must not be
//! disturbed by them.

use std::sync::mpsc::channel;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;
use tether_ffi::{set_log_sink, ListenerError, LogLevel, LogRecord, LogSink};

/// The bridge's queue (documented on `LogSink`: 1,024 records).
const QUEUE: usize = 1024;

struct Collect(Mutex<std::sync::mpsc::Sender<LogRecord>>);

impl LogSink for Collect {
    fn log(&self, record: LogRecord) -> Result<(), ListenerError> {
        let _ = self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(record);
        Ok(())
    }
}

// One test: the global subscriber is per process.
#[test]
fn records_reach_the_sink_at_its_level_overflow_is_counted_and_none_stops_them() {
    let (tx, rx) = channel();
    set_log_sink(Some(Arc::new(Collect(Mutex::new(tx)))), LogLevel::Info).expect("installed");
    tracing::info_span!("tether", url = "ws://127.0.0.1:1/ws").in_scope(|| {
        tracing::debug!("not wanted at info");
        tracing::info!(attempt = 2, "reconnect scheduled");
    });
    let record = rx.recv_timeout(Duration::from_secs(5)).expect("a record");
    assert_eq!(record.level, LogLevel::Info);
    assert_eq!(
        record.message,
        "reconnect scheduled attempt=2 url=ws://127.0.0.1:1/ws"
    );
    assert_eq!(record.dropped_before, 0);
    assert_eq!(record.target, "log_sink");

    // A sink that blocks: the queue fills, the overflow is dropped and counted, and the next
    // record delivered says how many.
    let (tx, rx) = channel();
    let gate = Arc::new((Mutex::new(false), Condvar::new()));
    let sink = Gated(gate.clone(), Mutex::new(tx));
    set_log_sink(Some(Arc::new(sink)), LogLevel::Info).expect("replaced");
    let burst = QUEUE + 11;
    for i in 0..burst {
        tracing::info!(i, "burst");
    }
    *gate.0.lock().expect("gate") = true;
    gate.1.notify_all();
    let mut delivered = 0;
    while let Ok(r) = rx.recv_timeout(Duration::from_millis(500)) {
        assert_eq!(r.dropped_before, 0, "{r:?}");
        delivered += 1;
    }
    tracing::info!("after the burst");
    let after = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("the next record");
    assert!(after.message.starts_with("after the burst"), "{after:?}");
    assert!(after.dropped_before > 0, "{after:?}");
    assert_eq!(delivered + after.dropped_before, burst as u64);

    set_log_sink(None, LogLevel::Trace).expect("stopped");
    // Released by then, on this thread: no library thread holds the app's sink any more (a
    // Python interpreter that finalises next aborts if one calls into it).
    let nothing_more: Vec<_> = rx.try_iter().collect();
    assert_eq!(
        rx.try_recv(),
        Err(std::sync::mpsc::TryRecvError::Disconnected),
        "the removed sink is still held; it got {nothing_more:?} after its removal"
    );
    tracing::error!("after the sink was removed");
}

struct Gated(
    Arc<(Mutex<bool>, Condvar)>,
    Mutex<std::sync::mpsc::Sender<LogRecord>>,
);

impl LogSink for Gated {
    fn log(&self, record: LogRecord) -> Result<(), ListenerError> {
        let (open, wake) = &*self.0;
        let guard = open.lock().unwrap_or_else(|p| p.into_inner());
        let _open = wake
            .wait_timeout_while(guard, Duration::from_secs(10), |open| !*open)
            .unwrap_or_else(|p| p.into_inner());
        let _ = self
            .1
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(record);
        Ok(())
    }
}
