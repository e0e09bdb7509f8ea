"""How long listeners live, and what releasing a client without `shutdown()` does: a dropped
handle does not stop its listener, and a client still alive when the interpreter exits (also
on an uncaught exception) lets the process exit normally."""

import gc
import textwrap

import pytest

import tether_ffi as t
from conftest import TOKEN, DocRecorder, Recorder, run_app, run_app_three_times, until


def test_a_listener_lives_until_cancelled_even_when_its_handle_is_dropped(run):
    async def scenario():
        c = t.Client(t.ClientConfig("ws://127.0.0.1:9/").wire_protocol(t.WireProtocol.TETHER))
        rec = Recorder()
        c.add_listener(rec)  # the handle is not kept, and released at once
        gc.collect()
        await rec.next("the state snapshot", lambda e: e.is_STATE_CHANGED())
        doc = c.document("lifetime")
        doc.set("milk", "2")
        await rec.next("DocumentChanged", lambda e: e.is_DOCUMENT_CHANGED())
        await c.shutdown()

    run(scenario())



def test_a_handle_says_its_listener_stopped_once_its_document_closed_or_the_client_shut_down(run):
    # `is_cancelled()` answers "is this listener stopped?": an app checks it to know whether to
    # add its listener again. A listener also stops when its document is closed and when the
    # client shuts down; the handle must say so then too, not only after `cancel()`.
    async def scenario():
        c = t.Client(t.ClientConfig("ws://127.0.0.1:9/").wire_protocol(t.WireProtocol.TETHER))
        try:
            rec, closed_rec, doc_rec = Recorder(), DocRecorder(), DocRecorder()
            handle = c.add_listener(rec)
            closed = c.document("closed")
            closed_handle = closed.add_listener(closed_rec)
            doc_handle = c.document("open").add_listener(doc_rec)
            await rec.next("the state snapshot", lambda e: e.is_STATE_CHANGED())
            await closed_rec.next("the snapshot", lambda e: e.is_SNAPSHOT())
            await doc_rec.next("the snapshot", lambda e: e.is_SNAPSHOT())
            assert not any(h.is_cancelled() for h in (handle, closed_handle, doc_handle))

            closed.close_document()
            await until("the closed document's listener's handle cancelled", closed_handle.is_cancelled, 5)
        finally:
            # shutdown() returns once every listener thread has ended: the handles say so.
            await c.shutdown()
        assert handle.is_cancelled(), "the client shut down; its listener's handle says it runs"
        assert doc_handle.is_cancelled(), "the client shut down; its document listener's handle says it runs"

    run(scenario())


# An app that never awaits shutdown(): a listener, a document listener and a token provider are
# attached and connected when the interpreter exits, by an uncaught exception or normally. The
# client is then released while CPython finalises; before the fix its threads called into
# Python then, and CPython's pthread_exit of such a thread aborted the process
# ("FATAL: exception not rethrown", exit status 134). (A callback already waiting for the GIL
# when the interpreter starts finalising still dies with it: bindings/README.md, Python.)
APP = textwrap.dedent(
    """
    import asyncio, sys, time
    import tether_ffi as t

    class Listener(t.ClientListener):
        def on_event(self, event):
            pass

    class DocListener(t.DocumentListener):
        def on_event(self, event):
            pass

    class Tokens(t.TokenProvider):
        async def token(self, refresh):
            return TOKEN

    def main():
        loop = asyncio.new_event_loop()
        t.uniffi_set_event_loop(loop)
        config = t.ClientConfig(URL).wire_protocol(t.WireProtocol.TETHER).token_provider(Tokens())
        client = t.Client(config)
        client.add_listener(Listener())
        doc = client.document("exit")
        doc.add_listener(DocListener())
        client.connect()
        deadline = time.monotonic() + 10
        while client.state() != t.ConnectionState.OPEN():
            loop.run_until_complete(asyncio.sleep(0.01))  # the token provider runs on this loop
            assert time.monotonic() < deadline, client.state()
        doc.set("k", "1")
        while doc.pending() > 0:  # acknowledged: the listeners have had their events
            loop.run_until_complete(asyncio.sleep(0.01))
            assert time.monotonic() < deadline, doc.pending()
        time.sleep(0.3)  # as an app does other things before it fails
        if MODE == "raise":
            raise RuntimeError("some unrelated app bug")
        print("exiting", flush=True)
        return client, doc

    kept = main()
    """
)


@pytest.mark.parametrize("mode, status", [("raise", 1), ("exit", 0)])
def test_a_client_alive_at_interpreter_exit_lets_the_process_exit_normally(relay, tmp_path, mode, status):
    script = tmp_path / "app.py"
    script.write_text(f"URL = {relay.url!r}\nTOKEN = {TOKEN!r}\nMODE = {mode!r}\n" + APP)
    for done in run_app_three_times(script):
        assert done.returncode == status, (done.returncode, done.stdout, done.stderr)
        if mode == "raise":
            assert "RuntimeError: some unrelated app bug" in done.stderr, done.stderr
        else:
            assert done.stdout == "exiting\n", done.stdout


# A synchronous app (no asyncio at all) that tears its client down in `finally:` with
# shutdown_blocking: by the time the interpreter finalises no library thread is left that could
# call into Python, whatever the listeners were doing when the app failed.
SYNC_APP = textwrap.dedent(
    """
    import sys, threading, time
    import tether_ffi as t

    closed = threading.Event()

    class Listener(t.ClientListener):
        def on_event(self, event):
            if event.is_STATE_CHANGED() and event.current.is_CLOSED():
                closed.set()

    config = t.ClientConfig(URL).wire_protocol(t.WireProtocol.TETHER)
    client = t.Client(config.header("Authorization", f"Bearer {TOKEN}"))
    handle = client.add_listener(Listener())
    client.connect()
    try:
        deadline = time.monotonic() + 10
        while not client.state().is_OPEN():
            time.sleep(0.01)
            assert time.monotonic() < deadline, client.state()
        client.publish("room", t.Payload.TEXT("hello"))
        raise RuntimeError("some unrelated app bug")
    finally:
        done = client.shutdown_blocking(5000)
        print(f"done={done} closed={closed.is_set()}", flush=True)
    """
)


def test_shutdown_blocking_tears_a_synchronous_app_down_in_finally(relay, tmp_path):
    script = tmp_path / "sync_app.py"
    script.write_text(f"URL = {relay.url!r}\nTOKEN = {TOKEN!r}\n" + SYNC_APP)
    done = run_app(script)
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    assert "RuntimeError: some unrelated app bug" in done.stderr, done.stderr
    assert done.stdout == "done=True closed=True\n", (done.stdout, done.stderr)


# An awaited call is resumed by UniFFI through a callback made on the runtime thread that
# completed it. That thread is preempted here right after it has woken the event loop, before
# it leaves Python (the callback spins for 0.3 s with the GIL handed back and forth): the app
# resumes, returns from asyncio.run and finalises meanwhile. Before the fix CPython then killed
# that thread mid-callback ("FATAL: exception not rethrown", exit status 134: the README's
# quick start did so after `await client.shutdown()`, about 1 run in 20 under load); now the
# call's last poll waits (up to 1 s, in Rust with the GIL released) until that thread has left
# Python; so does the release of a call left pending, which asyncio.run cancels as it returns
# ("cancelled").
LAST_AWAIT_APP = textwrap.dedent(
    """
    import asyncio, threading, time
    import tether_ffi as t

    MAIN = threading.get_ident()
    wake = t._uniffi_continuation_callback
    in_callback = threading.Event()

    @t._UNIFFI_RUST_FUTURE_CONTINUATION_CALLBACK
    def slow_to_leave(future, poll_code):
        wake(future, poll_code)
        if threading.get_ident() != MAIN:
            in_callback.set()
            end = time.monotonic() + 0.3
            while time.monotonic() < end:
                pass

    t._uniffi_continuation_callback = slow_to_leave

    async def main():
        config = t.ClientConfig(URL).wire_protocol(t.WireProtocol.TETHER)
        client = t.Client(config.header("Authorization", f"Bearer {TOKEN}"))
        client.connect()
        if LAST == "cancelled":
            # Left pending: asyncio.run cancels it as it returns, while its wake-up is still
            # in the callback.
            asyncio.create_task(client.publish_acked("room", t.Payload.TEXT("hello"), 5000))
            await asyncio.sleep(0)  # the task starts the call
            # Blocking, not awaiting: the loop must not resume the task before it is cancelled.
            assert in_callback.wait(10)
            print("returning", flush=True)
            return client
        offset = await client.publish_acked("room", t.Payload.TEXT("hello"), 5000)
        if LAST == "publish_acked":
            print(f"acked {offset is not None}", flush=True)
            return client
        if LAST == "disconnect":
            print(await client.disconnect(), flush=True)
            return client
        await client.shutdown()
        print("shut down", flush=True)

    kept = asyncio.run(main())
    """
)


@pytest.mark.parametrize(
    "last, out",
    [
        ("shutdown", "shut down\n"),
        ("publish_acked", "acked True\n"),
        ("disconnect", "CloseReason.APP(code=1000)\n"),
        ("cancelled", "returning\n"),
    ],
)
def test_the_last_awaited_call_returns_only_once_its_waking_thread_left_python(relay, tmp_path, last, out):
    script = tmp_path / "last_await.py"
    script.write_text(f"URL = {relay.url!r}\nTOKEN = {TOKEN!r}\nLAST = {last!r}\n" + LAST_AWAIT_APP)
    done = run_app(script)
    assert done.returncode == 0, (done.returncode, done.stdout, done.stderr)
    assert done.stdout == out, (done.stdout, done.stderr)
