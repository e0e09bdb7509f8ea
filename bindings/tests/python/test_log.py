"""The library's log handed to Python through `set_log_sink` (a `LogSink`), as an app would
route it into `logging`."""

import queue
import socket
import textwrap
import time

import tether_ffi as t
from conftest import run_app_three_times


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sink(t.LogSink):
    def __init__(self):
        self.records = queue.Queue()

    def log(self, record):
        self.records.put(record)


def wait_for(sink, what, pred, timeout=10.0):
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            record = sink.records.get(timeout=0.1)
        except queue.Empty:
            continue
        seen.append(record)
        if pred(record):
            return record, seen
    raise AssertionError(f"no {what} within {timeout} s; saw {[r.message for r in seen]}")


def test_log_sink_gets_the_clients_records_at_its_level_then_nothing_once_removed(run):
    sink = Sink()
    t.set_log_sink(sink, t.LogLevel.INFO)
    url = f"ws://127.0.0.1:{free_port()}/"
    c = t.Client(t.ClientConfig(url).backoff_initial_ms(50))
    try:
        c.connect()
        # Other tests' clients may still be logging: this client's records carry its URL.
        mine = lambda r: "reconnect scheduled" in r.message and f"url={url}" in r.message  # noqa: E731
        record, seen = wait_for(sink, "reconnect record", mine)
        assert record.level == t.LogLevel.INFO, record
        assert record.target.startswith("tether"), record
        # The connection attempts themselves are logged at debug: not asked for.
        assert all(r.level != t.LogLevel.DEBUG for r in seen), seen

        t.set_log_sink(None, t.LogLevel.INFO)
        # What the sink got before the removal returned. Nothing may come after it, not even
        # a record that was queued for the sink then (set_log_sink's contract).
        while not sink.records.empty():
            sink.records.get()
        time.sleep(0.5)  # more reconnects are scheduled meanwhile (50 ms backoff)
        assert sink.records.empty(), [r.message for r in list(sink.records.queue)]
    finally:
        t.set_log_sink(None, t.LogLevel.INFO)
        run(c.shutdown())


# An app that routes the library's log into `logging` and exits while its clients are busy
# reconnecting (and so logging). It removes the sink first, as README.md says; once
# `set_log_sink(None, ...)` has returned, no library thread may call into Python any more.
# Before the fix the "tether-log" thread went on delivering what was queued, and CPython,
# finalising, killed it with pthread_exit inside the callback: the process aborted
# ("FATAL: exception not rethrown", exit status 134) every time.
LOGGING_APP = textwrap.dedent(
    """
    import time
    import tether_ffi as t

    class Sink(t.LogSink):
        def log(self, record):
            time.sleep(0.001)  # a handler that writes somewhere

    t.set_log_sink(Sink(), t.LogLevel.TRACE)
    config = t.ClientConfig(URL).backoff_initial_ms(1).backoff_max_ms(2)
    clients = [t.Client(config) for _ in range(4)]
    try:
        for c in clients:
            c.connect()
        time.sleep(0.3)
    finally:
        t.set_log_sink(None, t.LogLevel.ERROR)
    print("exiting", flush=True)
    """
)


def test_a_removed_log_sink_is_not_called_while_the_interpreter_exits(tmp_path):
    script = tmp_path / "logging_app.py"
    # Nothing listens there: every client reconnects (and logs) every few milliseconds.
    script.write_text(f"URL = {f'ws://127.0.0.1:{free_port()}/'!r}\n" + LOGGING_APP)
    for done in run_app_three_times(script):
        assert (done.returncode, done.stdout) == (0, "exiting\n"), (done.returncode, done.stdout, done.stderr)
