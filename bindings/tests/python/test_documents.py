"""Shared documents through the generated Python bindings, on the reference relay over
loopback: Alice on the relay directly, Bob through a proxy that can cut him off. The same
scenario as `documents` in bindings/tests/kotlin/TetherTest.kt. Tests run in file order and
share the two clients (the `people` fixture); runs after test_client.py."""

import asyncio

import pytest

import tether_ffi as t
from conftest import CutProxy, DocRecorder, Recorder, config, until

LOCAL, CONFIRMED, REMOTE, ROLLED_BACK = (
    t.ChangeOrigin.LOCAL_PENDING,
    t.ChangeOrigin.CONFIRMED,
    t.ChangeOrigin.REMOTE,
    t.ChangeOrigin.ROLLED_BACK,
)


def changed(events, origin, key, pred=lambda c: True):
    return any(
        e.is_CHANGED() and e.origin == origin and any(c.key == key and pred(c) for c in e.changes)
        for e in events
    )


@pytest.fixture(scope="module")
def people(relay, tokens, run):
    """Alice and Bob with the document "py-list" open, each with a document listener. Yields a
    dict that teardown empties (the clients must be released before the interpreter exits)."""
    proxy = CutProxy(relay.port)
    rec_alice, rec_bob = Recorder(), Recorder()
    alice = t.Client(config(relay.url, "py-alice", tokens))
    bob = t.Client(config(proxy.url, "py-bob", tokens))
    handles = [alice.add_listener(rec_alice), bob.add_listener(rec_bob)]
    alice.connect()
    bob.connect()
    list_a, list_b = alice.document("py-list"), bob.document("py-list")
    ev_a, ev_b = DocRecorder(), DocRecorder()
    handles += [list_a.add_listener(ev_a), list_b.add_listener(ev_b)]
    held = dict(
        proxy=proxy, alice=alice, bob=bob, rec_alice=rec_alice, rec_bob=rec_bob,
        list_a=list_a, list_b=list_b, ev_a=ev_a, ev_b=ev_b, handles=handles,
    )
    yield held
    for h in handles:
        h.cancel()
    run(alice.shutdown())
    run(bob.shutdown())
    proxy.close()
    held.clear()


def test_a_local_change_shows_at_once_is_confirmed_and_both_converge(people, run):
    p = people
    list_a, list_b, ev_a, ev_b = p["list_a"], p["list_b"], p["ev_a"], p["ev_b"]

    async def scenario():
        first = await ev_a.next("snapshot first", lambda e: True)
        assert first.is_SNAPSHOT() and first.values == {} and first.pending == 0, first
        await until("both synced", lambda: list_a.version() is not None and list_b.version() is not None)

        change_id = list_a.set("title", '"groceries"')
        assert list_a.get("title") == '"groceries"', "not visible at once"
        local = await ev_a.next("local change", lambda e: e.is_CHANGED())
        assert local.origin == LOCAL, local
        assert local.changes == [t.KeyChange(key="title", value='"groceries"', overwrote_local=False)]
        await ev_a.next("confirmed", lambda e: e.is_CHANGED() and e.origin == CONFIRMED)
        await ev_b.wait_for(
            "Alice's change on Bob",
            lambda evs: changed(evs, REMOTE, "title", lambda c: c.value == '"groceries"'),
        )
        assert list_b.get("title") == '"groceries"'
        # The client listener sees the same, in order with the connection's events.
        await p["rec_alice"].next(
            "DocumentChanged on the client listener",
            lambda e: e.is_DOCUMENT_CHANGED() and e.channel == "py-list" and e.origin == LOCAL,
        )
        assert "MainThread" not in ev_a.threads
        assert change_id > 0

        # An atomic change of several keys, from Bob.
        list_b.change([
            t.DocumentOp.SET("count", "1"),
            t.DocumentOp.DELETE("title"),
            t.DocumentOp.INSERT("tags", '["food"]'),
        ])
        await until(
            "converged",
            lambda: list_a.pending() == 0 and list_b.pending() == 0
            and list_a.snapshot() == list_b.snapshot() and list_a.get("title") is None,
        )
        assert list_a.snapshot() == {"count": "1", "tags": '["food"]'}
        assert list_a.snapshot_json() == '{"count":1,"tags":["food"]}'
        assert list_a.version() == list_b.version()

        # Refused at once, typed.
        with pytest.raises(t.ClientError.InvalidArgument) as not_json:
            list_a.set("x", "not json")
        assert not_json.value.argument == "json"
        with pytest.raises(t.ClientError.InvalidArgument) as empty:
            list_a.change([])
        assert empty.value.argument == "ops"
        with pytest.raises(t.ClientError.Rejected) as taken:
            list_a.insert("count", "5")
        assert taken.value.code == "conflict"
        with pytest.raises(t.ClientError.Rejected) as not_number:
            list_a.increment("tags", 1)
        assert not_number.value.code == "type_mismatch"
        assert list_a.pending() == 0 and list_a.get("count") == "1", "a refused change left a trace"

    run(scenario())


def test_concurrent_sets_on_one_key_converge_and_the_loser_is_told(people, run):
    p = people
    list_a, list_b, ev_a, ev_b = p["list_a"], p["list_b"], p["ev_a"], p["ev_b"]

    async def scenario():
        from_a, from_b = ev_a.mark(), ev_b.mark()
        list_a.set("owner", '"alice"')
        list_b.set("owner", '"bob"')
        await until(
            "converged",
            lambda: list_a.pending() == 0 and list_b.pending() == 0
            and list_a.get("owner") == list_b.get("owner"),
        )
        winner = list_a.get("owner")
        a_lost = winner == '"bob"'
        loser, since = (ev_a, from_a) if a_lost else (ev_b, from_b)
        other, other_since = (ev_b, from_b) if a_lost else (ev_a, from_a)
        await loser.wait_for(
            "the loser told",
            lambda evs: changed(evs, REMOTE, "owner", lambda c: c.overwrote_local and c.value == winner),
            since,
        )
        assert not changed(other.since(other_since), REMOTE, "owner", lambda c: c.overwrote_local)
        assert list_a.snapshot() == list_b.snapshot()

    run(scenario())


def test_increments_while_bob_is_cut_off_sum_exactly_and_his_insert_conflict_rolls_back(people, run):
    p = people
    alice, bob, proxy = p["alice"], p["bob"], p["proxy"]
    votes_a, votes_b = alice.document("py-votes"), bob.document("py-votes")
    ev = DocRecorder()
    p["handles"].append(votes_b.add_listener(ev))

    async def scenario():
        await until("both synced", lambda: votes_a.version() is not None and votes_b.version() is not None)
        proxy.cut()
        await p["rec_bob"].state("Bob cut off", lambda s: s.is_WAITING())
        for _ in range(10):
            votes_a.increment("yes", 1)
            votes_b.increment("yes", 2)
        votes_a.insert("seat", '"alice"')
        claim = votes_b.insert("seat", '"bob"')
        assert (votes_b.get("yes"), votes_b.get("seat")) == ("20", '"bob"'), "Bob's own edits show"
        await until("Alice settles", lambda: votes_a.pending() == 0 and votes_a.get("yes") == "10")
        assert votes_b.pending() == 11
        since = ev.mark()

        proxy.restore()
        # Skip the backoff wait: only a change from offline cuts it.
        bob.network_changed(False)
        bob.network_changed(True)
        await until(
            "both converge",
            lambda: votes_a.pending() == 0 and votes_b.pending() == 0
            and votes_a.get("yes") == "30" and votes_b.get("yes") == "30",
            15,
        )
        assert votes_b.get("seat") == '"alice"', "the later insert lost"
        assert votes_a.snapshot() == votes_b.snapshot()
        rejected = await ev.next("Rejected", lambda e: e.is_REJECTED())
        assert (rejected.change, rejected.code) == (claim, "conflict")
        # Bob's view of the seat went back from his claim to Alice's (a rollback, or the
        # remote change the claim no longer applies on, whichever reached him first).
        await ev.wait_for(
            "Bob's claim rolled back",
            lambda evs: any(
                changed([e], origin, "seat", lambda c: c.value == '"alice"')
                for e in evs
                for origin in (ROLLED_BACK, REMOTE)
            ),
            since,
        )
        await p["rec_bob"].next(
            "ChangeRejected on the client listener",
            lambda e: e.is_CHANGE_REJECTED() and e.channel == "py-votes" and e.change == claim
            and e.code == "conflict",
        )

    run(scenario())


def test_a_restarted_relay_resyncs_documents_and_keeps_edits_made_while_down(people, relay, run):
    p = people
    alice, bob, list_a, list_b, ev_a = p["alice"], p["bob"], p["list_a"], p["list_b"], p["ev_a"]

    async def scenario():
        since = ev_a.mark()
        relay.stop(graceful=False)
        await p["rec_alice"].state("Alice waiting", lambda s: s.is_WAITING())
        list_a.increment("down", 5)
        list_b.increment("down", 7)
        relay.start()
        for c in (alice, bob):
            c.network_changed(False)
            c.network_changed(True)
        await ev_a.wait_for("Resynced", lambda evs: any(e.is_RESYNCED() for e in evs), since, 15)
        await p["rec_alice"].next(
            "DocumentResynced on the client listener",
            lambda e: e.is_DOCUMENT_RESYNCED() and e.channel == "py-list",
        )
        await until(
            "converged after the restart",
            lambda: list_a.pending() == 0 and list_b.pending() == 0
            and list_a.get("down") == "12" and list_b.get("down") == "12",
            15,
        )
        assert list_a.snapshot() == {"down": "12"}, "a restarted relay starts empty"
        # The state is read at once; the listener gets its events on its own thread.
        await ev_a.wait_for(
            "Alice told the relay forgot count",
            lambda evs: changed(evs, REMOTE, "count", lambda c: c.value is None),
            since,
            5,
        )

    run(scenario())


def test_a_closed_document_gets_no_more_remote_changes_and_opens_again(people, run):
    p = people
    alice, bob, rec_bob = p["alice"], p["bob"], p["rec_bob"]
    notes_a, notes_b = alice.document("py-notes"), bob.document("py-notes")
    ev = DocRecorder()
    p["handles"].append(notes_b.add_listener(ev))

    async def scenario():
        await until("both synced", lambda: notes_a.epoch() is not None and notes_b.epoch() is not None)
        assert notes_a.epoch() == notes_b.epoch(), "one relay, one epoch"
        before_set, before_set_doc = rec_bob.mark(), ev.mark()
        notes_a.set("n", "1")
        await until("Bob has it", lambda: notes_b.get("n") == "1" and notes_a.pending() == 0)
        assert notes_a.confirmed() == {"n": "1"} and notes_b.confirmed() == {"n": "1"}
        # Its events reach the listeners on their own thread, maybe after the state: waited for,
        # or they would land after the marks below and look like changes after the close.
        # Named by the opening they are about: this handle's.
        opening = notes_b.generation()
        await rec_bob.wait_for(
            "Bob told of n=1",
            lambda evs: any(
                e.is_DOCUMENT_CHANGED() and e.channel == "py-notes" and e.generation == opening
                for e in evs
            ),
            before_set,
            5,
        )
        await ev.wait_for("Bob's document listener told of n=1", lambda evs: len(evs) > 0, before_set_doc, 5)

        notes_b.close_document()
        since_doc, since = ev.mark(), rec_bob.mark()
        notes_a.set("n", "2")
        # Then a change on a document Bob still has open: the relay forwards Alice's changes
        # in order, so once Bob has this one, he has had the change to "n" too.
        p["list_a"].set("barrier", '"after close"')
        await rec_bob.next(
            "the later change on Bob's open document",
            lambda e: e.is_DOCUMENT_CHANGED() and e.channel == "py-list" and e.origin == REMOTE,
        )
        assert not any(
            e.is_DOCUMENT_CHANGED() and e.channel == "py-notes" for e in rec_bob.since(since)
        ), "a closed document got a remote change"
        assert ev.since(since_doc) == [], "its listener got events after the close"
        # Closed: reads are empty, changes refused (typed).
        assert (notes_b.get("n"), notes_b.version(), notes_b.epoch()) == (None, None, None)
        assert notes_b.confirmed() == {} and notes_b.snapshot() == {}
        with pytest.raises(t.ClientError.DocumentClosed) as closed:
            notes_b.set("n", "3")
        assert closed.value.channel == "py-notes"
        notes_b.close_document()  # again: nothing happens

        before_reopen = rec_bob.mark()
        again = bob.document("py-notes")
        await until("opened again and resynced", lambda: again.get("n") == "2")
        assert again.epoch() == notes_a.epoch()
        # A new opening: a greater number, which its events carry and the old one's do not.
        reopened = again.generation()
        assert reopened > opening and notes_b.generation() == opening, (opening, reopened)
        await rec_bob.wait_for(
            "the new opening's sync on the client listener",
            lambda evs: any(
                e.is_DOCUMENT_RESYNCED() and e.channel == "py-notes" and e.generation == reopened
                for e in evs
            ),
            before_reopen,
            5,
        )

    run(scenario())


def test_shutdown_returns_after_the_last_event_and_nothing_restarts_it(people, run):
    p = people
    alice, rec, ev_a = p["alice"], p["rec_alice"], p["ev_a"]
    closed = t.ConnectionState.CLOSED(t.CloseReason.APP(1000))

    async def scenario():
        since = rec.mark()
        await alice.shutdown()
        # Already delivered when shutdown() returns: no waiting.
        last = rec.snapshot()[-1]
        assert last.is_STATE_CHANGED() and last.current == closed, last
        assert any(
            e.is_STATE_CHANGED() and e.current == t.ConnectionState.CLOSING() for e in rec.since(since)
        )
        alice.connect()
        assert alice.state() == closed
        with pytest.raises(t.ClientError.Closed):
            alice.send(t.Payload.JSON("1"))
        with pytest.raises(t.ClientError.Closed):
            alice.document("more")
        seen = ev_a.mark()
        await asyncio.sleep(0.1)
        assert ev_a.mark() == seen, "document events after shutdown"
        await alice.shutdown()  # idempotent

    run(scenario())
