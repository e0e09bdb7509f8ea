"""Fixtures for the Python bindings tests: the reference relay as a restartable child process,
one asyncio loop for the whole session, and an event recorder.

Run by scripts/test-bindings with the generated module on PYTHONPATH and TETHER_RELAY_BIN set.
"""

import asyncio
import atexit
import gc
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

import tether_ffi as t

TOKEN = "s3cret"
# Client A's listener queue, and a burst that overflows it for a blocked listener only:
# BURST messages + BURST acks for A put a blocked listener more than QUEUE events behind.
QUEUE = 256
BURST = 150
CHUNK = 25


# Relays running now. The session fixture stops its relay at teardown, but teardown does not
# run when the process is ended from outside: scripts/test-bindings runs pytest under
# `timeout`, whose SIGTERM would otherwise leave tether-relay running after Python is gone.
_RUNNING = set()


def _kill_running_relays():
    for relay in list(_RUNNING):
        proc = relay.proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
    _RUNNING.clear()


def _on_sigterm(signum, _frame):
    """Kills the relays, then dies of the signal as Python would have without this handler."""
    _kill_running_relays()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


atexit.register(_kill_running_relays)
signal.signal(signal.SIGTERM, _on_sigterm)


class Relay:
    """The reference relay as a child process, restartable on the same port."""

    def __init__(self, binary, log_path):
        self.binary = binary
        self.log_path = log_path
        self.port = 0
        self.proc = None

    @property
    def url(self):
        return f"ws://127.0.0.1:{self.port}/"

    def start(self):
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [self.binary, "--listen", f"127.0.0.1:{self.port}", "--token", TOKEN],
            stdout=subprocess.PIPE,
            stderr=log,
        )
        _RUNNING.add(self)
        log.close()
        ready = {}

        def read():
            for raw in self.proc.stdout:
                line = raw.decode().strip()
                if line.startswith("listening on ws://"):
                    ready["line"] = line

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        deadline = time.monotonic() + 15
        while "line" not in ready:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop(graceful=False)
                raise RuntimeError(f"the relay did not start (see {self.log_path})")
            time.sleep(0.01)
        self.port = int(ready["line"].rsplit(":", 1)[1].strip("/"))

    def stop(self, graceful):
        """SIGTERM lets the relay close every connection with 1012; SIGKILL is a crash."""
        if self.proc is None:
            return
        if graceful:
            self.proc.terminate()
        else:
            self.proc.kill()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self.proc.stdout.close()
        self.proc = None
        _RUNNING.discard(self)


class CutProxy:
    """A TCP proxy on 127.0.0.1 in front of the relay that can cut its client off: `cut()`
    closes every connection and refuses new ones until `restore()`. The relay (and its
    documents) stay up meanwhile."""

    def __init__(self, upstream_port):
        self.upstream_port = upstream_port
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(50)
        self.url = f"ws://127.0.0.1:{self.server.getsockname()[1]}/"
        self.lock = threading.Lock()
        self.refusing = False
        self.sockets = set()
        self.acceptor = threading.Thread(target=self._accept, name="cut-proxy", daemon=True)
        self.acceptor.start()

    def _accept(self):
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            with self.lock:
                upstream = None
                if not self.refusing:
                    try:
                        upstream = socket.create_connection(("127.0.0.1", self.upstream_port), 5)
                        upstream.settimeout(None)
                    except OSError:
                        pass
                if upstream is None:
                    client.close()
                    continue
                self.sockets |= {client, upstream}
                for a, b in ((client, upstream), (upstream, client)):
                    threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src, dst):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            _hang_up(src)
            _hang_up(dst)

    def cut(self):
        with self.lock:
            self.refusing = True
            for s in self.sockets:
                _hang_up(s)
            self.sockets.clear()

    def restore(self):
        with self.lock:
            self.refusing = False

    def close(self):
        _hang_up(self.server)  # wakes the blocked accept()
        self.cut()
        self.acceptor.join(5)


def _hang_up(s):
    """shutdown() wakes a thread blocked on the socket; close() alone does not on Linux."""
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    s.close()


@pytest.fixture(scope="session", autouse=True)
def quiesce():
    """Torn down last: checks that every client was shut down and released while the
    interpreter is still alive.

    A client's task and listener threads hold Python objects (the token provider, listeners)
    and release them from Rust threads. If that happened during interpreter finalization,
    CPython would kill the calling thread with pthread_exit and the process would abort
    ("FATAL: exception not rethrown"). `await client.shutdown()` returns only once all of that
    has happened, so the fixtures and tests end every client with it; this checks that none
    was left behind."""
    yield
    gc.collect()
    alive = [o for o in gc.get_objects() if isinstance(o, (t.Client, t.ListenerHandle))]
    assert not alive, f"still referenced at exit: {alive}"


def pytest_terminal_summary(terminalreporter):
    """The `N passed, N failed` line scripts/test-bindings reports, as the Kotlin test prints."""
    stats = terminalreporter.stats
    passed = len([r for r in stats.get("passed", []) if r.when == "call"])
    failed = len({r.nodeid for r in stats.get("failed", []) + stats.get("error", [])})
    terminalreporter.write_line(f"{passed} passed, {failed} failed")


@pytest.fixture(scope="session")
def relay():
    log_dir = os.environ.get("TETHER_TEST_LOG_DIR", "target/bindings/logs")
    os.makedirs(log_dir, exist_ok=True)
    r = Relay(os.environ["TETHER_RELAY_BIN"], os.path.join(log_dir, "relay-python.log"))
    r.start()
    yield r
    r.stop(graceful=False)


@pytest.fixture(scope="session")
def run():
    """Runs coroutines on one asyncio loop that lives for the whole session.

    UniFFI's Python bindings resolve Rust futures on the loop set with `uniffi_set_event_loop`,
    and run async foreign callbacks (the token provider, called from a Rust thread) there too.
    An app has one such loop; so do the tests: every test's coroutine and every token fetch,
    including those during reconnects between tests, run on it.
    """
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="test-loop", daemon=True)
    thread.start()
    t.uniffi_set_event_loop(loop)

    def run_coroutine(coro, timeout=60):
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)

    yield run_coroutine
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=5)
    loop.close()


class Tokens(t.TokenProvider):
    def __init__(self):
        self.calls = 0

    async def token(self, refresh):
        self.calls += 1
        await asyncio.sleep(0.005)  # really asynchronous
        return TOKEN


@pytest.fixture(scope="session")
def tokens():
    return Tokens()


class Events:
    """Records every event with the thread it arrived on; waits for events without blocking
    the event loop (token fetches run on it)."""

    def __init__(self, on_each=None):
        self.lock = threading.Lock()
        self.events = []
        self.threads = set()
        self.cursor = 0
        self.on_each = on_each

    def record(self, event):
        with self.lock:
            self.events.append(event)
            self.threads.add(threading.current_thread().name)
        if self.on_each is not None:
            self.on_each(event)

    def mark(self):
        with self.lock:
            return len(self.events)

    def snapshot(self):
        with self.lock:
            return list(self.events)

    async def next(self, what, pred, timeout=10.0):
        """The next event after the previous match that satisfies `pred`."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                while self.cursor < len(self.events):
                    event = self.events[self.cursor]
                    self.cursor += 1
                    if pred(event):
                        return event
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} within {timeout} s; saw {self.snapshot()[-8:]}")
            await asyncio.sleep(0.01)

    def since(self, mark):
        with self.lock:
            return self.events[mark:]

    async def wait_for(self, what, cond, since=0, timeout=10.0):
        """Waits until the events from `since` on satisfy `cond`, in any order."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                if cond(self.events[since:]):
                    return
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} within {timeout} s; saw {self.snapshot()[-8:]}")
            await asyncio.sleep(0.01)


class Recorder(Events, t.ClientListener):
    """A client listener that records."""

    def on_event(self, event):
        self.record(event)

    async def state(self, what, pred, timeout=10.0):
        return await self.next(
            what, lambda e: e.is_STATE_CHANGED() and pred(e.current), timeout
        )


class DocRecorder(Events, t.DocumentListener):
    """A document listener that records."""

    def on_event(self, event):
        self.record(event)


async def until(what, cond, timeout=10.0):
    """Polls `cond` every 10 ms until it holds, for at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} within {timeout} s")
        await asyncio.sleep(0.01)


def run_app(script):
    """Runs the Python app `script` in a fresh interpreter (at most 60 s) and returns its
    `CompletedProcess`, after checking that the app did not abort ("FATAL" from CPython killing
    a thread in a callback)."""
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ),
    )
    assert "FATAL" not in done.stderr, (done.returncode, done.stdout, done.stderr)
    return done


def run_app_three_times(script):
    """`run_app` three times (what it guards against depends on thread timing at exit),
    yielding each run."""
    for _ in range(3):
        yield run_app(script)


def config(url, client_id, tokens):
    return (
        t.ClientConfig(url)
        .wire_protocol(t.WireProtocol.TETHER)
        .client_id(client_id)
        .token_provider(tokens)
        .backoff_initial_ms(100)
        .backoff_max_ms(400)
        .jitter(t.Jitter.NONE)
    )


@pytest.fixture(scope="session")
def pair(relay, tokens, run):
    """Two clients subscribed to "room", shared by the scenario tests, closed at the end.

    Yields a list (unpacked by the tests) that teardown empties: pytest keeps a fixture's
    value referenced until the interpreter exits, and the clients must be released before
    that (see `quiesce`)."""
    rec_a, rec_b = Recorder(), Recorder()
    a = t.Client(config(relay.url, "py-a", tokens).listener_queue_capacity(QUEUE))
    b = t.Client(config(relay.url, "py-b", tokens))
    handle_a, handle_b = a.add_listener(rec_a), b.add_listener(rec_b)
    a.subscribe("room")
    b.subscribe("room")
    a.connect()
    b.connect()
    held = [a, b, rec_a, rec_b, handle_a]
    yield held
    handle_a.cancel()
    handle_b.cancel()
    run(a.shutdown())
    run(b.shutdown())
    held.clear()
