"""The Python examples of bindings/README.md, run as written so they cannot rot.

Each ```python block is read from the README when the test runs (so the README is tested as it
stands) and run in a fresh interpreter, as an app would be: the examples set process-wide
things (the log sink, the UniFFI event loop) that must not leak into the other tests. Around a
block goes only what the README leaves to the app (a `session` that hands out tokens, a
`config`), and the README's URL is replaced with the test relay's. A new block that no test
here runs fails `test_every_block_is_run`.
"""

import re
import textwrap
from pathlib import Path


from conftest import TOKEN, run_app

README = Path(__file__).resolve().parents[2] / "README.md"
README_URL = "ws://127.0.0.1:9000/"

# A line of each block that the test running it is named after.
LOG_SINK = "t.set_log_sink(ToLogging(), t.LogLevel.INFO)"
QUICK_START = "asyncio.run(main())"
SYNC_SHUTDOWN = "client.shutdown_blocking(5000)"


def python_blocks():
    return re.findall(r"^```python\n(.*?)^```$", README.read_text(), re.S | re.M)


def block(marker):
    found = [b for b in python_blocks() if marker in b]
    assert len(found) == 1, f"{len(found)} ```python blocks of {README} contain {marker!r}"
    return found[0]


def run_example(tmp_path, before, example, after=""):
    """Runs `before`, the README's `example` and `after` as one script; returns its stdout."""
    script = tmp_path / "example.py"
    script.write_text(textwrap.dedent(before) + example + textwrap.dedent(after))
    done = run_app(script)
    assert done.returncode == 0, (script.read_text(), done.stdout, done.stderr)
    return done.stdout


def test_every_block_is_run():
    for b in python_blocks():
        assert any(m in b for m in (LOG_SINK, QUICK_START, SYNC_SHUTDOWN)), f"not run:\n{b}"


def test_log_sink_example_routes_records_to_logging(relay, tmp_path):
    """"Logs": the sink hands records to `logging` under their target, at their level."""
    before = """\
        import logging, sys, threading
        logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(levelname)s %(name)s | %(message)s")
        arrived = threading.Event()

        class Arrived(logging.Handler):
            def emit(self, record):
                arrived.set()

        logging.getLogger().addHandler(Arrived())
    """
    # The app: a client connects, which logs its state changes at INFO.
    after = f"""
        client = t.Client(t.ClientConfig({relay.url!r}))
        client.connect()
        assert arrived.wait(10), "no record reached logging"
        assert client.shutdown_blocking(5000)
    """
    out = run_example(tmp_path, before, block(LOG_SINK), after)
    assert re.search(r"^INFO tether::\S+ \| state changed", out, re.M), out


def test_quick_start_example_publishes_acked(relay, tmp_path):
    """"Python": connects with a token, and prints the offset the relay stored the message at."""
    # The README leaves `session` to the app: here it hands out the test relay's token.
    before = f"""\
        class session:
            async def fresh_token(force):
                return {TOKEN!r}

    """
    example = block(QUICK_START)
    assert README_URL in example
    # It awaits UniFFI calls right up to the end of `asyncio.run`: it used to abort at exit
    # about 1 run in 20 under load (test_lifetime.py, the last awaited call, has the fix's test).
    out = run_example(tmp_path, before, example.replace(README_URL, relay.url))
    assert re.fullmatch(r"\d+\n", out), out


def test_sync_shutdown_example(relay, tmp_path):
    """A synchronous app shuts its client down in `finally:`; the client is closed after."""
    before = f"""\
        import tether_ffi as t
        config = t.ClientConfig({relay.url!r})  # the README's `config`
    """
    after = """
        assert client.state().is_CLOSED(), client.state()
    """
    run_example(tmp_path, before, block(SYNC_SHUTDOWN), after)
