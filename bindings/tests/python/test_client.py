"""The generated Python bindings on CPython, against the reference relay on loopback: the same
scenario as the Kotlin test (bindings/tests/kotlin/TetherTest.kt). Tests run in file order and
the later ones share two clients (the `pair` fixture)."""

import asyncio
import socket
import threading
import time

import pytest

import tether_ffi as t
from conftest import BURST, CHUNK, Recorder, config, until

OPEN = t.ConnectionState.OPEN()


def json(text):
    return t.Payload.JSON(text)


def has_message(events, payload):
    return any(e.is_MESSAGE() and e.message.payload == payload for e in events)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_typed_errors_name_the_field_and_raw_mode_refuses_channels():
    assert t.sdk_version()
    with pytest.raises(t.ClientError.InvalidConfig) as bad:
        t.Client(t.ClientConfig("ftp://nowhere"))
    assert bad.value.field == "url"
    # A variant with fields keeps them, and its str() shows them.
    assert bad.value.reason and str(bad.value).startswith("field='url', reason=")
    with pytest.raises(t.ClientError.InvalidConfig) as zero:
        t.Client(t.ClientConfig("ws://127.0.0.1:9/").backoff_initial_ms(0))
    assert zero.value.field == "backoff.initial"
    # In no unit a milliseconds setting cannot take (it said "at least 1 µs").
    assert zero.value.reason.startswith("must be more than zero"), zero.value.reason
    for config, field in [
        (t.ClientConfig("ws://127.0.0.1:9/").event_capacity(0), "event_capacity"),
        (t.ClientConfig("ws://127.0.0.1:9/").listener_queue_capacity(0), "listener_queue_capacity"),
        # Over 65,536: refused, where 2**31 used to abort the process allocating the queue.
        (t.ClientConfig("ws://127.0.0.1:9/").listener_queue_capacity(65537), "listener_queue_capacity"),
        (t.ClientConfig("ws://127.0.0.1:9/").listener_queue_capacity(2**31), "listener_queue_capacity"),
        (t.ClientConfig("ws://127.0.0.1:9/").listener_queue_capacity(2**32 - 1), "listener_queue_capacity"),
    ]:
        with pytest.raises(t.ClientError.InvalidConfig) as none:
            t.Client(config)
        assert none.value.field == field
    raw = t.Client(t.ClientConfig("ws://127.0.0.1:9/"))
    with pytest.raises(t.ClientError.NeedsTetherProtocol) as refused:
        raw.subscribe("room")
    # str(e), what f"send failed: {e}" and logging print, is the Rust SDK's text, also for a
    # variant that has no data of its own (it used to be empty).
    assert "this needs the Tether protocol (the client is in raw mode)" in str(refused.value)
    assert refused.value.reason == "this needs the Tether protocol (the client is in raw mode)"
    assert "Tether protocol" in f"subscribe failed: {refused.value}"
    with pytest.raises(t.ClientError.NeedsTetherProtocol):
        raw.document("list")
    # Not None ("not subscribed"), which an app may wait on for ever.
    with pytest.raises(t.ClientError.NeedsTetherProtocol):
        raw.presence("room")
    with pytest.raises(t.ClientError.InvalidArgument) as arg:
        raw.send(json("{not json"))
    assert arg.value.argument == "payload"
    assert raw.state() == t.ConnectionState.IDLE()
    # A message too large names the limit: its own, or the whole outbox's when that is smaller.
    small = t.Client(t.ClientConfig("ws://127.0.0.1:9/").max_message_bytes(8).outbox_max_bytes(4))
    with pytest.raises(t.ClientError.TooLarge) as big:
        small.send(t.Payload.TEXT("x" * 9))
    assert (big.value.size, big.value.max, big.value.limit) == (9, 8, t.SizeLimit.MAX_MESSAGE_BYTES)
    with pytest.raises(t.ClientError.TooLarge) as fuller:
        small.send(t.Payload.TEXT("x" * 6))
    assert (fuller.value.size, fuller.value.max, fuller.value.limit) == (6, 4, t.SizeLimit.OUTBOX_MAX_BYTES)


def test_a_zero_timeout_is_refused_naming_the_timeout_the_app_passed(run):
    """`send_acked`/`publish_acked`/`request` take `timeout_ms`; 0 is refused as that argument,
    in milliseconds, not as the `options` (and microseconds) of the engine underneath."""
    c = t.Client(t.ClientConfig("ws://127.0.0.1:9/").wire_protocol(t.WireProtocol.TETHER))

    async def scenario():
        for call in (
            c.send_acked(json("1"), 0),
            c.publish_acked("room", json("1"), 0),
            c.request(json("1"), 0),
        ):
            with pytest.raises(t.ClientError.InvalidArgument) as refused:
                await call
            assert refused.value.argument == "timeout_ms", refused.value
            assert "at least 1 ms" in refused.value.reason, refused.value
        assert c.stats().outbox_len == 0, "nothing was accepted"
        await c.shutdown()

    run(scenario())


def test_a_token_provider_that_never_answers_fails_the_attempt_at_the_connect_timeout(run):
    """What TokenProvider's docs say a provider that never answers is reported as: the
    connect timeout (they said TOKEN_UNAVAILABLE, which only a provider that throws gets)."""

    class Never(t.TokenProvider):
        async def token(self, refresh):
            await asyncio.Event().wait()

    async def scenario():
        c = t.Client(
            t.ClientConfig(f"ws://127.0.0.1:{free_port()}/")
            .token_provider(Never())
            .connect_timeout_ms(300)
        )
        rec = Recorder()
        handle = c.add_listener(rec)
        c.connect()
        retry = await rec.next("a retry", lambda e: e.is_RECONNECT_SCHEDULED())
        assert retry.cause == t.DisconnectCause.CONNECT_TIMEOUT(), retry.cause
        handle.cancel()
        await c.shutdown()

    run(scenario())


def test_an_abandoned_token_fetch_is_cancelled_from_the_runtimes_thread_safely(run):
    """A token fetch the client no longer waits for (its attempt timed out) is dropped on a
    Rust thread, and UniFFI cancelled its coroutine with `loop.call_soon`, which is not
    thread-safe: the loop saw it only when something else woke it, and a loop in debug mode
    refused it (the coroutine was never cancelled; one more piled up per attempt)."""

    class Hangs(t.TokenProvider):
        def __init__(self):
            self.started = 0
            self.cancelled = 0

        async def token(self, refresh):
            self.started += 1
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled += 1
                raise

    provider = Hangs()

    async def scenario():
        loop = asyncio.get_running_loop()
        loop.set_debug(True)
        try:
            c = t.Client(
                t.ClientConfig(f"ws://127.0.0.1:{free_port()}/")
                .token_provider(provider)
                .connect_timeout_ms(200)
                .backoff_initial_ms(50)
                .backoff_max_ms(50)
            )
            c.connect()
            deadline = time.monotonic() + 10
            while provider.started < 3:
                assert time.monotonic() < deadline, provider.started
                await asyncio.sleep(0.05)
            # Let the loop idle, so only a thread-safe wake-up can run the cancellation.
            await asyncio.sleep(0.5)
            await c.shutdown()
        finally:
            loop.set_debug(False)
        deadline = time.monotonic() + 5
        while provider.cancelled < provider.started - 1:
            assert time.monotonic() < deadline, (provider.started, provider.cancelled)
            await asyncio.sleep(0.05)

    run(scenario())


def test_a_listener_added_while_waiting_gets_the_time_left_now_not_at_the_transition():
    """The first event of a listener is the current state: a backoff's `retry_in_ms` and
    `retry_at_unix_ms` are as of now, as `state()` gives them, not as of the transition into
    `WAITING` (an app re-adding its listener after a screen rotation shows the countdown from
    it). No server: port refused, then 3 s of backoff."""
    c = t.Client(
        t.ClientConfig(f"ws://127.0.0.1:{free_port()}/")
        .backoff_initial_ms(3000)
        .backoff_max_ms(3000)
        .jitter(t.Jitter.NONE)
    )
    c.connect()
    deadline = time.monotonic() + 10
    while not c.state().is_WAITING():
        assert time.monotonic() < deadline, c.state()
        time.sleep(0.01)
    time.sleep(1.5)
    first = []
    arrived = threading.Event()

    class First(t.ClientListener):
        def on_event(self, event):
            if not first:
                first.append(event)
                arrived.set()

    handle = c.add_listener(First())
    now = c.state()
    assert arrived.wait(10)
    snapshot = first[0].current
    assert snapshot.is_WAITING() and now.is_WAITING(), (snapshot, now)
    # About 1,500 ms left; the snapshot said 3,000 when it was the state at the transition.
    assert snapshot.retry_in_ms <= now.retry_in_ms + 100, (snapshot, now)
    assert abs(snapshot.retry_at_unix_ms - now.retry_at_unix_ms) <= 100, (snapshot, now)
    handle.cancel()
    assert c.shutdown_blocking(5000)


def test_listener_gets_current_state_first_then_transitions_in_order(relay, tokens, run):
    async def scenario():
        c = t.Client(config(relay.url, "py-order", tokens))
        rec = Recorder()
        handle = c.add_listener(rec)
        first = await rec.next("snapshot", lambda e: True)
        assert first.is_STATE_CHANGED() and first.previous is None
        assert first.current == t.ConnectionState.IDLE()
        c.connect()
        connecting = await rec.next("connecting", lambda e: True)
        assert connecting.previous == t.ConnectionState.IDLE()
        assert connecting.current == t.ConnectionState.CONNECTING(1)
        opened = await rec.next("open", lambda e: True)
        assert opened.previous == t.ConnectionState.CONNECTING(1) and opened.current == OPEN
        assert c.state() == OPEN
        assert threading.main_thread().name not in rec.threads
        assert tokens.calls >= 1
        handle.cancel()
        assert handle.is_cancelled()
        await c.shutdown()

    run(scenario())


def test_publish_is_acked_and_received_with_presence(pair, run):
    a, b, rec_a, rec_b, _ = pair

    async def scenario():
        await rec_a.next("A subscribed", lambda e: e.is_SUBSCRIBED() and e.channel == "room")
        await rec_b.next("B subscribed", lambda e: e.is_SUBSCRIBED() and e.channel == "room")
        offset = await a.publish_acked("room", json('{"n":1}'), 5000)
        assert offset == 1
        m = await rec_b.next("message on B", lambda e: e.is_MESSAGE())
        assert m.message.channel == "room" and m.message.offset == 1
        assert m.message.payload == json('{"n":1}')
        # In Tether mode a Text is sent as a JSON string and arrives as JSON (README, "Events").
        await a.publish_acked("room", t.Payload.TEXT("hi"), 5000)
        m = await rec_b.next("text message on B", lambda e: e.is_MESSAGE())
        assert m.message.payload == json('"hi"')
        await rec_b.wait_for(
            "A in B's presence",
            lambda evs: any(e.is_PRESENCE() and "py-a" in e.members for e in evs),
        )
        assert "py-a" in b.presence("room")
        assert b.presence("elsewhere") is None

    run(scenario())


def test_an_event_stream_resumes_from_the_position_of_the_last_message_handled(pair, relay, run):
    a = pair[0]
    sse_url = f"http://127.0.0.1:{relay.port}/sse/resume-room?token=s3cret"
    with pytest.raises(t.ClientError.InvalidConfig) as ws:
        t.Client(t.ClientConfig(relay.url).last_event_id("1"))
    assert ws.value.field == "last_event_id"

    # The relay's raw event stream carries its envelopes: a `subscribed`, then each `message`.
    def published(e, n=None):
        if not (e.is_MESSAGE() and e.message.payload.is_TEXT()):
            return False
        text = e.message.payload.text
        return '"type":"message"' in text and (n is None or f'"n":{n}' in text)

    async def scenario():
        first, rec = t.Client(t.ClientConfig(sse_url)), Recorder()
        handle = first.add_listener(rec)
        first.connect()
        await rec.state("first stream open", lambda s: s == t.ConnectionState.OPEN())
        for n in (1, 2):
            await a.publish_acked("resume-room", json(f'{{"n":{n}}}'), 5000)
        m = await rec.next("message 1", lambda e: published(e, 1))
        saved = m.message.last_event_id
        assert saved, m.message
        m2 = await rec.next("message 2", lambda e: published(e, 2))
        assert m2.message.last_event_id not in (None, saved)
        assert first.last_event_id() == m2.message.last_event_id
        handle.cancel()
        assert first.shutdown_blocking(5000)
        # Restarted from the position saved after message 1: message 2 again, not message 1.
        again, rec2 = t.Client(t.ClientConfig(sse_url).last_event_id(saved)), Recorder()
        handle2 = again.add_listener(rec2)
        again.connect()
        m = await rec2.next("the message after the saved position", lambda e: published(e))
        assert published(m, 2), m.message
        handle2.cancel()
        assert again.shutdown_blocking(5000)

    run(scenario())


def test_an_online_report_restarts_an_event_stream_from_its_position(pair, relay, run):
    a = pair[0]
    sse_url = f"http://127.0.0.1:{relay.port}/sse/restart-room?token=s3cret"

    def published(e, n):
        return (
            e.is_MESSAGE()
            and e.message.payload.is_TEXT()
            and '"type":"message"' in e.message.payload.text
            and f'"n":{n}' in e.message.payload.text
        )

    async def scenario():
        sse, rec = t.Client(t.ClientConfig(sse_url).min_uptime_ms(100)), Recorder()
        handle = sse.add_listener(rec)
        sse.connect()
        await rec.state("stream open", lambda s: s == t.ConnectionState.OPEN())
        await a.publish_acked("restart-room", json('{"n":1}'), 5000)
        await rec.next("message 1", lambda e: published(e, 1))
        await asyncio.sleep(0.3)  # up longer than min_uptime: stable
        # A stream cannot be probed with a ping: it is restarted from its position.
        sse.network_changed(True)
        restart = await rec.next("the restart", lambda e: e.is_RECONNECT_SCHEDULED())
        assert restart.cause == t.DisconnectCause.STREAM_RESTARTED(), restart.cause
        await rec.state("stream open again", lambda s: s == t.ConnectionState.OPEN())
        await a.publish_acked("restart-room", json('{"n":2}'), 5000)
        await rec.next("message 2", lambda e: published(e, 2))
        ones = [e for e in rec.snapshot() if published(e, 1)]
        assert len(ones) == 1, "message 1 again after the restart: it resumed from before it"
        handle.cancel()
        assert sse.shutdown_blocking(5000)

    run(scenario())


def test_request_gets_the_echo_and_publish_gets_an_acked_event_unless_unacked(pair, run):
    a, b, rec_a, rec_b, _ = pair

    async def scenario():
        assert await a.request(json('{"q":42}'), 5000) == '{"q":42}'
        msg_id = a.publish("room", t.Payload.TEXT("plain"))
        await rec_a.next("Acked", lambda e: e.is_ACKED() and e.id == msg_id)
        m = await rec_b.next("text message", lambda e: e.is_MESSAGE())
        assert m.message.payload == json('"plain"')

        since_b = rec_b.mark()
        once = a.publish_with("room", json('"once"'), t.SendOptions(ack=False))
        offset = await a.publish_acked("room", json('"acked"'), 5000)
        await rec_a.wait_for(
            "the later message's Acked",
            lambda evs: any(e.is_ACKED() and e.offset == offset for e in evs),
        )
        assert not any(e.is_ACKED() and e.id == once for e in rec_a.snapshot())
        await rec_b.wait_for(
            "both on B",
            lambda evs: has_message(evs, json('"once"')) and has_message(evs, json('"acked"')),
            since_b,
        )

    run(scenario())


def test_a_listener_that_raises_or_blocks_stalls_nothing(pair, run):
    a, b, rec_a, rec_b, _ = pair
    release = threading.Event()

    def explode(_event):
        raise RuntimeError("listener bug")

    def block(event):
        if event.is_MESSAGE():
            release.wait(30)

    thrower, blocker = Recorder(explode), Recorder(block)
    h1, h2 = a.add_listener(thrower), a.add_listener(blocker)

    async def scenario():
        since_a, since_b = rec_a.mark(), rec_b.mark()
        # BURST messages + BURST acks put the blocked listener more than QUEUE events behind.
        # Paced in chunks so that the fast listeners never fall that far behind: the blocked
        # listener's lag is then certain, and nobody else's happens.
        for start in range(1, BURST + 1, CHUNK):
            ids = range(start, min(start + CHUNK, BURST + 1))
            acks = await asyncio.gather(
                *(a.publish_acked("room", json(str(i)), 10000) for i in ids)
            )
            assert all(offset is not None for offset in acks)
            await rec_a.wait_for(
                f"messages {ids[0]}..{ids[-1]} on A",
                lambda evs: all(has_message(evs, json(str(i))) for i in ids),
                since_a,
            )
        # Concurrent publishes may be sent in any order; all must arrive.
        await rec_b.wait_for(
            f"{BURST} messages on B",
            lambda evs: all(has_message(evs, json(str(i))) for i in range(1, BURST + 1)),
            since_b,
        )
        await thrower.next("the thrower still gets events", lambda e: e.is_ACKED(), 5)
        assert a.stats().listener_failures > 0
        release.set()
        lag = await blocker.next("Lagged", lambda e: e.is_LAGGED())
        assert lag.missed > 0
        snap = await blocker.next("snapshot after lag", lambda e: True)
        assert snap.is_STATE_CHANGED() and snap.previous is None and snap.current == OPEN
        assert a.stats().listener_events_missed >= lag.missed
        assert a.state() == OPEN

    try:
        run(scenario())
    finally:
        release.set()
        h1.cancel()
        h2.cancel()


def test_unreachable_timed_out_acked_send_is_dropped_not_sent_later_cancel_and_ttl(tokens, run):
    c = t.Client(config(f"ws://127.0.0.1:{free_port()}/", "py-lonely", tokens))
    rec = Recorder()
    handle = c.add_listener(rec)
    expired = t.DropReason.EXPIRED()

    async def scenario():
        c.connect()
        t0 = time.monotonic()
        with pytest.raises(t.ClientError.AckTimedOut) as timed_out:
            await c.send_acked(json("1"), 300)
        took = time.monotonic() - t0
        assert 0.25 <= took <= 5, took
        # Never written, so the error says it expired, and names the message the Dropped event
        # (the timeout was its TTL) names.
        assert timed_out.value.status == t.Unacked.EXPIRED, timed_out.value
        timed_out_id = timed_out.value.message_id
        await rec.next(
            "the timed-out send dropped",
            lambda e: e.is_DROPPED() and e.reason == expired and timed_out_id in e.ids,
        )
        task = asyncio.ensure_future(c.publish_acked("room", json("2"), None))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 2)
        assert c.stats().outbox_len == 1  # no timeout: it still waits
        # A cancelled request is given up, not only its wait: it leaves the outbox and is never
        # sent (a screen the user left needs no answer).
        asked = asyncio.ensure_future(c.request(json("7"), None))
        await until("the request queued", lambda: c.stats().outbox_len == 2, 2)
        asked.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(asked, 2)
        await until("the cancelled request out of the outbox", lambda: c.stats().outbox_len == 1, 2)
        msg_id = c.publish_with("room", json("3"), t.SendOptions(ttl_ms=100))
        dropped = await rec.next("expired by its TTL", lambda e: e.is_DROPPED() and msg_id in e.ids, 5)
        assert dropped.reason == expired
        # The event-driven form of a timeout: AckTimedOut (EXPIRED), then the Dropped.
        msg_id = c.publish_with("room", json("4"), t.SendOptions(timeout_ms=100))
        ended = await rec.next(
            "timed out unsent",
            lambda e: (e.is_ACK_TIMED_OUT() and e.id == msg_id) or (e.is_DROPPED() and msg_id in e.ids),
            5,
        )
        assert ended.is_ACK_TIMED_OUT() and ended.status == t.Unacked.EXPIRED, ended
        await rec.next("then dropped", lambda e: e.is_DROPPED() and msg_id in e.ids, 5)
        with pytest.raises(t.ClientError.InvalidArgument) as refused:
            c.publish_with("room", json("5"), t.SendOptions(ack=False, timeout_ms=100))
        assert refused.value.argument == "options", refused.value
        stats = c.stats()
        assert (stats.dropped_expired, stats.outbox_len) == (3, 1), stats
        handle.cancel()
        await c.shutdown()  # stops its reconnect loop (and its token fetches) now

    run(scenario())


def test_relay_killed_and_restarted_delivers_every_queued_acked_message(pair, relay, tokens, run):
    a, b, rec_a, rec_b, _ = pair
    calls_before = tokens.calls
    slow = Recorder()
    # A client whose backoff is long: coming back online (offline, then online) must skip the wait.
    d = t.Client(
        config(relay.url, "py-d", tokens).backoff_initial_ms(30000).backoff_max_ms(30000)
    )
    hd = d.add_listener(slow)

    async def scenario():
        d.connect()
        await slow.state("D open", lambda s: s == OPEN)

        relay.stop(graceful=False)
        # The engine reports the state change first, then why and for how long.
        await rec_a.state("A waiting", lambda s: s.is_WAITING())
        sched = await rec_a.next("reconnect scheduled", lambda e: e.is_RECONNECT_SCHEDULED())
        assert sched.attempt >= 1 and sched.delay_ms <= 400
        waiting = (await slow.state("D waiting", lambda s: s.is_WAITING())).current
        in_ms = waiting.retry_at_unix_ms - time.time() * 1000
        assert 20000 <= in_ms <= 30500, in_ms
        # The same delay, relative: what was left when the state was converted.
        assert 20000 <= waiting.retry_in_ms <= 30000, waiting
        assert -50 <= waiting.retry_in_ms - in_ms <= 2000, (waiting, in_ms)

        # Publish while the relay is down: queued, not acked.
        acks = [
            asyncio.ensure_future(a.publish_acked("room", json('{"down":%d}' % i), 20000))
            for i in range(1, 6)
        ]
        await asyncio.sleep(0.3)
        assert not any(f.done() for f in acks), "acked while the relay was down"
        assert a.stats().outbox_len >= 5

        since_a = rec_a.mark()
        relay.start()
        await rec_a.state("A open again", lambda s: s == OPEN, 15)
        offsets = await asyncio.gather(*acks)
        assert all(o is not None for o in offsets), offsets
        # A is subscribed too: the relay stored and delivered all five.
        await rec_a.wait_for(
            "A's five queued messages",
            lambda evs: all(has_message(evs, json('{"down":%d}' % i)) for i in range(1, 6)),
            since_a,
        )
        assert a.stats().outbox_len == 0
        assert a.stats().reconnects >= 1
        # B is back and subscribed in the relay's new epoch: it gets what comes next.
        await rec_b.state("B open again", lambda s: s == OPEN, 15)
        sub = await rec_b.next("B resubscribed", lambda e: e.is_SUBSCRIBED())
        assert not sub.recovered, "a restarted relay has a new epoch"
        since_b = rec_b.mark()
        await a.publish_acked("room", json('"after"'), 5000)
        await rec_b.wait_for(
            "B receives after the restart", lambda evs: has_message(evs, json('"after"')), since_b
        )
        assert tokens.calls > calls_before + 2, "token provider not asked on every attempt"

        # D is still waiting out its 30 s backoff: the network coming back skips it (any online
        # report: a handover reports the new network before losing the old one; only a
        # server's minimum would hold it).
        assert d.state().is_WAITING()
        d.network_changed(False)
        d.network_changed(True)
        await slow.state("D open after network_changed(True)", lambda s: s == OPEN, 5)
        d.set_foreground(False)
        d.set_foreground(True)
        assert d.state() == OPEN

    try:
        run(scenario())
    finally:
        hd.cancel()
        run(d.shutdown())


def test_graceful_relay_restart_retries_close_1012(pair, relay, run):
    a, b, rec_a, rec_b, _ = pair

    async def scenario():
        relay.stop(graceful=True)
        await rec_a.state("A waiting after 1012", lambda s: s.is_WAITING())
        sched = await rec_a.next("reconnect after 1012", lambda e: e.is_RECONNECT_SCHEDULED())
        assert sched.cause.is_CLOSED() and sched.cause.code == 1012, sched
        assert sched.delay_ms <= 5000
        relay.start()
        await rec_a.state("A open after 1012", lambda s: s == OPEN, 20)
        await rec_b.state("B open after 1012", lambda s: s == OPEN, 20)

    run(scenario())


def test_disconnect_then_connect_again_then_cancel_stops_events(pair, run):
    a, b, rec_a, rec_b, handle_a = pair

    async def scenario():
        reason = await a.disconnect()
        assert reason == t.CloseReason.APP(1000)
        await rec_a.state("A closing", lambda s: s == t.ConnectionState.CLOSING())
        await rec_a.state(
            "A closed", lambda s: s == t.ConnectionState.CLOSED(t.CloseReason.APP(1000))
        )
        with pytest.raises(t.ClientError.Closed) as closed:
            a.send(json("1"))
        assert "the client is closed" in f"send failed: {closed.value}"
        assert closed.value.reason == "the client is closed"
        a.connect()
        await rec_a.state("A open again", lambda s: s == OPEN)
        handle_a.cancel()
        await asyncio.sleep(0.2)  # at most one event already being handed over may arrive
        seen = rec_a.mark()
        await a.disconnect()  # Closing, Closed: none of it reaches the cancelled listener
        await asyncio.sleep(0.2)
        assert rec_a.mark() == seen, rec_a.snapshot()[seen:]

    run(scenario())


class RawServer:
    """A raw WebSocket server on 127.0.0.1 for one connection: after the handshake it sends
    `messages` as text frames (a `bytes` message as a binary frame), answers the text `ping`
    with `pong`, and records the text frames it receives (the binary ones in
    `received_binary`). Small frames only (under 126 bytes)."""

    GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    def __init__(self, messages, ping, pong):
        self.messages, self.ping, self.pong = messages, ping, pong
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.url = f"ws://127.0.0.1:{self.sock.getsockname()[1]}/"
        self.received = []
        self.received_binary = []
        self.conn = None
        self.thread = threading.Thread(target=self._serve, name="raw-server", daemon=True)
        self.thread.start()

    def _serve(self):
        import base64
        import hashlib

        try:
            self.conn, _ = self.sock.accept()
        except OSError:
            return
        conn = self.conn
        conn.settimeout(10)
        try:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                head += chunk
            key = next(
                line.split(b":", 1)[1].strip()
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"sec-websocket-key:")
            )
            accept = base64.b64encode(hashlib.sha1(key + self.GUID).digest())
            conn.sendall(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
            )
            for m in self.messages:
                self._send(m)
            buf = b""
            while True:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                buf += chunk
                while len(buf) >= 6 and len(buf) >= 6 + (buf[1] & 0x7F):
                    n = buf[1] & 0x7F  # client frames are masked
                    mask, data = buf[2:6], buf[6 : 6 + n]
                    op, buf = buf[0] & 0x0F, buf[6 + n :]
                    if op == 0x8:
                        conn.sendall(b"\x88\x00")
                        return
                    if op == 0x2:
                        self.received_binary.append(bytes(b ^ mask[i % 4] for i, b in enumerate(data)))
                    if op == 0x1:
                        text = bytes(b ^ mask[i % 4] for i, b in enumerate(data)).decode()
                        self.received.append(text)
                        if text == self.ping:
                            self._send(self.pong)
        except OSError:
            pass

    def _send(self, message):
        if isinstance(message, bytes):
            self.conn.sendall(bytes([0x82, len(message)]) + message)
            return
        data = message.encode()
        self.conn.sendall(bytes([0x81, len(data)]) + data)

    def close(self):
        for s in (self.sock, self.conn):
            if s is not None:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
        self.thread.join(5)


def test_raw_app_pings_use_the_configured_texts_so_a_data_message_pong_is_not_eaten():
    """Raw mode with `HeartbeatMode.APP_MESSAGE`: the client pings with a text frame and takes
    the answer's text frames as pongs, consumed. By default those are `ping` and `pong`, so a
    server's data message that reads `pong` never reaches the app; `raw_ping`/`raw_pong` choose
    texts that cannot be data."""

    def run_against(server, config):
        c = t.Client(config.heartbeat_mode(t.HeartbeatMode.APP_MESSAGE).heartbeat_interval_ms(100))
        got = []
        done = threading.Event()

        class Messages(t.ClientListener):
            def on_event(self, event):
                if event.is_MESSAGE():
                    got.append(event.message.payload.text)
                    if event.message.payload.text == "hello":
                        done.set()

        handle = c.add_listener(Messages())
        c.connect()
        try:
            assert done.wait(10), got
            deadline = time.monotonic() + 10
            while not server.received:
                assert time.monotonic() < deadline, "no ping"
                time.sleep(0.01)
            return got, list(server.received)
        finally:
            handle.cancel()
            assert c.shutdown_blocking(5000)
            server.close()

    # The defaults: the server's data "pong" is taken for the answer to a ping.
    server = RawServer(["pong", "hello"], ping="ping", pong="pong")
    got, sent = run_against(server, t.ClientConfig(server.url))
    assert got == ["hello"] and sent[0] == "ping", (got, sent)
    # Texts of the app's choosing: every data message arrives, the pings are answered.
    server = RawServer(["pong", "hello"], ping='{"op":"ping"}', pong='{"op":"pong"}')
    config = t.ClientConfig(server.url).raw_ping('{"op":"ping"}').raw_pong('{"op":"pong"}')
    got, sent = run_against(server, config)
    assert got == ["pong", "hello"] and sent[0] == '{"op":"ping"}', (got, sent)
    with pytest.raises(t.ClientError.InvalidConfig) as empty:
        t.Client(
            t.ClientConfig(server.url).heartbeat_mode(t.HeartbeatMode.APP_MESSAGE).raw_ping("")
        )
    assert empty.value.field == "heartbeat.raw_ping"


def test_a_binary_payload_takes_any_bytes_like_object():
    """`Payload.BINARY(data)` takes what a Python app holds its bytes in: `bytes`, and also a
    `bytearray` or a `memoryview` (a slice of a buffer), which UniFFI's converter let through
    its type check and then failed to copy (`ctypes.ArgumentError: wrong type`). Each is sent
    as the bytes it holds; what is not bytes-like is still refused with a TypeError. A binary
    frame received arrives as `bytes`."""
    server = RawServer([b"\x00from server"], ping=None, pong=None)
    c = t.Client(t.ClientConfig(server.url))
    got = []
    received = threading.Event()

    class Messages(t.ClientListener):
        def on_event(self, event):
            if event.is_MESSAGE() and event.message.payload.is_BINARY():
                got.append(event.message.payload.data)
                received.set()

    handle = c.add_listener(Messages())
    try:
        buffer = bytearray(b"..in a buffer..")
        words = memoryview(bytes(range(8))).cast("H")  # 4 items of 2 bytes: all 8 are sent
        payloads = [
            b"bytes",
            bytearray(b"bytearray"),
            memoryview(b"memoryview"),
            memoryview(buffer)[2:-2],
            words,
            b"",
        ]
        for data in payloads:
            c.send(t.Payload.BINARY(data))
        for wrong in ["text", 3, None, [1, 2]]:
            with pytest.raises(TypeError):
                c.send(t.Payload.BINARY(wrong))
        c.connect()
        expected = [b"bytes", b"bytearray", b"memoryview", b"in a buffer", bytes(range(8)), b""]
        deadline = time.monotonic() + 10
        while len(server.received_binary) < len(expected):
            assert time.monotonic() < deadline, server.received_binary
            time.sleep(0.01)
        assert server.received_binary == expected
        assert received.wait(10), got
        assert got == [b"\x00from server"] and type(got[0]) is bytes, got
    finally:
        handle.cancel()
        assert c.shutdown_blocking(5000)
        server.close()
