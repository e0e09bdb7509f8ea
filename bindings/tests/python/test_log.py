"""The library's log handed to Python through `set_log_sink` (a `LogSink`), as an app would
route it into `logging`."""

import queue
import socket
import time

import tether_ffi as t


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
        time.sleep(0.2)  # records queued before the removal may still arrive
        while not sink.records.empty():
            sink.records.get()
        time.sleep(0.5)  # more reconnects are scheduled meanwhile (50 ms backoff)
        assert sink.records.empty(), [r.message for r in list(sink.records.queue)]
    finally:
        t.set_log_sink(None, t.LogLevel.INFO)
        run(c.shutdown())
